//! TLS clients over real TCP on loopback, through a multiplexer (feature
//! `tls`): length-delimited frames and WebSocket (`wss://`, with feature
//! `websocket`) over TLS, and handshakes that fail or never finish.
//!
//! Certificates are made at test time with rcgen; the clients are
//! futures-rustls's, over smol TCP streams. The acceptor's clock is ticked
//! by hand, so handshake deadlines pass exactly when a test says. Nothing
//! sleeps: every wait is on an event, with a safety timeout that only turns
//! a hang into a failure.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_net::TcpStream;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use stream_multiplexer::runtime::smol::incoming;
use stream_multiplexer::{
    Clock, ControlMessage, HalvesStream, IncomingPacket, Multiplexer, MultiplexerError,
    OutgoingMessage, OutgoingPacket, Stats, StreamId, tls,
};

/// A safety net, never a synchronisation.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(60);

/// The acceptor clock's period; handshake timeouts are whole periods.
const TICK: Duration = Duration::from_secs(1);

/// Runs `scenario` on its own thread, on smol, and fails if it does not
/// finish within the safety timeout.
fn run<F>(scenario: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()>,
{
    let (done, finished) = std_mpsc::channel();
    let worker = std::thread::spawn(move || {
        smol::block_on(scenario());
        let _ = done.send(());
    });
    match finished.recv_timeout(SAFETY_TIMEOUT) {
        Ok(()) => worker.join().expect("the scenario's thread"),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario did not finish within {SAFETY_TIMEOUT:?}")
        }
    }
}

/// A self-signed certificate for `localhost`: the server's configuration,
/// and a client's that trusts it.
fn certificates() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let certificate: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server = tls::server_config(vec![certificate.clone()], key).expect("a server config");

    let mut roots = RootCertStore::empty();
    roots.add(certificate).expect("a root");
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

async fn tls_connect(address: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a server name");
    TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake")
}

type Incoming = IncomingPacket<io::Result<Bytes>>;

/// A multiplexer serving length-delimited frames over TLS on loopback.
struct Server {
    address: SocketAddr,
    client_config: Arc<ClientConfig>,
    lobby: mpsc::Receiver<Incoming>,
    outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    control: mpsc::UnboundedSender<ControlMessage>,
    /// Each value is one tick of the TLS acceptor's clock.
    ticks: mpsc::UnboundedSender<()>,
    stats: Stats,
    task: smol::Task<Result<(), MultiplexerError>>,
}

impl Server {
    async fn start(handshake_timeout: Duration) -> Self {
        let (server_config, client_config) = certificates();
        let (channel0, lobby) = mpsc::channel(64);
        let (outgoing, outgoing_rx) = mpsc::channel(64);
        let multiplexer = Multiplexer::new(64, outgoing_rx, vec![channel0]);
        let stats = multiplexer.stats();
        let listener = async_net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (ticks, tick_rx) = mpsc::unbounded();
        let connections = tls::Acceptor::new(server_config)
            .handshake_timeout(handshake_timeout)
            .accept(incoming(listener), Clock::new(TICK, tick_rx));
        let (control, control_rx) = mpsc::unbounded();
        let task = smol::spawn(multiplexer.run(HalvesStream::new(connections, 2), control_rx));
        Self {
            address,
            client_config,
            lobby,
            outgoing,
            control,
            ticks,
            stats,
            task,
        }
    }

    async fn next(&mut self) -> Incoming {
        self.lobby.next().await.expect("the lobby is open")
    }

    async fn connect(&mut self) -> (TlsStream<TcpStream>, StreamId) {
        let client = tls_connect(self.address, &self.client_config).await;
        match self.next().await {
            IncomingPacket::StreamConnected(id) => (client, id),
            other => panic!("expected a connection, got {other:?}"),
        }
    }

