//! A connection whose reads come out of a buffer that exists only while
//! data arrives: what tungstenite reads its frames from.
//!
//! tungstenite reads from the connection in pieces of its read buffer's
//! size, which is kept small (it is held for the whole life of a
//! connection, idle or not). Read straight from the socket, a client
//! sending many messages would then cost one read system call per few
//! messages. This wrapper reads the socket in large chunks into a buffer
//! of its own and serves tungstenite's small reads from it; when the
//! socket has nothing more and the buffer is drained, the buffer is
//! released, so that an idle connection holds none.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

/// How many bytes one read of the socket asks for: as
/// [`FramedRead`](crate::framed::FramedRead)'s default read chunk, a few
/// hundred small messages per system call.
const BURST_SIZE: usize = 8 * 1024;

/// A connection with burst reads; writes pass straight through.
pub(super) struct ReadBurst<C> {
    inner: C,
    /// Bytes read from the socket; empty (no allocation) between bursts.
    buffer: Vec<u8>,
    /// Where the bytes not yet handed on start in `buffer`; they end at
    /// `filled`.
    start: usize,
    filled: usize,
}

impl<C> ReadBurst<C> {
    pub(super) fn new(inner: C) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
            start: 0,
            filled: 0,
        }
    }

    /// The capacity of the read buffer: 0 between bursts.
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Hands on as much of what is buffered as `out` takes.
    fn take_buffered(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.filled - self.start);
        out[..n].copy_from_slice(&self.buffer[self.start..self.start + n]);
        self.start += n;
        n
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for ReadBurst<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.start < this.filled {
            return Poll::Ready(Ok(this.take_buffered(out)));
        }
        if out.len() >= BURST_SIZE {
            // A read as large as a burst: no copy.
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        if this.buffer.is_empty() {
            // Zero-filled once per burst: safe code cannot read into
            // uninitialised memory.
            this.buffer = vec![0; BURST_SIZE];
        }
        match Pin::new(&mut this.inner).poll_read(cx, &mut this.buffer) {
            Poll::Ready(Ok(read)) => {
                this.start = 0;
                this.filled = read.min(this.buffer.len());
                Poll::Ready(Ok(this.take_buffered(out)))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                // The burst is over: an idle connection keeps no buffer.
                this.buffer = Vec::new();
                (this.start, this.filled) = (0, 0);
                Poll::Pending
            }
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for ReadBurst<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<C: fmt::Debug> fmt::Debug for ReadBurst<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBurst")
            .field("inner", &self.inner)
            .field("buffered", &(self.filled - self.start))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures::AsyncReadExt;
    use futures::executor::block_on;
    use futures::task::noop_waker;

    use super::*;

    /// A socket that hands out its chunks one read at a time, then would
    /// block; counts the reads.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.reads += 1;
            let Some(mut chunk) = this.chunks.pop_front() else {
                return Poll::Pending;
            };
            let n = out.len().min(chunk.len());
            out[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                this.chunks.push_front(chunk.split_off(n));
            }
            Poll::Ready(Ok(n))
        }
    }

    fn burst(chunks: &[&[u8]]) -> ReadBurst<Chunks> {
        ReadBurst::new(Chunks {
            chunks: chunks.iter().map(|chunk| chunk.to_vec()).collect(),
            reads: 0,
        })
    }

    /// Many small reads are served by one read of the socket, in order,
    /// and the buffer is released once the socket would block.
    #[test]
    fn small_reads_share_one_socket_read_and_the_buffer_goes_when_idle() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut connection = burst(&[&data]);
        let mut got = Vec::new();
        let mut piece = [0; 512];
        while got.len() < data.len() {
            let n = block_on(connection.read(&mut piece)).unwrap();
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(
            connection.inner.reads, 1,
            "one socket read for six small ones"
        );
        assert!(connection.buffer_capacity() > 0);

        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let pending = Pin::new(&mut connection).poll_read(&mut cx, &mut piece);
        assert!(pending.is_pending());
        assert_eq!(connection.buffer_capacity(), 0, "idle: no buffer");
    }

    /// A read at least as large as a burst goes straight to the socket.
    #[test]
    fn a_large_read_goes_straight_through() {
        let data = vec![7u8; BURST_SIZE];
        let mut connection = burst(&[&data]);
        let mut out = vec![0; BURST_SIZE];
        assert_eq!(block_on(connection.read(&mut out)).unwrap(), BURST_SIZE);
        assert_eq!(out, data);
        assert_eq!(connection.buffer_capacity(), 0);
    }

    /// The end of the input is passed on once what was buffered is read.
    #[test]
    fn the_end_comes_after_everything_buffered() {
        let mut connection = ReadBurst::new(futures::io::Cursor::new(b"hello".to_vec()));
        let mut all = Vec::new();
        block_on(connection.read_to_end(&mut all)).unwrap();
        assert_eq!(all, b"hello");
    }
}
