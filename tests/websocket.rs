//! WebSocket clients over real TCP on loopback, through a multiplexer
//! (feature `websocket`): messages both ways, control frames, the close
//! handshake, limits, hostile handshakes, and WebSocket and TCP clients in
//! one multiplexer.
//!
//! The clients are async-tungstenite's, over smol TCP streams; where a test
//! needs bytes no well-behaved client sends, it writes them on a plain
//! socket. The acceptor's clock is ticked by hand, so handshake deadlines
//! pass exactly when a test says. Nothing sleeps: every wait is on an
//! event, with a safety timeout that only turns a hang into a failure.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use async_tungstenite::tungstenite::{Bytes, Message};
use futures::channel::mpsc;
use futures::future::Either;
use futures::{AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt, TryStreamExt};
use stream_multiplexer::runtime::smol::incoming;
use stream_multiplexer::websocket::{Acceptor, WsMessage};
use stream_multiplexer::{
    Clock, ControlMessage, DisconnectReason, HalvesStream, IncomingPacket, Multiplexer,
    MultiplexerBuilder, MultiplexerError, OutgoingMessage, OutgoingPacket, Stats, StreamId,
};

/// A safety net, never a synchronisation: every wait ends on an event long
/// before this.
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
            // The scenario panicked: report its panic.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario did not finish within {SAFETY_TIMEOUT:?}")
        }
    }
}

type Incoming = IncomingPacket<io::Result<WsMessage>>;

/// A multiplexer serving WebSocket clients on loopback, in this process.
struct Server {
    address: SocketAddr,
    lobby: mpsc::Receiver<Incoming>,
    outgoing: mpsc::Sender<OutgoingPacket<WsMessage>>,
    control: mpsc::UnboundedSender<ControlMessage>,
    /// Each value is one tick of the acceptor's clock.
    ticks: mpsc::UnboundedSender<()>,
    stats: Stats,
    task: smol::Task<Result<(), MultiplexerError>>,
}

impl Server {
    async fn start(acceptor: Acceptor) -> Self {
        Self::start_with(acceptor, MultiplexerBuilder::new(64)).await
    }

    /// A server whose multiplexer has a write timeout, on a clock ticked
    /// through the returned sender.
    async fn start_with_write_timeout(
        acceptor: Acceptor,
        write_timeout: Duration,
    ) -> (Self, mpsc::UnboundedSender<()>) {
        let (ticks, tick_rx) = mpsc::unbounded();
        let builder = MultiplexerBuilder::new(64)
            .clock(Clock::new(TICK, tick_rx))
            .write_timeout(write_timeout);
        (Self::start_with(acceptor, builder).await, ticks)
    }

    async fn start_with(acceptor: Acceptor, builder: MultiplexerBuilder) -> Self {
        let (channel0, lobby) = mpsc::channel(64);
        let (outgoing, outgoing_rx) = mpsc::channel(64);
        let multiplexer = builder.build(outgoing_rx, vec![channel0]);
        let stats = multiplexer.stats();
        let listener = async_net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address");
        let (ticks, tick_rx) = mpsc::unbounded();
        let halves = acceptor.accept(incoming(listener), Clock::new(TICK, tick_rx));
        let (control, control_rx) = mpsc::unbounded();
        let task = smol::spawn(multiplexer.run(halves, control_rx));
        Self {
            address,
            lobby,
            outgoing,
            control,
            ticks,
            stats,
            task,
        }
    }

    /// The next packet of channel 0.
    async fn next(&mut self) -> Incoming {
        self.lobby.next().await.expect("the lobby is open")
    }

    /// The id of the next stream to connect.
    async fn connected(&mut self) -> StreamId {
        match self.next().await {
            IncomingPacket::StreamConnected(id) => id,
            other => panic!("expected a connection, got {other:?}"),
        }
    }

    /// The next message, which must come from `id`.
    async fn message_from(&mut self, id: StreamId) -> io::Result<WsMessage> {
        match self.next().await {
            IncomingPacket::Message(message) if message.stream_id == id => message.value,
            other => panic!("expected a message from {id}, got {other:?}"),
        }
    }

