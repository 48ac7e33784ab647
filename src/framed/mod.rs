//! Framed reading and writing over `futures::io`, with buffers that exist
//! only while data is in flight.
//!
//! [`FramedRead`] turns an [`AsyncRead`](futures::io::AsyncRead) into a
//! [`Stream`](futures::Stream) of decoded frames; [`FramedWrite`] turns an
//! [`AsyncWrite`](futures::io::AsyncWrite) into a [`Sink`](futures::Sink) of
//! frames to encode. Both take the [`Decoder`](crate::codec::Decoder) and
//! [`Encoder`](crate::codec::Encoder) traits of `asynchronous-codec`, so any
//! codec written for that crate works here.
//!
//! # Why not `asynchronous-codec`'s own `Framed*`
//!
//! A server holding thousands of mostly idle connections pays for every byte
//! each one keeps, and a hostile client must not be able to make a reader
//! spin or grow. `asynchronous-codec`'s `FramedRead`:
//!
//! - allocates an 8 KiB buffer per connection up front and keeps it for the
//!   life of the connection, idle or not (an idle connection here holds
//!   none);
//! - reads into a buffer on the stack and copies every read into that
//!   buffer, so each byte is copied once more than needed;
//! - keeps decoding after a decode error, so a reader that is polled again
//!   after an error may yield garbage or the same error forever.
//!
//! Its `FramedWrite` likewise keeps its write buffer for good.
//!
//! The types here allocate a buffer when the first bytes arrive (or the first
//! frame is sent), read straight into it so that frames are split off it
//! without a second copy, and release it when a burst is over: when reading
//! would block with no partial frame buffered, and when a flush has written
//! everything. [`FramedRead`] ends after its first error.
//!
//! # Performance notes
//!
//! Without `unsafe`, bytes cannot be read into a buffer's uninitialised
//! spare capacity, so each read first zero-fills the bytes it asks for, and
//! the cost of that grows with the size asked, not with what arrives. When a
//! read returns one small frame, zero-filling a large chunk is a sizeable
//! part of the whole read; a small chunk costs next to nothing.
//! So [`FramedRead`] adapts the size of each read: it starts at 512 bytes,
//! doubles while reads come back full, up to the [read chunk
//! size](FramedRead::set_read_chunk_size) (8 KiB by default), and halves
//! when they come back three-quarters empty. A client that sends a lot is
//! read in large chunks, one that sends a frame now and then in small ones,
//! and the buffer allocated when a quiet connection wakes up is small.
//! (What the read path achieves with these defaults is in BENCHMARKS.md in
//! the repository.)
//!
//! Splitting frames off the read buffer shares its allocation: a frame
//! handed to the application keeps the chunk it was read into alive until
//! the frame is dropped.

mod read;
mod write;

pub use read::FramedRead;
pub use write::FramedWrite;
