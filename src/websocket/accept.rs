//! [`Acceptor`] and [`Accept`]: accepted connections in, WebSocket halves
//! out, after concurrent, bounded handshakes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::handshake::server::NoCallback;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::{WebSocketStream, accept_hdr_async_with_config};
use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures::stream::{FusedStream, Stream, StreamExt};

use super::halves::{WsRead, WsWrite, into_io, split};
use super::read_burst::ReadBurst;
use super::write_buffer::WriteBuffered;
use crate::Clock;
use crate::handshakes::{Bounds, Handshake, Handshakes};

/// Default maximum size of a message, and of one frame of it: 8 MiB, as
/// the crate's [`LengthDelimitedCodec`](crate::codec::LengthDelimitedCodec).
const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// Default size of tungstenite's read buffer: it is allocated for the whole
/// life of the connection, idle or not (tungstenite's own default is 128
/// KiB). 512 bytes take in a typical chat or game message, header and all,
/// in one read. The socket itself is read in larger bursts, through a
/// buffer that exists only while data arrives.
const DEFAULT_READ_BUFFER_SIZE: usize = 512;

/// How a server accepts WebSocket connections: the message size limit and
/// the bounds on handshakes. Build one, then [`accept`](Self::accept) a
/// stream of connections with it; [`accept`](super::accept) uses the
/// defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stream_multiplexer::runtime::smol::{clock, incoming};
/// use stream_multiplexer::websocket::Acceptor;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let _halves = Acceptor::new()
///         .max_message_size(64 * 1024)
///         .max_handshakes(64)
///         .handshake_timeout(Duration::from_secs(5))
///         .accept(incoming(listener), clock(Duration::from_millis(500)));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "an acceptor does nothing until `accept` is called"]
pub struct Acceptor {
    max_message_size: usize,
    read_buffer_size: usize,
    bounds: Bounds,
}

impl Default for Acceptor {
    fn default() -> Self {
        Self::new()
    }
}