    /// Why `id` left: it must be the next packet.
    async fn disconnected(&mut self, id: StreamId) -> DisconnectReason {
        match self.next().await {
            IncomingPacket::StreamDisconnected(left, reason) if left == id => reason,
            other => panic!("expected {id} to leave, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: OutgoingPacket<WsMessage>) {
        self.outgoing
            .send(packet)
            .await
            .expect("the multiplexer runs");
    }

    async fn tick(&self, ticks: usize) {
        for _ in 0..ticks {
            self.ticks.unbounded_send(()).expect("the acceptor's clock");
        }
    }

    /// Shuts the multiplexer down gracefully, reading what the lobby still
    /// gets meanwhile (the multiplexer hands every announcement over
    /// before it ends).
    async fn shut_down(self) {
        let drain = smol::spawn(self.lobby.for_each(|_| async {}));
        self.control
            .unbounded_send(ControlMessage::Shutdown)
            .expect("the multiplexer runs");
        self.task.await.expect("a clean shutdown");
        drain.await;
    }
}

type Client = WebSocketStream<TcpStream>;

async fn connect(address: SocketAddr) -> Client {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let (client, _response) = async_tungstenite::client_async(format!("ws://{address}/"), tcp)
        .await
        .expect("the WebSocket handshake");
    client
}

/// A client that has connected and that the server has seen connect.
async fn connect_seen(server: &mut Server) -> (Client, StreamId) {
    let client = connect(server.address).await;
    let id = server.connected().await;
    (client, id)
}

/// The next message the client receives.
async fn receive(client: &mut Client) -> Message {
    client
        .next()
        .await
        .expect("the connection is open")
        .expect("a message")
}

/// The code of the close frame the client receives next.
async fn close_code(client: &mut Client) -> CloseCode {
    match client.next().await {
        Some(Ok(Message::Close(Some(frame)))) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Sends a message and waits until the server delivered it, to show that
/// the client is served.
async fn round_trip(server: &mut Server, client: &mut Client, id: StreamId, text: &'static str) {
    client.send(Message::text(text)).await.expect("send");
    let received = server.message_from(id).await.expect("a message");
    assert_eq!(received, WsMessage::from(text));
}

#[test]
fn text_and_binary_messages_reach_the_channel_as_such_and_replies_reach_the_client() {
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut client, id) = connect_seen(&mut server).await;

        client.send(Message::text("hello")).await.unwrap();
        client
            .send(Message::binary(vec![0, 159, 146, 150]))
            .await
            .unwrap();
        let text = server.message_from(id).await.unwrap();
        let binary = server.message_from(id).await.unwrap();
        assert_eq!(text.as_text(), Some("hello"));
        assert!(binary.is_binary());
        assert_eq!(binary.as_bytes(), &[0, 159, 146, 150]);

        // To the id, then to a room it joined.
        let reply = OutgoingMessage::new([id], [WsMessage::from("to you")]);
        server.send(OutgoingPacket::Message(reply)).await;
        assert_eq!(receive(&mut client).await, Message::text("to you"));

        server
            .send(OutgoingPacket::Join(vec![id], "room".into()))
            .await;
        let to_room = OutgoingMessage::to_room("room", [WsMessage::binary(vec![1, 2])]);
        server.send(OutgoingPacket::Message(to_room)).await;
        assert_eq!(receive(&mut client).await, Message::binary(vec![1, 2]));

        server.send(OutgoingPacket::Shutdown(vec![id])).await;
        assert_eq!(close_code(&mut client).await, CloseCode::Normal);
        assert!(client.next().await.is_none());
        server.shut_down().await;
    });
}

#[test]
fn a_ping_is_answered_while_the_server_sends_nothing() {
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut client, id) = connect_seen(&mut server).await;

        client
            .send(Message::Ping(Bytes::from("are you there")))
            .await
            .unwrap();
        assert_eq!(
            receive(&mut client).await,
            Message::Pong(Bytes::from("are you there"))
        );

        // The ping was no message for the application.
        round_trip(&mut server, &mut client, id, "after the ping").await;
        drop(client);
        server.shut_down().await;
    });
}

#[test]
fn shutdown_sends_a_close_frame_and_completes_the_close_handshake() {
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut client, id) = connect_seen(&mut server).await;

        let last = OutgoingMessage::new([id], [WsMessage::from("bye")]);
        server.send(OutgoingPacket::Message(last)).await;
        server.send(OutgoingPacket::Shutdown(vec![id])).await;

        assert_eq!(receive(&mut client).await, Message::text("bye"));
        assert_eq!(close_code(&mut client).await, CloseCode::Normal);
        // The client's next read sends its close reply; the connection then
        // ends without error: the server closed it after the reply, as the
        // close handshake says.
        assert!(client.next().await.is_none());
        assert_eq!(server.disconnected(id).await, DisconnectReason::Shutdown);
        server.shut_down().await;
    });
}

