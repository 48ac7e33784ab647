//! Rooms across nodes through a real Redis: several multiplexers in this
//! process, each with its own listener, backplane and TCP clients, and a
//! `redis-server` that each test starts on a free port (persistence off)
//! and kills when it is done.
//!
//! Nothing sleeps to synchronise: every wait is on an event (a frame read
//! by a client, a backplane event, an id announced by a multiplexer), with
//! [`SAFETY_TIMEOUT`] as a safety net only; `redis-server` is ready when it
//! says so on its output (`tcp::redis_server`).
//!
//! Needs `redis-server` on the `PATH`.

#![cfg(all(feature = "redis", feature = "smol"))]

mod tcp;

use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{Sink, Stream, StreamExt, TryStreamExt};
use stream_multiplexer::backplane::{
    Backplane, BackplaneConfig, BackplaneEvent, BackplaneStats, BackplaneStatsSnapshot, Connector,
    LinkKind, RawCodec, Rejection,
};
use stream_multiplexer::{
    Clock, ControlMessage, HalvesStream, IncomingPacket, Multiplexer, OutgoingMessage,
    OutgoingPacket, StreamId, runtime,
};

/// A safety net, never a synchronisation: every wait ends on an event long
/// before this.
use tcp::redis_server::RedisServer;

const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);

/// The backplanes' clock period: the unit of their backoff and timeouts.
const TICK: Duration = Duration::from_millis(20);

/// Every room's channel starts with this.
const PREFIX: &str = "test:room:";

// ---------------------------------------------------------------- scenarios

/// Each node's application sends to a room, leaving out its first member
/// (the "sender"); each member on every node gets every message once, in
/// each node's order, except the sender its own node's; a client in no
/// room gets nothing.
fn every_member_on_every_node_gets_each_room_message_once(executors: &[Executor]) {
    const MESSAGES: usize = 20;
    let node_count = executors.len();
    let redis = RedisServer::start();
    let nodes: Vec<Node> = executors
        .iter()
        .map(|&executor| {
            Node::start(
                &redis,
                NodeSetup {
                    executor,
                    ..NodeSetup::default()
                },
            )
        })
        .collect();

    let mut members = Vec::new();
    let mut senders = Vec::new();
    let mut outsiders = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let (first, first_id) = node.connect();
        let (second, second_id) = node.connect();
        outsiders.push(node.connect());
        node.join(vec![first_id, second_id], "r");
        node.wait_for(&[Event::Subscribed("r".into())]);
        senders.push(first_id);
        members.push(Member {
            client: first,
            node: index,
            is_sender: true,
        });
        members.push(Member {
            client: second,
            node: index,
            is_sender: false,
        });
    }

    for k in 0..MESSAGES {
        for (index, node) in nodes.iter().enumerate() {
            node.to_room("r", &format!("{index}:{k}"), Some(senders[index]));
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        node.to_room("r", &format!("{index}:end"), None);
    }

    for member in &mut members {
        // Each node's end comes after all its messages, on every node.
        let mut received = Vec::new();
        let mut ends = 0;
        while ends < node_count {
            let text = member.client.recv_text();
            if text.ends_with(":end") {
                ends += 1;
            } else {
                received.push(text);
            }
        }
        let mut expected_total = 0;
        for origin in 0..node_count {
            let from_origin: Vec<&String> = received
                .iter()
                .filter(|text| text.starts_with(&format!("{origin}:")))
                .collect();
            let expected: Vec<String> = if member.is_sender && origin == member.node {
                Vec::new()
            } else {
                (0..MESSAGES).map(|k| format!("{origin}:{k}")).collect()
            };
            expected_total += expected.len();
            assert_eq!(
                from_origin,
                expected.iter().collect::<Vec<_>>(),
                "member on node {} (sender: {}), from node {origin}",
                member.node,
                member.is_sender
            );
        }
        assert_eq!(
            received.len(),
            expected_total,
            "nothing else, nothing twice"
        );
    }

    for (node, (mut outsider, outsider_id)) in nodes.iter().zip(outsiders) {
        node.to_ids(vec![outsider_id], "direct");
        assert_eq!(outsider.recv_text(), "direct", "no room message before it");
    }

    let sent = MESSAGES as u64 + 1;
    for node in nodes {
        let stats = node.stop();
        assert_eq!(stats.offered, sent);
        assert_eq!(stats.published, sent);
        assert_eq!(stats.publish_failed + stats.publish_dropped, 0);
        assert_eq!(stats.received, (node_count as u64 - 1) * sent);
        assert_eq!(stats.rejected, 0);
        assert_eq!(stats.unaccounted(), 0);
    }
}

