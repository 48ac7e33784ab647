//! [`TlsConnection`]: a TLS connection the multiplexer can split into
//! halves.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use futures_rustls::rustls::ServerConnection;
use futures_rustls::server::TlsStream;

use crate::IntoHalves;

/// A TLS connection accepted by [`Accept`](super::Accept): a futures-io connection, read
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
/// See the [module docs](super).
pub struct TlsConnection<C> {
    stream: TlsStream<C>,
}

impl<C> TlsConnection<C> {
    /// Wraps a stream whose handshake is done.
    pub(super) fn new(stream: TlsStream<C>) -> Self {
        Self { stream }
    }

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
