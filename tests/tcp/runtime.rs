//! The executors a server can run on, each with its own listener adapter,
//! behind one trait so that a scenario is written once for all of them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Sink, StreamExt, TryStreamExt};
use stream_multiplexer::{HalvesStream, runtime};

/// A connection's write half, boxed.
pub type BoxWrite = Pin<Box<dyn Sink<Bytes, Error = io::Error> + Send>>;
/// A connection's read half, boxed.
pub type BoxRead = BoxStream<'static, io::Result<Bytes>>;
/// The halves of every accepted connection, boxed.
pub type BoxHalves = BoxStream<'static, io::Result<(BoxWrite, BoxRead)>>;

/// Room in the listen backlog for every client a test keeps waiting (std
/// asks for 128; tokio asks for 1024 too).
pub const LISTEN_BACKLOG: u32 = 1024;

/// One executor (and its reactor) under test.
pub trait Runtime: Send + Sync + 'static {
    /// Binds a loopback listener through this runtime's adapter and frames
    /// it with a length field `width` bytes wide.
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves);
    /// Runs a future on this runtime's executor.
    fn spawn(&self, future: BoxFuture<'static, ()>);
}

/// Boxes each connection's halves so that every runtime's server has the
/// same type.
pub fn boxed<H, W, R>(halves: H) -> BoxHalves
where
    H: futures::Stream<Item = io::Result<(W, R)>> + Send + 'static,
    W: Sink<Bytes, Error = io::Error> + Send + 'static,
    R: futures::Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    halves
        .map_ok(|(write, read)| {
            let write: BoxWrite = Box::pin(write);
            let read: BoxRead = read.boxed();
            (write, read)
        })
        .boxed()
}

/// smol's executor, with the crate's smol adapter.
#[cfg(feature = "smol")]
pub struct Smol;

#[cfg(feature = "smol")]
impl Runtime for Smol {
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves) {
        let listener =
            runtime::smol::bind(([127, 0, 0, 1], 0).into(), LISTEN_BACKLOG).expect("bind");
        let address = listener.local_addr().expect("address");
        (
            address,
            boxed(HalvesStream::new(runtime::smol::incoming(listener), width)),
        )
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }
}

/// smol's executor, with the crate's smol adapter, and the send buffer
/// (`SO_SNDBUF`) of every accepted socket set to this many bytes: what a
/// server does to bound what the kernel holds for a client that stops
/// reading (by default Linux lets it grow to `net.ipv4.tcp_wmem`'s maximum,
/// 4 MiB). The kernel doubles the value asked for, for its bookkeeping.
#[cfg(feature = "smol")]
pub struct SmolWithSendBuffer(pub usize);

#[cfg(feature = "smol")]
impl Runtime for SmolWithSendBuffer {
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves) {
        let listener =
            runtime::smol::bind(([127, 0, 0, 1], 0).into(), LISTEN_BACKLOG).expect("bind");
        let address = listener.local_addr().expect("address");
        let bytes = self.0;
        let incoming = runtime::smol::incoming(listener).map(move |accepted| {
            accepted.inspect(|connection| {
                socket2::SockRef::from(connection)
                    .set_send_buffer_size(bytes)
                    .expect("set SO_SNDBUF on an accepted socket");
            })
        });
        (address, boxed(HalvesStream::new(incoming, width)))
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        Smol.spawn(future);
    }
}

/// async-std's executor, with the crate's async-std adapter.
#[cfg(feature = "async-std")]
pub struct AsyncStd;

#[cfg(feature = "async-std")]
impl Runtime for AsyncStd {
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves) {
        let listener = async_std::task::block_on(async_std::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        (
            address,
            boxed(HalvesStream::new(
                runtime::async_std::incoming(listener),
                width,
            )),
        )
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        async_std::task::spawn(future);
    }
}

/// tokio's multi-thread executor (two workers), with the crate's tokio
/// adapter.
#[cfg(feature = "tokio")]
pub struct Tokio;

/// The one tokio runtime every test of a binary shares.
#[cfg(feature = "tokio")]
fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

#[cfg(feature = "tokio")]
impl Runtime for Tokio {
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves) {
        let runtime = tokio_runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let _guard = runtime.enter();
        (
            address,
            boxed(HalvesStream::new(runtime::tokio::incoming(listener), width)),
        )
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio_runtime().spawn(future);
    }
}

/// A plain thread pool: no reactor of its own, so the listener comes from
/// the smol adapter, whose reactor runs on its own thread.
#[cfg(feature = "smol")]
pub struct ThreadPool;

#[cfg(feature = "smol")]
impl Runtime for ThreadPool {
    fn listen(&self, width: usize) -> (SocketAddr, BoxHalves) {
        Smol.listen(width)
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        static POOL: OnceLock<futures::executor::ThreadPool> = OnceLock::new();
        POOL.get_or_init(|| futures::executor::ThreadPool::new().expect("thread pool"))
            .spawn_ok(future);
    }
}
