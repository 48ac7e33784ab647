//! An in-memory harness for driving `Run` deterministically: connections are
//! `futures::channel::mpsc` pairs, channels are bounded mpsc channels, and
//! `Run` is spawned on a `LocalPool` that the test runs until it stalls.
//! Nothing sleeps: after `settle()` every task has done all it can.

#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use stream_multiplexer::{
    BacklogPolicy, Clock, ControlMessage, DisconnectReason, IncomingPacket, MultiplexerBuilder,
    MultiplexerError, OutgoingMessage, OutgoingPacket, Rooms, Stats, StreamId,
};

/// What a client sends (a frame number) and what it receives.
pub type Frame = u32;
/// The server's halves of one in-memory connection.
pub type Halves = (mpsc::Sender<Frame>, mpsc::UnboundedReceiver<Frame>);

/// How to build the multiplexer under test.
#[derive(Clone, Debug)]
pub struct Setup {
    pub channels: Vec<usize>,
    pub sender_buffer_size: usize,
    pub max_streams: usize,
    pub policy: BacklogPolicy,
    /// Room in each client's receive buffer (the "socket").
    pub client_buffer: usize,
    /// A clock the test drives with [`Harness::tick`], and the time limits
    /// in ticks; `None`: no clock.
    pub clock: Option<Limits>,
}

/// Time limits, in ticks of the test's clock.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub idle: Option<u64>,
    pub write: Option<u64>,
}

/// The period of the test's clock: limits are whole multiples of it.
pub const TICK: Duration = Duration::from_secs(1);

impl Default for Setup {
    fn default() -> Self {
        Self {
            channels: vec![64, 64, 64],
            sender_buffer_size: 64,
            max_streams: usize::MAX,
            policy: BacklogPolicy::Disconnect,
            client_buffer: 1024,
            clock: None,
        }
    }
}

/// One fake client.
pub struct Client {
    pub to_server: Option<mpsc::UnboundedSender<Frame>>,
    pub from_server: mpsc::Receiver<Frame>,
}

impl Client {
    pub fn send(&self, frame: Frame) {
        self.to_server
            .as_ref()
            .expect("client already hung up")
            .unbounded_send(frame)
            .expect("server dropped the reader");
    }

    pub fn send_all(&self, frames: impl IntoIterator<Item = Frame>) {
        for frame in frames {
            self.send(frame);
        }
    }

    /// Ends the client's side of the stream (the server's reader ends).
    pub fn hang_up(&mut self) {
        self.to_server = None;
    }

    /// Everything received so far, and whether the server closed the
    /// connection.
    pub fn received(&mut self) -> (Vec<Frame>, bool) {
        let mut frames = Vec::new();
        loop {
            match self.from_server.try_recv() {
                Ok(frame) => frames.push(frame),
                Err(error) => return (frames, error.is_closed()),
            }
        }
    }
}

pub struct Harness {
    pub pool: LocalPool,
    pub result: Rc<RefCell<Option<Result<(), MultiplexerError>>>>,
    pub accept: mpsc::UnboundedSender<io::Result<Halves>>,
    pub outgoing: mpsc::UnboundedSender<OutgoingPacket<Frame>>,
    pub control: Option<mpsc::UnboundedSender<ControlMessage>>,
    pub channels: Vec<Option<mpsc::Receiver<IncomingPacket<Frame>>>>,
    pub stats: Stats,
    pub rooms: Rooms,
    /// Each value sent is one tick of the clock (with [`Setup::clock`]).
    pub ticks: Option<mpsc::UnboundedSender<()>>,
    setup: Setup,
}

