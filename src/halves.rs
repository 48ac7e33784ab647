//! Turning a stream of connections into a stream of framed (write, read) halves.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use asynchronous_codec::{Decoder, Encoder};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use futures::stream::{FusedStream, Stream};

use crate::codec::LengthDelimitedCodec;
use crate::framed::{FramedRead, FramedWrite};

/// A connection that can be split into a read half and a write half.
///
/// The multiplexer reads from and writes to each connection independently,
/// so it needs the two directions as separate values.
///
/// Every `Clone` connection qualifies: the TCP streams of async-net (smol)
/// and async-std are handles to one socket, so the read half is one clone
/// and the write half another, and neither needs a lock. For a connection
/// that is not `Clone`, wrap it in [`Locked`], which splits it with
/// [`AsyncReadExt::split`] (a lock shared by the halves, taken on every read
/// and write), or implement this trait on a type of your own that has
/// owned, lock-free halves.
///
/// # Examples
///
/// ```
/// use futures::io::Cursor;
/// use stream_multiplexer::IntoHalves;
///
/// // A Cursor over a Vec is Clone: each half is its own copy here, while
/// // for a TCP stream both clones refer to the same socket.
/// let (read, write) = Cursor::new(vec![1u8, 2, 3]).into_halves();
/// assert_eq!(read.get_ref(), write.get_ref());
/// ```
///
/// A connection type of your own that has owned halves (as tokio's
/// `TcpStream::into_split` gives) implements the trait directly; it must
/// not be `Clone` + `AsyncRead` + `AsyncWrite` itself, or it would already
/// have the blanket implementation:
///
/// ```
/// use futures::io::Cursor;
/// use stream_multiplexer::IntoHalves;
///
/// /// A connection made of two independent one-way pipes.
/// struct Pipes {
///     inbound: Cursor<Vec<u8>>,
///     outbound: Vec<u8>,
/// }
///
/// impl IntoHalves for Pipes {
///     type Read = Cursor<Vec<u8>>;
///     type Write = Vec<u8>;
///
///     fn into_halves(self) -> (Self::Read, Self::Write) {
///         (self.inbound, self.outbound)
///     }
/// }
///
/// let (read, write) = Pipes { inbound: Cursor::new(vec![1]), outbound: Vec::new() }.into_halves();
/// assert_eq!(read.into_inner(), vec![1]);
/// assert!(write.is_empty());
/// ```
pub trait IntoHalves {
    /// The read half.
    type Read: AsyncRead + Unpin;
    /// The write half.
    type Write: AsyncWrite + Unpin;

    /// Splits the connection into its read and write halves.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, AsyncReadExt};
    /// use stream_multiplexer::IntoHalves;
    ///
    /// let (mut read, _write) = Cursor::new(b"ping".to_vec()).into_halves();
    /// let mut text = String::new();
    /// block_on(read.read_to_string(&mut text))?;
    /// assert_eq!(text, "ping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl<T> IntoHalves for T
where
    T: AsyncRead + AsyncWrite + Clone + Unpin,
{
    type Read = T;
    type Write = T;

    fn into_halves(self) -> (T, T) {
        (self.clone(), self)
    }
}

/// A connection that is not `Clone`, split into halves that share a lock.
///
/// [`IntoHalves`] for `Locked<C>` uses [`AsyncReadExt::split`]: each read
/// and each write takes a lock shared by the two halves. Prefer a `Clone`
/// connection (or a type with owned, lock-free halves) where there is one.
///
/// # Examples
///
/// ```
/// use futures::{executor::block_on, io::Cursor, AsyncReadExt};
/// use stream_multiplexer::{IntoHalves, Locked};
///
/// let (mut read, _write) = Locked(Cursor::new(b"hi".to_vec())).into_halves();
/// let mut text = String::new();
/// block_on(read.read_to_string(&mut text))?;
/// assert_eq!(text, "hi");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Locked<C>(pub C);

impl<C> IntoHalves for Locked<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Read = ReadHalf<C>;
    type Write = WriteHalf<C>;

