//! Bounded codecs for framing connections.
//!
//! The codecs of `asynchronous-codec` (and of `futures_codec` before it)
//! accept frames and lines of any length, so one client can make the server
//! buffer as much as it likes. The codecs here enforce a maximum before
//! buffering anything, which keeps the memory of every connection bounded
//! whatever a client sends:
//!
//! - [`LengthDelimitedCodec`]: frames prefixed with a big-endian length of
//!   1 to 8 bytes, decoded as [`Bytes`](bytes::Bytes) without copying the
//!   payload.
//! - [`LinesCodec`]: newline-delimited UTF-8 text with a maximum line length;
//!   a bad line (too long, or not UTF-8) is an error that ends the stream.
//! - [`RecoveringLinesCodec`]: the same lines, but a bad line is an item,
//!   `Err(`[`LineError`]`)`, and decoding goes on with the next line, so a
//!   server can tell the client what was wrong before it closes the
//!   connection.
//!
//! All three implement the [`Decoder`] and [`Encoder`] traits of
//! `asynchronous-codec` (re-exported here), so they work with this crate's
//! [`FramedRead`](crate::framed::FramedRead) and
//! [`FramedWrite`](crate::framed::FramedWrite) as well as with
//! `asynchronous-codec`'s own framed types.

mod length_delimited;
mod lines;
mod recovering_lines;

pub use asynchronous_codec::{Decoder, Encoder};
pub use length_delimited::{InvalidLengthFieldLength, LengthDelimitedCodec};
pub use lines::{LineError, LinesCodec};
pub use recovering_lines::RecoveringLinesCodec;
