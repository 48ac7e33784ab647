//! TLS on accepted connections (feature `tls`), through futures-rustls,
//! with rustls's `ring` provider.
//!
//! [`accept`] turns a stream of accepted connections into a stream of
//! [`TlsConnection`]s, after concurrent, bounded handshakes (the same
//! bounds as the WebSocket acceptor's: at most 256 at once, each within
//! 10 s, timed by a [`Clock`] of the acceptor's own). A TLS connection is a
//! futures-io connection like any other, so it composes with every
//! framing:
//!
//! - length-delimited or lines: `HalvesStream::new(tls::accept(incoming,
//!   config, clock), 2)`, as [`TlsConnection`] implements [`IntoHalves`];
//! - WebSocket over TLS (`wss://`): `websocket::accept(tls::accept(incoming,
//!   config, clock), other_clock)` (feature `websocket`).
//!
//! [`load_pem`] reads a certificate chain and its key from PEM files, and
//! [`server_config`] makes a server configuration of them with the `ring`
//! provider and rustls's safe defaults. For anything else (client
//! certificates, ALPN, session resumption), build a
//! [`rustls::ServerConfig`] directly.
//!
//! # Why `ring`
//!
//! rustls's default provider, `aws-lc-rs`, needs cmake and nasm to build
//! (and a C compiler with them); `ring` builds with the Rust toolchain and a
//! C compiler alone, so the feature builds wherever the crate does.
//!
//! # Examples
//!
//! Length-delimited frames over TLS, with a certificate made on the spot
//! (`rcgen`) and a futures-rustls client.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use futures::channel::mpsc;
//! use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
//! use futures_rustls::TlsConnector;
//! use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
//! use futures_rustls::rustls::{ClientConfig, RootCertStore};
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::{tls, ControlMessage, HalvesStream, IncomingPacket, Multiplexer, OutgoingPacket};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
//! let config = tls::server_config(vec![certified.cert.der().clone()], key)?;
//!
//! smol::block_on(async {
//!     let (channel0, mut lobby) = mpsc::channel(32);
//!     let (_outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(32);
//!     let multiplexer = Multiplexer::new(128, outgoing_rx, vec![channel0]);
//!     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!     let address = listener.local_addr()?;
//!     let connections = tls::accept(incoming(listener), config, clock(Duration::from_secs(1)));
//!     let (control, control_rx) = mpsc::unbounded();
//!     let server = smol::spawn(multiplexer.run(HalvesStream::new(connections, 2), control_rx));
//!
//!     // A client that trusts the certificate.
//!     let mut roots = RootCertStore::empty();
//!     roots.add(certified.cert.der().clone())?;
//!     let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
//!     let client_config = ClientConfig::builder_with_provider(provider)
//!         .with_safe_default_protocol_versions()?
//!         .with_root_certificates(roots)
//!         .with_no_client_auth();
//!     let tcp = async_net::TcpStream::connect(address).await?;
//!     let mut client = TlsConnector::from(Arc::new(client_config))
//!         .connect(ServerName::try_from("localhost")?, tcp)
//!         .await?;
//!
//!     client.write_all(b"\x00\x05hello").await?;
//!     client.flush().await?;
//!     assert!(matches!(lobby.next().await, Some(IncomingPacket::StreamConnected(_))));
//!     let packet = lobby.next().await.expect("a message");
//!     assert_eq!(packet.value().expect("a value").as_ref().ok(), Some(&Bytes::from("hello")));
//!
//!     control.unbounded_send(ControlMessage::Shutdown)?;
//!     server.await?;
//!     let mut rest = Vec::new();
//!     client.read_to_end(&mut rest).await?; // the server closed cleanly
//!     Ok(())
//! })
//! # }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use futures::stream::{FusedStream, Stream, StreamExt};
use futures::{FutureExt, TryFutureExt};
use futures_rustls::TlsAcceptor;
use futures_rustls::pki_types::pem::{self, PemObject};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{ServerConfig, ServerConnection};
use futures_rustls::server::TlsStream;

pub use futures_rustls::rustls;

use crate::Clock;
use crate::IntoHalves;
use crate::handshakes::{Bounds, Handshake, Handshakes};

