//! A model of the multiplexer over in-memory transports, shared by
//! `tests/properties.rs` (proptest) and the `packets` fuzz target.
//!
//! A [`Scenario`] is a few settings and a list of [`Op`]s. [`run`] builds a
//! multiplexer whose connections are `futures::channel::mpsc` pairs, spawns
//! its `Run` on a `LocalPool`, and applies the operations one at a time.
//! After each one it *settles*: runs the pool until it stalls, lets every
//! draining consumer and every reading client take what arrived, and repeats
//! until nothing moves. Nothing sleeps, and every run is deterministic.
//!
//! The model does not re-implement the multiplexer. It knows what the test
//! did (who sent which frame, which values were addressed to whom, who was
//! stalled, dropped or told to leave) and it watches three things the test
//! can see: which stream ids were handed out (a recording id generator),
//! which readers the multiplexer has let go of (each reader carries a drop
//! token), and how often the run was polled (to know whether a dropped
//! consumer has been noticed). From those it works out, at every step, which
//! streams are open, why each one that left did, and what every consumer,
//! client and counter must then show.
//!
//! # Invariants
//!
//! After every step (SPEC §4 item in brackets):
//! - a stream the packets closed (Shutdown, full backlog, failed write) is
//!   closed, and no stream closes without a cause (2, 4, 6, 8);
//! - a stream whose reader ended in a draining channel is closed (8);
//! - with every consumer draining, every frame sent by an open stream has
//!   been delivered (1, 5);
//! - a reading client has received exactly the values addressed to it
//!   while it was open, in order; any client a prefix of them (3, 4, 6);
//! - `streams_open` is the number of open streams, accept errors are
//!   counted as they are yielded, at most `max_streams` are open and none
//!   waits below the limit (8, 10, 12);
//! - the run never spins: it stops waking itself once idle (7).
//!
//! At the end (after Shutdown, the end of control, Abort, or Shutdown then
//! Abort, with every consumer and client then reading):
//! - the run resolved (Ok, or `AllChannelsClosed` if every consumer went),
//!   every channel sink and every connection is closed (11);
//! - each channel's packets form visits per id: Connected, messages in read
//!   order, one Disconnected; never a packet outside a visit, never a frame
//!   under another client's id (1);
//! - a stream's visits follow its moves, each ending with
//!   `ChannelChange(next)`, the last with the reason it left; its frames
//!   across all visits are 0, 1, 2, ... with none lost or doubled, and all
//!   of them when its channel was draining as it left. Where a closed
//!   channel took packets away, what remains is still in order and never
//!   doubled (1, 2);
//! - every client received exactly the values due to it (3, 4, 6);
//! - the counters: frames in and out, disconnects by reason (and as
//!   announced), packets dropped for unknown ids, moves rejected, streams
//!   closed with their channel, accepted == streams_open + departed (12).
//!
//! [`check`](Harness::check) and [`check_step`](Harness::check_step)
//! compare.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use futures::channel::mpsc::{self, TryRecvError};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::{Stream, StreamExt};
use stream_multiplexer::{
    ChannelId, ControlMessage, DisconnectReason, IdGen, IncomingPacket, IncrementIdGen,
    MultiplexerBuilder, MultiplexerError, OutgoingMessage, OutgoingPacket, Stats, StreamId,
};

/// Ids from here up are never handed out in a run (the generator counts up
/// from 1, or from just below `usize::MAX` and wraps), so packets to them
/// are packets to unknown ids.
const UNKNOWN_IDS: StreamId = usize::MAX / 2;
/// The most operations decoded from fuzz input, so one input stays fast.
pub const MAX_OPS: usize = 64;
/// Rounds of run-and-drain before a step is declared stuck.
const SETTLE_ROUNDS: usize = 10_000;
/// Polls of the run in one round before it is declared busy-looping: an
/// idle multiplexer must stop waking itself (SPEC §4.7 bounds a poll's
/// work, it does not allow spinning).
const POLLS_PER_ROUND: usize = 1_000;

/// Core bugs the model has found and that are still open, each pinned by a
/// regression test in `tests/properties.rs` (`findings`). A run can be told
/// to look past them, so that exploration goes on while they are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// `Run` wakes itself on every poll while a graceful shutdown that
    /// began at `max_streams` waits (regression test
    /// `shutdown_begun_at_the_stream_limit_waits_without_spinning`).
    SpinsInShutdownAtLimit,
    /// `streams_open` still counts the streams `Abort` closed (regression
    /// test `abort_leaves_no_stream_counted_as_open`).
    StreamsOpenAfterAbort,
}

/// What a client sends: who sent it and its number in that client's stream,
/// so that order, loss and duplication can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    client: usize,
    seq: u32,
}

/// Whom an outgoing packet addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The id of the n-th client to connect (modulo the clients so far);
    /// an id nobody has if that client was never admitted, a departed id if
    /// it left.
    Client(u8),
    /// An id that is never handed out.
    Unknown(u8),
}

/// One thing that happens to the system. Client and channel numbers are
/// taken modulo the clients so far and the channels, so any value is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new client connects.
    Connect,
    /// The listener fails once.
    AcceptError,
    /// A client sends frames.
    Send { client: u8, frames: u8 },
    /// A client ends its read side (drops its sender): EOF.
    EndRead { client: u8 },
    /// A client stops reading what the server writes to it.
    StopReading { client: u8 },
    /// A client reads again.
    ResumeReading { client: u8 },
    /// A client takes what already arrived and drops its receiver: the
    /// server's next write to it fails.
    DropReceiver { client: u8 },
    /// A channel's consumer stops taking packets.
    Stall { channel: u8 },
    /// A channel's consumer takes packets again.
    Resume { channel: u8 },
    /// A channel's consumer goes away: the channel is closed.
    DropConsumer { channel: u8 },
    /// `OutgoingPacket::Message` with `values` fresh values.
    Message { to: Vec<Target>, values: u8 },
    /// `OutgoingPacket::ChangeChannel`; the channel is taken modulo the
    /// channels plus two, the last two meaning channels that do not exist.
    ChangeChannel { to: Vec<Target>, channel: u8 },
    /// `OutgoingPacket::Shutdown`.
    Shutdown { to: Vec<Target> },
    /// Several of the packet operations above (`Message`, `ChangeChannel`,
    /// `Shutdown`; anything else in it is ignored), queued together so that
    /// the multiplexer applies them in one go, in order (SPEC §4.3).
    Burst(Vec<Op>),
}

impl Op {
    fn is_packet(&self) -> bool {
        matches!(
            self,
            Op::Message { .. } | Op::ChangeChannel { .. } | Op::Shutdown { .. }
        )
    }
}

/// How a scenario ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `ControlMessage::Shutdown`.
    Shutdown,
    /// The control stream ends (means `Shutdown`).
    CloseControl,
    /// `ControlMessage::Abort`.
    Abort,
    /// `Shutdown`, then `Abort` before the flush is over.
    ShutdownThenAbort,
}