#[test]
fn a_client_that_closes_leaves_and_gets_the_close_reply() {
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut client, id) = connect_seen(&mut server).await;

        client.close(None).await.unwrap();
        assert!(matches!(receive(&mut client).await, Message::Close(_)));
        assert_eq!(server.disconnected(id).await, DisconnectReason::Linkdead);
        server.shut_down().await;
        assert!(client.next().await.is_none());
    });
}

#[test]
fn a_client_that_never_answers_the_close_is_dropped_at_the_write_timeout() {
    run(|| async {
        let (mut server, multiplexer_ticks) =
            Server::start_with_write_timeout(Acceptor::new(), 3 * TICK).await;
        // A bare client: it completes the upgrade and sends one message,
        // then reads bytes but never answers a close frame.
        let address = server.address;
        let mut bare = smol::unblock(move || bare_client(address)).await;
        let id = server.connected().await;
        assert_eq!(
            server.message_from(id).await.unwrap(),
            WsMessage::from("hi")
        );

        server.send(OutgoingPacket::Shutdown(vec![id])).await;
        assert_eq!(server.disconnected(id).await, DisconnectReason::Shutdown);
        let (mut bare, close) = smol::unblock(move || {
            let mut close = [0u8; 4];
            bare.read_exact(&mut close).unwrap();
            (bare, close)
        })
        .await;
        assert_eq!(close, [0x88, 0x02, 0x03, 0xe8], "a close frame, code 1000");
        bare.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            bare.read(&mut byte).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "the server waits for the close reply"
        );
        bare.set_nonblocking(false).unwrap();

        // The server waits for the reply, as long as the write timeout lets
        // it: past it, the connection is dropped.
        for _ in 0..4 {
            multiplexer_ticks.unbounded_send(()).unwrap();
        }
        let end = smol::unblock(move || {
            let mut byte = [0u8; 1];
            bare.read(&mut byte)
        })
        .await;
        match end {
            Ok(0) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection closed, got {other:?}"),
        }
        server.shut_down().await;
    });
}

/// Writes `request` on a plain socket and reads the whole answer, until the
/// server closes the connection.
fn answer_to(address: SocketAddr, request: &[u8]) -> String {
    let mut socket = StdTcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
    socket.write_all(request).unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_request_that_is_not_an_upgrade_gets_an_http_error_and_is_closed() {
    run(|| async {
        let server = Server::start(Acceptor::new()).await;
        let address = server.address;
        let answers = smol::unblock(move || {
            [
                answer_to(address, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                answer_to(address, b"HELLO\r\n\r\n"),
            ]
        })
        .await;
        assert!(
            answers[0].starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{:?}",
            answers[0]
        );
        assert!(answers[0].contains("Upgrade: websocket\r\n"));
        assert!(
            answers[1].starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}",
            answers[1]
        );

        // Both are failed accepts, and the server goes on.
        let mut server = server;
        let (mut client, id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut client, id, "still serving").await;
        assert_eq!(server.stats.snapshot().accept_errors, 2);
        drop(client);
        server.shut_down().await;
    });
}

#[test]
fn a_trickled_handshake_delays_nobody_and_is_dropped_at_its_deadline() {
    run(|| async {
        let acceptor = Acceptor::new().handshake_timeout(3 * TICK);
        let mut server = Server::start(acceptor).await;

        // Connects first, and sends a part of its upgrade request only.
        let mut trickler = StdTcpStream::connect(server.address).unwrap();
        trickler.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();

        // Connects second and is served: the listener took the trickler
        // first, whose handshake is in flight since, and held up nobody.
        let (mut client, id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut client, id, "served").await;

        // Two ticks of three: a client that connects after them is accepted
        // in a poll that counted them, and the trickler is still there.
        server.tick(2).await;
        let (mut second, second_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut second, second_id, "also served").await;
        trickler.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let still_open = trickler.read(&mut byte);
        assert_eq!(
            still_open.map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "the trickler is not dropped before its deadline"
        );

        // The third tick: its deadline. It is closed.
        server.tick(1).await;
        trickler.set_nonblocking(false).unwrap();
        trickler.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
        let closed = smol::unblock(move || trickler.read(&mut byte)).await;
        match closed {
            Ok(0) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the trickler closed, got {other:?}"),
        }

        // Counted as a failed accept (by the time another message is served).
        round_trip(&mut server, &mut client, id, "after the deadline").await;
        assert_eq!(server.stats.snapshot().accept_errors, 1);
        assert_eq!(server.stats.snapshot().accepted, 2);
        drop((client, second));
        server.shut_down().await;
    });
}

#[test]
fn an_oversized_message_gets_close_1009_and_others_go_on() {
    run(|| async {
        let mut server = Server::start(Acceptor::new().max_message_size(1024)).await;
        let (mut big, big_id) = connect_seen(&mut server).await;
        let (mut other, other_id) = connect_seen(&mut server).await;

        // At the limit: delivered.
        big.send(Message::binary(vec![7u8; 1024])).await.unwrap();
        assert_eq!(server.message_from(big_id).await.unwrap().len(), 1024);

        // Over it: an error, then the stream leaves; the client is told why.
        big.send(Message::binary(vec![7u8; 1025])).await.unwrap();
        let error = server.message_from(big_id).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            server.disconnected(big_id).await,
            DisconnectReason::Linkdead
        );
        assert_eq!(close_code(&mut big).await, CloseCode::Size);

        round_trip(&mut server, &mut other, other_id, "unaffected").await;
        drop(other);
        server.shut_down().await;
    });
}

