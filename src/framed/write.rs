//! A sink of frames encoded into an `AsyncWrite`, coalescing small frames.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use asynchronous_codec::Encoder;
use bytes::{Buf, BytesMut};
use futures::io::AsyncWrite;
use futures::sink::Sink;

/// Default high-water mark of 16 KiB: Linux's default socket send buffer
/// (`net.ipv4.tcp_wmem`), so one write system call fills it, and a bound on
/// what one slow connection holds before the sink stops accepting frames.
/// A larger mark wrote no faster in the broadcast benchmark and held more
/// memory per connection (see BENCHMARKS.md in the repository).
const DEFAULT_HIGH_WATER_MARK: usize = 16 * 1024;

/// A [`Sink`] of frames encoded into an [`AsyncWrite`].
///
/// See the [module docs](crate::framed) for why this exists beside
/// `asynchronous-codec`'s `FramedWrite`.
///
/// # Behaviour
///
/// - [`start_send`](Sink::start_send) encodes the frame into a buffer.
///   Nothing is written yet. The buffer is allocated when the sink is
///   readied for the first frame after a flush, with room for as many bytes
///   as the previous burst held (bounded by what the buffer may hold), so
///   that a sink sending bursts does not regrow its buffer, a copy at each
///   doubling, on every one.
/// - [`poll_ready`](Sink::poll_ready) writes to the underlying writer only
///   once the buffer has reached the [high-water
///   mark](Self::set_high_water_mark), and then until it is below it again.
///   So many small frames sent in a row leave in a few large writes.
/// - [`poll_flush`](Sink::poll_flush) writes everything buffered, flushes
///   the writer, and releases the buffer: an idle connection holds none.
/// - [`poll_close`](Sink::poll_close) flushes, then closes the writer.
/// - A writer that accepts 0 bytes is an error of kind
///   [`io::ErrorKind::WriteZero`].
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use futures::{executor::block_on, SinkExt};
/// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedWrite};
///
/// let mut frames = FramedWrite::new(Vec::<u8>::new(), LengthDelimitedCodec::new(2));
/// block_on(async {
///     frames.feed(Bytes::from("hi")).await?;
///     frames.feed(Bytes::from("there")).await?;
///     assert!(frames.get_ref().is_empty()); // both frames are still buffered
///     frames.flush().await?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// assert_eq!(frames.get_ref(), b"\x00\x02hi\x00\x05there");
/// assert_eq!(frames.buffer_capacity(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "sinks do nothing unless polled"]
pub struct FramedWrite<W, E> {
    inner: W,
    encoder: E,
    /// Encoded bytes not yet written; no allocation while empty and idle.
    buffer: BytesMut,
    high_water_mark: usize,
    /// The most bytes the buffer held in the burst that ended with the last
    /// flush: the next burst's buffer is allocated at that size at once,
    /// rather than grown by doubling from one frame, a reallocation and a
    /// copy each time, on every burst.
    last_burst: usize,
    /// The most bytes the buffer has held in this burst (seen when it was
    /// written out).
    burst: usize,
}

impl<W, E> FramedWrite<W, E> {
    /// Creates a sink that encodes frames with `encoder` and writes them to
    /// `inner`.
    ///
    /// No buffer is allocated until the first frame is sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let lines = FramedWrite::new(Vec::<u8>::new(), LinesCodec::new(80));
    /// assert_eq!(lines.buffer_capacity(), 0);
    /// ```
    pub fn new(inner: W, encoder: E) -> Self {
        Self {
            inner,
            encoder,
            buffer: BytesMut::new(),
            high_water_mark: DEFAULT_HIGH_WATER_MARK,
            last_burst: 0,
            burst: 0,
        }
    }