/// Settings and operations for one run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Number of channels, at least 1.
    pub channels: usize,
    /// `sender_buffer_size`: each stream's outgoing backlog, at least 1.
    pub backlog: usize,
    /// Buffer of each client's receiving mpsc (it holds one more).
    pub client_buffer: usize,
    /// Buffer of each channel's mpsc (it holds one more).
    pub channel_buffer: usize,
    /// `MultiplexerBuilder::max_streams`.
    pub max_streams: Option<usize>,
    /// Seed the id generator just below `usize::MAX`, so ids wrap.
    pub wrapping_ids: bool,
    /// What happens, in order.
    pub ops: Vec<Op>,
    /// How it ends.
    pub end: End,
}

impl Scenario {
    /// Decodes any bytes into a scenario (for the fuzz target): a few
    /// setting bytes, then one tag byte per operation followed by its
    /// arguments. Missing bytes read as zero.
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut input = Input(data.iter());
        let channels = 1 + usize::from(input.byte() % 3);
        let backlog = 1 + usize::from(input.byte() % 4);
        let client_buffer = usize::from(input.byte() % 3);
        let channel_buffer = usize::from(input.byte() % 3);
        let limit = input.byte();
        let max_streams = (limit % 4 == 0).then_some(1 + usize::from(limit / 4 % 3));
        let wrapping_ids = input.byte() % 2 == 1;
        let end = match input.byte() % 4 {
            0 => End::Shutdown,
            1 => End::CloseControl,
            2 => End::Abort,
            _ => End::ShutdownThenAbort,
        };
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS && !input.is_empty() {
            let tag = input.byte();
            let op = match tag % 14 {
                0 => Op::Connect,
                1 => Op::AcceptError,
                2 => Op::Send {
                    client: input.byte(),
                    frames: input.byte() % 5,
                },
                3 => Op::EndRead {
                    client: input.byte(),
                },
                4 => Op::StopReading {
                    client: input.byte(),
                },
                5 => Op::ResumeReading {
                    client: input.byte(),
                },
                6 => Op::DropReceiver {
                    client: input.byte(),
                },
                7 => Op::Stall {
                    channel: input.byte(),
                },
                8 => Op::Resume {
                    channel: input.byte(),
                },
                9 => Op::DropConsumer {
                    channel: input.byte(),
                },
                13 => {
                    let count = 2 + input.byte() % 3;
                    Op::Burst((0..count).map(|_| input.packet()).collect())
                }
                _ => input.packet_tagged(tag),
            };
            ops.push(op);
        }
        Scenario {
            channels,
            backlog,
            client_buffer,
            channel_buffer,
            max_streams,
            wrapping_ids,
            ops,
            end,
        }
    }
}

struct Input<'a>(std::slice::Iter<'a, u8>);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// A packet operation.
    fn packet(&mut self) -> Op {
        let tag = self.byte();
        self.packet_tagged(10 + tag % 3)
    }

    fn packet_tagged(&mut self, tag: u8) -> Op {
        match tag % 14 {
            10 => Op::Message {
                to: self.targets(),
                values: self.byte() % 4,
            },
            11 => Op::ChangeChannel {
                to: self.targets(),
                channel: self.byte(),
            },
            _ => Op::Shutdown { to: self.targets() },
        }
    }

    fn targets(&mut self) -> Vec<Target> {
        let count = 1 + self.byte() % 3;
        (0..count)
            .map(|_| match self.byte() {
                b if b >= 0xE0 => Target::Unknown(b),
                b => Target::Client(b),
            })
            .collect()
    }
}

/// Runs a scenario and checks every invariant, looking past the `allowed`
/// open findings; `Err` says which invariant broke, at which step.
pub fn run(scenario: &Scenario, allowed: &[Finding]) -> Result<(), String> {
    let mut harness = Harness::new(scenario, allowed)?;
    for (index, op) in scenario.ops.iter().enumerate() {
        harness
            .step(Step::Op(op))
            .map_err(|e| format!("after op #{index} {op:?}: {e}"))?;
    }
    harness
        .end(scenario.end)
        .map_err(|e| format!("at the end ({:?}): {e}", scenario.end))?;
    harness.check()
}

// ---------------------------------------------------------------------------
// The transports

/// The read half given to the multiplexer. The token tells the test when
/// the multiplexer has let go of the reader.
struct ClientReader {
    frames: mpsc::UnboundedReceiver<Frame>,
    _token: Rc<()>,
}

impl Stream for ClientReader {
    type Item = Frame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        self.frames.poll_next_unpin(cx)
    }
}

type Halves = io::Result<(mpsc::Sender<u32>, ClientReader)>;

/// The default id generator, recording every id it hands out.
#[derive(Debug, Default)]
struct RecordedIds {
    inner: IncrementIdGen,
    log: Rc<RefCell<Vec<StreamId>>>,
}

impl IdGen for RecordedIds {
    fn next(&mut self) -> StreamId {
        let id = self.inner.next();
        self.log.borrow_mut().push(id);
        id
    }

    fn id(&self) -> StreamId {
        self.inner.id()
    }

