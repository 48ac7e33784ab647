//! A connection whose writes are gathered into a buffer that is released
//! once flushed: what tungstenite writes its frames to.
//!
//! tungstenite keeps a write buffer of its own, which grows to the largest
//! burst it held and never shrinks. With its write buffer size set to 0 it
//! hands every frame on at once, so it holds at most one frame; this
//! wrapper then gathers the frames of a burst into one write system call
//! and gives the memory back when the burst is flushed, so that an idle
//! connection holds no write buffer.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};

/// How many bytes are gathered before they are written out without waiting
/// for a flush: Linux's default socket send buffer, as for
/// [`FramedWrite`](crate::framed::FramedWrite).
const HIGH_WATER_MARK: usize = 16 * 1024;

/// A connection with gathered writes; reads pass straight through.
pub(super) struct WriteBuffered<C> {
    inner: C,
    /// Bytes written and not yet passed on; no allocation while empty.
    buffer: BytesMut,
}

impl<C> WriteBuffered<C> {
    pub(super) fn new(inner: C) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
        }
    }

    #[cfg(test)]
    fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The capacity of the write buffer: 0 once a flush has written it all.
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }
}

impl<C: AsyncWrite + Unpin> WriteBuffered<C> {
    /// Writes from the buffer until at most `keep` bytes are left in it.
    fn poll_write_until(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        while self.buffer.len() > keep {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.buffer.advance(n.min(self.buffer.len())),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for WriteBuffered<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for WriteBuffered<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buffer.len() >= HIGH_WATER_MARK {
            ready!(this.poll_write_until(cx, HIGH_WATER_MARK - 1))?;
        }
        if this.buffer.is_empty() && data.len() >= HIGH_WATER_MARK {
            // Nothing to gather it with: no copy.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buffer.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_until(cx, 0))?;
        // All written: an idle connection keeps no buffer.
        this.buffer = BytesMut::new();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<C: fmt::Debug> fmt::Debug for WriteBuffered<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBuffered")
            .field("inner", &self.inner)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncWriteExt;
    use futures::executor::block_on;

    #[test]
    fn writes_are_gathered_until_a_flush_which_releases_the_buffer() {
        let mut connection = WriteBuffered::new(Vec::<u8>::new());
        block_on(async {
            connection.write_all(b"one ").await?;
            connection.write_all(b"two").await?;
            assert!(connection.get_ref().is_empty());
            assert!(connection.buffer_capacity() > 0);
            connection.flush().await?;
            Ok::<(), io::Error>(())
        })
        .unwrap();
        assert_eq!(connection.get_ref(), b"one two");
        assert_eq!(connection.buffer_capacity(), 0);
    }

    #[test]
    fn a_large_write_with_nothing_buffered_goes_straight_through() {
        let mut connection = WriteBuffered::new(Vec::<u8>::new());
        let large = vec![7u8; HIGH_WATER_MARK];
        block_on(connection.write_all(&large)).unwrap();
        assert_eq!(connection.get_ref().len(), HIGH_WATER_MARK);
        assert_eq!(connection.buffer_capacity(), 0);
    }
}
