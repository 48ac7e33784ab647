//! [`Acceptor`] and [`Accept`]: accepted connections in, TLS connections
//! out, after concurrent, bounded handshakes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::{FusedStream, Stream, StreamExt};
use futures::{FutureExt, TryFutureExt};
use futures_rustls::TlsAcceptor;
use futures_rustls::rustls::ServerConfig;

use super::connection::TlsConnection;
use crate::Clock;
use crate::handshakes::{Bounds, Handshake, Handshakes};

/// How a server accepts TLS connections: its configuration and the bounds
/// on handshakes. Build one, then [`accept`](Self::accept) a stream of
/// connections with it; [`accept`] uses the default bounds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
/// use stream_multiplexer::runtime::smol::{clock, incoming};
/// use stream_multiplexer::{tls, HalvesStream};
///
/// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
/// let config = tls::server_config(vec![certified.cert.der().clone()], key)?;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let connections = tls::Acceptor::new(config)
///         .max_handshakes(64)
///         .handshake_timeout(Duration::from_secs(5))
///         .accept(incoming(listener), clock(Duration::from_millis(500)));
///     let _halves = HalvesStream::new(connections, 2);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use = "an acceptor does nothing until `accept` is called"]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    bounds: Bounds,
}

impl Acceptor {
    /// An acceptor for `config`, with the default bounds: at most 256
    /// handshakes at once, each within 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    /// use stream_multiplexer::tls;
    ///
    /// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    /// let acceptor = tls::Acceptor::new(tls::server_config(vec![certified.cert.der().clone()], key)?);
    /// assert_eq!(acceptor.get_max_handshakes(), 256);
    /// assert_eq!(acceptor.get_handshake_timeout(), Duration::from_secs(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config,
            bounds: Bounds::default(),
        }
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
    /// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    /// use stream_multiplexer::tls;
    ///
    /// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    /// let acceptor = tls::Acceptor::new(tls::server_config(vec![certified.cert.der().clone()], key)?)
    ///     .max_handshakes(0);
    /// assert_eq!(acceptor.get_max_handshakes(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.bounds.max_in_flight = handshakes.max(1);
        self
    }

    /// The most handshakes in flight at once.
    ///
    /// # Examples
    ///
    /// See [`Acceptor::new`].
    pub fn get_max_handshakes(&self) -> usize {
        self.bounds.max_in_flight
    }

    /// Sets the time a handshake may take, from the moment its connection
    /// is taken from the stream of accepted connections, as the acceptor's
    /// [`Clock`] counts it. Defaults to 10 s.
    ///
    /// A client that has not completed its TLS handshake by then is dropped
    /// and yielded as an error of kind [`io::ErrorKind::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    /// use stream_multiplexer::tls;
    ///
    /// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    /// let acceptor = tls::Acceptor::new(tls::server_config(vec![certified.cert.der().clone()], key)?)
    ///     .handshake_timeout(Duration::from_secs(3));
    /// assert_eq!(acceptor.get_handshake_timeout(), Duration::from_secs(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.bounds.timeout = timeout;
        self
    }

    /// The time a handshake may take.
    ///
    /// # Examples
    ///
    /// See [`Acceptor::new`].
    pub fn get_handshake_timeout(&self) -> Duration {
        self.bounds.timeout
    }

    /// Turns a stream of accepted connections into a stream of TLS
    /// connections, measuring handshake deadlines with `clock`; see
    /// [`Accept`].
    ///
    /// # Examples
    ///
    /// See [`Acceptor`].
    pub fn accept<S, C>(&self, incoming: S, clock: Clock) -> Accept<S, C>
    where
        S: Stream<Item = io::Result<C>>,
    {
        Accept {
            handshakes: Handshakes::new(
                incoming,
                ServerHandshake {
                    acceptor: TlsAcceptor::from(Arc::clone(&self.config)),
                },
                clock,
                self.bounds,
            ),
        }
    }
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

/// Accepts TLS connections with `config` and the default bounds of
/// [`Acceptor::new`]: at most 256 handshakes at once, each within 10 s as
/// `clock` counts.
///
/// The clock is the acceptor's own: the multiplexer takes another one, and
/// so does a WebSocket acceptor on top (each runtime adapter makes one in a
/// call, such as [`runtime::smol::clock`](crate::runtime::smol::clock)).
///
/// # Examples
///
/// See the [module docs](super).
pub fn accept<S, C>(incoming: S, config: Arc<ServerConfig>, clock: Clock) -> Accept<S, C>
where
    S: Stream<Item = io::Result<C>>,
{
    Acceptor::new(config).accept(incoming, clock)
}

/// A stream of TLS connections: made by [`accept`] or
/// [`Acceptor::accept`].
///
/// Each connection of `incoming` goes through the TLS server handshake.
/// Handshakes run concurrently, at most
/// [`max_handshakes`](Acceptor::max_handshakes) at once and each within the
/// [handshake timeout](Acceptor::handshake_timeout), so a client that never
/// finishes its handshake delays nobody.
///
/// A failed handshake is yielded as an `Err`, which the multiplexer counts
/// among its failed accepts
/// ([`StatsSnapshot::accept_errors`](crate::StatsSnapshot::accept_errors))
/// before it goes on; its connection is closed. One that timed out is of
/// kind [`io::ErrorKind::TimedOut`]; one the client got wrong (not TLS, no
/// common cipher suite...) is of kind [`io::ErrorKind::InvalidData`].
/// Failed accepts of `incoming` pass through as they are.
///
/// A connection must be `Send` and `'static` (the handshake of each is a
/// boxed future), and [`Unpin`], as everything the multiplexer holds.
///
/// # Examples
///
/// See the [module docs](super).
#[must_use = "streams do nothing unless polled"]
pub struct Accept<S, C> {
    handshakes: Handshakes<S, ServerHandshake, TlsConnection<C>>,
}

impl<S, C> Stream for Accept<S, C>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Item = io::Result<TlsConnection<C>>;

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

/// The TLS server handshake, as [`Handshakes`] starts it.
struct ServerHandshake {
    acceptor: TlsAcceptor,
}

impl<C> Handshake<C> for ServerHandshake
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = TlsConnection<C>;

    fn start(&self, connection: C) -> BoxFuture<'static, io::Result<TlsConnection<C>>> {
        self.acceptor
            .accept(connection)
            .map_ok(TlsConnection::new)
            .boxed()
    }
}
