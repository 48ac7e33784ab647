//! A stream of frames decoded from an `AsyncRead`, fused after its first error.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use asynchronous_codec::Decoder;
use bytes::BytesMut;
use futures::io::AsyncRead;
use futures::stream::{FusedStream, Stream};

/// Default for the most bytes one read asks for: one read system call
/// takes in up to a few hundred small frames, and an 8 KiB buffer is
/// released as soon as the connection goes idle.
const DEFAULT_READ_CHUNK_SIZE: usize = 8 * 1024;

/// The fewest bytes a read asks for (unless the chunk size is smaller): a
/// dozen small frames, for a zero-fill that costs next to nothing.
const MIN_READ_SIZE: usize = 512;

/// The most reads one poll makes without yielding a frame: 256 KiB with the
/// default chunk size. A poll that yields small frames reads once at most,
/// so only a frame arriving in many reads (a large one, or the rest of a
/// line that a codec drops as it arrives) ever meets this limit; it then
/// takes a few polls instead of holding the task for as long as a fast
/// client keeps the socket full.
const READS_PER_POLL: usize = 32;

/// A [`Stream`] of frames decoded from an [`AsyncRead`].
///
/// Each item is `Ok(frame)` or the first error, after which the stream ends.
/// See the [module docs](crate::framed) for why this exists beside
/// `asynchronous-codec`'s `FramedRead`.
///
/// # Behaviour
///
/// - **No buffer until data arrives.** A new `FramedRead` holds no buffer;
///   one is allocated on the first read.
/// - **Many frames per read.** Everything already buffered is decoded before
///   the reader is read again, and reads go straight into the buffer the
///   frames are split off, so a frame is never copied by this type.
/// - **Bounded.** The buffer never holds more than twice the largest frame
///   the decoder keeps plus one read chunk, however the bytes arrive.
/// - **Released when idle.** When the reader would block and no partial
///   frame is buffered, the buffer is dropped, so an idle connection holds
///   none. (Frames already yielded keep their own part of it alive for as
///   long as they live.)
/// - **Fused after an error.** The first I/O or decode error is yielded once,
///   then the stream ends: a client sending garbage cannot make it spin, and
///   it never decodes past the garbage.
/// - **Bounded work per poll.** A poll reads at most 32 times without
///   yielding a frame; then it wakes its task and returns `Pending`, and the
///   next poll goes on where it stopped. A client that keeps the socket full
///   without completing a frame cannot hold the task (and every other
///   connection it serves) for as long as it keeps sending.
/// - **End of input.** At EOF, what is left is handed to
///   [`Decoder::decode_eof`]; a frame cut short is its error (for this
///   crate's codecs, [`io::ErrorKind::UnexpectedEof`]), then the stream ends.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use futures::{executor::block_on, io::Cursor, StreamExt};
/// use std::io::ErrorKind;
/// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedRead};
///
/// // Two frames, then the first two bytes of a third one.
/// let wire = Cursor::new(b"\x00\x02hi\x00\x00\x00\x05ab".to_vec());
/// let mut frames = FramedRead::new(wire, LengthDelimitedCodec::new(2));
/// block_on(async {
///     assert_eq!(frames.next().await.unwrap()?, Bytes::from("hi"));
///     assert_eq!(frames.next().await.unwrap()?, Bytes::new());
///     let error = frames.next().await.unwrap().unwrap_err();
///     assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
///     assert!(frames.next().await.is_none());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct FramedRead<R, D> {
    inner: R,
    decoder: D,
    /// Bytes read and not yet decoded; no allocation while empty and idle.
    buffer: BytesMut,
    /// The most bytes one read asks for.
    read_chunk_size: usize,
    /// How many bytes the next read asks for, adapted to what reads return;
    /// see `adapt_read_size`.
    read_size: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Decoding what is buffered, reading more when needed.
    Reading,
    /// The reader reached its end: draining the buffer with `decode_eof`.
    Eof,
    /// Ended, cleanly or after an error.
    Done,
}

impl<R, D> FramedRead<R, D> {
    /// Creates a stream of the frames `decoder` finds in `inner`.
    ///
    /// No buffer is allocated until the stream is polled.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let lines = FramedRead::new(Cursor::new(b"hello\n".to_vec()), LinesCodec::new(80));
    /// assert_eq!(lines.buffer_capacity(), 0);
    /// ```
    pub fn new(inner: R, decoder: D) -> Self {
        Self {
            inner,
            decoder,
            buffer: BytesMut::new(),
            read_chunk_size: DEFAULT_READ_CHUNK_SIZE,
            read_size: MIN_READ_SIZE,
            state: State::Reading,
        }
    }

