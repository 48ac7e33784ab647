//! What the runtime adapters promise about the connections they accept,
//! checked on each runtime: TCP keepalive is on, with the documented
//! values. (The multiplexer's own scenarios over real TCP, on every
//! runtime, are in `tests/runtimes.rs`.)

#![cfg(all(feature = "smol", feature = "async-std", feature = "tokio"))]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use futures::future::{Either, select};
use futures::{Stream, StreamExt};
use socket2::SockRef;
use stream_multiplexer::runtime;

/// How long a test may wait for a connection on the loopback before it is
/// taken to hang: only a net under a test that would otherwise never end.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// Connects a client to `address` and returns it with the connection that
/// `incoming` accepted for it, failing the test after [`SAFETY_NET`] (the
/// runtime's `sleep` measures it).
async fn accept_one<C, F: Future>(
    address: SocketAddr,
    incoming: impl Stream<Item = io::Result<C>>,
    sleep: impl FnOnce(Duration) -> F,
) -> (std::net::TcpStream, C) {
    // The kernel completes a loopback handshake without the server's
    // accept, so a blocking connect does not wait for the runtime.
    let client = std::net::TcpStream::connect(address).expect("connect");
    let accepted = async { pin!(incoming).next().await };
    match select(pin!(accepted), pin!(sleep(SAFETY_NET))).await {
        Either::Left((Some(Ok(connection)), _)) => (client, connection),
        Either::Left((Some(Err(error)), _)) => panic!("accept failed: {error}"),
        Either::Left((None, _)) => panic!("the stream of connections ended"),
        Either::Right(_) => panic!("no connection accepted within {SAFETY_NET:?}"),
    }
}

/// Keepalive is on; where the platform lets them be read, the first probe
/// goes out after 60 s idle, the next ones 10 s apart, 5 at most: a peer
/// that vanished is found in about two minutes.
fn assert_keepalive_on(socket: SockRef<'_>) {
    assert!(
        socket.keepalive().expect("read SO_KEEPALIVE"),
        "keepalive is off"
    );
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "dragonfly",
        target_os = "illumos",
        target_os = "fuchsia"
    ))]
    {
        let idle = socket
            .tcp_keepalive_time()
            .expect("read the keepalive time");
        assert_eq!(idle, Duration::from_secs(60));
        let interval = socket.tcp_keepalive_interval().expect("read the interval");
        assert_eq!(interval, Duration::from_secs(10));
        let retries = socket
            .tcp_keepalive_retries()
            .expect("read the probe count");
        assert_eq!(retries, 5);
    }
}

#[test]
fn smol_accepts_connections_with_keepalive_on() {
    smol::block_on(async {
        let listener = async_net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let incoming = runtime::smol::incoming(listener);
        let (_client, connection) = accept_one(address, incoming, smol::Timer::after).await;
        assert_keepalive_on(SockRef::from(connection.get_ref()));
    });
}

#[test]
fn async_std_accepts_connections_with_keepalive_on() {
    async_std::task::block_on(async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let incoming = runtime::async_std::incoming(listener);
        let (_client, connection) = accept_one(address, incoming, async_std::task::sleep).await;
        assert_keepalive_on(SockRef::from(&connection));
    });
}

#[test]
fn tokio_accepts_connections_with_keepalive_on() {
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let incoming = runtime::tokio::incoming(listener);
        let (_client, connection) = accept_one(address, incoming, tokio::time::sleep).await;
        assert_keepalive_on(SockRef::from(connection.get_ref()));
    });
}