    fn seed(&mut self, seed: usize) {
        self.inner.seed(seed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumption {
    Draining,
    Stalled,
    Dropped,
}

impl Consumer {
    /// Whether the multiplexer has been polled since the consumer was
    /// dropped, and so knows its channel is closed.
    fn noticed_gone(&self, polls: u64) -> bool {
        self.state == Consumption::Dropped && polls > self.dropped_at
    }
}

struct Consumer {
    rx: Option<mpsc::Receiver<IncomingPacket<Frame>>>,
    state: Consumption,
    /// The run's poll count when the consumer was dropped.
    dropped_at: u64,
    trace: Vec<IncomingPacket<Frame>>,
}

/// Why a stream left, as the model works it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// With a `StreamDisconnected` of this reason (and a count in stats).
    Announced(DisconnectReason),
    /// Closed with its channel: no announcement, `closed_with_channel`.
    ClosedWithChannel,
    /// Still open when the run was aborted.
    Aborted,
}

struct Client {
    frames: Option<mpsc::UnboundedSender<Frame>>,
    values: Option<mpsc::Receiver<u32>>,
    reader: Weak<()>,
    /// Whether the accept of it has been accounted for (id, or closed at
    /// admission).
    settled: bool,
    id: Option<StreamId>,
    /// The channel it is in, while open.
    channel: ChannelId,
    /// Every channel it was in, in order.
    visits: Vec<ChannelId>,
    sent: u32,
    delivered: u32,
    reading: bool,
    read_ended: bool,
    receiver_dropped: bool,
    /// Values handed to the multiplexer for it and not yet read by it.
    in_flight: usize,
    /// Of those, the ones still in the multiplexer's backlog (not yet taken
    /// by its write sink, which holds `client_buffer + 1`).
    backlog: usize,
    /// The backlog as it was when the step began.
    quiescent_backlog: usize,
    /// Every value it should see, in order...
    expected: Vec<u32>,
    /// ...but for this many at the end, dropped with the stream.
    lost: usize,
    received: Vec<u32>,
    /// Only the order of what it received is pinned, not how much.
    values_uncertain: bool,
    values_closed: bool,
    left: Option<Left>,
    /// Frames that must all have been delivered (set when it leaves).
    must_deliver: Option<u32>,
}

impl Client {
    fn is_open(&self) -> bool {
        self.id.is_some() && self.left.is_none()
    }

    fn reader_alive(&self) -> bool {
        self.reader.strong_count() > 0
    }

    /// Whether its write half may still be in the multiplexer.
    fn writer_alive(&self) -> bool {
        self.id.is_some()
            && matches!(
                self.left,
                None | Some(Left::Announced(DisconnectReason::Shutdown))
            )
    }
}

/// Lower and upper bounds of a counter whose exact value depends on timing
/// the test cannot see (only where a consumer was dropped).
#[derive(Debug, Default, Clone, Copy)]
struct Bounds {
    min: u64,
    max: u64,
}

impl Bounds {
    fn certain(&mut self) {
        self.min += 1;
        self.max += 1;
    }

    fn maybe(&mut self) {
        self.max += 1;
    }

    fn holds(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// The counters the multiplexer must end with.
#[derive(Debug, Default)]
struct Expect {
    linkdead: u64,
    shutdown: u64,
    backlog_full: u64,
    idle_timeout: u64,
    write_timeout: u64,
    dropped_unknown_id: u64,
    channel_change: Bounds,
    moves_rejected: Bounds,
    closed_with_channel: Bounds,
    accepted: Bounds,
}

/// One step of a run.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Op(&'a Op),
    Control(ControlMessage),
    CloseControl,
    /// Every consumer drains and every client reads, so that a graceful
    /// shutdown can finish.
    Release,
}

/// What the test expects from the operation of one step.
#[derive(Debug, Default)]
struct Plan {
    /// Streams the packet itself closes, and why.
    leave: Vec<(usize, Left)>,
    /// Streams that must have left by the end of the step.
    must_leave: Vec<usize>,
    /// Streams left open by this step are aborted.
    abort: bool,
    /// Streams left open by this step are shut down.
    shutdown: bool,
}

impl Plan {
    fn leaving(&self, client: usize) -> Option<Left> {
        self.leave
            .iter()
            .find(|(i, _)| *i == client)
            .map(|(_, left)| *left)
    }
}

/// The state at the start of a step.
struct Before {
    draining: Vec<bool>,
    channel: Vec<ChannelId>,
}

// ---------------------------------------------------------------------------
// The harness

struct Harness {
    channels: usize,
    backlog: usize,
    /// What a client's write sink takes before it is full.
    sink_capacity: usize,
    max_streams: Option<usize>,
    allowed: Vec<Finding>,
    pool: LocalPool,
    /// Polls of the run in the current settle round.
    polls: Rc<Cell<usize>>,
    /// Polls of the run so far. Every poll looks at every open channel's
    /// sink (it hands over waiting announcements before anything else), so
    /// a consumer dropped before the latest poll has been noticed: a move
    /// to its channel is refused from then on, and before then goes ahead
    /// and closes the stream with the channel (SPEC §4.2, §4.8).
    total_polls: Rc<Cell<u64>>,
    result: Rc<RefCell<Option<Result<(), MultiplexerError>>>>,
    halves: mpsc::UnboundedSender<Halves>,
    outgoing: mpsc::UnboundedSender<OutgoingPacket<u32>>,
    control: Option<mpsc::UnboundedSender<ControlMessage>>,
    stats: Stats,
    ids: Rc<RefCell<Vec<StreamId>>>,
    consumers: Vec<Consumer>,
    clients: Vec<Client>,
    /// The halves stream's items, in order: `Some(client)` or `None` for an
    /// accept error.
    queue: Vec<Option<usize>>,
    owners: HashMap<StreamId, usize>,
    next_value: u32,
    step: usize,
    ended_at: Option<usize>,
    /// A graceful shutdown has begun: the halves stream is dropped.
    shutting_down: bool,
    end: Option<End>,
    expect: Expect,
}

impl Harness {
    fn new(s: &Scenario, allowed: &[Finding]) -> Result<Self, String> {
        let allow_spinning = allowed.contains(&Finding::SpinsInShutdownAtLimit);
        let (halves, halves_rx) = mpsc::unbounded::<Halves>();
        let (outgoing, outgoing_rx) = mpsc::unbounded();
        let (control, control_rx) = mpsc::unbounded();
        let mut sinks = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..s.channels.max(1) {
            let (tx, rx) = mpsc::channel(s.channel_buffer);
            sinks.push(tx);
            consumers.push(Consumer {
                rx: Some(rx),
                state: Consumption::Draining,
                dropped_at: 0,
                trace: Vec::new(),
            });
        }
        let ids = RecordedIds::default();
        let log = Rc::clone(&ids.log);
        let mut builder = MultiplexerBuilder::new(s.backlog);
        if let Some(max) = s.max_streams {
            builder = builder.max_streams(max);
        }
        if s.wrapping_ids {
            builder = builder.id_seed(usize::MAX - 2);
        }
        let multiplexer = builder.id_gen(ids).build(outgoing_rx, sinks);
        let stats = multiplexer.stats();
        let run = multiplexer.run(halves_rx, control_rx);

        let pool = LocalPool::new();
        let result = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&result);
        let polls = Rc::new(Cell::new(0));
        let total_polls = Rc::new(Cell::new(0));
        let counter = Rc::clone(&polls);
        let total = Rc::clone(&total_polls);
        let mut run = Some(run);
        pool.spawner()
            .spawn_local(futures::future::poll_fn(move |cx| {
                counter.set(counter.get() + 1);
                if counter.get() > POLLS_PER_ROUND {
                    // Spinning. Either stop it, so that the test can say
                    // so, or (looking past the finding) stop polling it
                    // for this round, letting only outside wakes in.
                    return if allow_spinning {
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    };
                }
                let Some(future) = run.as_mut() else {
                    return Poll::Ready(());
                };
                total.set(total.get() + 1);
                let outcome = futures::ready!(Pin::new(future).poll(cx));
                run = None;
                *slot.borrow_mut() = Some(outcome);
                Poll::Ready(())
            }))
            .map_err(|e| format!("cannot spawn the run: {e}"))?;

        let mut harness = Harness {
            channels: s.channels.max(1),
            backlog: s.backlog.max(1),
            sink_capacity: s.client_buffer + 1,
            max_streams: s.max_streams,
            allowed: allowed.to_vec(),
            pool,
            polls,
            total_polls,
            result,
            halves,
            outgoing,
            control: Some(control),
            stats,
            ids: log,
            consumers,
            clients: Vec::new(),
            queue: Vec::new(),
            owners: HashMap::new(),
            next_value: 0,
            step: 0,
            ended_at: None,
            shutting_down: false,
            end: None,
            expect: Expect::default(),
        };
        harness.settle()?;
        Ok(harness)
    }

    fn running(&self) -> bool {
        self.ended_at.is_none()
    }

    fn client(&self, n: u8) -> Option<usize> {
        (!self.clients.is_empty()).then(|| usize::from(n) % self.clients.len())
    }

    /// The id a target stands for, and the client that has it if any.
    fn resolve(&self, target: Target) -> (StreamId, Option<usize>) {
        match target {
            Target::Unknown(n) => (UNKNOWN_IDS + usize::from(n), None),
            Target::Client(n) => match self.client(n) {
                Some(i) => match self.clients[i].id {
                    Some(id) => (id, Some(i)),
                    None => (UNKNOWN_IDS + 256 + i, None),
                },
                None => (UNKNOWN_IDS + 512, None),
            },
        }
    }

    /// Whether the multiplexer still holds `client` open while it applies
    /// the current packet.
    fn open_now(&self, client: Option<usize>, plan: &Plan) -> Option<usize> {
        client.filter(|&i| self.clients[i].is_open() && plan.leaving(i).is_none())
    }

    fn step(&mut self, step: Step<'_>) -> Result<(), String> {
        self.step += 1;
        let before = Before {
            draining: self
                .consumers
                .iter()
                .map(|c| c.state == Consumption::Draining)
                .collect(),
            channel: self.clients.iter().map(|c| c.channel).collect(),
        };
        for c in &mut self.clients {
            c.quiescent_backlog = c.backlog;
        }
        let mut plan = Plan::default();
        match step {
            Step::Op(op) => self.apply(op, &mut plan),
            Step::Control(message) => {
                if let Some(control) = &self.control {
                    let _ = control.unbounded_send(message);
                }
                plan.shutdown = message == ControlMessage::Shutdown;
                plan.abort = message == ControlMessage::Abort;
            }
            Step::CloseControl => {
                self.control = None;
                plan.shutdown = true;
            }
            Step::Release => {
                for consumer in &mut self.consumers {
                    if consumer.state == Consumption::Stalled {
                        consumer.state = Consumption::Draining;
                    }
                }
                for client in &mut self.clients {
                    client.reading = true;
                }
            }
        }
        self.settle()?;
        self.observe(&before, &plan)
    }

    fn apply(&mut self, op: &Op, plan: &mut Plan) {
        let running = self.running();
        match *op {
            Op::Connect => self.connect(),
            Op::AcceptError => {
                let error = io::Error::other("accept failed");
                if self.halves.unbounded_send(Err(error)).is_ok() {
                    self.queue.push(None);
                }
            }
            Op::Send { client, frames } => {
                let Some(i) = self.client(client) else { return };
                let c = &mut self.clients[i];
                for _ in 0..frames {
                    let Some(tx) = &c.frames else { break };
                    let frame = Frame {
                        client: i,
                        seq: c.sent,
                    };
                    if tx.unbounded_send(frame).is_err() {
                        break;
                    }
                    c.sent += 1;
                }
            }
            Op::EndRead { client } => {
                if let Some(i) = self.client(client) {
                    let c = &mut self.clients[i];
                    c.frames = None;
                    c.read_ended = true;
                }
            }
            Op::StopReading { client } => {
                if let Some(i) = self.client(client) {
                    self.clients[i].reading = false;
                }
            }
            Op::ResumeReading { client } => {
                if let Some(i) = self.client(client) {
                    self.clients[i].reading = true;
                }
            }
            Op::DropReceiver { client } => {
                let Some(i) = self.client(client) else { return };
                let c = &mut self.clients[i];
                let Some(mut rx) = c.values.take() else {
                    return;
                };
                while let Ok(value) = rx.try_recv() {
                    c.received.push(value);
                    c.in_flight = c.in_flight.saturating_sub(1);
                }
                drop(rx);
                c.receiver_dropped = true;
                // What is still in the multiplexer's backlog will never
                // arrive; with anything there, the next write fails now.
                c.lost += c.in_flight;
                if c.in_flight > 0 && c.is_open() && running {
                    plan.must_leave.push(i);
                }
                c.in_flight = 0;
            }
            Op::Stall { channel } => {
                let consumer = &mut self.consumers[usize::from(channel) % self.channels];
                if consumer.state == Consumption::Draining {
                    consumer.state = Consumption::Stalled;
                }
            }
            Op::Resume { channel } => {
                let consumer = &mut self.consumers[usize::from(channel) % self.channels];
                if consumer.state == Consumption::Stalled {
                    consumer.state = Consumption::Draining;
                }
            }
            Op::DropConsumer { channel } => {
                let consumer = &mut self.consumers[usize::from(channel) % self.channels];
                if consumer.state != Consumption::Dropped {
                    consumer.rx = None;
                    consumer.state = Consumption::Dropped;
                    consumer.dropped_at = self.total_polls.get();
                }
            }
            Op::Message { ref to, values } => {
                let values: Vec<u32> = (0..values)
                    .map(|_| {
                        self.next_value += 1;
                        self.next_value
                    })
                    .collect();
                let mut ids = Vec::new();
                for &target in to {
                    let (id, client) = self.resolve(target);
                    ids.push(id);
                    if running {
                        self.expect_message(client, &values, plan);
                    }
                }
                let message = OutgoingMessage::new(ids, values);
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::Message(message));
            }
            Op::ChangeChannel { ref to, channel } => {
                let channel = match usize::from(channel) % (self.channels + 2) {
                    k if k == self.channels + 1 => usize::MAX,
                    k => k,
                };
                let mut ids = Vec::new();
                for &target in to {
                    let (id, client) = self.resolve(target);
                    ids.push(id);
                    if running {
                        self.expect_move(client, channel, plan);
                    }
                }
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::ChangeChannel(ids, channel));
            }
            Op::Burst(ref packets) => {
                for packet in packets.iter().filter(|op| op.is_packet()) {
                    self.apply(packet, plan);
                }
            }
            Op::Shutdown { ref to } => {
                let mut ids = Vec::new();
                for &target in to {
                    let (id, client) = self.resolve(target);
                    ids.push(id);
                    if !running {
                        continue;
                    }
                    match self.open_now(client, plan) {
                        Some(i) => plan
                            .leave
                            .push((i, Left::Announced(DisconnectReason::Shutdown))),
                        None => self.expect.dropped_unknown_id += 1,
                    }
                }
                let _ = self.outgoing.unbounded_send(OutgoingPacket::Shutdown(ids));
            }
        }
    }

