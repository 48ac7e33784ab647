//! The multiplexer served in this process on a runtime under test, and the
//! application driving it from the test thread.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use stream_multiplexer::{
    Clock, ControlMessage, DisconnectReason, IncomingMessage, IncomingPacket, MultiplexerBuilder,
    MultiplexerError, OutgoingMessage, OutgoingPacket, Stats, StreamId,
};

use super::SAFETY_TIMEOUT;
use super::client::Client;
use super::framing::Framing;
use super::runtime::Runtime;

/// A packet as the consumer receives it.
pub type Packet = IncomingPacket<io::Result<Bytes>>;

/// The channel every new stream is announced on.
pub const LOBBY: usize = 0;

/// The period of the clock a server with [`TimeLimits`] counts: one
/// [`Server::tick`] is one second passing.
pub const TICK: Duration = Duration::from_secs(1);

/// How to build the multiplexer under test.
pub struct ServerSetup {
    /// The capacity of each channel's queue to the consumer.
    pub channels: Vec<usize>,
    /// The multiplexer's `sender_buffer_size` (each stream's backlog).
    pub sender_buffer_size: usize,
    /// The multiplexer's `max_streams`.
    pub max_streams: usize,
    /// Width of each frame's length field, in bytes.
    pub width: usize,
    /// The multiplexer's time limits, on a clock the test ticks by hand
    /// ([`Server::tick`]); `None` (the default) for no clock at all.
    pub time_limits: Option<TimeLimits>,
}

impl Default for ServerSetup {
    fn default() -> Self {
        Self {
            channels: vec![32, 32, 32],
            sender_buffer_size: 128,
            max_streams: usize::MAX,
            width: 2,
            time_limits: None,
        }
    }
}

/// The multiplexer's `idle_timeout` and `write_timeout`, counted in
/// [`TICK`]s of a clock the test drives: time passes exactly when the test
/// says so, never while it waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeLimits {
    /// The multiplexer's `idle_timeout` (`None`: no limit).
    pub idle_timeout: Option<Duration>,
    /// The multiplexer's `write_timeout` (`None`: no limit).
    pub write_timeout: Option<Duration>,
}

/// The application's side of a running multiplexer.
pub struct Server {
    /// Where clients connect.
    pub address: SocketAddr,
    /// What its clients speak.
    pub framing: Framing,
    /// Packets to the multiplexer.
    pub outgoing: mpsc::UnboundedSender<OutgoingPacket<Bytes>>,
    /// Control messages to the multiplexer.
    pub control: mpsc::UnboundedSender<ControlMessage>,
    /// Each channel's packets, by channel number.
    pub channels: Vec<mpsc::Receiver<Packet>>,
    /// The multiplexer's stats.
    pub stats: Stats,
    /// What `Run` resolved to, once it has.
    finished: std_mpsc::Receiver<Result<(), MultiplexerError>>,
    /// The ticks of the multiplexer's clock, if it has one.
    ticks: Option<mpsc::UnboundedSender<()>>,
}

impl Server {
    /// Builds a multiplexer as `setup` says and runs it on `runtime`.
    pub fn start(runtime: &dyn Runtime, setup: ServerSetup) -> Self {
        let (address, halves) = runtime.listen(setup.width);
        let (senders, channels): (Vec<_>, Vec<_>) = setup
            .channels
            .iter()
            .map(|&size| mpsc::channel(size))
            .unzip();
        let (outgoing, outgoing_rx) = mpsc::unbounded();
        let (control, control_rx) = mpsc::unbounded();
        let mut builder =
            MultiplexerBuilder::new(setup.sender_buffer_size).max_streams(setup.max_streams);
        let mut ticks = None;
        if let Some(limits) = setup.time_limits {
            let (tick, tick_rx) = mpsc::unbounded();
            ticks = Some(tick);
            builder = builder
                .clock(Clock::new(TICK, tick_rx))
                .idle_timeout(limits.idle_timeout)
                .write_timeout(limits.write_timeout);
        }
        let multiplexer = builder.build(outgoing_rx, senders);
        let stats = multiplexer.stats();
        let run = multiplexer.run(halves, control_rx);
        let (done, finished) = std_mpsc::channel();
        runtime.spawn(
            async move {
                let _ = done.send(run.await);
            }
            .boxed(),
        );
        Self {
            address,
            framing: Framing::LengthDelimited { width: setup.width },
            outgoing,
            control,
            channels,
            stats,
            finished,
            ticks,
        }
    }

