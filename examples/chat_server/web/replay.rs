//! [`Replayed`]: a connection whose request head, read to route it, is
//! read again by the WebSocket handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use stream_multiplexer::runtime::smol::Connection;

/// A connection whose first bytes, read to route its request, are read
/// again: the WebSocket handshake reads the request from its start. The
/// bytes are freed once read again.
#[derive(Debug)]
pub(crate) struct Replayed {
    head: Vec<u8>,
    replayed: usize,
    connection: Connection,
}

impl Replayed {
    /// `connection`, from which `head` was read, read from `head` on.
    pub(super) fn new(head: Vec<u8>, connection: Connection) -> Self {
        Self {
            head,
            replayed: 0,
            connection,
        }
    }

    /// The connection, without what is left to read again.
    pub(super) fn into_connection(self) -> Connection {
        self.connection
    }
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let rest = &this.head[this.replayed..];
        if rest.is_empty() {
            return Pin::new(&mut this.connection).poll_read(cx, buf);
        }
        let length = rest.len().min(buf.len());
        buf[..length].copy_from_slice(&rest[..length]);
        this.replayed += length;
        if this.replayed == this.head.len() {
            this.head = Vec::new();
            this.replayed = 0;
        }
        Poll::Ready(Ok(length))
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.connection).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.connection).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.connection).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.connection).poll_close(cx)
    }
}