#[test]
fn two_nodes_every_member_gets_each_room_message_once() {
    within_safety_timeout(|| {
        every_member_on_every_node_gets_each_room_message_once(&[Executor::Smol, Executor::Smol]);
    });
}

/// Three nodes, each on another runtime when their features are on: the
/// backplane runs on each runtime's own sockets and timer.
#[test]
fn three_nodes_every_member_gets_each_room_message_once() {
    #[cfg(all(feature = "tokio", feature = "async-std"))]
    let executors = [Executor::Smol, Executor::Tokio, Executor::AsyncStd];
    #[cfg(not(all(feature = "tokio", feature = "async-std")))]
    let executors = [Executor::Smol; 3];
    within_safety_timeout(move || {
        every_member_on_every_node_gets_each_room_message_once(&executors)
    });
}

/// A member that leaves on one node gets nothing more; when the node's
/// last member leaves, the node unsubscribes and Redis sends it nothing
/// more for that room.
#[test]
fn a_member_that_leaves_stops_receiving_and_the_last_one_unsubscribes() {
    within_safety_timeout(|| {
        let redis = RedisServer::start();
        let a = Node::start(&redis, NodeSetup::default());
        let b = Node::start(&redis, NodeSetup::default());
        let (mut a1, a1_id) = a.connect();
        let (mut b1, b1_id) = b.connect();
        let (mut b2, b2_id) = b.connect();
        a.join(vec![a1_id], "r");
        b.join(vec![b1_id, b2_id], "r");
        b.join(vec![b1_id], "s");
        b.wait_for(&[Event::Subscribed("r".into()), Event::Subscribed("s".into())]);

        a.to_room("r", "one", None);
        for client in [&mut a1, &mut b1, &mut b2] {
            assert_eq!(client.recv_text(), "one");
        }

        // Packets take effect in order: once b2 has "left", it is out.
        b.leave(vec![b2_id], "r");
        b.to_ids(vec![b2_id], "left");
        assert_eq!(b2.recv_text(), "left");
        a.to_room("r", "two", None);
        assert_eq!(a1.recv_text(), "two");
        assert_eq!(b1.recv_text(), "two", "node B had the message");
        b.to_ids(vec![b2_id], "marker");
        assert_eq!(b2.recv_text(), "marker", "nothing for b2 after it left");

        b.leave(vec![b1_id], "r");
        b.wait_for(&[Event::Unsubscribed("r".into())]);
        let received = b.stats.snapshot().received;
        // One publisher, one subscriber: if "three" reached node B, it
        // did before "four".
        a.to_room("r", "three", None);
        a.to_room("s", "four", None);
        assert_eq!(a1.recv_text(), "three");
        assert_eq!(b1.recv_text(), "four");
        assert_eq!(
            b.stats.snapshot().received,
            received + 1,
            "node B no longer hears room r"
        );
        assert_eq!(b.stats.snapshot().subscriptions, 1, "room s only");
    });
}