    fn into_halves(self) -> (ReadHalf<C>, WriteHalf<C>) {
        self.0.split()
    }
}

/// Buffer sizes for the halves of each connection; `None` keeps the
/// defaults of [`FramedRead`] and [`FramedWrite`].
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    read_chunk_size: Option<usize>,
    write_high_water_mark: Option<usize>,
}

/// A stream of connections, each framed into a `(FramedWrite, FramedRead)`
/// pair: the halves the multiplexer's `run` takes.
///
/// `HalvesStream::new(incoming, n)` frames each connection with a
/// [`LengthDelimitedCodec`] of an `n`-byte length field;
/// [`with_codec`](Self::with_codec) frames with any codec, and
/// [`builder`](Self::builder) sets the maximum frame length and buffer
/// sizes. Errors from `incoming` (failed accepts) pass through unchanged,
/// for the multiplexer to count; the stream ends when `incoming` ends.
///
/// The halves come from [`IntoHalves`]: lock-free for `Clone` connections
/// such as the TCP streams of the runtime adapters in
/// [`runtime`](crate::runtime).
///
/// # `Unpin`
///
/// `incoming` must be [`Unpin`], as must the halves and codecs: the
/// multiplexer stores thousands of them and moves them between channels,
/// which it does without pinning each one in its own allocation. Every
/// connection stream of the runtime adapters is `Unpin`; a stream that is
/// not can be made so with [`Box::pin`] (one allocation, once).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use futures::{executor::block_on, io::Cursor, stream, SinkExt, StreamExt};
/// use stream_multiplexer::HalvesStream;
///
/// // Two in-memory "connections" that each sent one frame.
/// let connections = stream::iter(vec![
///     Ok(Cursor::new(b"\x00\x03one".to_vec())),
///     Ok(Cursor::new(b"\x00\x03two".to_vec())),
/// ]);
/// let mut halves = HalvesStream::new(connections, 2);
/// block_on(async {
///     let (mut write, mut read) = halves.next().await.unwrap()?;
///     assert_eq!(read.next().await.unwrap()?, Bytes::from("one"));
///     write.send(Bytes::from("ok")).await?;
///     // A Cursor's halves are two copies of it (a TCP stream's halves share
///     // one socket), so the reply overwrote the start of this copy.
///     assert!(write.get_ref().get_ref().starts_with(b"\x00\x02ok"));
///
///     assert!(halves.next().await.is_some());
///     assert!(halves.next().await.is_none());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct HalvesStream<S, K = LengthDelimitedCodec> {
    incoming: S,
    codec: K,
    options: Options,
}

impl<S> HalvesStream<S> {
    /// Frames each connection of `incoming` with a [`LengthDelimitedCodec`]
    /// whose length field is `length_field_length` bytes wide (big-endian),
    /// with the default maximum frame length of 8 MiB.
    ///
    /// # Panics
    ///
    /// Panics if `length_field_length` is not in `1..=8` (see
    /// [`LengthDelimitedCodec::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, stream, StreamExt};
    /// use std::io;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// // A failed accept passes through, for the multiplexer to count.
    /// let connections = stream::iter(vec![
    ///     Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
    ///     Ok(Cursor::new(Vec::new())),
    /// ]);
    /// let mut halves = HalvesStream::new(connections, 4);
    /// block_on(async {
    ///     let error = halves.next().await.unwrap().unwrap_err();
    ///     assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    ///     assert!(halves.next().await.unwrap().is_ok());
    /// });
    /// ```
    pub fn new(incoming: S, length_field_length: usize) -> Self {
        Self::with_codec(incoming, LengthDelimitedCodec::new(length_field_length))
    }
}