    /// Sets the most bytes one read asks for (at least 1). Defaults to
    /// 8 KiB.
    ///
    /// Reads start at 512 bytes (or the chunk size, if smaller), double
    /// while they come back full and shrink again when they come back
    /// mostly empty, up to this size; see the module's performance notes.
    /// Larger chunks take in more frames per read system call from clients
    /// that send a lot; smaller ones make a busy connection's buffer
    /// smaller. A frame larger than the chunk is read in several reads.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let mut lines = FramedRead::new(Cursor::new(Vec::<u8>::new()), LinesCodec::new(80));
    /// lines.set_read_chunk_size(1024);
    /// assert_eq!(lines.read_chunk_size(), 1024);
    /// lines.set_read_chunk_size(0);
    /// assert_eq!(lines.read_chunk_size(), 1);
    /// ```
    pub fn set_read_chunk_size(&mut self, read_chunk_size: usize) {
        self.read_chunk_size = read_chunk_size.max(1);
        self.read_size = self
            .read_size
            .clamp(self.min_read_size(), self.read_chunk_size);
    }

    /// The most bytes one read asks for.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let lines = FramedRead::new(Cursor::new(Vec::<u8>::new()), LinesCodec::new(80));
    /// assert_eq!(lines.read_chunk_size(), 8 * 1024);
    /// ```
    pub fn read_chunk_size(&self) -> usize {
        self.read_chunk_size
    }

    /// The memory this connection's read side holds now, in bytes: the
    /// capacity of its read buffer, 0 when it holds none.
    ///
    /// This is how a server checks its memory per connection: a wrapper
    /// around each reader can report it after every poll, to a gauge or a
    /// limit of the server's own. It is 0 while a connection is idle, and at
    /// most twice the largest frame the decoder keeps plus one read chunk
    /// while a frame arrives. Frames already yielded are not counted: each
    /// keeps its own part of an earlier buffer alive until it is dropped.
    ///
    /// # Examples
    ///
    /// A reader that reports what it holds after each poll; the multiplexer
    /// can poll it like any other reader.
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::task::{Context, Poll};
    ///
    /// use futures::io::{AsyncRead, Cursor};
    /// use futures::{executor::block_on, Stream, StreamExt};
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// struct Metered<R> {
    ///     lines: FramedRead<R, LinesCodec>,
    ///     held: Arc<AtomicUsize>,
    /// }
    ///
    /// impl<R: AsyncRead + Unpin> Stream for Metered<R> {
    ///     type Item = std::io::Result<String>;
    ///
    ///     fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
    ///         let item = self.lines.poll_next_unpin(cx);
    ///         self.held.store(self.lines.buffer_capacity(), Ordering::Relaxed);
    ///         item
    ///     }
    /// }
    ///
    /// let held = Arc::new(AtomicUsize::new(0));
    /// let wire = Cursor::new(b"a\nb\n".to_vec());
    /// let mut reader = Metered {
    ///     lines: FramedRead::new(wire, LinesCodec::new(80)),
    ///     held: Arc::clone(&held),
    /// };
    /// block_on(async {
    ///     assert_eq!(reader.next().await.unwrap()?, "a");
    ///     assert!(held.load(Ordering::Relaxed) > 0); // "b\n" is still buffered
    ///     assert_eq!(reader.next().await.unwrap()?, "b");
    ///     assert!(reader.next().await.is_none());
    ///     assert_eq!(held.load(Ordering::Relaxed), 0); // ended: nothing held
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The decoder.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedRead};
    ///
    /// let frames = FramedRead::new(Cursor::new(Vec::<u8>::new()), LengthDelimitedCodec::new(2));
    /// assert_eq!(frames.decoder().length_field_length(), 2);
    /// ```
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// The decoder, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, framed::FramedRead};
    ///
    /// let mut frames = FramedRead::new(Cursor::new(Vec::<u8>::new()), LengthDelimitedCodec::new(2));
    /// *frames.decoder_mut() = LengthDelimitedCodec::new(4);
    /// assert_eq!(frames.decoder().length_field_length(), 4);
    /// ```
    pub fn decoder_mut(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// The underlying reader.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let lines = FramedRead::new(Cursor::new(vec![1, 2]), LinesCodec::new(80));
    /// assert_eq!(lines.get_ref().get_ref(), &vec![1, 2]);
    /// ```
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader, mutably. Reading from it directly skips the
    /// bytes past the frames already buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let mut lines = FramedRead::new(Cursor::new(vec![1, 2]), LinesCodec::new(80));
    /// lines.get_mut().set_position(1);
    /// assert_eq!(lines.get_ref().position(), 1);
    /// ```
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives back the underlying reader, dropping whatever was buffered.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::{codec::LinesCodec, framed::FramedRead};
    ///
    /// let lines = FramedRead::new(Cursor::new(vec![1, 2]), LinesCodec::new(80));
    /// assert_eq!(lines.into_inner().into_inner(), vec![1, 2]);
    /// ```
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn min_read_size(&self) -> usize {
        MIN_READ_SIZE.min(self.read_chunk_size)
    }

    /// Adapts the size of the next read to what the last one returned: a
    /// read that filled its buffer doubles the next one (more is likely
    /// waiting), a read that filled a quarter or less halves it. Each read
    /// zero-fills the bytes it asks for, so asking for a whole chunk to
    /// receive one small frame would zero-fill far more than it receives.
    fn adapt_read_size(&mut self, asked: usize, read: usize) {
        if read >= asked {
            self.read_size = asked.saturating_mul(2).min(self.read_chunk_size);
        } else if read <= asked / 4 {
            self.read_size = (asked / 2).max(self.min_read_size());
        }
    }

    /// Makes room for `asked` more bytes after what is buffered, reusing
    /// the allocation when it can (the frames split off its front are gone,
    /// or moving the partial frame there is cheap). Otherwise it allocates
    /// anew, at most twice what is needed, and copies the partial frame
    /// over. `BytesMut` left to grow itself would double the whole
    /// allocation, the bytes already split off its front included, and could
    /// then exceed the bound [`FramedRead`] promises (twice the largest frame
    /// plus a read chunk); this keeps it within that bound.
    fn make_room(&mut self, asked: usize) {
        if self.buffer.try_reclaim(asked) {
            return;
        }
        let needed = self.buffer.len() + asked;
        // Doubling keeps a large frame arriving in many reads from being
        // copied once per read.
        let mut grown = BytesMut::with_capacity(needed.max(2 * self.buffer.capacity()));
        grown.extend_from_slice(&self.buffer);
        self.buffer = grown;
    }

    /// Ends the stream, dropping the buffer, and hands back `error` to yield.
    fn fail<E>(&mut self, error: E) -> Poll<Option<Result<D::Item, E>>>
    where
        D: Decoder,
    {
        self.state = State::Done;
        self.buffer = BytesMut::new();
        Poll::Ready(Some(Err(error)))
    }
}