/// Redis killed mid-test: local delivery goes on, what cannot be queued is
/// counted; once Redis is back, both nodes reconnect, node B subscribes
/// again, and delivery resumes, with nothing delivered twice.
#[test]
fn a_redis_restart_counts_what_was_lost_then_delivery_resumes() {
    within_safety_timeout(|| {
        const QUEUE: usize = 8;
        const DURING: usize = 20;
        let mut redis = RedisServer::start();
        let a = Node::start(
            &redis,
            NodeSetup {
                publish_queue: QUEUE,
                ..NodeSetup::default()
            },
        );
        let b = Node::start(&redis, NodeSetup::default());
        let (mut a1, a1_id) = a.connect();
        let (mut b1, b1_id) = b.connect();
        a.join(vec![a1_id], "r");
        b.join(vec![b1_id], "r");
        for node in [&a, &b] {
            node.wait_for(&up_in_room("r"));
        }

        a.to_room("r", "before", None);
        assert_eq!(a1.recv_text(), "before");
        assert_eq!(b1.recv_text(), "before");

        redis.kill();
        for node in [&a, &b] {
            node.wait_for(&[
                Event::Lost(LinkKind::Publisher),
                Event::Lost(LinkKind::Subscriber),
            ]);
        }

        for k in 0..DURING {
            a.to_room("r", &format!("during:{k}"), None);
        }
        for k in 0..DURING {
            assert_eq!(
                a1.recv_text(),
                format!("during:{k}"),
                "local delivery goes on"
            );
        }
        let stats = a.stats.snapshot();
        assert_eq!(stats.offered, 1 + DURING as u64);
        assert_eq!(stats.queued, QUEUE as u64);
        assert_eq!(stats.queue_peak, QUEUE as u64);
        assert_eq!(stats.publish_dropped, (DURING - QUEUE) as u64);

        redis.restart();
        for node in [&a, &b] {
            node.wait_for(&up_in_room("r"));
        }
        a.to_room("r", "after", None);
        assert_eq!(a1.recv_text(), "after");

        // The queued ones reach b1 if node B subscribed again before node
        // A published them (pub/sub keeps nothing for a node not yet
        // listening); never twice, never out of order.
        let mut late = Vec::new();
        loop {
            let text = b1.recv_text();
            if text == "after" {
                break;
            }
            late.push(text);
        }
        let queued: Vec<String> = (0..QUEUE).map(|k| format!("during:{k}")).collect();
        let mut rest = queued.iter();
        for text in &late {
            assert!(
                rest.any(|q| q == text),
                "{text} unexpected, or out of order, in {late:?}"
            );
        }

        let a_stats = a.stop();
        let b_stats = b.stop();
        assert_eq!(a_stats.offered, 2 + DURING as u64);
        assert_eq!(a_stats.unaccounted(), 0);
        assert_eq!(a_stats.publish_dropped, (DURING - QUEUE) as u64);
        // "before" reached node B, but its confirmation may have been lost
        // with the connection: then it counts as failed, never twice.
        assert_eq!(
            a_stats.published + a_stats.publish_failed,
            2 + QUEUE as u64,
            "the queue waited for Redis: {a_stats:?}"
        );
        assert!(a_stats.publish_failed <= 1, "{a_stats:?}");
        for stats in [a_stats, b_stats] {
            assert!(stats.disconnects >= 2, "both connections lost: {stats:?}");
            assert!(stats.reconnects >= 2, "both connections back: {stats:?}");
        }
    });
}

/// A flood of room messages while Redis is down: the local member gets
/// every one, the queue never holds more than its bound, and the rest is
/// counted as dropped.
#[test]
fn a_flood_while_redis_is_down_stays_within_the_queue_and_is_counted() {
    within_safety_timeout(|| {
        const QUEUE: usize = 64;
        const FLOOD: usize = 10_000;
        let mut redis = RedisServer::start();
        let a = Node::start(
            &redis,
            NodeSetup {
                publish_queue: QUEUE,
                ..NodeSetup::default()
            },
        );
        let (mut a1, a1_id) = a.connect();
        a.join(vec![a1_id], "r");
        a.wait_until_up();

        redis.kill();
        a.wait_for(&[Event::Lost(LinkKind::Publisher)]);
        let reader = thread::spawn(move || {
            for k in 0..FLOOD {
                assert_eq!(a1.recv_text(), format!("flood:{k}"));
            }
        });
        for k in 0..FLOOD {
            a.to_room("r", &format!("flood:{k}"), None);
        }
        reader
            .join()
            .expect("the local member got the whole flood, in order");

        let stats = a.stats.snapshot();
        assert_eq!(stats.offered, FLOOD as u64);
        assert_eq!(stats.queue_peak, QUEUE as u64, "never more than the bound");
        assert_eq!(stats.queued, QUEUE as u64);
        assert_eq!(stats.publish_dropped, (FLOOD - QUEUE) as u64);
        assert_eq!(stats.unaccounted(), 0);

        redis.restart();
        a.wait_for(&[Event::Connected(LinkKind::Publisher)]);
        let stats = a.stop();
        assert_eq!(
            stats.published, QUEUE as u64,
            "what was queued, once Redis was back"
        );
        assert_eq!(stats.unaccounted(), 0);
    });
}