// `builder` takes no stream, so it lives on one concrete type for
// `HalvesStream::builder(..)` to need no annotation; the stream's type is
// fixed by `build`.
impl HalvesStream<()> {
    /// A builder for a length-delimited `HalvesStream` with options: the
    /// maximum frame length and the read and write buffer sizes.
    ///
    /// # Panics
    ///
    /// Panics if `length_field_length` is not in `1..=8` (see
    /// [`LengthDelimitedCodec::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, stream, StreamExt};
    /// use std::io::ErrorKind;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::iter(vec![Ok(Cursor::new(b"\x00\x05hello".to_vec()))]);
    /// let mut halves = HalvesStream::builder(2)
    ///     .max_frame_length(4)
    ///     .read_chunk_size(1024)
    ///     .write_high_water_mark(16 * 1024)
    ///     .build(connections);
    /// block_on(async {
    ///     let (_write, mut read) = halves.next().await.unwrap()?;
    ///     assert_eq!(read.read_chunk_size(), 1024);
    ///     let error = read.next().await.unwrap().unwrap_err();
    ///     assert_eq!(error.kind(), ErrorKind::InvalidData);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(length_field_length: usize) -> HalvesStreamBuilder<LengthDelimitedCodec> {
        HalvesStreamBuilder::with_codec(LengthDelimitedCodec::new(length_field_length))
    }
}

impl<S, K> HalvesStream<S, K> {
    /// Frames each connection of `incoming` with a clone of `codec`, for
    /// example a [`LinesCodec`](crate::codec::LinesCodec) for a text protocol.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, stream, StreamExt};
    /// use stream_multiplexer::{codec::LinesCodec, HalvesStream};
    ///
    /// let connections = stream::iter(vec![Ok(Cursor::new(b"hello\r\n".to_vec()))]);
    /// let mut halves = HalvesStream::with_codec(connections, LinesCodec::new(4096));
    /// block_on(async {
    ///     let (_write, mut read) = halves.next().await.unwrap()?;
    ///     assert_eq!(read.next().await.unwrap()?, "hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_codec(incoming: S, codec: K) -> Self {
        Self {
            incoming,
            codec,
            options: Options::default(),
        }
    }

    /// The stream of connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{io::Cursor, stream};
    /// use std::io;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::empty::<io::Result<Cursor<Vec<u8>>>>();
    /// let halves = HalvesStream::new(connections, 2);
    /// let _connections: &stream::Empty<_> = halves.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.incoming
    }

    /// Gives back the stream of connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{io::Cursor, stream};
    /// use std::io;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::empty::<io::Result<Cursor<Vec<u8>>>>();
    /// let halves = HalvesStream::new(connections, 2);
    /// let _connections: stream::Empty<_> = halves.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.incoming
    }
}

impl<S, C, K> Stream for HalvesStream<S, K>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    C: IntoHalves,
    K: Decoder + Encoder + Clone + Unpin,
{
    type Item = io::Result<(FramedWrite<C::Write, K>, FramedRead<C::Read, K>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Pin::new(&mut this.incoming).poll_next(cx).map(|accepted| {
            accepted.map(|connection| connection.map(|connection| this.frame(connection)))
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.incoming.size_hint()
    }
}

impl<S, K> HalvesStream<S, K> {
    /// Splits one connection and frames both halves.
    fn frame<C: IntoHalves>(
        &self,
        connection: C,
    ) -> (FramedWrite<C::Write, K>, FramedRead<C::Read, K>)
    where
        K: Clone,
    {
        let (read, write) = connection.into_halves();
        let mut read = FramedRead::new(read, self.codec.clone());
        let mut write = FramedWrite::new(write, self.codec.clone());
        if let Some(size) = self.options.read_chunk_size {
            read.set_read_chunk_size(size);
        }
        if let Some(mark) = self.options.write_high_water_mark {
            write.set_high_water_mark(mark);
        }
        (write, read)
    }
}

impl<S, C, K> FusedStream for HalvesStream<S, K>
where
    S: FusedStream<Item = io::Result<C>> + Unpin,
    C: IntoHalves,
    K: Decoder + Encoder + Clone + Unpin,
{
    fn is_terminated(&self) -> bool {
        self.incoming.is_terminated()
    }
}

impl<S: fmt::Debug, K: fmt::Debug> fmt::Debug for HalvesStream<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HalvesStream")
            .field("incoming", &self.incoming)
            .field("codec", &self.codec)
            .field("read_chunk_size", &self.options.read_chunk_size)
            .field("write_high_water_mark", &self.options.write_high_water_mark)
            .finish()
    }
}