#[test]
fn invalid_utf8_in_a_text_frame_ends_that_connection() {
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut bad, bad_id) = connect_seen(&mut server).await;
        let (mut other, other_id) = connect_seen(&mut server).await;

        // A text frame whose payload is not UTF-8: no client API makes one,
        // so it is sent as a raw frame.
        let frame = Frame::message(
            Bytes::from_static(&[0xc3, 0x28]),
            OpCode::Data(Data::Text),
            true,
        );
        bad.send(Message::Frame(frame)).await.unwrap();

        let error = server.message_from(bad_id).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            server.disconnected(bad_id).await,
            DisconnectReason::Linkdead
        );
        assert_eq!(close_code(&mut bad).await, CloseCode::Invalid);

        round_trip(&mut server, &mut other, other_id, "unaffected").await;
        drop(other);
        server.shut_down().await;
    });
}

#[test]
fn tcp_and_websocket_clients_share_one_multiplexer() {
    run(|| async {
        let tcp_listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_listener = async_net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tcp_address, ws_address) = (
            tcp_listener.local_addr().unwrap(),
            ws_listener.local_addr().unwrap(),
        );

        // Both transports' halves in one stream: `Either` is a sink and a
        // stream when both sides are. Values are `Bytes`, which both
        // writers take; length-delimited frames read are binary messages.
        let tcp = HalvesStream::new(incoming(tcp_listener), 2).map_ok(|(write, read)| {
            let read = read.map_ok(WsMessage::Binary as fn(Bytes) -> WsMessage);
            (Either::Left(write), Either::Left(read))
        });
        let (_ticks, tick_rx) = mpsc::unbounded::<()>();
        let ws = Acceptor::new()
            .accept(incoming(ws_listener), Clock::new(TICK, tick_rx))
            .map_ok(|(write, read)| (Either::Right(write), Either::Right(read)));
        let halves = futures::stream::select(tcp, ws);

        let (channel0, mut lobby) = mpsc::channel::<Incoming>(64);
        let (mut outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(64);
        let multiplexer = Multiplexer::new(64, outgoing_rx, vec![channel0]);
        let (control, control_rx) = mpsc::unbounded();
        let server = smol::spawn(multiplexer.run(halves, control_rx));

        let mut tcp_client = TcpStream::connect(tcp_address).await.unwrap();
        let tcp_id = match lobby.next().await {
            Some(IncomingPacket::StreamConnected(id)) => id,
            other => panic!("expected the TCP client, got {other:?}"),
        };
        let mut ws_client = connect(ws_address).await;
        let ws_id = match lobby.next().await {
            Some(IncomingPacket::StreamConnected(id)) => id,
            other => panic!("expected the WebSocket client, got {other:?}"),
        };

        tcp_client.write_all(b"\x00\x03tcp").await.unwrap();
        ws_client.send(Message::text("ws")).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            match lobby.next().await {
                Some(IncomingPacket::Message(message)) => {
                    seen.push((message.stream_id, message.value.unwrap()));
                }
                other => panic!("expected a message, got {other:?}"),
            }
        }
        seen.sort_by_key(|(id, _)| *id);
        let mut expected = vec![
            (tcp_id, WsMessage::binary(&b"tcp"[..])),
            (ws_id, WsMessage::from("ws")),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(seen, expected);

        // One room, both transports.
        outgoing
            .send(OutgoingPacket::Join(vec![tcp_id, ws_id], "everyone".into()))
            .await
            .unwrap();
        let hello = OutgoingMessage::to_room("everyone", [Bytes::from("hi all")]);
        outgoing.send(OutgoingPacket::Message(hello)).await.unwrap();
        let mut frame = [0u8; 8];
        tcp_client.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x00\x06hi all");
        assert_eq!(
            receive(&mut ws_client).await,
            Message::binary(&b"hi all"[..])
        );

        outgoing
            .send(OutgoingPacket::Shutdown(vec![tcp_id, ws_id]))
            .await
            .unwrap();
        assert_eq!(close_code(&mut ws_client).await, CloseCode::Normal);
        assert!(ws_client.next().await.is_none());
        let mut rest = Vec::new();
        tcp_client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        control.unbounded_send(ControlMessage::Shutdown).unwrap();
        server.await.unwrap();
    });
}