impl<R, D> Stream for FramedRead<R, D>
where
    R: AsyncRead + Unpin,
    D: Decoder + Unpin,
{
    type Item = Result<D::Item, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // The common case first, kept small: a read brought in many frames
        // and the next one is already buffered.
        if this.state == State::Reading && !this.buffer.is_empty() {
            return match this.decoder.decode(&mut this.buffer) {
                Ok(Some(item)) => Poll::Ready(Some(Ok(item))),
                Ok(None) => this.poll_more(cx, true),
                Err(error) => this.fail(error),
            };
        }
        this.poll_more(cx, false)
    }
}

impl<R, D> FramedRead<R, D>
where
    R: AsyncRead + Unpin,
    D: Decoder + Unpin,
{
    /// Everything but a frame already buffered: reading, end of input, the
    /// end of the stream. Out of line, so that the common case in
    /// `poll_next` stays small. `decoded`: `poll_next` has just tried to
    /// decode what is buffered, so the first pass reads before decoding.
    #[inline(never)]
    fn poll_more(
        &mut self,
        cx: &mut Context<'_>,
        mut decoded: bool,
    ) -> Poll<Option<Result<D::Item, D::Error>>> {
        let this = self;
        let mut reads = 0;
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Eof => {
                    return match this.decoder.decode_eof(&mut this.buffer) {
                        Ok(Some(item)) => Poll::Ready(Some(Ok(item))),
                        Ok(None) => {
                            this.state = State::Done;
                            this.buffer = BytesMut::new();
                            Poll::Ready(None)
                        }
                        Err(error) => this.fail(error),
                    };
                }
                State::Reading => {}
            }

            // Decode what is buffered before reading again, so one read
            // system call serves every frame it brought in.
            if !std::mem::take(&mut decoded) && !this.buffer.is_empty() {
                match this.decoder.decode(&mut this.buffer) {
                    Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                    Ok(None) => {}
                    Err(error) => return this.fail(error),
                }
            }

            if reads == READS_PER_POLL {
                // Yield to the task's other work (the multiplexer's other
                // connections) before reading on.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads += 1;

            let filled = this.buffer.len();
            let asked = this.read_size;
            this.make_room(asked);
            // Zero-filled, because safe code cannot hand uninitialised
            // memory to `poll_read`; see the module's performance notes.
            this.buffer.resize(filled + asked, 0);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut this.buffer[filled..]);
            match read {
                Poll::Ready(Ok(0)) => {
                    this.buffer.truncate(filled);
                    this.state = State::Eof;
                }
                Poll::Ready(Ok(n)) => {
                    let n = n.min(asked);
                    this.buffer.truncate(filled + n);
                    this.adapt_read_size(asked, n);
                }
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {
                    this.buffer.truncate(filled);
                }
                Poll::Ready(Err(error)) => return this.fail(error.into()),
                Poll::Pending => {
                    this.buffer.truncate(filled);
                    // The burst is over. Without a partial frame to keep,
                    // give the memory back: idle connections hold no buffer.
                    if filled == 0 {
                        this.buffer = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<R, D> FusedStream for FramedRead<R, D>
where
    R: AsyncRead + Unpin,
    D: Decoder + Unpin,
{
    fn is_terminated(&self) -> bool {
        self.state == State::Done
    }
}

impl<R: fmt::Debug, D: fmt::Debug> fmt::Debug for FramedRead<R, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedRead")
            .field("inner", &self.inner)
            .field("decoder", &self.decoder)
            .field("buffered", &self.buffer.len())
            .field("buffer_capacity", &self.buffer.capacity())
            .field("read_chunk_size", &self.read_chunk_size)
            .field("state", &self.state)
            .finish()
    }
}