    fn connect(&mut self) {
        let index = self.clients.len();
        let (frames, frames_rx) = mpsc::unbounded();
        let (values_tx, values) = mpsc::channel(self.sink_capacity - 1);
        let token = Rc::new(());
        let reader = Rc::downgrade(&token);
        let halves = ClientReader {
            frames: frames_rx,
            _token: token,
        };
        let queued = self.halves.unbounded_send(Ok((values_tx, halves))).is_ok();
        if queued {
            self.queue.push(Some(index));
        }
        self.clients.push(Client {
            frames: Some(frames),
            values: Some(values),
            reader,
            settled: !queued,
            id: None,
            channel: 0,
            visits: Vec::new(),
            sent: 0,
            delivered: 0,
            reading: true,
            read_ended: false,
            receiver_dropped: false,
            in_flight: 0,
            backlog: 0,
            quiescent_backlog: 0,
            expected: Vec::new(),
            lost: 0,
            received: Vec::new(),
            values_uncertain: false,
            values_closed: false,
            left: None,
            must_deliver: None,
        });
    }

    /// One recipient of a `Message` (SPEC §4.4, §4.6).
    fn expect_message(&mut self, client: Option<usize>, values: &[u32], plan: &mut Plan) {
        let Some(i) = self.open_now(client, plan) else {
            self.expect.dropped_unknown_id += 1;
            return;
        };
        let room = self.backlog.saturating_sub(self.clients[i].backlog);
        let c = &mut self.clients[i];
        if values.len() > room {
            plan.leave
                .push((i, Left::Announced(DisconnectReason::BacklogFull)));
        } else if !values.is_empty() {
            c.backlog += values.len();
            if c.receiver_dropped {
                // The write fails: the stream is closed (SPEC §4.8).
                plan.must_leave.push(i);
            } else {
                c.in_flight += values.len();
                c.expected.extend_from_slice(values);
            }
        }
    }

