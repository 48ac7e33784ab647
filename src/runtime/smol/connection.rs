//! The connection the smol adapter yields: a TCP stream on smol's reactor
//! that does not ask the kernel again for data a short read has drained.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures::io::{AsyncRead, AsyncWrite};

/// Whether a read that fills less than its buffer is taken to have drained
/// the socket. On Unix, re-arming the reactor's interest in a socket that
/// already holds data reports it at once, so the guess is safe when wrong.
/// Elsewhere we make no such assumption (tokio, which has the same rule,
/// leaves Windows out too).
const SHORT_READ_DRAINS: bool = cfg!(unix);

/// An accepted TCP connection, driven by smol's reactor: what
/// [`Incoming`](super::Incoming) yields.
///
/// It reads and writes like [`async_net::TcpStream`], and like it is
/// `Clone` (the clones share one socket), so
/// [`HalvesStream`](crate::HalvesStream) splits it into halves without a
/// lock. It differs in one respect, which saves a system call per burst a
/// client sends: after a read that filled less than its buffer, the socket
/// is most likely empty, so the next read waits for the reactor to report
/// new data instead of first trying a read that would fail with
/// `WouldBlock`. (Tokio's streams follow the same rule.)
///
/// # Examples
///
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
/// use stream_multiplexer::runtime::smol::{Connection, incoming};
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let address = listener.local_addr()?;
///     let mut connections = incoming(listener);
///
///     let mut client = Connection::from(async_net::TcpStream::connect(address).await?);
///     let mut server: Connection = connections.next().await.unwrap()?;
///     assert_eq!(server.peer_addr()?, client.local_addr()?);
///
///     client.write_all(b"ping").await?;
///     let mut received = [0; 4];
///     server.read_exact(&mut received).await?;
///     assert_eq!(&received, b"ping");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    socket: Arc<Async<TcpStream>>,
    /// The last read of this handle came back short or would have
    /// blocked: wait for the reactor before reading again. Each clone has
    /// its own.
    probably_drained: bool,
}

impl Connection {
    /// Wraps a non-blocking socket registered with smol's reactor.
    pub(super) fn new(socket: Async<TcpStream>) -> Self {
        Self {
            socket: Arc::new(socket),
            probably_drained: false,
        }
    }

    /// The underlying standard-library socket, for options this type does
    /// not forward (it is in non-blocking mode; leave it so).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::runtime::smol::Connection;
    ///
    /// smol::block_on(async {
    ///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let client = Connection::from(async_net::TcpStream::connect(listener.local_addr()?).await?);
    ///     client.get_ref().set_ttl(32)?;
    ///     assert_eq!(client.get_ref().ttl()?, 32);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_ref(&self) -> &TcpStream {
        self.socket.get_ref()
    }

    /// Whether `TCP_NODELAY` is set (it is on every connection
    /// [`incoming`](super::incoming) accepts).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use stream_multiplexer::runtime::smol::incoming;
    ///
    /// smol::block_on(async {
    ///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let _client = async_net::TcpStream::connect(listener.local_addr()?).await?;
    ///     let server = incoming(listener).next().await.unwrap()?;
    ///     assert!(server.nodelay()?);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.get_ref().nodelay()
    }

    /// The address of the peer.
    ///
    /// # Examples
    ///
    /// See [`Connection`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().peer_addr()
    }

    /// The local address of this end.
    ///
    /// # Examples
    ///
    /// See [`Connection`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().local_addr()
    }

    /// Reads with `read` once the socket may hold data.
    ///
    /// Every `Pending` comes from the reactor's `poll_readable`, after a
    /// short read or a `WouldBlock`, so the poll that follows the wake-up
    /// asks the reactor first, which consumes the event that woke it.
    /// (async-io keeps an event until `poll_readable` is called; reading
    /// past one, as async-io's own `poll_read` does when the socket
    /// already has data, leaves it to report data long since read, and a
    /// read after a short one then failed with `WouldBlock` every time.)
    fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        mut read: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.probably_drained {
                ready!(self.socket.poll_readable(cx))?;
                self.probably_drained = false;
            }
            match read(self.socket.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.probably_drained = true;
                }
                result => {
                    self.probably_drained =
                        SHORT_READ_DRAINS && matches!(result, Ok(read) if read > 0 && read < room);
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// Takes the socket of a connection made or accepted through async-net.
impl From<async_net::TcpStream> for Connection {
    fn from(stream: async_net::TcpStream) -> Self {
        Self {
            socket: stream.into(),
            probably_drained: false,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let room = buf.len();
        self.get_mut()
            .poll_read_with(cx, room, |mut socket| socket.read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let room = bufs.iter().map(|buf| buf.len()).sum();
        self.get_mut()
            .poll_read_with(cx, room, |mut socket| socket.read_vectored(bufs))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.socket).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.socket).poll_flush(cx)
    }

    /// Shuts down the write side, sending the peer an end of stream; the
    /// read side stays open (as `async_net::TcpStream` does).
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_ref().shutdown(Shutdown::Write))
    }
}

/// The socket's file descriptor, for crates that set socket options (such
/// as `socket2::SockRef`).
#[cfg(unix)]
impl std::os::fd::AsFd for Connection {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("socket", self.get_ref())
            .field("probably_drained", &self.probably_drained)
            .finish()
    }
}