/// How much memory the process holds, in bytes (Linux).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// A masked client text frame, written by hand: the measurement's clients
/// must hold no memory of their own in this process.
fn masked_text(text: &[u8]) -> Vec<u8> {
    assert!(text.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Connects a bare client: the upgrade request, the 101 response, one text
/// message sent.
fn bare_client(address: SocketAddr) -> StdTcpStream {
    let mut socket = StdTcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
    socket
        .write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"));
    socket.write_all(&masked_text(b"hi")).unwrap();
    socket
}

/// What an idle WebSocket connection costs the server: the growth of the
/// process's resident memory over many idle connections that each sent a
/// message and were sent one, per connection. Run alone, with descriptors
/// to spare (`ulimit -n 8192`):
/// `cargo test --release --all-features --test websocket -- --ignored --nocapture idle`
#[test]
#[ignore = "a measurement: run alone, with `ulimit -n` above 2 * CONNECTIONS"]
fn idle_websocket_connections_cost_at_most_4_kib_each() {
    const CONNECTIONS: usize = 2_000;
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        // Warm up: the first connections allocate what every later one
        // shares (the executor's, the allocator's own structures).
        let (mut warm, warm_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut warm, warm_id, "warm").await;

        let before = resident_bytes();
        let address = server.address;
        let (sockets_tx, sockets_rx) = std_mpsc::channel();
        let clients = std::thread::spawn(move || {
            let sockets: Vec<_> = (0..CONNECTIONS).map(|_| bare_client(address)).collect();
            sockets_tx.send(sockets).unwrap();
        });
        let mut ids = Vec::with_capacity(CONNECTIONS);
        let mut messages = 0;
        while ids.len() < CONNECTIONS || messages < CONNECTIONS {
            match server.next().await {
                IncomingPacket::StreamConnected(id) => ids.push(id),
                IncomingPacket::Message(_) => messages += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let reply = OutgoingMessage::new(ids.iter().copied(), [WsMessage::from("ok")]);
        server.send(OutgoingPacket::Message(reply)).await;
        let mut sockets = smol::unblock(move || sockets_rx.recv().unwrap()).await;
        clients.join().unwrap();
        sockets = smol::unblock(move || {
            for socket in &mut sockets {
                let mut frame = [0u8; 4];
                socket.read_exact(&mut frame).unwrap();
                assert_eq!(&frame, b"\x81\x02ok");
            }
            sockets
        })
        .await;
        // Every connection has been written to and flushed; the last
        // message delivered shows the server has polled since.
        round_trip(&mut server, &mut warm, warm_id, "settled").await;

        let after = resident_bytes();
        let per_connection = after.saturating_sub(before) / CONNECTIONS;
        println!(
            "{CONNECTIONS} idle WebSocket connections: {} KiB more resident, {per_connection} bytes each",
            (after.saturating_sub(before)) / 1024
        );
        assert!(
            per_connection <= 4096,
            "{per_connection} bytes per idle connection"
        );
        drop((sockets, warm));
        server.shut_down().await;
    });
}