impl Acceptor {
    /// An acceptor with the defaults: messages up to 8 MiB, a 512-byte read
    /// buffer, at most 256 handshakes at once, each within 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// let acceptor = Acceptor::new();
    /// assert_eq!(acceptor.get_max_message_size(), 8 * 1024 * 1024);
    /// ```
    pub fn new() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            bounds: Bounds::default(),
        }
    }

    /// Sets the largest message a client may send, in bytes, and so the
    /// largest frame. Defaults to 8 MiB. Affects reading only: the server's
    /// own messages are not limited.
    ///
    /// A frame's length is checked when its header arrives, before any of
    /// its payload is buffered; a message in several frames is checked as
    /// each one arrives. A client over the limit is sent a close frame with
    /// code 1009 (message too big) and its reader yields an error of kind
    /// [`io::ErrorKind::InvalidData`], then ends.
    ///
    /// tungstenite reserves a frame's declared length (up to this limit)
    /// when its header arrives: while a frame arrives, a connection holds up
    /// to this much.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// let acceptor = Acceptor::new().max_message_size(4096);
    /// assert_eq!(acceptor.get_max_message_size(), 4096);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The largest message a client may send, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// assert_eq!(Acceptor::new().get_max_message_size(), 8 * 1024 * 1024);
    /// ```
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Sets the size of each connection's read buffer, in bytes. Defaults
    /// to 512. Affects reading only.
    ///
    /// tungstenite allocates it when the connection opens and keeps it
    /// while the connection lives, idle or not; it is the most bytes
    /// tungstenite takes in at a time. The socket itself is read 8 KiB at a
    /// time into a buffer that exists only while data arrives, and
    /// tungstenite's reads are served from it, so a small buffer costs a
    /// copy, not a system call, per piece; a buffer of 8 KiB or more is read
    /// into directly. A larger buffer costs that much memory per connection.
    /// (The write side holds no buffer while idle either: frames are
    /// gathered only until the sink is flushed.)
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// let acceptor = Acceptor::new().read_buffer_size(4096);
    /// assert_eq!(acceptor.get_read_buffer_size(), 4096);
    /// ```
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }

    /// The size of each connection's read buffer, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// assert_eq!(Acceptor::new().get_read_buffer_size(), 512);
    /// ```
    pub fn get_read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }

    /// Sets the most handshakes in flight at once (at least 1). Defaults to
    /// 256.
    ///
    /// Past it, the stream of accepted connections is not polled, so new
    /// clients wait in the listen backlog until a handshake ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// let acceptor = Acceptor::new().max_handshakes(0);
    /// assert_eq!(acceptor.get_max_handshakes(), 1);
    /// ```
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.bounds.max_in_flight = handshakes.max(1);
        self
    }

    /// The most handshakes in flight at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// assert_eq!(Acceptor::new().get_max_handshakes(), 256);
    /// ```
    pub fn get_max_handshakes(&self) -> usize {
        self.bounds.max_in_flight
    }

    /// Sets the time a handshake may take, from the moment its connection
    /// is taken from the stream of accepted connections, as the acceptor's
    /// [`Clock`] counts it. Defaults to 10 s.
    ///
    /// A client that has not completed its HTTP upgrade by then (one that
    /// sends its request a byte at a time, or nothing) is dropped, and
    /// yielded as an error of kind [`io::ErrorKind::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// let acceptor = Acceptor::new().handshake_timeout(Duration::from_secs(3));
    /// assert_eq!(acceptor.get_handshake_timeout(), Duration::from_secs(3));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.bounds.timeout = timeout;
        self
    }

    /// The time a handshake may take.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// assert_eq!(Acceptor::new().get_handshake_timeout(), Duration::from_secs(10));
    /// ```
    pub fn get_handshake_timeout(&self) -> Duration {
        self.bounds.timeout
    }

    /// Turns a stream of accepted connections into a stream of WebSocket
    /// halves for [`Multiplexer::run`](crate::Multiplexer::run), measuring
    /// handshake deadlines with `clock`; see [`Accept`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stream_multiplexer::runtime::smol::{clock, incoming};
    /// use stream_multiplexer::websocket::Acceptor;
    ///
    /// smol::block_on(async {
    ///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let _halves = Acceptor::new().accept(incoming(listener), clock(Duration::from_secs(1)));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept<S, C>(&self, incoming: S, clock: Clock) -> Accept<S, C>
    where
        S: Stream<Item = io::Result<C>>,
    {
        Accept {
            handshakes: Handshakes::new(
                incoming,
                Upgrade {
                    config: self.config(),
                },
                clock,
                self.bounds,
            ),
        }
    }

    /// tungstenite's configuration for every connection.
    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            // Every frame is handed on at once to the connection's
            // `WriteBuffered`, which gathers a burst and releases its
            // buffer when flushed; tungstenite's own buffer would keep its
            // largest size for good.
            .write_buffer_size(0)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// Accepts WebSocket connections with the defaults of [`Acceptor::new`]:
/// messages up to 8 MiB, at most 256 handshakes at once, each within 10 s
/// as `clock` counts.
///
/// The clock is the acceptor's own: the multiplexer takes another one (each
/// runtime adapter makes one in a call, such as
/// [`runtime::smol::clock`](crate::runtime::smol::clock)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stream_multiplexer::runtime::smol::{clock, incoming};
/// use stream_multiplexer::websocket;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let _halves = websocket::accept(incoming(listener), clock(Duration::from_secs(1)));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn accept<S, C>(incoming: S, clock: Clock) -> Accept<S, C>
where
    S: Stream<Item = io::Result<C>>,
{
    Acceptor::new().accept(incoming, clock)
}