/// Options for a [`HalvesStream`]: the codec and the buffer sizes of each
/// connection's halves. Made by [`HalvesStream::builder`] or
/// [`HalvesStreamBuilder::with_codec`].
///
/// # Examples
///
/// ```
/// use futures::{io::Cursor, stream};
/// use std::io;
/// use stream_multiplexer::{codec::LinesCodec, HalvesStreamBuilder};
///
/// let connections = stream::empty::<io::Result<Cursor<Vec<u8>>>>();
/// let _halves = HalvesStreamBuilder::with_codec(LinesCodec::new(4096))
///     .read_chunk_size(4096)
///     .build(connections);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HalvesStreamBuilder<K> {
    codec: K,
    options: Options,
}

impl<K> HalvesStreamBuilder<K> {
    /// A builder that frames every connection with a clone of `codec`.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{io::Cursor, stream};
    /// use std::io;
    /// use stream_multiplexer::{codec::LengthDelimitedCodec, HalvesStreamBuilder};
    ///
    /// let codec = LengthDelimitedCodec::new(2).max_frame_length(512);
    /// let connections = stream::empty::<io::Result<Cursor<Vec<u8>>>>();
    /// let _halves = HalvesStreamBuilder::with_codec(codec).build(connections);
    /// ```
    pub fn with_codec(codec: K) -> Self {
        Self {
            codec,
            options: Options::default(),
        }
    }

    /// Sets how many bytes each read of a connection asks for; see
    /// [`FramedRead::set_read_chunk_size`]. Defaults to 8 KiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, stream, StreamExt};
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::iter(vec![Ok(Cursor::new(Vec::new()))]);
    /// let mut halves = HalvesStream::builder(2).read_chunk_size(512).build(connections);
    /// let (_write, read) = block_on(halves.next()).unwrap()?;
    /// assert_eq!(read.read_chunk_size(), 512);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_chunk_size(mut self, read_chunk_size: usize) -> Self {
        self.options.read_chunk_size = Some(read_chunk_size);
        self
    }

    /// Sets how many bytes a connection's write half buffers before writing
    /// them out; see [`FramedWrite::set_high_water_mark`]. Defaults to
    /// 16 KiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{executor::block_on, io::Cursor, stream, StreamExt};
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::iter(vec![Ok(Cursor::new(Vec::new()))]);
    /// let mut halves = HalvesStream::builder(2).write_high_water_mark(4096).build(connections);
    /// let (write, _read) = block_on(halves.next()).unwrap()?;
    /// assert_eq!(write.high_water_mark(), 4096);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_high_water_mark(mut self, high_water_mark: usize) -> Self {
        self.options.write_high_water_mark = Some(high_water_mark);
        self
    }

    /// Builds a [`HalvesStream`] framing the connections of `incoming`.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{io::Cursor, stream};
    /// use std::io;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::empty::<io::Result<Cursor<Vec<u8>>>>();
    /// let _halves = HalvesStream::builder(2).build(connections);
    /// ```
    pub fn build<S>(self, incoming: S) -> HalvesStream<S, K> {
        HalvesStream {
            incoming,
            codec: self.codec,
            options: self.options,
        }
    }
}

impl HalvesStreamBuilder<LengthDelimitedCodec> {
    /// Sets the maximum frame length, for reading and writing; see
    /// [`LengthDelimitedCodec::max_frame_length`]. Defaults to 8 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use futures::{executor::block_on, io::Cursor, stream, SinkExt, StreamExt};
    /// use std::io::ErrorKind;
    /// use stream_multiplexer::HalvesStream;
    ///
    /// let connections = stream::iter(vec![Ok(Cursor::new(Vec::new()))]);
    /// let mut halves = HalvesStream::builder(2).max_frame_length(3).build(connections);
    /// let (mut write, _read) = block_on(halves.next()).unwrap()?;
    /// let error = block_on(write.send(Bytes::from("four"))).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_frame_length(mut self, max_frame_length: usize) -> Self {
        self.codec = self.codec.max_frame_length(max_frame_length);
        self
    }
}
