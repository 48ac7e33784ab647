//! The soak's little protocol, shared by its server and its clients: frames
//! with a 2-byte length prefix (the crate's `LengthDelimitedCodec` on the
//! server side), and the payloads the clients send.
//!
//! | payload                    | lobby (channel 0)          | room (channel 1)              |
//! |----------------------------|----------------------------|-------------------------------|
//! | `bye`                      | `bye` back, then closed    | `bye` back, then closed       |
//! | `join:SLOT:SEQ`            | echoed, then moved to room | echoed                        |
//! | `all:SLOT:SEQ:PAD`         | echoed                     | sent to every room member     |
//! | anything else (`m:`, `f:`) | echoed                     | echoed                        |
//!
//! Every payload but `bye` names its client slot and a sequence number that
//! slot never repeats, so a client can tell its own echo from anything else:
//! an echo that is not the one it waits for is a bug somewhere.

use std::io;
use std::pin::Pin;
use std::task::{Poll, ready};

use bytes::{Buf, BytesMut};
use futures::AsyncRead;

pub use crate::proto::HEADER;

/// The server's maximum frame length: small, so that a hostile frame is easy
/// to make, and above every frame a well-behaved client sends.
pub const MAX_FRAME: usize = 1024;
/// Payload length of the frames a slow client floods the server with: large,
/// so that its outgoing backlog and the socket buffers fill in few frames.
pub const FLOOD_FRAME: usize = 1000;
/// The polite goodbye, and the server's answer before it closes.
pub const BYE: &[u8] = b"bye";
/// Prefix of a request to move to the room.
pub const JOIN: &[u8] = b"join";
/// Prefix of a message the room broadcasts.
pub const ALL: &[u8] = b"all";

/// Prepends the 2-byte length prefix to `payload` (at most [`MAX_FRAME`]).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("soak payloads fit a 2-byte prefix");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A payload `PREFIX:SLOT:SEQ:` followed by `pad` filler bytes (derived from
/// `seq`, so that a byte mixed up between frames shows).
pub fn payload(prefix: &str, slot: usize, seq: u64, pad: usize) -> Vec<u8> {
    let mut out = format!("{prefix}:{slot}:{seq}:").into_bytes();
    let fill = b'a' + (seq % 26) as u8;
    out.resize(out.len() + pad, fill);
    out
}

/// A flood frame's payload, [`FLOOD_FRAME`] bytes long.
pub fn flood_payload(slot: usize, seq: u64) -> Vec<u8> {
    let mut out = payload("f", slot, seq, 0);
    let fill = b'A' + (seq % 26) as u8;
    out.resize(FLOOD_FRAME, fill);
    out
}

/// Whether `frame` is a room broadcast (of any client).
pub fn is_broadcast(frame: &[u8]) -> bool {
    frame.starts_with(b"all:")
}

/// A short printable form of a payload, for error messages.
pub fn show(frame: &[u8]) -> String {
    let head = &frame[..frame.len().min(40)];
    let more = if frame.len() > head.len() { "..." } else { "" };
    format!(
        "{:?}{more} ({} B)",
        String::from_utf8_lossy(head),
        frame.len()
    )
}

/// Splits frames off a connection's byte stream. Cancel-safe: bytes read are
/// kept in the buffer, so a read dropped by a timeout or a dwell loses
/// nothing.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// The next frame's payload; `Ok(None)` at a clean end of stream (on a
    /// frame boundary), an error of kind `UnexpectedEof` if the stream ends
    /// inside a frame.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.split() {
                return Ok(Some(frame));
            }
            // A stack buffer inside the poll, not held across an await: the
            // future stays small (a thousand clients each hold one) and a
            // cancelled read loses no bytes.
            let n = futures::future::poll_fn(|cx| {
                let mut scratch = [0u8; 4096];
                let n = ready!(Pin::new(&mut *io).poll_read(cx, &mut scratch))?;
                self.buf.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok::<_, io::Error>(n))
            })
            .await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("stream ended inside a frame ({} B left)", self.buf.len()),
                    ))
                };
            }
        }
    }

    /// A complete frame from the front of the buffer, if there is one.
    fn split(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < HEADER {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if self.buf.len() < HEADER + len {
            return None;
        }
        self.buf.advance(HEADER);
        Some(self.buf.split_to(len).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_cut_frame_is_an_error() {
        let mut wire = encode(b"hello");
        wire.extend(encode(&flood_payload(3, 7)));
        wire.extend(encode(b""));
        wire.extend_from_slice(&[0, 9, b'x']);
        let mut io = futures::io::Cursor::new(wire);
        let mut reader = FrameReader::default();
        futures::executor::block_on(async {
            assert_eq!(reader.next(&mut io).await.unwrap().unwrap(), b"hello");
            let flood = reader.next(&mut io).await.unwrap().unwrap();
            assert_eq!(flood.len(), FLOOD_FRAME);
            assert!(flood.starts_with(b"f:3:7:"));
            assert_eq!(reader.next(&mut io).await.unwrap().unwrap(), b"");
            let cut = reader.next(&mut io).await.unwrap_err();
            assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn payloads_are_unique_per_slot_and_sequence() {
        assert_eq!(payload("m", 12, 5, 3), b"m:12:5:fff");
        assert!(is_broadcast(&payload("all", 1, 2, 0)));
        assert!(!is_broadcast(&payload("m", 1, 2, 0)));
        assert!(payload("join", 1, 2, 0).starts_with(JOIN));
    }
}