    /// One stream of a `ChangeChannel` (SPEC §4.2).
    fn expect_move(&mut self, client: Option<usize>, to: ChannelId, plan: &mut Plan) {
        let Some(i) = self.open_now(client, plan) else {
            self.expect.dropped_unknown_id += 1;
            return;
        };
        let c = &mut self.clients[i];
        if to >= self.channels {
            self.expect.moves_rejected.certain();
        } else if to == c.channel {
            // A move to where it is changes nothing.
        } else if self.consumers[to].noticed_gone(self.total_polls.get()) {
            self.expect.moves_rejected.certain();
        } else {
            c.channel = to;
            c.visits.push(to);
            self.expect.channel_change.certain();
        }
    }

    /// Runs the pool and drains consumers and reading clients until nothing
    /// moves.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..SETTLE_ROUNDS {
            self.polls.set(0);
            self.pool.run_until_stalled();
            if self.polls.get() > POLLS_PER_ROUND
                && !self.allowed.contains(&Finding::SpinsInShutdownAtLimit)
            {
                return Err(format!(
                    "the run was polled {POLLS_PER_ROUND} times without stalling: it keeps waking itself"
                ));
            }
            let mut moved = false;
            for consumer in &mut self.consumers {
                if consumer.state != Consumption::Draining {
                    continue;
                }
                let Some(rx) = consumer.rx.as_mut() else {
                    continue;
                };
                while let Ok(packet) = rx.try_recv() {
                    count_delivery(&mut self.clients, &packet);
                    consumer.trace.push(packet);
                    moved = true;
                }
            }
            for client in &mut self.clients {
                if client.reading {
                    moved |= read_values(client);
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Err("the system did not settle".into())
    }

    /// Works out what happened during the step, and checks what must hold
    /// after every step.
    fn observe(&mut self, before: &Before, plan: &Plan) -> Result<(), String> {
        let was_running = self.running();
        let mut aborted_or_failed = false;
        if was_running && let Some(result) = self.result.borrow().as_ref() {
            self.ended_at = Some(self.step);
            aborted_or_failed = plan.abort || result.is_err();
            let all_dropped = self
                .consumers
                .iter()
                .all(|c| c.state == Consumption::Dropped);
            match result {
                Ok(()) if plan.abort || plan.shutdown || self.end.is_some() => {}
                Ok(()) => return Err("the run resolved Ok without being told to stop".into()),
                Err(MultiplexerError::AllChannelsClosed) if all_dropped => {}
                Err(e) => return Err(format!("the run failed: {e:?}")),
            }
        }
        if plan.abort && was_running && self.running() {
            return Err("Abort did not resolve the run at once (SPEC §4.11)".into());
        }
        let ended_now = was_running && !self.running();
        self.shutting_down |= plan.shutdown && was_running;

        let admitted = self.observe_admissions(ended_now, aborted_or_failed);
        self.observe_departures(before, plan)?;
        if admitted {
            self.observe_possible_evictions();
        }
        if aborted_or_failed {
            let failed = !plan.abort;
            for c in &mut self.clients {
                if !c.writer_alive() || c.receiver_dropped {
                    continue;
                }
                if failed {
                    // The run failed after pumping its writers in the same
                    // poll: how much they handed over before it dropped
                    // them is not pinned down.
                    c.values_uncertain = true;
                } else {
                    // Aborted before pumping: writers still flushing are
                    // dropped with their backlog.
                    c.lost += c.backlog;
                    c.in_flight -= c.backlog;
                    c.backlog = 0;
                }
            }
        }
        for c in &mut self.clients {
            if c.writer_alive() && self.ended_at.is_none() {
                c.backlog = if c.receiver_dropped {
                    0
                } else {
                    c.in_flight.saturating_sub(self.sink_capacity)
                };
            }
        }
        self.check_step()
    }

    /// Gives the ids handed out to the clients, in the order they connected,
    /// and accounts for those closed at admission.
    /// Returns whether a stream was admitted.
    fn observe_admissions(&mut self, ended_now: bool, aborted_or_failed: bool) -> bool {
        let mut admitted = false;
        let ids = self.ids.borrow().clone();
        let mut waiting = self
            .queue
            .iter()
            .flatten()
            .copied()
            .filter(|&i| self.clients[i].id.is_none())
            .collect::<Vec<_>>()
            .into_iter();
        for &id in &ids[self.owners.len()..] {
            let Some(i) = waiting.next() else { break };
            let c = &mut self.clients[i];
            c.id = Some(id);
            c.settled = true;
            c.visits.push(0);
            self.owners.insert(id, i);
            self.expect.accepted.certain();
            admitted = true;
        }
        for c in &mut self.clients {
            if c.settled || c.reader_alive() {
                continue;
            }
            // Let go of without an id: closed at admission because the
            // default channel had closed, or dropped unaccepted with the
            // halves stream when the run stopped.
            c.settled = true;
            if self.shutting_down {
                // Dropped with the halves stream.
            } else if !ended_now {
                self.expect.accepted.certain();
                self.expect.closed_with_channel.certain();
            } else if aborted_or_failed {
                self.expect.accepted.maybe();
                self.expect.closed_with_channel.maybe();
            }
        }
        admitted
    }

    /// A newcomer may take the place of a stream still flushing after a
    /// Shutdown, abandoning its flush (SPEC §4.10): how much such a stream
    /// delivers is then no longer pinned, only the order.
    fn observe_possible_evictions(&mut self) {
        if self.max_streams.is_none() {
            return;
        }
        for c in &mut self.clients {
            // Whether its connection is closed already says nothing: an
            // evicted stream's connection is closed too.
            if c.left == Some(Left::Announced(DisconnectReason::Shutdown)) {
                c.values_uncertain = true;
            }
        }
    }

    /// Works out why each stream the multiplexer let go of during the step
    /// left, and checks that those that had to leave did.
    fn observe_departures(&mut self, before: &Before, plan: &Plan) -> Result<(), String> {
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if !c.is_open() || c.reader_alive() {
                continue;
            }
            let dropped = |k: ChannelId| self.consumers[k].state == Consumption::Dropped;
            let left = if let Some(left) = plan.leaving(i) {
                left
            } else if dropped(c.channel) && !plan.abort {
                // Also at a graceful shutdown: the shutdown poll looks at
                // every channel's sink before it closes the streams.
                Left::ClosedWithChannel
            } else if plan.shutdown {
                Left::Announced(DisconnectReason::Shutdown)
            } else if plan.abort {
                Left::Aborted
            } else if c.read_ended || c.receiver_dropped {
                Left::Announced(DisconnectReason::Linkdead)
            } else {
                return Err(format!(
                    "stream {:?} (client {i}) was closed for no reason",
                    c.id
                ));
            };
            match left {
                Left::Announced(DisconnectReason::Linkdead) => self.expect.linkdead += 1,
                Left::Announced(DisconnectReason::Shutdown) => self.expect.shutdown += 1,
                Left::Announced(DisconnectReason::BacklogFull) => self.expect.backlog_full += 1,
                Left::Announced(DisconnectReason::IdleTimeout) => self.expect.idle_timeout += 1,
                Left::Announced(DisconnectReason::WriteTimeout) => self.expect.write_timeout += 1,
                Left::Announced(_) => {}
                Left::ClosedWithChannel => self.expect.closed_with_channel.certain(),
                Left::Aborted => {}
            }
            let draining = |k: ChannelId| self.consumers[k].state == Consumption::Draining;
            // Everything it sent had been read if its channel was draining
            // when the step began, or if its reader ended in a draining
            // channel (the items, then Linkdead: SPEC §4.8).
            let read_all = before
                .draining
                .get(before.channel.get(i).copied().unwrap_or(0))
                == Some(&true)
                || (c.read_ended
                    && draining(c.channel)
                    && left == Left::Announced(DisconnectReason::Linkdead));
            let c = &mut self.clients[i];
            c.left = Some(left);
            c.must_deliver = read_all.then_some(c.sent);
            if plan.leaving(i).is_none() && c.backlog > c.quiescent_backlog {
                // Values were queued to it in this step, and it left for a
                // reason of its own: the writer may or may not have been
                // pumped before the multiplexer noticed.
                c.values_uncertain = true;
            } else if left != Left::Announced(DisconnectReason::Shutdown) && !c.receiver_dropped {
                // Dropped at once, with its backlog (the sink keeps its own).
                c.lost += c.backlog;
                c.in_flight -= c.backlog;
                c.backlog = 0;
            }
        }
        for &(i, _) in &plan.leave {
            if self.clients[i].reader_alive() {
                return Err(format!(
                    "stream {:?} (client {i}) should have been closed",
                    self.clients[i].id
                ));
            }
        }
        for &i in &plan.must_leave {
            if self.clients[i].is_open() {
                return Err(format!(
                    "stream {:?} (client {i}) should have been closed by a failed write",
                    self.clients[i].id
                ));
            }
        }
        if (plan.shutdown || plan.abort)
            && let Some(c) = self.clients.iter().find(|c| c.is_open())
        {
            return Err(format!("stream {:?} still open after {plan:?}", c.id));
        }
        Ok(())
    }