/// What others publish on a room's channel is checked: garbage, another
/// version, a cut envelope, an envelope for another room are rejected and
/// counted; a well-formed envelope of the documented layout is delivered,
/// and the node goes on.
#[test]
fn corrupt_and_foreign_envelopes_are_rejected_and_counted() {
    within_safety_timeout(|| {
        let redis = RedisServer::start();
        let a = Node::start(&redis, NodeSetup::default());
        let b = Node::start(&redis, NodeSetup::default());
        let (mut b1, b1_id) = b.connect();
        b.join(vec![b1_id], "r");
        b.wait_for(&[Event::Subscribed("r".into())]);
        let channel = format!("{PREFIX}r");

        let mut other_version = envelope(99, "r", b"hi");
        other_version[3] = 2;
        let rejected = [
            (b"not an envelope".to_vec(), Rejection::NotAnEnvelope),
            (other_version, Rejection::Version(2)),
            (
                envelope(99, "r", b"hi")[..10].to_vec(),
                Rejection::Malformed,
            ),
            (envelope(99, "other", b"hi"), Rejection::WrongRoom),
        ];
        for (payload, rejection) in &rejected {
            assert_eq!(redis.publish(&channel, payload), 1, "node B listens");
            b.wait_for(&[Event::Rejected(*rejection)]);
        }
        assert_eq!(b.stats.snapshot().rejected, rejected.len() as u64);

        redis.publish(&channel, &envelope(99, "r", b"by hand"));
        assert_eq!(
            b1.recv_text(),
            "by hand",
            "the documented layout is accepted"
        );
        a.to_room("r", "still works", None);
        assert_eq!(b1.recv_text(), "still works");
        let stats = b.stop();
        assert_eq!((stats.received, stats.rejected), (2, rejected.len() as u64));
    });
}

/// The envelope of one reliable value from node `origin` to `room`, by the
/// layout in the backplane's docs.
fn envelope(origin: u64, room: &str, value: &[u8]) -> Vec<u8> {
    let mut payload = b"smx\x01".to_vec();
    payload.extend_from_slice(&origin.to_be_bytes());
    payload.extend_from_slice(&u16::try_from(room.len()).expect("short").to_be_bytes());
    payload.extend_from_slice(room.as_bytes());
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(&1u32.to_be_bytes());
    payload.extend_from_slice(&u32::try_from(value.len()).expect("short").to_be_bytes());
    payload.extend_from_slice(value);
    payload
}

// ---------------------------------------------------------------- helpers

/// Runs a scenario on its own thread and fails if it does not finish within
/// the safety timeout, so that a hang cannot block CI.
fn within_safety_timeout(scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std_mpsc::channel();
    let worker = thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(SAFETY_TIMEOUT * 3) {
        Ok(()) => worker.join().expect("scenario panicked"),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => panic!("the scenario hung"),
    }
}

/// What a test watches for, from a backplane's events.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Connected(LinkKind),
    Lost(LinkKind),
    Subscribed(String),
    Unsubscribed(String),
    Rejected(Rejection),
}

impl Event {
    fn of(event: &BackplaneEvent) -> Option<Self> {
        Some(match event {
            BackplaneEvent::Connected(link) => Self::Connected(*link),
            BackplaneEvent::Disconnected(link, _) => Self::Lost(*link),
            BackplaneEvent::Subscribed(room) => Self::Subscribed(room.to_string()),
            BackplaneEvent::Unsubscribed(room) => Self::Unsubscribed(room.to_string()),
            BackplaneEvent::Rejected(rejection) => Self::Rejected(*rejection),
            _ => return None,
        })
    }
}

/// How a node is built.
struct NodeSetup {
    executor: Executor,
    publish_queue: usize,
}

impl Default for NodeSetup {
    fn default() -> Self {
        Self {
            executor: Executor::Smol,
            publish_queue: 1024,
        }
    }
}

/// A connection's write half, boxed, so that every executor's node has
/// the same types.
type BoxWrite = Pin<Box<dyn Sink<Bytes, Error = io::Error> + Send>>;
/// A connection's read half, boxed.
type BoxRead = BoxStream<'static, io::Result<Bytes>>;
/// The halves of every accepted connection, boxed.
type BoxHalves = BoxStream<'static, io::Result<(BoxWrite, BoxRead)>>;