    /// Sets how many bytes may be buffered before
    /// [`poll_ready`](Sink::poll_ready) writes them out. Defaults to 16 KiB.
    ///
    /// A frame is always accepted while the buffer is below the mark, so the
    /// buffer may exceed it by up to one encoded frame.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use futures::{executor::block_on, SinkExt};
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedWrite};
    ///
    /// let mut frames = FramedWrite::new(Vec::<u8>::new(), LengthDelimitedCodec::new(1));
    /// frames.set_high_water_mark(3);
    /// assert_eq!(frames.high_water_mark(), 3);
    /// block_on(async {
    ///     frames.feed(Bytes::from("ab")).await?; // 3 bytes buffered: at the mark
    ///     frames.feed(Bytes::from("c")).await?; // so this one wrote them first
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// assert_eq!(frames.get_ref(), b"\x02ab");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_high_water_mark(&mut self, high_water_mark: usize) {
        self.high_water_mark = high_water_mark;
    }

    /// How many bytes may be buffered before
    /// [`poll_ready`](Sink::poll_ready) writes them out.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let lines = FramedWrite::new(Vec::<u8>::new(), LinesCodec::new(80));
    /// assert_eq!(lines.high_water_mark(), 16 * 1024);
    /// ```
    pub fn high_water_mark(&self) -> usize {
        self.high_water_mark
    }

    /// The memory this connection's write side holds now, in bytes: the
    /// capacity of its write buffer, 0 when it holds none.
    ///
    /// With [`FramedRead::buffer_capacity`](crate::framed::FramedRead::buffer_capacity),
    /// this is how a server checks its memory per connection (a wrapper
    /// around each sink can report it after every poll). It is 0 once a
    /// flush has written everything. While a client's socket refuses bytes,
    /// what waits ([`buffered_len`](Self::buffered_len)) stays below the
    /// [high-water mark](Self::high_water_mark) plus one encoded frame; this
    /// is the allocation that holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, SinkExt};
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let mut lines = FramedWrite::new(Vec::<u8>::new(), LinesCodec::new(80));
    /// block_on(lines.feed("hello".to_string()))?;
    /// assert!(lines.buffer_capacity() >= 6);
    /// block_on(lines.flush())?;
    /// assert_eq!(lines.buffer_capacity(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// How many encoded bytes wait to be written.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, SinkExt};
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let mut lines = FramedWrite::new(Vec::<u8>::new(), LinesCodec::new(80));
    /// block_on(lines.feed("hello".to_string()))?;
    /// assert_eq!(lines.buffered_len(), 6);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// The encoder.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedWrite};
    ///
    /// let frames = FramedWrite::new(Vec::<u8>::new(), LengthDelimitedCodec::new(2));
    /// assert_eq!(frames.encoder().length_field_length(), 2);
    /// ```
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// The encoder, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedWrite};
    ///
    /// let mut frames = FramedWrite::new(Vec::<u8>::new(), LengthDelimitedCodec::new(2));
    /// *frames.encoder_mut() = LengthDelimitedCodec::new(4);
    /// assert_eq!(frames.encoder().length_field_length(), 4);
    /// ```
    pub fn encoder_mut(&mut self) -> &mut E {
        &mut self.encoder
    }

    /// The underlying writer.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let lines = FramedWrite::new(vec![1u8], LinesCodec::new(80));
    /// assert_eq!(lines.get_ref(), &vec![1u8]);
    /// ```
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably. Writing to it directly puts bytes
    /// before the frames still buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let mut lines = FramedWrite::new(Vec::<u8>::new(), LinesCodec::new(80));
    /// lines.get_mut().push(b'!');
    /// assert_eq!(lines.get_ref(), b"!");
    /// ```
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives back the underlying writer, dropping what was not yet written.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedWrite};
    ///
    /// let lines = FramedWrite::new(vec![1u8], LinesCodec::new(80));
    /// assert_eq!(lines.into_inner(), vec![1u8]);
    /// ```
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: AsyncWrite + Unpin, E> FramedWrite<W, E> {
    /// Writes from the buffer until at most `keep` bytes are left in it.
    fn poll_write_until(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        self.burst = self.burst.max(self.buffer.len());
        while self.buffer.len() > keep {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer)) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write frames to the connection",
                    )));
                }
                Ok(n) => self.buffer.advance(n.min(self.buffer.len())),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Allocates the buffer for the first frame of a burst: room for as
    /// much as the last burst held (none for the first burst: then the
    /// encoder reserves). Out of line: once per burst, not per frame.
    #[inline(never)]
    fn begin_burst(&mut self) {
        self.buffer.reserve(self.last_burst);
    }

    /// Writes everything buffered, releases the buffer and flushes the writer.
    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_until(cx, 0))?;
        if self.buffer.capacity() > 0 {
            // Everything is written: an idle connection keeps no buffer.
            // The burst's size is kept instead, bounded by what the buffer
            // may hold (the mark plus one frame, so twice the mark is
            // ample), for the next burst's buffer.
            self.last_burst = self.burst.min(self.high_water_mark.saturating_mul(2));
            self.burst = 0;
            self.buffer = BytesMut::new();
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<'a, W, E> Sink<E::Item<'a>> for FramedWrite<W, E>
where
    W: AsyncWrite + Unpin,
    E: Encoder + Unpin,
{
    type Error = E::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E::Error>> {
        let this = self.get_mut();
        if this.buffer.capacity() == 0 {
            // Readied for the first frame of a burst. Here rather than in
            // `start_send`, so that the frame being sent is not held across
            // it.
            this.begin_burst();
        }
        if this.buffer.len() < this.high_water_mark {
            return Poll::Ready(Ok(()));
        }
        let keep = this.high_water_mark.saturating_sub(1);
        this.poll_write_until(cx, keep).map_err(Into::into)
    }

    fn start_send(self: Pin<&mut Self>, item: E::Item<'a>) -> Result<(), E::Error> {
        let this = self.get_mut();
        this.encoder.encode(item, &mut this.buffer)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E::Error>> {
        self.get_mut().poll_flush_all(cx).map_err(Into::into)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E::Error>> {
        let this = self.get_mut();
        ready!(this.poll_flush_all(cx))?;
        Pin::new(&mut this.inner).poll_close(cx).map_err(Into::into)
    }
}

impl<W: fmt::Debug, E: fmt::Debug> fmt::Debug for FramedWrite<W, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedWrite")
            .field("inner", &self.inner)
            .field("encoder", &self.encoder)
            .field("buffered", &self.buffer.len())
            .field("buffer_capacity", &self.buffer.capacity())
            .field("high_water_mark", &self.high_water_mark)
            .field("last_burst", &self.last_burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::SinkExt;
    use futures::executor::block_on;

    use super::*;
    use crate::codec::LengthDelimitedCodec;

    fn burst(frames: &mut FramedWrite<Vec<u8>, LengthDelimitedCodec>, count: usize) {
        block_on(async {
            for _ in 0..count {
                frames.feed(Bytes::from_static(&[7; 30])).await?;
            }
            frames.flush().await
        })
        .unwrap();
    }

    /// A burst's buffer is allocated at the size the last burst reached,
    /// not grown from one frame again; it is still released when flushed,
    /// and follows the bursts down as well as up.
    #[test]
    fn a_burst_starts_with_room_for_as_much_as_the_last_one_held() {
        let mut frames = FramedWrite::new(Vec::new(), LengthDelimitedCodec::new(2));
        burst(&mut frames, 100);
        assert_eq!(frames.buffer_capacity(), 0, "released when flushed");
        assert_eq!(frames.last_burst, 3_200);
        block_on(frames.feed(Bytes::from_static(&[7; 30]))).unwrap();
        assert!(frames.buffer_capacity() >= 3_200);
        block_on(frames.flush()).unwrap();
        assert_eq!(frames.buffer_capacity(), 0);
        assert_eq!(frames.last_burst, 32, "a burst of one frame");
        block_on(frames.feed(Bytes::from_static(&[7; 30]))).unwrap();
        assert!(frames.buffer_capacity() < 3_200);
        assert_eq!(
            frames.get_ref().len(),
            101 * 32,
            "the last frame still buffered"
        );
    }

    /// What is reserved for a burst stays within what the buffer may hold:
    /// the high-water mark plus a frame.
    #[test]
    fn the_room_reserved_for_a_burst_is_bounded_by_the_high_water_mark() {
        let mut frames = FramedWrite::new(Vec::new(), LengthDelimitedCodec::new(2));
        frames.set_high_water_mark(1_000);
        burst(&mut frames, 1_000);
        assert!(frames.last_burst <= 1_000 + 32, "{}", frames.last_burst);
    }
}