    /// What must hold after every step.
    fn check_step(&self) -> Result<(), String> {
        for (i, c) in self.clients.iter().enumerate() {
            if !c.expected.starts_with(&c.received) {
                return Err(format!(
                    "client {i} (id {:?}) received {:?}, expected a prefix of {:?} (SPEC §4.3, §4.4)",
                    c.id, c.received, c.expected
                ));
            }
            if c.reading
                && !c.receiver_dropped
                && !c.values_uncertain
                && c.received.len() + c.lost != c.expected.len()
            {
                return Err(format!(
                    "client {i} (id {:?}) reads but received {:?} of {:?} ({} lost)",
                    c.id, c.received, c.expected, c.lost
                ));
            }
        }
        if !self.running() {
            return Ok(());
        }
        let open = self.clients.iter().filter(|c| c.is_open()).count();
        let stats = self.stats.snapshot();
        if stats.streams_open != open as u64 {
            return Err(format!(
                "stats say {} streams open, {open} are (SPEC §4.12)",
                stats.streams_open
            ));
        }
        for c in &self.clients {
            if c.is_open()
                && c.read_ended
                && self.consumers[c.channel].state == Consumption::Draining
            {
                return Err(format!(
                    "stream {:?} ended its read side in a draining channel but is still open (SPEC §4.8)",
                    c.id
                ));
            }
        }
        // Accept errors are counted as the halves stream yields them: all of
        // them up to the first connection still waiting to be accepted,
        // unless the limit on streams stopped the multiplexer from polling
        // the halves stream after the last connection it accepted.
        let first_waiting = self
            .queue
            .iter()
            .position(|item| item.is_some_and(|i| !self.clients[i].settled));
        let errors_before =
            |end: usize| self.queue[..end].iter().filter(|i| i.is_none()).count() as u64;
        let most = errors_before(first_waiting.unwrap_or(self.queue.len()));
        let least = match self.max_streams {
            None => most,
            Some(_) => errors_before(
                self.queue
                    .iter()
                    .rposition(|item| item.is_some_and(|i| self.clients[i].settled))
                    .unwrap_or(0),
            ),
        };
        if !self.shutting_down && !(least..=most).contains(&stats.accept_errors) {
            return Err(format!(
                "stats say {} accept errors, {least}..={most} were yielded (SPEC §4.8)",
                stats.accept_errors
            ));
        }
        if let Some(max) = self.max_streams {
            if open > max {
                return Err(format!(
                    "{open} streams open, at most {max} allowed (SPEC §4.10)"
                ));
            }
            // Streams still flushing after a Shutdown do not count: they
            // are dropped for a newcomer rather than keep it waiting.
            let lobby_closed = self.consumers[0].state == Consumption::Dropped;
            if first_waiting.is_some() && open < max && !lobby_closed && !self.shutting_down {
                return Err(format!(
                    "a client waits to be accepted with {open} of {max} streams open (SPEC §4.10)"
                ));
            }
        }
        let all_draining = self
            .consumers
            .iter()
            .all(|c| c.state == Consumption::Draining);
        if all_draining {
            for c in self.clients.iter().filter(|c| c.is_open()) {
                if c.delivered != c.sent {
                    return Err(format!(
                        "stream {:?}: {} frames sent, {} delivered, every consumer draining (SPEC §4.1, §4.5)",
                        c.id, c.sent, c.delivered
                    ));
                }
            }
        }
        Ok(())
    }