/// The executor a node runs on, with its runtime's listener, clock and
/// connection to Redis.
#[derive(Debug, Clone, Copy)]
enum Executor {
    Smol,
    #[cfg(feature = "async-std")]
    AsyncStd,
    #[cfg(feature = "tokio")]
    Tokio,
}

impl Executor {
    /// Runs `future` to its end on this executor, on the calling thread.
    fn block_on(self, future: impl Future<Output = ()>) {
        match self {
            Self::Smol => smol::block_on(future),
            #[cfg(feature = "async-std")]
            Self::AsyncStd => async_std::task::block_on(future),
            #[cfg(feature = "tokio")]
            Self::Tokio => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(future),
        }
    }

    /// A loopback listener through the runtime's adapter, framed with
    /// 2-byte lengths. Called on the executor.
    async fn listen(self) -> (SocketAddr, BoxHalves) {
        match self {
            Self::Smol => {
                let listener = async_net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let address = listener.local_addr().expect("address");
                (
                    address,
                    boxed(HalvesStream::new(runtime::smol::incoming(listener), 2)),
                )
            }
            #[cfg(feature = "async-std")]
            Self::AsyncStd => {
                let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let address = listener.local_addr().expect("address");
                (
                    address,
                    boxed(HalvesStream::new(runtime::async_std::incoming(listener), 2)),
                )
            }
            #[cfg(feature = "tokio")]
            Self::Tokio => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let address = listener.local_addr().expect("address");
                (
                    address,
                    boxed(HalvesStream::new(runtime::tokio::incoming(listener), 2)),
                )
            }
        }
    }

    /// The backplane's clock, on the runtime's timer.
    fn clock(self) -> Clock {
        match self {
            Self::Smol => runtime::smol::clock(TICK),
            #[cfg(feature = "async-std")]
            Self::AsyncStd => runtime::async_std::clock(TICK),
            #[cfg(feature = "tokio")]
            Self::Tokio => runtime::tokio::clock(TICK),
        }
    }

    /// Connections to Redis on the runtime's own sockets.
    fn connector(self, address: String) -> Connector {
        match self {
            Self::Smol => Connector::smol(address),
            #[cfg(feature = "async-std")]
            Self::AsyncStd => Connector::async_std(address),
            #[cfg(feature = "tokio")]
            Self::Tokio => Connector::tokio(address),
        }
    }
}

/// Boxes each connection's halves.
fn boxed<H, W, R>(halves: H) -> BoxHalves
where
    H: Stream<Item = io::Result<(W, R)>> + Send + 'static,
    W: Sink<Bytes, Error = io::Error> + Send + 'static,
    R: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    halves
        .map_ok(|(write, read)| {
            let write: BoxWrite = Box::pin(write);
            let read: BoxRead = read.boxed();
            (write, read)
        })
        .boxed()
}

/// One node: a multiplexer on its own listener with a backplane, served on
/// a thread of its own; the test thread is its application.
struct Node {
    address: SocketAddr,
    app: mpsc::UnboundedSender<OutgoingPacket<Bytes>>,
    control: mpsc::UnboundedSender<ControlMessage>,
    /// The ids of new streams, as the lobby announces them.
    connected: std_mpsc::Receiver<StreamId>,
    events: std_mpsc::Receiver<Event>,
    stats: BackplaneStats,
    thread: Option<thread::JoinHandle<()>>,
}