impl Harness {
    pub fn new(setup: Setup) -> Self {
        let (senders, receivers): (Vec<_>, Vec<_>) = setup
            .channels
            .iter()
            .map(|&size| mpsc::channel(size))
            .unzip();
        let (outgoing, outgoing_rx) = mpsc::unbounded();
        let (control, control_rx) = mpsc::unbounded();
        let (accept, accept_rx) = mpsc::unbounded();
        let mut builder = MultiplexerBuilder::new(setup.sender_buffer_size)
            .max_streams(setup.max_streams)
            .backlog_policy(setup.policy);
        let mut ticks = None;
        if let Some(limits) = setup.clock {
            let (tick, tick_rx) = mpsc::unbounded();
            ticks = Some(tick);
            builder = builder
                .clock(Clock::new(TICK, tick_rx))
                .idle_timeout(limits.idle.map(|n| TICK * n as u32))
                .write_timeout(limits.write.map(|n| TICK * n as u32));
        }
        let multiplexer = builder.build(outgoing_rx, senders);
        let stats = multiplexer.stats();
        let rooms = multiplexer.rooms();
        let pool = LocalPool::new();
        let result = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&result);
        let run = multiplexer.run(accept_rx, control_rx);
        pool.spawner()
            .spawn_local(async move {
                *slot.borrow_mut() = Some(run.await);
            })
            .expect("spawn");
        let mut harness = Self {
            pool,
            result,
            accept,
            outgoing,
            control: Some(control),
            channels: receivers.into_iter().map(Some).collect(),
            stats,
            rooms,
            ticks,
            setup,
        };
        harness.settle();
        harness
    }

    /// Runs every task until none can make progress.
    pub fn settle(&mut self) {
        self.pool.run_until_stalled();
    }

    /// Opens a connection; returns the client side.
    pub fn connect(&mut self) -> Client {
        let (to_server, server_reader) = mpsc::unbounded();
        let (server_writer, from_server) = mpsc::channel(self.setup.client_buffer);
        self.accept
            .unbounded_send(Ok((server_writer, server_reader)))
            .expect("accept stream closed");
        Client {
            to_server: Some(to_server),
            from_server,
        }
    }

    /// Opens a connection and returns it with the id announced on `channel`.
    pub fn connect_on(&mut self, channel: usize) -> (Client, StreamId) {
        let client = self.connect();
        self.settle();
        let packets = self.drain(channel);
        match packets.as_slice() {
            [IncomingPacket::StreamConnected(id)] => (client, *id),
            other => panic!("expected one StreamConnected, got {other:?}"),
        }
    }

    /// Takes whatever channel `index` holds right now.
    pub fn drain(&mut self, index: usize) -> Vec<IncomingPacket<Frame>> {
        let mut packets = Vec::new();
        if let Some(receiver) = self.channels[index].as_mut() {
            while let Ok(packet) = receiver.try_recv() {
                packets.push(packet);
            }
        }
        packets
    }

    /// Drains channel `index` and lets the multiplexer refill it, until it
    /// has nothing more to give.
    pub fn drain_settled(&mut self, index: usize) -> Vec<IncomingPacket<Frame>> {
        let mut all = Vec::new();
        loop {
            self.settle();
            let packets = self.drain(index);
            if packets.is_empty() {
                return all;
            }
            all.extend(packets);
        }
    }

    pub fn send(&mut self, packet: OutgoingPacket<Frame>) {
        self.outgoing
            .unbounded_send(packet)
            .expect("outgoing closed");
    }

    pub fn message(
        &mut self,
        ids: impl IntoIterator<Item = StreamId>,
        frames: impl IntoIterator<Item = Frame>,
    ) {
        self.send(OutgoingPacket::Message(OutgoingMessage::new(ids, frames)));
    }

    pub fn control(&mut self, message: ControlMessage) {
        if let Some(control) = &self.control {
            control.unbounded_send(message).expect("control closed");
        }
    }

    /// Lets `count` ticks of the clock pass, one at a time, settling after
    /// each.
    pub fn tick(&mut self, count: u64) {
        for _ in 0..count {
            self.ticks
                .as_ref()
                .expect("the harness has no clock")
                .unbounded_send(())
                .expect("clock dropped");
            self.settle();
        }
    }

    pub fn finished(&self) -> Option<Result<(), MultiplexerError>> {
        self.result.borrow().clone()
    }
}

/// The values of the `Message` packets among `packets`, for stream `id`.
pub fn messages_of(packets: &[IncomingPacket<Frame>], id: StreamId) -> Vec<Frame> {
    packets
        .iter()
        .filter(|p| p.id() == id)
        .filter_map(|p| p.value().copied())
        .collect()
}

/// The `StreamDisconnected` reasons announced for `id` among `packets`.
pub fn disconnects_of(packets: &[IncomingPacket<Frame>], id: StreamId) -> Vec<DisconnectReason> {
    packets
        .iter()
        .filter_map(|p| match p {
            IncomingPacket::StreamDisconnected(i, reason) if *i == id => Some(*reason),
            _ => None,
        })
        .collect()
}