    /// Sends a frame and waits until the server delivered it.
    async fn round_trip(&mut self, client: &mut TlsStream<TcpStream>, id: StreamId) {
        client.write_all(b"\x00\x04ping").await.expect("write");
        client.flush().await.expect("flush");
        match self.next().await {
            IncomingPacket::Message(message) if message.stream_id == id => {
                assert_eq!(message.value.expect("a frame"), Bytes::from("ping"));
            }
            other => panic!("expected a frame from {id}, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: OutgoingPacket<Bytes>) {
        self.outgoing
            .send(packet)
            .await
            .expect("the multiplexer runs");
    }

    fn tick(&self, ticks: usize) {
        for _ in 0..ticks {
            self.ticks.unbounded_send(()).expect("the acceptor's clock");
        }
    }

    /// Shuts the multiplexer down gracefully, reading what the lobby still
    /// gets meanwhile.
    async fn shut_down(self) {
        let drain = smol::spawn(self.lobby.for_each(|_| async {}));
        self.control
            .unbounded_send(ControlMessage::Shutdown)
            .expect("the multiplexer runs");
        self.task.await.expect("a clean shutdown");
        drain.await;
    }
}

#[test]
fn length_delimited_frames_round_trip_over_tls() {
    run(|| async {
        let mut server = Server::start(Duration::from_secs(10)).await;
        let (mut client, id) = server.connect().await;

        server.round_trip(&mut client, id).await;
        let reply = OutgoingMessage::new([id], [Bytes::from("pong")]);
        server.send(OutgoingPacket::Message(reply)).await;
        let mut frame = [0u8; 6];
        client.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x00\x04pong");

        // Closed with `close_notify`: the client reads a clean end.
        server.send(OutgoingPacket::Shutdown(vec![id])).await;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        server.shut_down().await;
    });
}

#[test]
fn a_client_that_never_finishes_its_tls_handshake_is_dropped_at_its_deadline() {
    run(|| async {
        let mut server = Server::start(3 * TICK).await;

        // Connects first, and sends the first bytes of a record only.
        let mut stalled = StdTcpStream::connect(server.address).unwrap();
        stalled.write_all(b"\x16\x03\x01").unwrap();

        // Connects second and is served: the listener took the stalled one
        // first, whose handshake is in flight since, and held up nobody.
        let (mut client, id) = server.connect().await;
        server.round_trip(&mut client, id).await;

        // Two ticks of three: a client that connects after them is accepted
        // in a poll that counted them, and the stalled one is still there.
        server.tick(2);
        let (mut second, second_id) = server.connect().await;
        server.round_trip(&mut second, second_id).await;
        stalled.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            stalled.read(&mut byte).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "not dropped before its deadline"
        );

        // The third tick: its deadline. It is closed.
        server.tick(1);
        stalled.set_nonblocking(false).unwrap();
        stalled.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
        match smol::unblock(move || stalled.read(&mut byte)).await {
            Ok(0) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the stalled client closed, got {other:?}"),
        }

        // Counted as a failed accept (by the time another frame is served).
        server.round_trip(&mut client, id).await;
        assert_eq!(server.stats.snapshot().accept_errors, 1);
        assert_eq!(server.stats.snapshot().accepted, 2);
        drop((client, second));
        server.shut_down().await;
    });
}

#[test]
fn a_client_that_does_not_speak_tls_is_a_failed_accept() {
    run(|| async {
        let mut server = Server::start(Duration::from_secs(10)).await;
        let address = server.address;
        let answer = smol::unblock(move || {
            let mut socket = StdTcpStream::connect(address).unwrap();
            socket.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
            socket.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut answer = Vec::new();
            // The server closes it (after a TLS alert, or a reset).
            let _ = socket.read_to_end(&mut answer);
            answer
        })
        .await;
        // Nothing but, at most, an alert record: no plaintext, no hang.
        assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");

        let (mut client, id) = server.connect().await;
        server.round_trip(&mut client, id).await;
        assert_eq!(server.stats.snapshot().accept_errors, 1);
        drop(client);
        server.shut_down().await;
    });
}

#[cfg(feature = "websocket")]
#[test]
fn websocket_over_tls_round_trips() {
    use async_tungstenite::tungstenite::Message;
    use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use stream_multiplexer::websocket::{self, WsMessage};

    run(|| async {
        let (server_config, client_config) = certificates();
        let (channel0, mut lobby) = mpsc::channel::<IncomingPacket<io::Result<WsMessage>>>(64);
        let (mut outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<WsMessage>>(64);
        let multiplexer = Multiplexer::new(64, outgoing_rx, vec![channel0]);
        let listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // One clock for the TLS handshakes, one for the WebSocket ones.
        let (_tls_ticks, tls_tick_rx) = mpsc::unbounded::<()>();
        let (_ws_ticks, ws_tick_rx) = mpsc::unbounded::<()>();
        let connections = tls::accept(
            incoming(listener),
            server_config,
            Clock::new(TICK, tls_tick_rx),
        );
        let halves = websocket::accept(connections, Clock::new(TICK, ws_tick_rx));
        let (control, control_rx) = mpsc::unbounded();
        let server = smol::spawn(multiplexer.run(halves, control_rx));

        let tls = tls_connect(address, &client_config).await;
        let (mut client, _response) = async_tungstenite::client_async("wss://localhost/", tls)
            .await
            .unwrap();
        let id = match lobby.next().await {
            Some(IncomingPacket::StreamConnected(id)) => id,
            other => panic!("expected a connection, got {other:?}"),
        };

        client.send(Message::text("secret")).await.unwrap();
        match lobby.next().await {
            Some(IncomingPacket::Message(message)) => {
                assert_eq!(message.stream_id, id);
                assert_eq!(message.value.unwrap(), WsMessage::from("secret"));
            }
            other => panic!("expected a message, got {other:?}"),
        }
        let reply = OutgoingMessage::new([id], [WsMessage::binary(vec![1, 2, 3])]);
        outgoing.send(OutgoingPacket::Message(reply)).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(vec![1, 2, 3])
        );

        outgoing
            .send(OutgoingPacket::Shutdown(vec![id]))
            .await
            .unwrap();
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(client.next().await.is_none());

        let drain = smol::spawn(lobby.for_each(|_| async {}));
        control.unbounded_send(ControlMessage::Shutdown).unwrap();
        server.await.unwrap();
        drain.await;
    });
}