impl Node {
    fn start(redis: &RedisServer, setup: NodeSetup) -> Self {
        let (ready, started) = std_mpsc::channel();
        let (event_tx, events) = std_mpsc::channel();
        let (connected_tx, connected) = std_mpsc::channel();
        let redis_address = redis.address();
        let executor = setup.executor;
        let thread = thread::spawn(move || {
            executor.block_on(async move {
                let (address, halves) = executor.listen().await;
                let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<io::Result<Bytes>>>(64);
                let (app, app_outgoing) = mpsc::unbounded();
                let (control, control_rx) = mpsc::unbounded();
                let config =
                    BackplaneConfig::new(executor.connector(redis_address), executor.clock())
                        .channel_prefix(PREFIX)
                        .publish_queue(setup.publish_queue)
                        .reply_timeout(Duration::from_secs(2))
                        .ping_interval(Duration::from_secs(1))
                        .reconnect_backoff(TICK, TICK * 10)
                        .on_event(move |event| {
                            if let Some(event) = Event::of(event) {
                                let _ = event_tx.send(event);
                            }
                        });
                let (backplane, outgoing) = Backplane::new(config, app_outgoing, RawCodec);
                let multiplexer = Multiplexer::new(1024, outgoing, vec![lobby]);
                let stats = backplane.stats();
                let redis_side = backplane.run(multiplexer.rooms());
                ready
                    .send((address, app, control, stats))
                    .expect("the test waits");
                let announcements = async {
                    while let Some(packet) = lobby_rx.next().await {
                        if let IncomingPacket::StreamConnected(id) = packet {
                            let _ = connected_tx.send(id);
                        }
                    }
                };
                let (result, (), ()) = futures::join!(
                    multiplexer.run(halves, control_rx),
                    redis_side,
                    announcements
                );
                result.expect("the multiplexer ends well");
            });
        });
        let (address, app, control, stats) = started
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("the node starts");
        Self {
            address,
            app,
            control,
            connected,
            events,
            stats,
            thread: Some(thread),
        }
    }

    /// A client of this node, and its stream id.
    fn connect(&self) -> (Client, StreamId) {
        let client = Client::connect(self.address);
        let id = self
            .connected
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("the multiplexer announces the client");
        (client, id)
    }

    fn send(&self, packet: OutgoingPacket<Bytes>) {
        self.app.unbounded_send(packet).expect("the node runs");
    }

    fn join(&self, ids: Vec<StreamId>, room: &str) {
        self.send(OutgoingPacket::Join(ids, room.into()));
    }

    fn leave(&self, ids: Vec<StreamId>, room: &str) {
        self.send(OutgoingPacket::Leave(ids, room.into()));
    }

    fn to_room(&self, room: &str, text: &str, except: Option<StreamId>) {
        let mut message = OutgoingMessage::to_room(room, [Bytes::from(text.to_owned())]);
        if let Some(id) = except {
            message = message.except(id);
        }
        self.send(OutgoingPacket::Message(message));
    }

    fn to_ids(&self, ids: Vec<StreamId>, text: &str) {
        self.send(OutgoingPacket::Message(OutgoingMessage::new(
            ids,
            [Bytes::from(text.to_owned())],
        )));
    }

    /// Waits until each of `wanted` has happened, in any order, skipping
    /// the other events.
    #[track_caller]
    fn wait_for(&self, wanted: &[Event]) {
        let deadline = Instant::now() + SAFETY_TIMEOUT;
        let mut missing = wanted.to_vec();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => missing.retain(|w| *w != event),
                Err(error) => panic!("{missing:?} did not happen: {error}"),
            }
        }
    }

    /// Waits until both connections are up.
    #[track_caller]
    fn wait_until_up(&self) {
        self.wait_for(&[
            Event::Connected(LinkKind::Publisher),
            Event::Connected(LinkKind::Subscriber),
        ]);
    }
}

/// Both connections up, and `room` subscribed: events that come in any
/// order, so that they are waited for together.
fn up_in_room(room: &str) -> [Event; 3] {
    [
        Event::Connected(LinkKind::Publisher),
        Event::Connected(LinkKind::Subscriber),
        Event::Subscribed(room.into()),
    ]
}

impl Node {
    /// Shuts the node down, waits until its multiplexer and backplane have
    /// finished, and returns the backplane's final counts.
    fn stop(mut self) -> BackplaneStatsSnapshot {
        self.shut_down();
        self.stats.snapshot()
    }

    fn shut_down(&mut self) {
        let _ = self.control.unbounded_send(ControlMessage::Shutdown);
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
            && !thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A room member in the delivery scenario.
struct Member {
    client: Client,
    node: usize,
    /// Whether the node's own messages leave it out.
    is_sender: bool,
}

/// A blocking client speaking 2-byte length-delimited frames.
struct Client {
    stream: TcpStream,
}

impl Client {
    fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(SAFETY_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream }
    }

    /// The next frame, as text.
    #[track_caller]
    fn recv_text(&mut self) -> String {
        let mut length = [0; 2];
        self.stream.read_exact(&mut length).expect("a frame comes");
        let mut payload = vec![0; usize::from(u16::from_be_bytes(length))];
        self.stream.read_exact(&mut payload).expect("a whole frame");
        String::from_utf8(payload).expect("text")
    }
}
