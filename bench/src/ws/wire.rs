//! The WebSocket wire as the load generator speaks it, written by hand so
//! that a client costs next to nothing: frames are encoded once, ahead of
//! the run, and parsed in place.
//!
//! A client's binary message of 32 bytes is masked (RFC 6455 §5.3: every
//! client frame is); a server's is not:
//!
//! ```text
//! client -> server   +----+----+-----------+--------------------------+
//!                    | 82 | a0 | mask (4B) | 32 bytes XOR mask        |   38 B
//!                    +----+----+-----------+--------------------------+
//! server -> client   +----+----+--------------------------+
//!                    | 82 | 20 | 32 bytes                 |               34 B
//!                    +----+----+--------------------------+
//!   0x82: FIN, opcode 2 (binary)   0xa0: MASK bit, length 32
//! ```
//!
//! The mask is fixed rather than random (RFC 6455 asks for unpredictable
//! keys to protect proxies, which loopback has none of): the servers unmask
//! every byte all the same, and the generator spends nothing per frame.

use crate::proto::PAYLOAD;

/// A client frame: 2-byte header, 4-byte mask, the payload.
pub const CLIENT_FRAME: usize = 2 + 4 + PAYLOAD;

/// FIN and the binary opcode: the first byte of every data frame here.
pub const FIN_BINARY: u8 = 0x82;
/// FIN and the close opcode.
pub const FIN_CLOSE: u8 = 0x88;

/// The masking key of every client frame.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The `Sec-WebSocket-Key` of every client: servers only hash it into their
/// reply, which the generator does not check beyond the status line.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The HTTP upgrade request a client opens with.
pub fn upgrade_request() -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Where the HTTP response to the upgrade ends in `buf`, once it has
/// arrived whole: `Ok(Some(len))` for `101 Switching Protocols`,
/// `Ok(None)` while it is incomplete, `Err` with its status line for
/// anything else.
pub fn upgrade_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 101") {
        Ok(Some(end + 4))
    } else {
        Err(status.to_string())
    }
}

/// One masked binary frame carrying `payload`.
pub fn client_frame(payload: &[u8; PAYLOAD]) -> [u8; CLIENT_FRAME] {
    let mut out = [0u8; CLIENT_FRAME];
    out[0] = FIN_BINARY;
    out[1] = 0x80 | PAYLOAD as u8;
    out[2..6].copy_from_slice(&MASK);
    for (i, byte) in payload.iter().enumerate() {
        out[6 + i] = byte ^ MASK[i % 4];
    }
    out
}

/// `n` copies of [`client_frame`], back to back: what ingress clients
/// write over and over.
pub fn client_frames(payload: &[u8; PAYLOAD], n: usize) -> Vec<u8> {
    let one = client_frame(payload);
    let mut out = Vec::with_capacity(CLIENT_FRAME * n);
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

/// Splits the complete server frames at the front of `buf`, calling `f`
/// with each one's first byte (FIN and opcode) and payload, and returns how
/// many bytes they took; the rest is a partial frame for the next read.
/// Server frames are unmasked; a masked one (which no server may send) is
/// handed on still masked, so it fails the payload check.
pub fn split_frames(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            return pos;
        }
        let (mut header, len): (usize, usize) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 if rest.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&rest[2..10]);
                (
                    10,
                    usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX),
                )
            }
            126 | 127 => return pos,
            n => (2, n as usize),
        };
        if rest[1] & 0x80 != 0 {
            header += 4;
        }
        let Some(end) = header.checked_add(len).filter(|&end| end <= rest.len()) else {
            return pos;
        };
        f(rest[0], &rest[header..end]);
        pos += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{BROADCAST_PAYLOAD, INGRESS_PAYLOAD};

    #[test]
    fn a_client_frame_unmasks_to_its_payload() {
        let frame = client_frame(&INGRESS_PAYLOAD);
        assert_eq!(frame[..2], [0x82, 0xa0]);
        let unmasked: Vec<u8> = frame[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ frame[2 + i % 4])
            .collect();
        assert_eq!(unmasked, INGRESS_PAYLOAD);
    }

    #[test]
    fn server_frames_split_whole_and_keep_a_partial_tail() {
        let mut buf = Vec::new();
        for _ in 0..2 {
            buf.extend_from_slice(&[FIN_BINARY, PAYLOAD as u8]);
            buf.extend_from_slice(&BROADCAST_PAYLOAD);
        }
        // A close frame with a 16-bit length, then half a frame.
        buf.extend_from_slice(&[FIN_CLOSE, 126, 0, 2, 0x03, 0xe8]);
        let whole = buf.len();
        buf.extend_from_slice(&[FIN_BINARY, PAYLOAD as u8, 1, 2]);
        let mut seen = Vec::new();
        let used = split_frames(&buf, |op, p| seen.push((op, p.to_vec())));
        assert_eq!(used, whole);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], (FIN_BINARY, BROADCAST_PAYLOAD.to_vec()));
        assert_eq!(seen[2], (FIN_CLOSE, vec![0x03, 0xe8]));
    }

    #[test]
    fn only_a_whole_101_response_opens_the_connection() {
        assert_eq!(upgrade_response(b"HTTP/1.1 101 Switching"), Ok(None));
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(upgrade_response(ok), Ok(Some(ok.len())));
        let no = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(
            upgrade_response(no),
            Err("HTTP/1.1 400 Bad Request".to_string())
        );
    }
}