/// Reads a certificate chain and its private key from PEM files: every
/// `CERTIFICATE` section of `cert_chain` (the server's own first, then the
/// intermediates), and the first private key of `key` (PKCS #8, PKCS #1 or
/// SEC1).
///
/// A file that cannot be read is an error of its own kind; one that holds
/// no certificate, no key or malformed PEM is an error of kind
/// [`io::ErrorKind::InvalidData`].
///
/// # Examples
///
/// ```
/// use stream_multiplexer::tls;
///
/// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let directory = std::env::temp_dir().join(format!("load-pem-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&directory)?;
/// std::fs::write(directory.join("cert.pem"), certified.cert.pem())?;
/// std::fs::write(directory.join("key.pem"), certified.signing_key.serialize_pem())?;
///
/// let (chain, key) = tls::load_pem(directory.join("cert.pem"), directory.join("key.pem"))?;
/// assert_eq!(chain.len(), 1);
/// let _config = tls::server_config(chain, key)?;
///
/// // A key file is not a certificate chain.
/// let error = tls::load_pem(directory.join("key.pem"), directory.join("key.pem")).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
/// std::fs::remove_dir_all(&directory)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_pem(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert_chain.as_ref())
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if chain.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no certificate in {}", cert_chain.as_ref().display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key.as_ref()).map_err(pem_error)?;
    Ok((chain, key))
}

/// A PEM error as an I/O error: the file's own I/O error, or bad data.
fn pem_error(error: pem::Error) -> io::Error {
    match error {
        pem::Error::Io(error) => error,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// A server configuration for `cert_chain` and its `key`, with rustls's
/// `ring` provider, its safe default protocol versions (TLS 1.2 and 1.3)
/// and no client authentication.
///
/// A key that does not match the certificate, or that the provider cannot
/// use, is an error of kind [`io::ErrorKind::InvalidInput`].
///
/// # Examples
///
/// ```
/// use futures_rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
/// use stream_multiplexer::tls;
///
/// let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
/// let config = tls::server_config(vec![certified.cert.der().clone()], key)?;
/// assert!(config.alpn_protocols.is_empty());
///
/// // Another certificate's key does not fit.
/// let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// let wrong = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(other.signing_key.serialize_der()));
/// let error = tls::server_config(vec![certified.cert.der().clone()], wrong).unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    // The provider is named, not taken from the process default, which
    // would panic if another crate had enabled a second one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(cert_chain, key)
        })
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    Ok(Arc::new(config))
}

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
/// See the [module docs](self).
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
/// See the [module docs](self).
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
            .map_ok(|stream| TlsConnection { stream })
            .boxed()
    }
}

/// A TLS connection accepted by [`Accept`]: a futures-io connection, read
/// and written in plaintext.
///
/// It implements [`IntoHalves`], so [`HalvesStream`](crate::HalvesStream)
/// frames it with any codec. A TLS session is one state machine for both
/// directions (reading may have to write, as for a key update), so its
/// halves share a lock, as [`Locked`](crate::Locked) connections do; the
/// multiplexer polls both halves from one task, where the lock is never
/// contended.
///
/// Closing it (its write half's close) sends the TLS `close_notify` alert,
/// then closes the connection under it.
///
/// # Examples
///
/// See the [module docs](self).
pub struct TlsConnection<C> {
    stream: TlsStream<C>,
}

impl<C> TlsConnection<C> {
    /// The connection under TLS, and the TLS session: the server name the
    /// client asked for (SNI), the protocol agreed by ALPN, the cipher
    /// suite.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::tls::TlsConnection;
    ///
    /// fn server_name<C>(connection: &TlsConnection<C>) -> Option<&str> {
    ///     connection.get_ref().1.server_name()
    /// }
    /// ```
    pub fn get_ref(&self) -> (&C, &ServerConnection) {
        self.stream.get_ref()
    }

    /// The connection under TLS, and the TLS session, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::tls::TlsConnection;
    ///
    /// fn refuse_early_data<C>(connection: &mut TlsConnection<C>) {
    ///     let (_tcp, session) = connection.get_mut();
    ///     let _ = session.early_data();
    /// }
    /// ```
    pub fn get_mut(&mut self) -> (&mut C, &mut ServerConnection) {
        self.stream.get_mut()
    }

    /// Gives back futures-rustls's stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_rustls::server::TlsStream;
    /// use stream_multiplexer::tls::TlsConnection;
    ///
    /// fn unwrap<C>(connection: TlsConnection<C>) -> TlsStream<C> {
    ///     connection.into_inner()
    /// }
    /// ```
    pub fn into_inner(self) -> TlsStream<C> {
        self.stream
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConnection<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConnection<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> IntoHalves for TlsConnection<C> {
    type Read = ReadHalf<Self>;
    type Write = WriteHalf<Self>;

    fn into_halves(self) -> (ReadHalf<Self>, WriteHalf<Self>) {
        self.split()
    }
}

impl<C: fmt::Debug> fmt::Debug for TlsConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connection, session) = self.stream.get_ref();
        f.debug_struct("TlsConnection")
            .field("connection", connection)
            .field("server_name", &session.server_name())
            .field("protocol_version", &session.protocol_version())
            .finish()
    }
}
