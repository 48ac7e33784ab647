//! The wire format every server and the load generator agree on: a 2-byte
//! big-endian length prefix, then the payload (32 bytes in every scenario).
//!
//! ```text
//! +--------+--------------------------------+
//! | 0x0020 |        32 bytes of payload      |
//! +--------+--------------------------------+
//!   2 B              32 B                      = 34 B on the wire
//! ```

/// Payload length used by every scenario.
pub const PAYLOAD: usize = 32;
/// Length prefix width.
pub const HEADER: usize = 2;
/// One frame on the wire.
pub const FRAME: usize = HEADER + PAYLOAD;

/// The payload the servers broadcast and that receivers check for.
pub const BROADCAST_PAYLOAD: [u8; PAYLOAD] = *b"broadcast-payload-0123456789abcd";

/// Payload sent by ingress clients (content is not checked by the servers).
pub const INGRESS_PAYLOAD: [u8; PAYLOAD] = *b"ingress-payload-0123456789abcdef";

/// Encodes one frame.
pub fn frame(payload: &[u8; PAYLOAD]) -> [u8; FRAME] {
    let mut out = [0u8; FRAME];
    out[..HEADER].copy_from_slice(&(PAYLOAD as u16).to_be_bytes());
    out[HEADER..].copy_from_slice(payload);
    out
}

/// `n` copies of a frame, back to back: written repeatedly by the generator
/// (one big write instead of one per frame) and by the mio floor's broadcast.
pub fn frames(payload: &[u8; PAYLOAD], n: usize) -> Vec<u8> {
    let one = frame(payload);
    let mut out = Vec::with_capacity(FRAME * n);
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

/// The echo payload of client `id`'s request number `seq`.
pub fn echo_payload(id: u32, seq: u32) -> [u8; PAYLOAD] {
    let mut p = [0x5au8; PAYLOAD];
    p[..4].copy_from_slice(&id.to_be_bytes());
    p[4..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Splits the complete frames at the front of `buf`, calling `f` with each
/// payload, and returns how many bytes they took (the rest is a partial frame
/// to keep for the next read). Frames are parsed in place: nothing is copied.
#[inline]
pub fn split_frames(buf: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let len = u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize;
        let end = pos + HEADER + len;
        if end > buf.len() {
            break;
        }
        f(&buf[pos + HEADER..end]);
        pos = end;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_partial_tail() {
        let mut buf = frames(&INGRESS_PAYLOAD, 3);
        buf.truncate(FRAME * 2 + 5);
        let mut n = 0;
        let used = split_frames(&buf, |p| {
            assert_eq!(p, &INGRESS_PAYLOAD);
            n += 1;
        });
        assert_eq!((n, used), (2, FRAME * 2));
    }

    #[test]
    fn split_handles_zero_length_and_one_byte() {
        let buf = [0u8, 0, 0, 1, 7, 0];
        let mut seen = Vec::new();
        let used = split_frames(&buf, |p| seen.push(p.to_vec()));
        assert_eq!(seen, vec![vec![], vec![7]]);
        assert_eq!(used, 5);
    }
}