    /// Ends the run the way the scenario says, lets every consumer and
    /// client take everything, and checks that every connection is closed.
    fn end(&mut self, end: End) -> Result<(), String> {
        self.end = Some(end);
        match end {
            End::Shutdown => self.step(Step::Control(ControlMessage::Shutdown))?,
            End::CloseControl => self.step(Step::CloseControl)?,
            End::Abort => self.step(Step::Control(ControlMessage::Abort))?,
            End::ShutdownThenAbort => {
                self.step(Step::Control(ControlMessage::Shutdown))?;
                self.step(Step::Control(ControlMessage::Abort))?;
            }
        }
        self.step(Step::Release)?;
        if self.running() {
            return Err(
                "the run did not resolve after Shutdown, with every consumer and client reading (SPEC §4.11)"
                    .into(),
            );
        }
        for (k, consumer) in self.consumers.iter_mut().enumerate() {
            let Some(rx) = consumer.rx.as_mut() else {
                continue;
            };
            loop {
                match rx.try_recv() {
                    Ok(packet) => {
                        count_delivery(&mut self.clients, &packet);
                        consumer.trace.push(packet);
                    }
                    Err(TryRecvError::Closed) => break,
                    Err(TryRecvError::Empty) => {
                        return Err(format!("channel {k}'s sink is still open after the run"));
                    }
                }
            }
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            read_values(c);
            if c.values.is_some() && !c.values_closed {
                return Err(format!(
                    "client {i}'s connection is still open for writing after the run (SPEC §4.11)"
                ));
            }
            if c.reader_alive() {
                return Err(format!(
                    "client {i}'s connection is still open for reading after the run (SPEC §4.11)"
                ));
            }
        }
        Ok(())
    }

    /// The invariants over the whole run: every channel's packets, every
    /// client's frames and values, and the counters.
    fn check(&self) -> Result<(), String> {
        let n = self.channels;
        let dropped = |k: ChannelId| self.consumers[k].state == Consumption::Dropped;
        let graceful = matches!(self.end, Some(End::Shutdown | End::CloseControl));

        // Per stream and channel visit: Connected, messages in order,
        // exactly one Disconnected (SPEC §4.1).
        let mut visits: Vec<Vec<Vec<Visit>>> = vec![vec![Vec::new(); n]; self.clients.len()];
        let mut announced = [0u64; 6];
        let mut messages = 0u64;
        for (k, consumer) in self.consumers.iter().enumerate() {
            for packet in &consumer.trace {
                let id = packet.id();
                let Some(&i) = self.owners.get(&id) else {
                    return Err(format!(
                        "channel {k} got {packet:?}, for an id never handed out"
                    ));
                };
                let list = &mut visits[i][k];
                let open = list.last_mut().filter(|v| v.end.is_none());
                match packet {
                    IncomingPacket::StreamConnected(_) => {
                        if open.is_some() {
                            return Err(format!("channel {k}: {id} connected twice in a row"));
                        }
                        list.push(Visit::default());
                    }
                    IncomingPacket::Message(message) => {
                        messages += 1;
                        let Some(visit) = open else {
                            return Err(format!("channel {k}: {packet:?} outside a visit"));
                        };
                        if message.value.client != i {
                            return Err(format!(
                                "channel {k}: a frame of client {} came as stream {id}, client {i}'s",
                                message.value.client
                            ));
                        }
                        if visit
                            .seqs
                            .last()
                            .is_some_and(|&last| message.value.seq <= last)
                        {
                            return Err(format!(
                                "channel {k}: stream {id} delivered {:?} after {:?}",
                                message.value.seq, visit.seqs
                            ));
                        }
                        visit.seqs.push(message.value.seq);
                    }
                    IncomingPacket::StreamDisconnected(_, reason) => {
                        let Some(visit) = open else {
                            return Err(format!("channel {k}: {packet:?} outside a visit"));
                        };
                        if let DisconnectReason::ChannelChange(j) = *reason
                            && (j == k || j >= n)
                        {
                            return Err(format!("channel {k}: {packet:?} to no other channel"));
                        }
                        announced[reason_index(*reason)] += 1;
                        visit.end = Some(*reason);
                    }
                }
            }
        }

        for (i, c) in self.clients.iter().enumerate() {
            let visits = &visits[i];
            check_values(i, c)?;
            let Some(id) = c.id else { continue };
            let touched = c.visits.iter().any(|&k| dropped(k));
            let final_reasons: Vec<DisconnectReason> = visits
                .iter()
                .flatten()
                .filter_map(|v| v.end)
                .filter(|r| !matches!(r, DisconnectReason::ChannelChange(_)))
                .collect();
            let expected_reason = match c.left {
                Some(Left::Announced(reason)) => Some(reason),
                _ => None,
            };
            if final_reasons.len() > 1
                || final_reasons
                    .first()
                    .is_some_and(|r| Some(*r) != expected_reason)
            {
                return Err(format!(
                    "stream {id} left with {final_reasons:?}, expected {:?} (SPEC §4.1)",
                    c.left
                ));
            }
            if touched {
                // A closed channel took some of its packets with it: what
                // arrived must still be in order and never twice.
                let mut seqs: Vec<u32> = visits
                    .iter()
                    .flatten()
                    .flat_map(|v| v.seqs.clone())
                    .collect();
                seqs.sort_unstable();
                if seqs.windows(2).any(|w| w[0] == w[1])
                    || seqs.last().is_some_and(|&s| s >= c.sent)
                {
                    return Err(format!("stream {id}: frames {seqs:?} of {} sent", c.sent));
                }
                continue;
            }
            // Its visits, channel after channel, as it was moved (SPEC
            // §4.2): each ends by moving it to the next, the last one with
            // the reason it left. An abort drops what was still queued: a
            // visit may then be missing, or lack its Disconnected.
            let mut next = vec![0usize; n];
            let mut seqs = Vec::new();
            for (step, &channel) in c.visits.iter().enumerate() {
                let Some(visit) = visits[channel].get(next[channel]) else {
                    if graceful {
                        return Err(format!(
                            "stream {id}: no visit #{step} in channel {channel}, moved through {:?}",
                            c.visits
                        ));
                    }
                    continue;
                };
                next[channel] += 1;
                seqs.extend_from_slice(&visit.seqs);
                let end = match c.visits.get(step + 1) {
                    Some(&to) => Some(DisconnectReason::ChannelChange(to)),
                    None => expected_reason,
                };
                if visit.end != end && (graceful || visit.end.is_some()) {
                    return Err(format!(
                        "stream {id}: visit #{step} in channel {channel} ended with {:?}, expected {end:?} (moved through {:?}, left {:?})",
                        visit.end, c.visits, c.left
                    ));
                }
            }
            if (0..n).any(|k| visits[k].len() != next[k]) {
                return Err(format!(
                    "stream {id}: visits {visits:?}, but moved through {:?} only (SPEC §4.2)",
                    c.visits
                ));
            }
            if c.left.is_none() || c.left == Some(Left::ClosedWithChannel) {
                return Err(format!(
                    "stream {id} left as {:?} with no channel closed",
                    c.left
                ));
            }
            let in_order = seqs.iter().enumerate().all(|(n, &s)| s as usize == n);
            let count = seqs.len() as u32;
            if !in_order || count > c.sent || c.must_deliver.is_some_and(|m| count != m) {
                return Err(format!(
                    "stream {id}: frames {seqs:?} delivered of {} sent, {:?} required (SPEC §4.1)",
                    c.sent, c.must_deliver
                ));
            }
        }
        self.check_stats(messages, announced)
    }