/// A stream of WebSocket connections, each as its halves
/// `(WsWrite, WsRead)`: what [`Multiplexer::run`](crate::Multiplexer::run)
/// takes. Made by [`accept`](super::accept) or [`Acceptor::accept`].
///
/// Each connection of `incoming` (any futures-io connection: TCP from any
/// runtime adapter, or TLS from [`tls::accept`](crate::tls) for `wss://`)
/// goes through the HTTP upgrade handshake. Handshakes run concurrently,
/// at most [`max_handshakes`](Acceptor::max_handshakes) at once and each
/// within the [handshake timeout](Acceptor::handshake_timeout), so a client
/// that never finishes its handshake delays nobody.
///
/// # Failed handshakes
///
/// A failed handshake is yielded as an `Err`, which the multiplexer counts
/// among its failed accepts
/// ([`StatsSnapshot::accept_errors`](crate::StatsSnapshot::accept_errors))
/// before it goes on; its connection is closed. The error's kind says what
/// happened:
///
/// - [`TimedOut`](io::ErrorKind::TimedOut): the client did not complete
///   the handshake in time;
/// - [`InvalidData`](io::ErrorKind::InvalidData): the request was not a
///   WebSocket upgrade. The client is answered with an HTTP error (`426
///   Upgrade Required` for a request without the upgrade headers, `400 Bad
///   Request` for anything else malformed) before its connection is closed;
/// - any other kind: the connection failed.
///
/// Failed accepts of `incoming` pass through as they are.
///
/// # Connections
///
/// A connection must be `Send` and `'static` (the handshake of each is a
/// boxed future), and [`Unpin`], as everything the multiplexer holds.
///
/// # Examples
///
/// See the [module docs](super).
#[must_use = "streams do nothing unless polled"]
pub struct Accept<S, C> {
    handshakes: Handshakes<S, Upgrade, (WsWrite<C>, WsRead<C>)>,
}

impl<S, C> Stream for Accept<S, C>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Item = io::Result<(WsWrite<C>, WsRead<C>)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().handshakes.poll_next_unpin(cx)
    }
}

impl<S, C> FusedStream for Accept<S, C>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn is_terminated(&self) -> bool {
        self.handshakes.is_terminated()
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Accept<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept")
            .field("handshakes", &self.handshakes)
            .finish()
    }
}

/// The WebSocket server handshake, as [`Handshakes`] starts it.
#[derive(Debug, Clone, Copy)]
struct Upgrade {
    config: WebSocketConfig,
}

impl<C> Handshake<C> for Upgrade
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (WsWrite<C>, WsRead<C>);

    fn start(&self, connection: C) -> BoxFuture<'static, io::Result<Self::Output>> {
        Box::pin(upgrade(connection, self.config))
    }
}

/// Answers a client's HTTP upgrade request and opens the WebSocket; or
/// answers a request that is not one with an HTTP error.
async fn upgrade<C>(connection: C, config: WebSocketConfig) -> io::Result<(WsWrite<C>, WsRead<C>)>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = WriteBuffered::new(ReadBurst::new(connection));
    // The handshake borrows the connection, so that it is still here to
    // answer a request the handshake rejects (tungstenite answers only the
    // requests it accepts).
    if let Err(error) =
        accept_hdr_async_with_config(&mut connection, NoCallback, Some(config)).await
    {
        if let Some(response) = rejection(&error) {
            // Best effort: the client may be gone already.
            if connection.write_all(response).await.is_ok() {
                let _closed = connection.close().await;
            }
        }
        return Err(into_io(error));
    }
    // The server handshake fails on any byte after the request, so nothing
    // was read past it: a WebSocket made afresh over the connection is the
    // one the handshake ended with.
    let socket = WebSocketStream::from_raw_socket(connection, Role::Server, Some(config)).await;
    Ok(split(socket))
}

/// A request without the upgrade headers: `426`, naming the protocol to
/// upgrade to.
const UPGRADE_REQUIRED: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade, close\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Content-Length: 0\r\n\r\n";

/// Any other malformed request.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    Connection: close\r\n\
    Content-Length: 0\r\n\r\n";

/// The HTTP response for a request the handshake rejected, if the client is
/// still there to read one.
fn rejection(error: &WsError) -> Option<&'static [u8]> {
    match error {
        WsError::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader
            | ProtocolError::MissingUpgradeWebSocketHeader
            | ProtocolError::MissingSecWebSocketVersionHeader,
        ) => Some(UPGRADE_REQUIRED),
        // The client hung up before its request was complete.
        WsError::Protocol(ProtocolError::HandshakeIncomplete) => None,
        WsError::Protocol(_)
        | WsError::HttpFormat(_)
        | WsError::Capacity(_)
        | WsError::AttackAttempt
        | WsError::Utf8(_) => Some(BAD_REQUEST),
        // I/O errors: the connection is broken.
        _ => None,
    }
}