    // -- Reading the channels -------------------------------------------

    /// The next packet on `channel` (blocks the test thread).
    pub fn next(&mut self, channel: usize) -> Packet {
        block_on(self.channels[channel].next()).expect("channel ended")
    }

    /// Reads the announcement of a new stream on the lobby.
    #[track_caller]
    pub fn connected(&mut self) -> StreamId {
        match self.next(LOBBY) {
            IncomingPacket::StreamConnected(id) => id,
            other => panic!("expected StreamConnected, got {other:?}"),
        }
    }

    /// Reads a frame from `id` on the lobby.
    #[track_caller]
    pub fn message_from(&mut self, id: StreamId) -> Bytes {
        payload(&self.next(LOBBY), id)
    }

    /// Reads one frame from each of `expected`'s streams on the lobby, in
    /// whatever order the streams were read.
    #[track_caller]
    pub fn messages_in_any_order(&mut self, expected: &[(StreamId, &[u8])]) {
        let mut missing: Vec<(StreamId, &[u8])> = expected.to_vec();
        while !missing.is_empty() {
            match self.next(LOBBY) {
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Ok(frame),
                }) => {
                    let position = missing
                        .iter()
                        .position(|&(id, value)| id == stream_id && value == frame)
                        .unwrap_or_else(|| {
                            panic!("unexpected frame {frame:?} from {stream_id}; waiting for {missing:?}")
                        });
                    missing.swap_remove(position);
                }
                other => panic!("expected one of {missing:?}, got {other:?}"),
            }
        }
    }

    /// The kind of the error that `id`'s reader yielded, read on the lobby.
    #[track_caller]
    pub fn error_from(&mut self, id: StreamId) -> io::ErrorKind {
        match self.next(LOBBY) {
            IncomingPacket::Message(IncomingMessage {
                stream_id,
                value: Err(error),
            }) if stream_id == id => error.kind(),
            other => panic!("expected an error from {id}, got {other:?}"),
        }
    }

    /// Reads the departure of `id`, for `reason`, on the lobby.
    #[track_caller]
    pub fn disconnected(&mut self, id: StreamId, reason: DisconnectReason) {
        assert_announcement(
            &self.next(LOBBY),
            IncomingPacket::StreamDisconnected(id, reason),
        );
    }

    /// Reads the lobby until every stream of `expected` has departed with
    /// its reason, and returns the error each one's reader yielded before,
    /// if any. Any other packet fails.
    #[track_caller]
    pub fn departures(
        &mut self,
        mut expected: HashMap<StreamId, DisconnectReason>,
    ) -> HashMap<StreamId, io::ErrorKind> {
        let mut errors = HashMap::new();
        while !expected.is_empty() {
            match self.next(LOBBY) {
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Err(error),
                }) if expected.contains_key(&stream_id) => {
                    let earlier = errors.insert(stream_id, error.kind());
                    assert!(earlier.is_none(), "{stream_id} yielded a second error");
                }
                IncomingPacket::StreamDisconnected(id, reason)
                    if expected.get(&id) == Some(&reason) =>
                {
                    expected.remove(&id);
                }
                other => panic!("expected departures {expected:?}, got {other:?}"),
            }
        }
        errors
    }

    /// Reads the announcements of `count` new streams on the lobby, each
    /// followed (not necessarily at once) by a frame holding its index as a
    /// `u32`, and returns their ids by index.
    #[track_caller]
    pub fn announced_by_index(&mut self, count: usize) -> Vec<StreamId> {
        let mut announced = HashSet::new();
        let mut ids = vec![None; count];
        let mut identified = 0;
        while identified < count {
            match self.next(LOBBY) {
                IncomingPacket::StreamConnected(id) => assert!(announced.insert(id)),
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Ok(frame),
                }) => {
                    assert!(announced.contains(&stream_id), "a frame before its stream");
                    let index = u32::from_be_bytes(frame[..].try_into().expect("an index"));
                    let slot = &mut ids[index as usize];
                    assert!(slot.replace(stream_id).is_none(), "index {index} twice");
                    identified += 1;
                }
                other => panic!("expected new streams, got {other:?}"),
            }
        }
        ids.into_iter().flatten().collect()
    }

    /// Reads the announcement of one of the `waiting` clients (each sent its
    /// index as one byte before it was accepted) and its frame, and returns
    /// that client with its id.
    #[track_caller]
    pub fn admit_waiting(&mut self, waiting: &mut [Option<Client>]) -> (Client, StreamId) {
        let id = self.connected();
        let frame = self.message_from(id);
        let client = waiting[usize::from(frame[0])]
            .take()
            .expect("admitted twice");
        (client, id)
    }

    // -- Clients ---------------------------------------------------------

    /// Connects a client and returns it with the id announced on the lobby.
    #[track_caller]
    pub fn connect(&mut self) -> (Client, StreamId) {
        let client = Client::connect(self.address, self.framing);
        (client, self.connected())
    }

    /// A well-behaved client is served both ways: its frame reaches the
    /// consumer on the lobby, and the answer reaches the client.
    #[track_caller]
    pub fn round_trip(&mut self, client: &mut Client, id: StreamId, tag: &str) {
        client.send(tag.as_bytes());
        assert_eq!(self.message_from(id), tag.as_bytes());
        self.send([id], tag.to_owned());
        assert_eq!(client.recv().as_deref(), Some(tag.as_bytes()));
    }

    // -- Writing to the multiplexer ---------------------------------------

    /// Hands `packet` to the multiplexer.
    pub fn packet(&self, packet: OutgoingPacket<Bytes>) {
        self.outgoing
            .unbounded_send(packet)
            .expect("the multiplexer stopped taking packets");
    }

    /// Sends `value` to each of `ids`.
    pub fn send(&self, ids: impl IntoIterator<Item = StreamId>, value: impl Into<Bytes>) {
        self.packet(OutgoingPacket::Message(OutgoingMessage::new(
            ids,
            [value.into()],
        )));
    }

    /// Moves `ids` to `channel`.
    pub fn change_channel(&self, ids: Vec<StreamId>, channel: usize) {
        self.packet(OutgoingPacket::ChangeChannel(ids, channel));
    }

    /// Closes `ids` once what is queued for them is written.
    pub fn close(&self, ids: Vec<StreamId>) {
        self.packet(OutgoingPacket::Shutdown(ids));
    }

    // -- Time -------------------------------------------------------------

    /// One [`TICK`] of the multiplexer's clock passes (the server must have
    /// been started with [`TimeLimits`]).
    #[track_caller]
    pub fn tick(&self) {
        self.ticks
            .as_ref()
            .expect("a server started without time limits has no clock")
            .unbounded_send(())
            .expect("the multiplexer stopped taking ticks");
    }

    // -- Stopping ---------------------------------------------------------

    /// Asks the multiplexer to shut down.
    pub fn shutdown(&self) {
        self.control
            .unbounded_send(ControlMessage::Shutdown)
            .expect("the multiplexer stopped taking control messages");
    }

    /// Waits for `Run` to resolve.
    pub fn finished(&self) -> Result<(), MultiplexerError> {
        self.finished
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("the multiplexer did not finish")
    }

    /// Shuts the multiplexer down gracefully, reading every channel to its
    /// end, and checks that `Run` resolved `Ok`.
    pub fn stop(mut self) {
        self.shutdown();
        // All at once: `Run` may wait on any full channel before it ends.
        block_on(futures::stream::select_all(self.channels.iter_mut()).count());
        assert_eq!(self.finished(), Ok(()));
    }
}

/// Fails unless `packet` is the announcement `expected` (packets hold
/// `io::Error`s, which cannot be compared).
#[track_caller]
pub fn assert_announcement(packet: &Packet, expected: IncomingPacket<()>) {
    let actual = match packet {
        IncomingPacket::StreamConnected(id) => IncomingPacket::StreamConnected(*id),
        IncomingPacket::StreamDisconnected(id, reason) => {
            IncomingPacket::StreamDisconnected(*id, *reason)
        }
        IncomingPacket::Message(_) => panic!("expected {expected:?}, got {packet:?}"),
    };
    assert_eq!(actual, expected);
}

/// The payload of a `Message` packet from `id`.
#[track_caller]
pub fn payload(packet: &Packet, id: StreamId) -> Bytes {
    assert_eq!(packet.id(), id, "a packet from another stream: {packet:?}");
    match packet.value() {
        Some(Ok(bytes)) => bytes.clone(),
        other => panic!("expected a frame, got {other:?} in {packet:?}"),
    }
}