    /// The counters agree with what the consumers and clients saw (SPEC
    /// §4.12).
    fn check_stats(&self, messages: u64, announced: [u64; 6]) -> Result<(), String> {
        let s = self.stats.snapshot();
        let e = &self.expect;
        let any_dropped = self
            .consumers
            .iter()
            .any(|c| c.state == Consumption::Dropped);
        let graceful = matches!(self.end, Some(End::Shutdown | End::CloseControl));
        let received: u64 = self.clients.iter().map(|c| c.received.len() as u64).sum();
        let mut wrong = Vec::new();
        let mut expect = |what: &str, ok: bool, detail: String| {
            if !ok {
                wrong.push(format!("{what}: {detail}"));
            }
        };
        let d = s.disconnects;
        expect(
            "frames_in",
            if any_dropped {
                s.frames_in >= messages
            } else {
                s.frames_in == messages
            },
            format!("{} counted, {messages} delivered", s.frames_in),
        );
        expect(
            "frames_out",
            s.frames_out == received,
            format!("{} counted, {received} received", s.frames_out),
        );
        expect(
            "linkdead",
            d.linkdead == e.linkdead,
            format!("{} != {}", d.linkdead, e.linkdead),
        );
        expect(
            "shutdown",
            d.shutdown == e.shutdown,
            format!("{} != {}", d.shutdown, e.shutdown),
        );
        expect(
            "backlog_full",
            d.backlog_full == e.backlog_full,
            format!("{} != {}", d.backlog_full, e.backlog_full),
        );
        expect(
            "channel_change",
            e.channel_change.holds(d.channel_change),
            format!("{} not in {:?}", d.channel_change, e.channel_change),
        );
        if !any_dropped && graceful {
            let counted = [
                d.linkdead,
                d.channel_change,
                d.shutdown,
                d.backlog_full,
                d.idle_timeout,
                d.write_timeout,
            ];
            expect(
                "announcements",
                counted == announced,
                format!("counted {counted:?}, announced {announced:?}"),
            );
        }
        expect(
            "dropped_unknown_id",
            s.dropped_unknown_id == e.dropped_unknown_id,
            format!("{} != {}", s.dropped_unknown_id, e.dropped_unknown_id),
        );
        expect(
            "moves_rejected",
            e.moves_rejected.holds(s.moves_rejected),
            format!("{} not in {:?}", s.moves_rejected, e.moves_rejected),
        );
        expect(
            "closed_with_channel",
            e.closed_with_channel.holds(s.closed_with_channel),
            format!(
                "{} not in {:?}",
                s.closed_with_channel, e.closed_with_channel
            ),
        );
        expect(
            "accepted",
            e.accepted.holds(s.accepted),
            format!("{} not in {:?}", s.accepted, e.accepted),
        );
        let aborted = matches!(self.end, Some(End::Abort | End::ShutdownThenAbort))
            && self.allowed.contains(&Finding::StreamsOpenAfterAbort);
        expect(
            "streams_open",
            aborted || s.streams_open == 0,
            format!("{} after the run resolved", s.streams_open),
        );
        expect(
            "accepted == streams_open + departed",
            s.accepted == s.streams_open + s.departed(),
            format!("{} != {} + {}", s.accepted, s.streams_open, s.departed()),
        );
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "stats {s:?} disagree (SPEC §4.12): {}",
                wrong.join("; ")
            ))
        }
    }
}

/// Counts a frame delivered to a consumer for the client that sent it.
fn count_delivery(clients: &mut [Client], packet: &IncomingPacket<Frame>) {
    if let IncomingPacket::Message(message) = packet
        && let Some(c) = clients.get_mut(message.value.client)
    {
        c.delivered += 1;
    }
}

/// Takes every value that has arrived for a client. Returns whether any did.
fn read_values(client: &mut Client) -> bool {
    let Some(rx) = client.values.as_mut() else {
        return false;
    };
    let mut moved = false;
    loop {
        match rx.try_recv() {
            Ok(value) => {
                client.received.push(value);
                client.in_flight = client.in_flight.saturating_sub(1);
                moved = true;
            }
            Err(TryRecvError::Closed) => {
                client.values_closed = true;
                return moved;
            }
            Err(TryRecvError::Empty) => return moved,
        }
    }
}

/// A client's values: in order, never another's, and all of them but those
/// dropped with its stream (SPEC §4.3, §4.4, §4.6).
fn check_values(i: usize, c: &Client) -> Result<(), String> {
    let due = c.expected.len().saturating_sub(c.lost);
    let ok = if c.values_uncertain {
        c.expected.starts_with(&c.received)
    } else {
        c.received[..] == c.expected[..due]
    };
    if !ok {
        return Err(format!(
            "client {i} (id {:?}) received {:?}, expected {:?} (SPEC §4.3)",
            c.id,
            c.received,
            &c.expected[..due]
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct Visit {
    seqs: Vec<u32>,
    end: Option<DisconnectReason>,
}

fn reason_index(reason: DisconnectReason) -> usize {
    match reason {
        DisconnectReason::Linkdead => 0,
        DisconnectReason::ChannelChange(_) => 1,
        DisconnectReason::Shutdown => 2,
        DisconnectReason::BacklogFull => 3,
        DisconnectReason::IdleTimeout => 4,
        DisconnectReason::WriteTimeout => 5,
        other => unreachable!("the model knows no {other:?}"),
    }
}
