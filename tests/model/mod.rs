//! A model of the multiplexer over in-memory transports, shared by
//! `tests/properties.rs` (proptest) and the `packets` fuzz target.
//!
//! A [`Scenario`] is a few settings (channels, backlog, buffers, stream
//! limit, id generator, and an optional clock with its time limits) and a
//! list of [`Op`]s. [`run`] builds a multiplexer whose connections are
//! `futures::channel::mpsc` pairs, spawns its `Run` on a `LocalPool`, and
//! applies the operations one at a time. After each one it *settles*: runs
//! the pool until it stalls, lets every draining consumer and every reading
//! client take what arrived, and repeats until nothing moves. The clock is
//! an `mpsc` channel the test ticks by hand (one tick a second, limits in
//! whole seconds). Nothing sleeps, and every run is deterministic.
//!
//! The model does not re-implement the multiplexer. It knows what the test
//! did (who sent which frame, which values were addressed to whom, who was
//! stalled, dropped or told to leave, how many ticks have passed), and it
//! watches what the multiplexer does to the transports: every read half,
//! write half and the id generator write to one shared *trace*, in the
//! order things happen (an id offered, a connection admitted or turned
//! away, a frame read, a reader ended or dropped, a value handed to a write
//! sink, a flush, a close, a write half dropped), with the number of the
//! poll each happened in. A write half is the client's `mpsc` (it takes
//! `client_buffer + 1` values, and its flush waits while it is full) whose
//! close, like a socket's that lingers, waits until the client has read
//! everything; a client reads everything, nothing, or a few values at a
//! time. From the packets and the ticks it predicts what
//! the rules decide (which recipient has room, which stream a packet still
//! reaches, which time limit passes at which tick); from the trace it works
//! out the rest (which reader ended, which consumer was noticed gone), and
//! it checks that each event was allowed when it happened.
//!
//! # The rules
//!
//! - A stream is *open* (read, addressable, counted against
//!   `max_streams`), *leaving* (announced gone, still addressable for
//!   `Message` and `Shutdown`, flushing), *closing* (not addressable:
//!   flushing what was queued, then closing its sink) or gone. A reader
//!   that ends makes it leaving with a clock whose write or idle limit
//!   lingers, closing otherwise; so does an idle timeout. A leaving stream
//!   closes once the linger (the write limit, else the idle limit) has
//!   passed since it left.
//! - A `Message` to a stream whose backlog lacks room first pumps its
//!   writer into its sink; only if room is still short does it disconnect
//!   the stream (`BacklogFull`).
//! - At each tick, before anything else in that poll: a busy writer (values
//!   queued, in its sink unflushed, or closing) that made no progress for
//!   the write limit is dropped (`WriteTimeout` if it was open); an open
//!   stream that read nothing for the idle limit leaves (`IdleTimeout`); a
//!   leaving one past its linger closes. A limit of T passes at tick
//!   `start + T`.
//! - A newcomer that brings the held streams above `max_streams` evicts the
//!   one that left its open state longest ago. A connection for which the
//!   id generator offers no free id is turned away and counted as an accept
//!   error.
//! - Rooms (`Join`, `Leave`): a `Join` of an id that is not an open stream
//!   is dropped and counted (`dropped_unknown_id`); a `Leave` of one that is
//!   not addressable (open or leaving) is counted, and one of a non-member
//!   changes nothing. A room's members are kept in the order they joined, a
//!   member that leaves giving its place to the last one. A stream leaves
//!   every room as its departure is announced (a time limit, a packet, its
//!   reader's end, a failed write, a graceful shutdown), when its channel's
//!   sink closes, and at an abort; a move is no departure.
//! - A message to a room is counted (`room_sends`) and goes to the members
//!   the room has as the packet is applied, in their order, but the one
//!   left out; a member no longer open by its turn is skipped, uncounted.
//! - Delivery classes: *reliable* as above; *volatile*: where a reliable
//!   message would disconnect (`BacklogFull`), nothing is sent and
//!   `volatile_dropped` counts one; *latest(key)*: only the message's last
//!   value is sent; if a value of that key still waits in the recipient's
//!   backlog (not yet handed to its sink), it is replaced in its place
//!   (`conflated`), before any pump; otherwise the value is queued as a
//!   reliable one.
//!
//! # Invariants
//!
//! The numbers in brackets are the guarantees of the crate docs.
//!
//! As each event happens (from the trace):
//! - a value is handed to a write sink only in the order it was addressed,
//!   only to the stream it was addressed to, never after that sink was
//!   closed; a sink is closed only for a closing stream, after every value
//!   queued for it was handed over and flushed (3, 4, 11);
//! - an id offered and taken is free, one skipped is live, and a connection
//!   is turned away only after as many live ids as streams held plus one
//!   (4, 12);
//! - a newcomer over the limit evicts exactly the stream that left its open
//!   state longest ago, at once, and nothing else (10);
//! - the time limits are handled first in the poll that takes the tick
//!   (14).
//!
//! After every step:
//! - a stream the packets or the time limits closed is closed, in the first
//!   poll, the right way (its reader only, or its writer too), and no stream
//!   or writer goes without a cause: a timeout happens exactly at the tick
//!   its limit passes, not before and not after (2, 4, 6, 8, 14);
//! - `BacklogFull` only for a client whose sink was full (or for a message
//!   larger than the whole backlog) (6);
//! - a stream whose reader ended in a draining channel has left, and so has
//!   every open stream of a channel whose consumer went and was noticed (8);
//! - every frame sent by an open stream of a draining channel has been read,
//!   and with every consumer draining, delivered (1, 5);
//! - what is queued for a stream moves into its sink as the sink takes it;
//!   a reading client has received exactly what was handed to it, all of
//!   it once its writer is free; a closing stream whose client takes its
//!   values closes (3, 6, 11);
//! - `streams_open` is the number of open streams, accept errors are
//!   counted as they are yielded or turned away, at most `max_streams` are
//!   open and held, none waits below the limit, and every other counter
//!   equals what the model expects (8, 10, 12);
//! - the run never spins: it stops waking itself once idle (7);
//! - the `Rooms` handle shows the model's rooms: each room's members in
//!   order, its length, each member's rooms in the order it joined them,
//!   and the counts; `rooms` and `room_members` in stats agree, and only
//!   open streams are members (15);
//! - `room_sends`, `volatile_dropped` and `conflated` equal the model's
//!   counts, and a stream sent only volatile messages is never disconnected
//!   by them (16).
//!
//! At the end (after Shutdown, the end of control, Abort, Shutdown then
//! Abort, or Shutdown while the clock ticks, with every consumer and client
//! then reading):
//! - the run resolved (Ok, or `AllChannelsClosed` if every consumer went),
//!   every channel sink and every connection is closed (11);
//! - each channel's packets form visits per id: Connected, messages in read
//!   order, one Disconnected; never a packet outside a visit, never a frame
//!   under another client's id (1);
//! - a stream's visits follow its moves, each ending with
//!   `ChannelChange(next)`, the last with the reason it left; its frames
//!   across all visits are exactly those the multiplexer read, 0, 1, 2, ...
//!   with none lost or doubled, and all it sent when its channel was
//!   draining as it left. Where a closed channel took packets away, what
//!   remains is still in order and never doubled (1, 2);
//! - every client received exactly the values handed to it, in the order
//!   they were addressed to it, a value of a key taking the place of the
//!   one of that key that still waited (3, 4, 6, 16);
//! - a value sent to a room reached only streams that were members as it
//!   was sent, each at most once (all of them, with the rest of what was
//!   queued, once the clients read); no value a newer one of its key
//!   replaced was received, and a client received the values of each key
//!   oldest first (15, 16);
//! - the counters: frames in and out, disconnects by reason (and as
//!   announced), packets dropped for unknown ids, moves rejected, streams
//!   closed with their channel, accepted == streams_open + departed (12).
//!
//! [`check`](Harness::check) and [`check_step`](Harness::check_step)
//! compare.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::mpsc::{self, TryRecvError};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::{Sink, Stream, StreamExt};
use stream_multiplexer::{
    ChannelId, Clock, ControlMessage, DisconnectReason, IdGen, IncomingPacket, IncrementIdGen,
    MultiplexerBuilder, MultiplexerError, OutgoingMessage, OutgoingPacket, RoomName, Rooms, Stats,
    StatsSnapshot, StreamId,
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
/// idle multiplexer must stop waking itself (guarantee 7 bounds a poll's
/// work, it does not allow spinning).
const POLLS_PER_ROUND: usize = 1_000;
/// The clock's period: the limits are whole seconds, so a limit of T
/// seconds is T ticks.
const PERIOD: Duration = Duration::from_secs(1);
/// The channel new streams join.
const LOBBY: ChannelId = 0;
/// The rooms operations name ("r0" to "r3"): few, so that streams meet.
pub const ROOMS: u8 = 4;
/// The keys of latest-by-key messages: few, so that values replace one
/// another.
pub const KEYS: u8 = 3;

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
    /// After a tick that hands back timer entries, `Run` no longer listens
    /// to the clock: the next ticks do not wake it, so every later time
    /// limit passes only when something else wakes it (regression test
    /// `a_tick_that_expires_a_stream_leaves_the_clock_listened_to`). Looking
    /// past it, the test wakes the run itself after each tick.
    TicksStopWakingAfterAnExpiry,
    /// A `Message` queued to a writer whose backlog is empty but whose sink
    /// still holds values it has not flushed (a busy writer) restarts its
    /// write limit, as if it had just become busy: the `WriteTimeout` comes
    /// late (regression test
    /// `a_message_to_a_stuck_writer_does_not_restart_its_write_limit`).
    /// Looking past it, the model restarts the limit the same way.
    WriteLimitRestartsOnQueue,
    /// A closing writer whose flush completes while its sink's close is
    /// still pending is not counted as making progress: its `WriteTimeout`
    /// comes early (regression test
    /// `a_flush_that_completes_while_the_close_waits_is_progress`). Looking
    /// past it, the model does not count such a flush either.
    FlushWhileClosingIsNoProgress,
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
    /// The n-th (modulo their number) of the clients that do not read what
    /// is written to them and that a packet still reaches (the n-th client
    /// if there is none): slow clients get values, so that backlogs fill
    /// and writes time out.
    Slow(u8),
    /// The n-th (modulo their number) of the open streams (the n-th client
    /// if there is none): what a room's members are.
    Open(u8),
}

/// How a message is delivered (`Delivery`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Class {
    /// `Delivery::Reliable`.
    #[default]
    Reliable,
    /// `Delivery::Volatile`.
    Volatile,
    /// `Delivery::Latest`, with the key taken modulo [`KEYS`].
    Latest(u8),
}

impl Class {
    /// The key of a latest-by-key message.
    fn key(self) -> Option<u8> {
        match self {
            Class::Latest(key) => Some(key % KEYS),
            _ => None,
        }
    }

    fn apply(self, message: OutgoingMessage<u32>) -> OutgoingMessage<u32> {
        match self {
            Class::Reliable => message,
            Class::Volatile => message.volatile(),
            Class::Latest(key) => message.latest(u64::from(key % KEYS)),
        }
    }
}

/// The name of the n-th room, modulo [`ROOMS`].
fn room_name(room: usize) -> RoomName {
    format!("r{room}").into()
}

/// One thing that happens to the system. Client, channel and room numbers
/// are taken modulo the clients so far, the channels and [`ROOMS`], so any
/// value is valid.
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
    /// One of the clients that read and whose write half the multiplexer
    /// holds (the n-th, modulo their number) stops reading what the server
    /// writes to it.
    StopReading { client: u8 },
    /// One of the clients that do not read and whose write half the
    /// multiplexer holds (the n-th, modulo their number) reads again.
    ResumeReading { client: u8 },
    /// One of the clients that do not read and whose write half the
    /// multiplexer holds (the n-th, modulo their number) takes a few of the
    /// values that arrived, as a slow but live link does: its sink makes
    /// room, its writer progresses.
    ReadSome { client: u8, values: u8 },
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
    Message {
        to: Vec<Target>,
        values: u8,
        class: Class,
    },
    /// `OutgoingPacket::Message` to a room (`OutgoingMessage::to_room`),
    /// leaving out the stream `except` stands for, if any.
    RoomMessage {
        room: u8,
        except: Option<Target>,
        values: u8,
        class: Class,
    },
    /// `OutgoingPacket::Join`.
    Join { to: Vec<Target>, room: u8 },
    /// `OutgoingPacket::Leave`.
    Leave { to: Vec<Target>, room: u8 },
    /// `OutgoingPacket::ChangeChannel`; the channel is taken modulo the
    /// channels plus two, the last two meaning channels that do not exist.
    ChangeChannel { to: Vec<Target>, channel: u8 },
    /// `OutgoingPacket::Shutdown`.
    Shutdown { to: Vec<Target> },
    /// Several of the packet operations above (`Message`, `RoomMessage`,
    /// `Join`, `Leave`, `ChangeChannel`, `Shutdown`; anything else in it is
    /// ignored), queued together so that the multiplexer applies them in
    /// one go, in order (guarantee 3).
    Burst(Vec<Op>),
    /// `ticks` ticks of the clock, each a step of its own (with no clock,
    /// steps in which nothing happens).
    Tick { ticks: u8 },
    /// One tick and another operation (not a tick) in the same step: the
    /// poll that takes the tick sees both, and handles the time limits
    /// first.
    TickWith(Box<Op>),
}

impl Op {
    fn is_packet(&self) -> bool {
        matches!(
            self,
            Op::Message { .. }
                | Op::RoomMessage { .. }
                | Op::Join { .. }
                | Op::Leave { .. }
                | Op::ChangeChannel { .. }
                | Op::Shutdown { .. }
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
    /// Every client stops reading and is sent as many values as its sink
    /// takes (or its backlog holds); a tick passes; the odd clients are
    /// sent an empty message (which is no progress), then `Shutdown`; the
    /// even clients take one value (which is), and the clock ticks past the
    /// write limit before the clients read: the write limit bounds every
    /// flush, from the last progress (guarantee 14).
    ShutdownWhileTicking,
}

/// Where stream ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// `IncrementIdGen`, from 1.
    Counting,
    /// `IncrementIdGen` seeded just below `usize::MAX`, so that ids wrap.
    Wrapping,
    /// Counting, but every other connection is offered nothing but the
    /// newest stream's id for as long as that stream is held: the
    /// multiplexer must turn it away and count an accept error.
    Hogging,
}

/// A clock's time limits, in ticks; `None` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MultiplexerBuilder::idle_timeout`.
    pub idle: Option<u64>,
    /// `MultiplexerBuilder::write_timeout`.
    pub write: Option<u64>,
}

impl Limits {
    /// How long a leaving stream waits for last words: the write limit,
    /// else the idle limit.
    fn linger(&self) -> Option<u64> {
        self.write.or(self.idle)
    }
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
    /// The id generator.
    pub ids: Ids,
    /// A clock ticked by the test, and the limits it enforces; `None` for
    /// no clock.
    pub clock: Option<Limits>,
    /// What happens, in order.
    pub ops: Vec<Op>,
    /// How it ends.
    pub end: End,
}

impl Scenario {
    /// Decodes any bytes into a scenario (for the fuzz target): a few
    /// setting bytes, then one tag byte per operation followed by its
    /// arguments. Missing bytes read as zero. Tags from `0xE0` up are ticks,
    /// so inputs written before the clock existed decode as they did; four
    /// of them (`0xF2`, `0xF6`, `0xFA`, `0xFE`) are room packets, as are the
    /// packets of a burst whose tag is `0xF0` or more. A message's class
    /// comes from the high bits of its count of values, so that a count
    /// under 16 is a reliable message, as it was before classes; a target
    /// byte from `0xC0` to `0xCF` names an open stream. Inputs that use
    /// none of these decode as they did before rooms.
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut input = Input(data.iter());
        let channels = 1 + usize::from(input.byte() % 3);
        let backlog = 1 + usize::from(input.byte() % 4);
        let client_buffer = usize::from(input.byte() % 3);
        let channel_buffer = usize::from(input.byte() % 3);
        let limit = input.byte();
        let max_streams = (limit % 4 == 0).then_some(1 + usize::from(limit / 4 % 3));
        let ids = match input.byte() % 4 {
            1 => Ids::Wrapping,
            3 => Ids::Hogging,
            _ => Ids::Counting,
        };
        let ending = input.byte();
        let end = match ending % 5 {
            0 => End::Shutdown,
            1 => End::CloseControl,
            2 => End::Abort,
            3 => End::ShutdownThenAbort,
            _ => End::ShutdownWhileTicking,
        };
        // 0 or 1 tick would make every step a timeout: limits of 2 to 6.
        let ticks = |k: u8| (k > 0).then_some(u64::from(k) + 1);
        let clock = match ending / 5 {
            0 => None,
            c => Some(Limits {
                idle: ticks(c % 6),
                write: ticks(c / 6 % 6),
            }),
        };
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS && !input.is_empty() {
            ops.push(input.op());
        }
        Scenario {
            channels,
            backlog,
            client_buffer,
            channel_buffer,
            max_streams,
            ids,
            clock,
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

    fn op(&mut self) -> Op {
        let tag = self.byte();
        if tag >= 0xE0 {
            return match tag % 4 {
                1 => {
                    let tag = self.byte() % 0xE0;
                    Op::TickWith(Box::new(self.plain_op(tag)))
                }
                3 => Op::ReadSome {
                    client: self.byte(),
                    values: 1 + self.byte() % 3,
                },
                2 if tag >= 0xF0 => self.room_packet(tag / 4),
                _ => Op::Tick {
                    ticks: 1 + tag / 2 % 4,
                },
            };
        }
        self.plain_op(tag)
    }

    /// An operation other than a tick.
    fn plain_op(&mut self, tag: u8) -> Op {
        match tag % 14 {
            0 => Op::Connect,
            1 => Op::AcceptError,
            2 => Op::Send {
                client: self.byte(),
                frames: self.byte() % 5,
            },
            3 => Op::EndRead {
                client: self.byte(),
            },
            4 => Op::StopReading {
                client: self.byte(),
            },
            5 => Op::ResumeReading {
                client: self.byte(),
            },
            6 => Op::DropReceiver {
                client: self.byte(),
            },
            7 => Op::Stall {
                channel: self.byte(),
            },
            8 => Op::Resume {
                channel: self.byte(),
            },
            9 => Op::DropConsumer {
                channel: self.byte(),
            },
            13 => {
                let count = 2 + self.byte() % 3;
                Op::Burst((0..count).map(|_| self.packet()).collect())
            }
            _ => self.packet_tagged(tag),
        }
    }

    /// A packet operation.
    fn packet(&mut self) -> Op {
        let tag = self.byte();
        if tag >= 0xF0 {
            return self.room_packet(tag);
        }
        self.packet_tagged(10 + tag % 3)
    }

    fn packet_tagged(&mut self, tag: u8) -> Op {
        match tag % 14 {
            10 => {
                let to = self.targets();
                let (values, class) = self.values_and_class();
                Op::Message { to, values, class }
            }
            11 => Op::ChangeChannel {
                to: self.targets(),
                channel: self.byte(),
            },
            _ => Op::Shutdown { to: self.targets() },
        }
    }

    /// `Join`, `Leave` or a message to a room, as `kind` says.
    fn room_packet(&mut self, kind: u8) -> Op {
        match kind % 4 {
            0 => Op::Join {
                to: self.targets(),
                room: self.byte(),
            },
            1 => Op::Leave {
                to: self.targets(),
                room: self.byte(),
            },
            _ => {
                let room = self.byte();
                let except = (self.byte() % 2 == 1).then(|| self.target());
                let (values, class) = self.values_and_class();
                Op::RoomMessage {
                    room,
                    except,
                    values,
                    class,
                }
            }
        }
    }

    /// A message's count of values (its low two bits) and class.
    fn values_and_class(&mut self) -> (u8, Class) {
        let byte = self.byte();
        let class = match byte / 4 % 8 {
            4 | 5 => Class::Volatile,
            6 | 7 => Class::Latest(byte / 32 % KEYS),
            _ => Class::Reliable,
        };
        (byte % 4, class)
    }

    fn targets(&mut self) -> Vec<Target> {
        let count = 1 + self.byte() % 3;
        (0..count).map(|_| self.target()).collect()
    }

    fn target(&mut self) -> Target {
        match self.byte() {
            b if b >= 0xE0 => Target::Unknown(b),
            b if b >= 0xD0 => Target::Slow(b),
            b if b >= 0xC0 => Target::Open(b),
            b => Target::Client(b),
        }
    }
}

/// Runs a scenario and checks every invariant, looking past the `allowed`
/// open findings; `Err` says which invariant broke, at which step. `Ok`
/// holds the multiplexer's counters at the end (which the model checked),
/// so that a test can tell what a scenario reached.
pub fn run(scenario: &Scenario, allowed: &[Finding]) -> Result<StatsSnapshot, String> {
    let mut harness = Harness::new(scenario, allowed)?;
    for (index, op) in scenario.ops.iter().enumerate() {
        let steps = match op {
            Op::Tick { ticks } => vec![Step::Tick(None); usize::from((*ticks).max(1))],
            Op::TickWith(op) => vec![Step::Tick(Some(op))],
            op => vec![Step::Op(op)],
        };
        for step in steps {
            harness
                .step(step)
                .map_err(|e| format!("after op #{index} {op:?} (tick {}): {e}", harness.now))?;
        }
    }
    harness
        .end(scenario.end)
        .map_err(|e| format!("at the end ({:?}): {e}", scenario.end))?;
    harness.check()?;
    Ok(harness.stats.snapshot())
}

// ---------------------------------------------------------------------------
// The trace and the transports that write it

/// Something the multiplexer did to a transport or asked of the id
/// generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// The generator offered this id.
    Offered(StreamId),
    /// The generator's last offer was free: the connection takes it.
    Admitted {
        client: usize,
        id: StreamId,
    },
    /// The generator offered only live ids, as many as the multiplexer
    /// tries: the connection gets none.
    TurnedAway {
        client: usize,
    },
    /// A reader yielded a frame.
    Read {
        client: usize,
    },
    /// A reader yielded its end.
    ReadEnded {
        client: usize,
    },
    ReaderDropped {
        client: usize,
    },
    /// A write sink took a value.
    Handed {
        client: usize,
        value: u32,
    },
    /// A write sink's flush completed.
    Flushed {
        client: usize,
    },
    /// A write sink was closed.
    Closed {
        client: usize,
    },
    WriterDropped {
        client: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Event {
    /// The number of the poll of the run it happened in.
    poll: u64,
    what: What,
}

/// What the multiplexer did, in order.
#[derive(Debug, Default)]
struct Trace {
    /// Polls of the run so far (the current poll's number, during one).
    polls: Rc<Cell<u64>>,
    events: RefCell<Vec<Event>>,
}

impl Trace {
    fn record(&self, what: What) {
        let poll = self.polls.get();
        self.events.borrow_mut().push(Event { poll, what });
    }
}

/// The read half given to the multiplexer.
struct ClientReader {
    client: usize,
    frames: mpsc::UnboundedReceiver<Frame>,
    trace: Rc<Trace>,
}

impl Stream for ClientReader {
    type Item = Frame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let polled = self.frames.poll_next_unpin(cx);
        let client = self.client;
        match polled {
            Poll::Ready(Some(_)) => self.trace.record(What::Read { client }),
            Poll::Ready(None) => self.trace.record(What::ReadEnded { client }),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for ClientReader {
    fn drop(&mut self) {
        self.trace.record(What::ReaderDropped {
            client: self.client,
        });
    }
}

/// What the write half knows of the client at the other end: how many
/// values it has read, and whether it went away.
#[derive(Debug, Default)]
struct Peer {
    read: Cell<usize>,
    gone: Cell<bool>,
    /// The waker of a close waiting for the client to read.
    closer: RefCell<Option<Waker>>,
}

impl Peer {
    /// The client has read `read` values in all.
    fn took(&self, read: usize) {
        self.read.set(read);
        if let Some(closer) = self.closer.borrow_mut().take() {
            closer.wake();
        }
    }

    /// The client dropped its receiver.
    fn gone(&self) {
        self.gone.set(true);
        if let Some(closer) = self.closer.borrow_mut().take() {
            closer.wake();
        }
    }
}

/// The write half given to the multiplexer: the client's mpsc, which takes
/// `client_buffer + 1` values before it refuses more (and before its flush
/// stays pending). Like a socket that lingers on close, its close completes
/// only once the client has read everything sent (or gone away).
struct ClientWriter {
    client: usize,
    values: mpsc::Sender<u32>,
    /// Values it took.
    handed: usize,
    peer: Rc<Peer>,
    /// Cleared when the multiplexer drops it (the id generator reads it).
    held: Rc<Cell<bool>>,
    trace: Rc<Trace>,
}

impl Sink<u32> for ClientWriter {
    type Error = mpsc::SendError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.values.poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, value: u32) -> Result<(), Self::Error> {
        self.values.start_send(value)?;
        self.handed += 1;
        let client = self.client;
        self.trace.record(What::Handed { client, value });
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let flushed = Pin::new(&mut self.values).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            let client = self.client;
            self.trace.record(What::Flushed { client });
        }
        flushed
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.peer.gone.get() && self.peer.read.get() < self.handed {
            *self.peer.closer.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let client = self.client;
        self.trace.record(What::Closed { client });
        Pin::new(&mut self.values).poll_close(cx)
    }
}

impl Drop for ClientWriter {
    fn drop(&mut self) {
        self.held.set(false);
        self.trace.record(What::WriterDropped {
            client: self.client,
        });
    }
}

type Halves = io::Result<(ClientWriter, ClientReader)>;

/// The id generator: counts like `IncrementIdGen` and, for
/// [`Ids::Hogging`], offers nothing but the newest stream's id to every
/// other connection while that stream is held. It also pairs its answers
/// with the connections they are for (in the order the listener yields
/// them), since only it sees when the multiplexer asks.
struct RecordedIds {
    inner: IncrementIdGen,
    hog: bool,
    book: Rc<RefCell<IdBook>>,
    trace: Rc<Trace>,
}

/// What the generator knows of the connections.
#[derive(Debug, Default)]
struct IdBook {
    /// Connections the listener has queued and the multiplexer has not
    /// taken yet, in order, with their write halves' `held` flags.
    waiting: VecDeque<(usize, Rc<Cell<bool>>)>,
    /// Ids handed out, with their write halves' `held` flags.
    holders: Vec<(StreamId, Rc<Cell<bool>>)>,
    /// Live ids offered for the current connection so far.
    tries: usize,
    /// Connections answered so far.
    answered: usize,
    newest: Option<StreamId>,
}

impl IdBook {
    fn live(&self, id: StreamId) -> bool {
        self.holders.iter().any(|(h, held)| *h == id && held.get())
    }
}

impl IdGen for RecordedIds {
    fn next(&mut self) -> StreamId {
        let mut book = self.book.borrow_mut();
        book.holders.retain(|(_, held)| held.get());
        let hogging = self.hog && book.answered % 2 == 1;
        let id = match book.newest {
            Some(newest) if hogging && book.live(newest) => newest,
            _ => self.inner.next(),
        };
        self.trace.record(What::Offered(id));
        if book.live(id) {
            // The multiplexer skips it; after as many live ids as it holds
            // streams, plus one, it gives up on this connection.
            book.tries += 1;
            if book.tries > book.holders.len() {
                if let Some((client, _)) = book.waiting.pop_front() {
                    self.trace.record(What::TurnedAway { client });
                }
                book.tries = 0;
                book.answered += 1;
            }
        } else {
            if let Some((client, held)) = book.waiting.pop_front() {
                book.holders.push((id, held));
                self.trace.record(What::Admitted { client, id });
            }
            book.tries = 0;
            book.answered += 1;
            book.newest = Some(id);
        }
        id
    }

    fn id(&self) -> StreamId {
        self.inner.id()
    }

    fn seed(&mut self, seed: usize) {
        self.inner.seed(seed);
    }
}

// ---------------------------------------------------------------------------
// The model's state

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumption {
    Draining,
    Stalled,
    Dropped,
}

struct Consumer {
    rx: Option<mpsc::Receiver<IncomingPacket<Frame>>>,
    state: Consumption,
    /// The run's poll count when the consumer was dropped.
    dropped_at: u64,
    trace: Vec<IncomingPacket<Frame>>,
}

impl Consumer {
    /// Whether the multiplexer has been polled since the consumer was
    /// dropped, and so knows its channel is closed: every poll looks at
    /// every open channel's sink (it hands over waiting announcements
    /// before it reads), after it applied the outgoing packets.
    fn noticed_gone(&self, polls: u64) -> bool {
        self.state == Consumption::Dropped && polls > self.dropped_at
    }
}

/// Why a stream left its open state, as the model works it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// With a `StreamDisconnected` of this reason (and a count in stats).
    Announced(DisconnectReason),
    /// Closed with its channel: no announcement, `closed_with_channel`.
    ClosedWithChannel,
    /// Still open when the run was aborted.
    Aborted,
}

/// Where a connection is in its life, as the model works it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting in the listener.
    Queued,
    /// Read, addressable, counted against `max_streams`.
    Open,
    /// Announced gone but still addressable for `Message` and `Shutdown`,
    /// since the tick `since`.
    Leaving { since: u64 },
    /// Flushing what was queued for it, then closing its sink.
    Closing,
    /// The multiplexer holds nothing of it (or never did).
    Gone,
}

impl Phase {
    /// Whether the multiplexer holds its write half.
    fn is_held(self) -> bool {
        matches!(self, Phase::Open | Phase::Leaving { .. } | Phase::Closing)
    }

    /// Whether a `Message` or `Shutdown` still reaches it.
    fn is_addressable(self) -> bool {
        matches!(self, Phase::Open | Phase::Leaving { .. })
    }
}

struct Client {
    // The test's ends of the connection.
    frames: Option<mpsc::UnboundedSender<Frame>>,
    values: Option<mpsc::Receiver<u32>>,
    peer: Rc<Peer>,
    // What the test did to it.
    sent: u32,
    reading: bool,
    read_ended: bool,
    receiver_dropped: bool,
    received: Vec<u32>,
    values_closed: bool,
    // What the trace shows.
    /// The multiplexer took it from the listener (or the listener is gone).
    settled: bool,
    reader_alive: bool,
    writer_alive: bool,
    /// Frames the multiplexer read from it.
    taken: u32,
    /// Values its write sink took.
    handed: usize,
    /// A value was handed since the last completed flush.
    unflushed: bool,
    closed: bool,
    /// The position in the trace at which its reader was dropped: when it
    /// left its open state.
    left_at: usize,
    // What the model works out.
    id: Option<StreamId>,
    phase: Phase,
    left: Option<Left>,
    /// Frames that must all have been delivered (set when it leaves).
    must_deliver: Option<u32>,
    /// The channel it is in, while open.
    channel: ChannelId,
    /// Every channel it was in, in order.
    visits: Vec<ChannelId>,
    /// How many of its moves were made while it was open (each ends its
    /// visit with `ChannelChange`); later ones, made while it was leaving,
    /// give its new channel a visit that ends with the reason it left.
    open_moves: usize,
    /// Frames its channels' consumers received.
    delivered: u32,
    /// Every value queued for it, in order: what its sink must take. A
    /// latest-by-key value that replaced one still waiting took its place.
    expected: Vec<u32>,
    /// For each value of `expected`, its key if it was queued as the
    /// latest of one.
    keys: Vec<Option<u8>>,
    /// Values queued for it that a newer one of their key replaced before
    /// its sink took them: it must never receive them.
    replaced: Vec<u32>,
    /// The rooms it is in, in the order it joined them.
    rooms: Vec<usize>,
    /// The tick at which it was admitted or last had a frame read.
    last_read: u64,
    /// The tick at which its writer last made progress (a value handed on,
    /// a flush or close completed) or became busy.
    last_written: u64,
}

impl Client {
    fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Values queued and not yet taken by its sink.
    fn backlog(&self) -> usize {
        self.expected.len() - self.handed
    }

    /// Where the value of `key` that waits among the last `backlog` values
    /// queued is, if one does.
    fn waiting_with(&self, key: u8, backlog: usize) -> Option<usize> {
        let from = self.expected.len() - backlog;
        (from..self.expected.len())
            .rev()
            .find(|&at| self.keys[at] == Some(key))
    }

    /// Queues values, the last of them as the latest of `key` if given.
    fn queue(&mut self, values: &[u32], key: Option<u8>) {
        self.expected.extend_from_slice(values);
        self.keys.resize(self.expected.len(), None);
        if let (Some(key), Some(last)) = (key, values.len().checked_sub(1)) {
            let at = self.expected.len() - values.len() + last;
            self.keys[at] = Some(key);
        }
    }

    /// Values in its sink that it has not read.
    fn in_sink(&self) -> usize {
        self.handed - self.received.len()
    }
}

/// The counters the multiplexer must show.
#[derive(Debug, Default)]
struct Expect {
    linkdead: u64,
    shutdown: u64,
    backlog_full: u64,
    idle_timeout: u64,
    write_timeout: u64,
    channel_change: u64,
    dropped_unknown_id: u64,
    moves_rejected: u64,
    closed_with_channel: u64,
    accepted: u64,
    /// Connections turned away for want of a free id.
    turned_away: u64,
    room_sends: u64,
    volatile_dropped: u64,
    conflated: u64,
}

impl Expect {
    fn announced(&mut self, reason: DisconnectReason) {
        match reason {
            DisconnectReason::Linkdead => self.linkdead += 1,
            DisconnectReason::Shutdown => self.shutdown += 1,
            DisconnectReason::BacklogFull => self.backlog_full += 1,
            DisconnectReason::IdleTimeout => self.idle_timeout += 1,
            DisconnectReason::WriteTimeout => self.write_timeout += 1,
            _ => {}
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Op(&'a Op),
    /// One tick of the clock, with an operation in the same step or not.
    Tick(Option<&'a Op>),
    Control(ControlMessage),
    CloseControl,
    /// Every consumer drains and every client reads, so that a graceful
    /// shutdown can finish.
    Release,
    /// Every even client that does not read takes one value.
    Trickle,
}

/// What a time limit that passed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Dropped at once (`WriteTimeout` if it was open).
    Write,
    /// Leaves (`IdleTimeout`).
    Idle,
    /// A leaving stream's linger is over: it closes.
    Linger,
}

/// A stream the first poll of a step closes before it reads: by a time
/// limit (first thing in the poll) or by a packet.
#[derive(Debug, Clone, Copy)]
struct Planned {
    client: usize,
    /// It was open: its reader goes.
    was_open: bool,
    /// Its write half goes too, at once.
    at_once: bool,
    /// A time limit closes it.
    expiry: bool,
    /// `BacklogFull` for a message larger than the whole backlog (so its
    /// sink need not have been full).
    oversized: bool,
}

/// Values in a stream's backlog and in its sink.
#[derive(Debug, Clone, Copy, Default)]
struct Sim {
    backlog: usize,
    sink: usize,
}

/// An outgoing packet as the test sent it, with the client each id
/// belongs to. Whom it reaches is worked out once the trace shows what the
/// poll that applied it did before (a newcomer admitted after the tick's
/// expiries may have evicted one of its recipients).
#[derive(Debug, Clone)]
enum Sent {
    /// With the values the recipients are to get (the last only, for a
    /// latest-by-key message).
    Message {
        to: Vec<Option<usize>>,
        values: Vec<u32>,
        class: Class,
    },
    RoomMessage {
        room: usize,
        except: Option<StreamId>,
        values: Vec<u32>,
        class: Class,
    },
    Join {
        to: Vec<Option<usize>>,
        room: usize,
    },
    Leave {
        to: Vec<Option<usize>>,
        room: usize,
    },
    Move {
        to: Vec<Option<usize>>,
        channel: ChannelId,
    },
    Shutdown {
        to: Vec<Option<usize>>,
    },
}

/// What the test expects from the operation of one step.
#[derive(Debug, Default)]
struct Plan {
    /// Whether the run was running as the step's operation was applied.
    running: bool,
    /// Packets sent while the run was running, in order.
    sent: Vec<Sent>,
    /// Per client, as the first poll applies the step's packets.
    sim: Vec<Sim>,
    /// In the order the first poll does them.
    closes: Vec<Planned>,
    /// Writers whose next write fails in the step (their receivers are gone
    /// with values still queued).
    fail_late: Vec<usize>,
    /// Streams that took a message while their backlog was empty (see
    /// [`Finding::WriteLimitRestartsOnQueue`]).
    queued_to_empty: Vec<usize>,
    /// Streams a volatile message found with no room (guarantee 16: it
    /// must not disconnect them).
    volatile_dropped: Vec<usize>,
    /// Streams left open by this step are aborted.
    abort: bool,
    /// Streams left open by this step are shut down.
    shutdown: bool,
}

impl Plan {
    fn planned(&self, client: usize) -> Option<Planned> {
        self.closes.iter().find(|p| p.client == client).copied()
    }
}

/// The state at the start of a step.
struct Start {
    draining: Vec<bool>,
    channel: Vec<ChannelId>,
    sent: Vec<u32>,
    received: Vec<usize>,
    busy: Vec<bool>,
    /// The run's poll count: the step's first poll is the next.
    polls: u64,
    /// The trace's length: the step's events come after.
    events: usize,
}

/// What the trace shows of one connection in one step.
#[derive(Debug, Clone, Default)]
struct Facts {
    admitted: Option<StreamId>,
    closed_at_admission: bool,
    turned_away: bool,
    evicted: bool,
    read: u32,
    /// Its reader yielded its end just before it was dropped.
    ended: bool,
    /// (position in the trace, poll)
    reader_dropped: Option<(usize, u64)>,
    writer_dropped: Option<(usize, u64)>,
    /// Values its sink had taken when it was dropped.
    handed_when_dropped: usize,
    /// Its write half was dropped right after its reader: the stream was
    /// dropped at once.
    together: bool,
    /// A value handed on, a flush or a close completed.
    progress: bool,
    /// Values its sink took, in order.
    handed: Vec<u32>,
    closed: bool,
    /// Values its sink had taken when it was closed.
    closed_after: usize,
}

// ---------------------------------------------------------------------------
// The harness

struct Harness {
    channels: usize,
    backlog: usize,
    /// What a client's write sink takes before it is full.
    sink_capacity: usize,
    max_streams: Option<usize>,
    limits: Option<Limits>,
    allowed: Vec<Finding>,
    pool: LocalPool,
    /// Polls of the run in the current settle round.
    polls: Rc<Cell<usize>>,
    /// Polls of the run so far.
    total_polls: Rc<Cell<u64>>,
    result: Rc<RefCell<Option<Result<(), MultiplexerError>>>>,
    /// The waker of the run's task, to wake it after a tick when looking
    /// past [`Finding::TicksStopWakingAfterAnExpiry`].
    task: Rc<RefCell<Option<Waker>>>,
    halves: mpsc::UnboundedSender<Halves>,
    outgoing: mpsc::UnboundedSender<OutgoingPacket<u32>>,
    control: Option<mpsc::UnboundedSender<ControlMessage>>,
    ticks: Option<mpsc::UnboundedSender<()>>,
    stats: Stats,
    rooms: Rooms,
    /// Each room's members (clients), in the order `Rooms::members` gives
    /// them: the order they joined, a member that left giving its place to
    /// the last one.
    members: Vec<Vec<usize>>,
    /// For each value sent to a room, the clients it was queued for.
    room_values: HashMap<u32, Vec<usize>>,
    trace: Rc<Trace>,
    book: Rc<RefCell<IdBook>>,
    consumers: Vec<Consumer>,
    clients: Vec<Client>,
    /// The halves stream's items, in order: `Some(client)` or `None` for an
    /// accept error.
    queue: Vec<Option<usize>>,
    owners: HashMap<StreamId, usize>,
    next_value: u32,
    step: usize,
    /// Ticks taken so far.
    now: u64,
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
        let total_polls = Rc::new(Cell::new(0));
        let trace = Rc::new(Trace {
            polls: Rc::clone(&total_polls),
            events: RefCell::default(),
        });
        let book = Rc::new(RefCell::new(IdBook::default()));
        let ids = RecordedIds {
            inner: IncrementIdGen::default(),
            hog: s.ids == Ids::Hogging,
            book: Rc::clone(&book),
            trace: Rc::clone(&trace),
        };
        let mut builder = MultiplexerBuilder::new(s.backlog);
        if let Some(max) = s.max_streams {
            builder = builder.max_streams(max);
        }
        if s.ids == Ids::Wrapping {
            builder = builder.id_seed(usize::MAX - 2);
        }
        let mut ticks = None;
        if let Some(limits) = s.clock {
            let (tx, rx) = mpsc::unbounded::<()>();
            ticks = Some(tx);
            builder = builder
                .clock(Clock::new(PERIOD, rx))
                .idle_timeout(limits.idle.map(Duration::from_secs))
                .write_timeout(limits.write.map(Duration::from_secs));
        }
        let multiplexer = builder.id_gen(ids).build(outgoing_rx, sinks);
        let stats = multiplexer.stats();
        let rooms = multiplexer.rooms();
        let run = multiplexer.run(halves_rx, control_rx);

        let pool = LocalPool::new();
        let result = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&result);
        let polls = Rc::new(Cell::new(0));
        let counter = Rc::clone(&polls);
        let total = Rc::clone(&total_polls);
        let task = Rc::new(RefCell::new(None));
        let task_slot = Rc::clone(&task);
        let mut run = Some(run);
        pool.spawner()
            .spawn_local(futures::future::poll_fn(move |cx| {
                *task_slot.borrow_mut() = Some(cx.waker().clone());
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
            limits: s.clock,
            allowed: allowed.to_vec(),
            pool,
            polls,
            total_polls,
            result,
            task,
            halves,
            outgoing,
            control: Some(control),
            ticks,
            stats,
            rooms,
            members: vec![Vec::new(); usize::from(ROOMS)],
            room_values: HashMap::new(),
            trace,
            book,
            consumers,
            clients: Vec::new(),
            queue: Vec::new(),
            owners: HashMap::new(),
            next_value: 0,
            step: 0,
            now: 0,
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

    /// The n-th (modulo their number) of the clients whose write half the
    /// multiplexer holds and that read, or do not, as `reading` says.
    fn held_client(&self, n: u8, reading: bool) -> Option<usize> {
        let matching: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].reading == reading && self.clients[i].phase.is_held())
            .collect();
        matching
            .get(usize::from(n) % matching.len().max(1))
            .copied()
    }

    /// The id a target stands for, and the client that has it if any.
    fn resolve(&self, target: Target) -> (StreamId, Option<usize>) {
        let slow: Vec<usize> = (0..self.clients.len())
            .filter(|&i| !self.clients[i].reading && self.clients[i].phase.is_addressable())
            .collect();
        let open: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].is_open())
            .collect();
        match target {
            Target::Unknown(n) => (UNKNOWN_IDS + usize::from(n), None),
            Target::Slow(n) if !slow.is_empty() => {
                let i = slow[usize::from(n) % slow.len()];
                (self.clients[i].id.unwrap_or(UNKNOWN_IDS), Some(i))
            }
            Target::Open(n) if !open.is_empty() => {
                let i = open[usize::from(n) % open.len()];
                (self.clients[i].id.unwrap_or(UNKNOWN_IDS), Some(i))
            }
            Target::Client(n) | Target::Slow(n) | Target::Open(n) => match self.client(n) {
                Some(i) => match self.clients[i].id {
                    Some(id) => (id, Some(i)),
                    None => (UNKNOWN_IDS + 256 + i, None),
                },
                None => (UNKNOWN_IDS + 512, None),
            },
        }
    }

    /// Whether a leaving stream waits for last words (else it closes at
    /// once).
    fn lingers(&self) -> bool {
        self.limits.and_then(|l| l.linger()).is_some()
    }

    /// Whether the writer of a held stream is busy, with the system at
    /// rest: values in its backlog, or in its sink unflushed (a sink that
    /// is full does not complete a flush), or closing.
    fn busy(&self, c: &Client) -> bool {
        c.phase.is_held()
            && (c.phase == Phase::Closing
                || c.backlog() > 0
                || (!c.receiver_dropped && c.in_sink() >= self.sink_capacity))
    }

    fn step(&mut self, step: Step<'_>) -> Result<(), String> {
        self.step += 1;
        let start = Start {
            draining: self
                .consumers
                .iter()
                .map(|c| c.state == Consumption::Draining)
                .collect(),
            channel: self.clients.iter().map(|c| c.channel).collect(),
            sent: self.clients.iter().map(|c| c.sent).collect(),
            received: self.clients.iter().map(|c| c.received.len()).collect(),
            busy: self.clients.iter().map(|c| self.busy(c)).collect(),
            polls: self.total_polls.get(),
            events: self.trace.events.borrow().len(),
        };
        let mut plan = Plan {
            sim: self
                .clients
                .iter()
                .map(|c| Sim {
                    backlog: if c.phase.is_held() { c.backlog() } else { 0 },
                    sink: c.in_sink(),
                })
                .collect(),
            ..Plan::default()
        };
        match step {
            Step::Op(op) => self.apply(op, &mut plan),
            Step::Tick(op) => {
                if let (true, Some(ticks)) = (self.running(), self.ticks.clone()) {
                    self.now += 1;
                    self.expire(&mut plan);
                    let _ = ticks.unbounded_send(());
                    if self
                        .allowed
                        .contains(&Finding::TicksStopWakingAfterAnExpiry)
                        && let Some(task) = self.task.borrow().as_ref()
                    {
                        task.wake_by_ref();
                    }
                }
                if let Some(op) = op {
                    self.apply(op, &mut plan);
                }
            }
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
            Step::Trickle => {
                for c in self.clients.iter_mut().step_by(2) {
                    if let (false, Some(rx)) = (c.reading, c.values.as_mut())
                        && let Ok(value) = rx.try_recv()
                    {
                        c.received.push(value);
                        c.peer.took(c.received.len());
                    }
                }
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
        plan.running = self.running();
        self.settle()?;
        self.observe(&start, plan)
    }

    /// Works out what the step's packets did, as the first poll of the step
    /// applied them: after the tick's expiries, and after the newcomers that
    /// poll admitted evicted whom they evicted (`facts`).
    fn plan_packets(&mut self, start: &Start, plan: &mut Plan, facts: &[Facts]) {
        if !plan.running {
            return;
        }
        for (i, f) in facts.iter().enumerate() {
            if f.evicted
                && f.writer_dropped
                    .is_some_and(|(_, poll)| poll == start.polls + 1)
            {
                self.clients[i].phase = Phase::Gone;
            }
        }
        // The streams the tick's time limits made leave left their rooms
        // first, in the order the trace shows (each as its reader went).
        let mut expired: Vec<(usize, usize)> = plan
            .closes
            .iter()
            .filter(|p| p.expiry && p.was_open)
            .filter_map(|p| facts[p.client].reader_dropped.map(|(at, _)| (at, p.client)))
            .collect();
        expired.sort_unstable();
        for (_, i) in expired {
            self.leave_rooms(i);
        }
        for packet in std::mem::take(&mut plan.sent) {
            match packet {
                Sent::Message { to, values, class } => {
                    for client in to {
                        match client.filter(|&i| self.clients[i].phase.is_addressable()) {
                            Some(i) => {
                                self.expect_message(i, &values, class, plan);
                            }
                            None => self.expect.dropped_unknown_id += 1,
                        }
                    }
                }
                Sent::RoomMessage {
                    room,
                    except,
                    values,
                    class,
                } => self.expect_room_message(room, except, &values, class, plan),
                Sent::Join { to, room } => {
                    for client in to {
                        // Only an open stream joins (a leaving one has
                        // left its rooms for good).
                        match client.filter(|&i| self.clients[i].is_open()) {
                            Some(i) => self.join_room(room, i),
                            None => self.expect.dropped_unknown_id += 1,
                        }
                    }
                }
                Sent::Leave { to, room } => {
                    for client in to {
                        match client.filter(|&i| self.clients[i].phase.is_addressable()) {
                            Some(i) => self.leave_room(room, i),
                            None => self.expect.dropped_unknown_id += 1,
                        }
                    }
                }
                Sent::Move { to, channel } => {
                    for client in to {
                        self.expect_move(client, channel, start.polls);
                    }
                }
                Sent::Shutdown { to } => {
                    for client in to {
                        self.expect_shutdown(client, plan);
                    }
                }
            }
        }
        if !plan.abort {
            // A write fails once values wait for a sink whose receiver is
            // gone (guarantee 8): the writing step of the first poll finds
            // it, after the packets.
            for (i, c) in self.clients.iter().enumerate() {
                if c.phase.is_held() && c.receiver_dropped && plan.sim[i].backlog > 0 {
                    plan.fail_late.push(i);
                }
            }
        }
    }

    /// The time limits that pass at this tick (guarantee 14), handled
    /// before anything else in the poll that takes it.
    fn expire(&mut self, plan: &mut Plan) {
        let Some(limits) = self.limits else { return };
        let now = self.now;
        let passed = |limit: Option<u64>, since: u64| limit.is_some_and(|t| since + t <= now);
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if !c.phase.is_held() {
                continue;
            }
            let expiry = if self.busy(c) && passed(limits.write, c.last_written) {
                Expiry::Write
            } else {
                match c.phase {
                    Phase::Open if passed(limits.idle, c.last_read) => Expiry::Idle,
                    Phase::Leaving { since } if passed(limits.linger(), since) => Expiry::Linger,
                    _ => continue,
                }
            };
            let lingers = self.lingers();
            let c = &mut self.clients[i];
            let was_open = c.is_open();
            match expiry {
                Expiry::Write => {
                    if was_open {
                        c.left = Some(Left::Announced(DisconnectReason::WriteTimeout));
                        self.expect.write_timeout += 1;
                    }
                    c.phase = Phase::Gone;
                }
                Expiry::Idle => {
                    c.left = Some(Left::Announced(DisconnectReason::IdleTimeout));
                    self.expect.idle_timeout += 1;
                    c.phase = if lingers {
                        Phase::Leaving { since: now }
                    } else {
                        Phase::Closing
                    };
                }
                Expiry::Linger => c.phase = Phase::Closing,
            }
            plan.closes.push(Planned {
                client: i,
                was_open,
                at_once: expiry == Expiry::Write,
                expiry: true,
                oversized: false,
            });
        }
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
                if let Some(i) = self.held_client(client, true) {
                    self.clients[i].reading = false;
                }
            }
            Op::ResumeReading { client } => {
                if let Some(i) = self.held_client(client, false) {
                    self.clients[i].reading = true;
                }
            }
            Op::ReadSome { client, values } => {
                let Some(i) = self.held_client(client, false) else {
                    return;
                };
                let c = &mut self.clients[i];
                let Some(rx) = c.values.as_mut() else { return };
                for _ in 0..values {
                    match rx.try_recv() {
                        Ok(value) => c.received.push(value),
                        Err(_) => break,
                    }
                }
                c.peer.took(c.received.len());
            }
            Op::DropReceiver { client } => {
                let Some(i) = self.client(client) else { return };
                let c = &mut self.clients[i];
                let Some(mut rx) = c.values.take() else {
                    return;
                };
                while let Ok(value) = rx.try_recv() {
                    c.received.push(value);
                }
                drop(rx);
                c.receiver_dropped = true;
                c.peer.gone();
                plan.sim[i].sink = 0;
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
            Op::Message {
                ref to,
                values,
                class,
            } => {
                let values = self.fresh_values(values);
                let (ids, to): (Vec<_>, Vec<_>) = to.iter().map(|&t| self.resolve(t)).unzip();
                if running {
                    plan.sent.push(Sent::Message {
                        to,
                        values: delivered(&values, class),
                        class,
                    });
                }
                let message = class.apply(OutgoingMessage::new(ids, values));
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::Message(message));
            }
            Op::RoomMessage {
                room,
                except,
                values,
                class,
            } => {
                let room = usize::from(room % ROOMS);
                let values = self.fresh_values(values);
                let except = except.map(|t| self.resolve(t).0);
                if running {
                    plan.sent.push(Sent::RoomMessage {
                        room,
                        except,
                        values: delivered(&values, class),
                        class,
                    });
                }
                let mut message = OutgoingMessage::to_room(room_name(room), values);
                if let Some(except) = except {
                    message = message.except(except);
                }
                let message = class.apply(message);
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::Message(message));
            }
            Op::Join { ref to, room } => {
                let room = usize::from(room % ROOMS);
                let (ids, to): (Vec<_>, Vec<_>) = to.iter().map(|&t| self.resolve(t)).unzip();
                if running {
                    plan.sent.push(Sent::Join { to, room });
                }
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::Join(ids, room_name(room)));
            }
            Op::Leave { ref to, room } => {
                let room = usize::from(room % ROOMS);
                let (ids, to): (Vec<_>, Vec<_>) = to.iter().map(|&t| self.resolve(t)).unzip();
                if running {
                    plan.sent.push(Sent::Leave { to, room });
                }
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::Leave(ids, room_name(room)));
            }
            Op::ChangeChannel { ref to, channel } => {
                let channel = match usize::from(channel) % (self.channels + 2) {
                    k if k == self.channels + 1 => usize::MAX,
                    k => k,
                };
                let (ids, to): (Vec<_>, Vec<_>) = to.iter().map(|&t| self.resolve(t)).unzip();
                if running {
                    plan.sent.push(Sent::Move { to, channel });
                }
                let _ = self
                    .outgoing
                    .unbounded_send(OutgoingPacket::ChangeChannel(ids, channel));
            }
            Op::Shutdown { ref to } => {
                let (ids, to): (Vec<_>, Vec<_>) = to.iter().map(|&t| self.resolve(t)).unzip();
                if running {
                    plan.sent.push(Sent::Shutdown { to });
                }
                let _ = self.outgoing.unbounded_send(OutgoingPacket::Shutdown(ids));
            }
            Op::Burst(ref packets) => {
                for packet in packets.iter().filter(|op| op.is_packet()) {
                    self.apply(packet, plan);
                }
            }
            Op::Tick { .. } | Op::TickWith(_) => {}
        }
    }

    /// `count` values never sent before.
    fn fresh_values(&mut self, count: u8) -> Vec<u32> {
        (0..count)
            .map(|_| {
                self.next_value += 1;
                self.next_value
            })
            .collect()
    }

    fn connect(&mut self) {
        let index = self.clients.len();
        let (frames, frames_rx) = mpsc::unbounded();
        let (values_tx, values) = mpsc::channel(self.sink_capacity - 1);
        let held = Rc::new(Cell::new(true));
        let peer = Rc::new(Peer::default());
        let writer = ClientWriter {
            client: index,
            values: values_tx,
            handed: 0,
            peer: Rc::clone(&peer),
            held: Rc::clone(&held),
            trace: Rc::clone(&self.trace),
        };
        let reader = ClientReader {
            client: index,
            frames: frames_rx,
            trace: Rc::clone(&self.trace),
        };
        // The generator learns of the connection before the multiplexer
        // can take it.
        self.book.borrow_mut().waiting.push_back((index, held));
        let queued = self.halves.unbounded_send(Ok((writer, reader))).is_ok();
        if queued {
            self.queue.push(Some(index));
        } else {
            self.book.borrow_mut().waiting.pop_back();
        }
        self.clients.push(Client {
            frames: Some(frames),
            values: Some(values),
            peer,
            sent: 0,
            reading: true,
            read_ended: false,
            receiver_dropped: false,
            received: Vec::new(),
            values_closed: false,
            settled: !queued,
            reader_alive: queued,
            writer_alive: queued,
            taken: 0,
            handed: 0,
            unflushed: false,
            closed: false,
            left_at: 0,
            id: None,
            phase: if queued { Phase::Queued } else { Phase::Gone },
            left: None,
            must_deliver: None,
            channel: LOBBY,
            visits: Vec::new(),
            open_moves: 0,
            delivered: 0,
            expected: Vec::new(),
            keys: Vec::new(),
            replaced: Vec::new(),
            rooms: Vec::new(),
            last_read: 0,
            last_written: 0,
        });
    }

    /// A stream a packet drops at once: `BacklogFull`, or a write that
    /// fails as the packet pumps the writer.
    fn drop_at_once(
        &mut self,
        i: usize,
        reason: DisconnectReason,
        oversized: bool,
        plan: &mut Plan,
    ) {
        let c = &mut self.clients[i];
        let was_open = c.is_open();
        if was_open {
            c.left = Some(Left::Announced(reason));
            self.expect.announced(reason);
            self.leave_rooms(i);
        }
        self.clients[i].phase = Phase::Gone;
        plan.closes.push(Planned {
            client: i,
            was_open,
            at_once: true,
            expiry: false,
            oversized,
        });
    }

    /// One recipient of a `Message`, open or leaving (guarantees 4, 6 and
    /// 16). A latest-by-key value takes the place of the one of its key
    /// that still waits in the backlog, if one does. Otherwise the values
    /// are queued if the backlog has room once the writer has handed its
    /// sink what the sink takes; if it has none, a volatile message is
    /// dropped for it, and any other disconnects it. Returns whether it
    /// got the values.
    fn expect_message(&mut self, i: usize, values: &[u32], class: Class, plan: &mut Plan) -> bool {
        let key = class.key();
        if let (Some(key), Some(&value)) = (key, values.last())
            && let Some(at) = self.clients[i].waiting_with(key, plan.sim[i].backlog)
        {
            let c = &mut self.clients[i];
            let old = std::mem::replace(&mut c.expected[at], value);
            if old != value {
                // (A message that lists a stream twice replaces its own
                // value.)
                c.replaced.push(old);
            }
            self.expect.conflated += 1;
            return true;
        }
        let count = values.len();
        let Sim { backlog, sink } = plan.sim[i];
        let (mut backlog, mut sink) = (backlog, sink);
        if backlog + count > self.backlog {
            if self.clients[i].receiver_dropped {
                if backlog > 0 {
                    // The pump finds the connection dead.
                    self.drop_at_once(i, DisconnectReason::Linkdead, false, plan);
                    return false;
                }
            } else {
                let moved = backlog.min(self.sink_capacity - sink);
                backlog -= moved;
                sink += moved;
            }
            if backlog + count > self.backlog {
                if class == Class::Volatile {
                    self.expect.volatile_dropped += 1;
                    plan.volatile_dropped.push(i);
                    plan.sim[i] = Sim { backlog, sink };
                    return false;
                }
                let oversized = count > self.backlog;
                self.drop_at_once(i, DisconnectReason::BacklogFull, oversized, plan);
                return false;
            }
        }
        if backlog == 0 {
            plan.queued_to_empty.push(i);
        }
        plan.sim[i] = Sim {
            backlog: backlog + count,
            sink,
        };
        self.clients[i].queue(values, key);
        true
    }

    /// A message to a room (guarantee 15): counted, then sent to the
    /// members the room has now, in their order, but the one left out.
    fn expect_room_message(
        &mut self,
        room: usize,
        except: Option<StreamId>,
        values: &[u32],
        class: Class,
        plan: &mut Plan,
    ) {
        self.expect.room_sends += 1;
        for i in self.members[room].clone() {
            let c = &self.clients[i];
            // A member that left since is skipped, and not counted: it left
            // its rooms as it left (none does within one message).
            if c.id == except || !c.is_open() {
                continue;
            }
            if self.expect_message(i, values, class, plan) {
                for &value in values {
                    self.room_values.entry(value).or_default().push(i);
                }
            }
        }
    }

    /// Puts an open stream in a room, unless it is in it already.
    fn join_room(&mut self, room: usize, i: usize) {
        if !self.members[room].contains(&i) {
            self.members[room].push(i);
            self.clients[i].rooms.push(room);
        }
    }

    /// Takes a stream out of a room: the last member takes its place.
    fn leave_room(&mut self, room: usize, i: usize) {
        if let Some(at) = self.members[room].iter().position(|&m| m == i) {
            self.members[room].swap_remove(at);
            self.clients[i].rooms.retain(|&r| r != room);
        }
    }

    /// A stream's departure was announced (or it closed with its channel,
    /// or was aborted): it leaves every room.
    fn leave_rooms(&mut self, i: usize) {
        for room in std::mem::take(&mut self.clients[i].rooms) {
            self.leave_room(room, i);
        }
    }

    /// One stream of a `ChangeChannel` (guarantee 2).
    fn expect_move(&mut self, client: Option<usize>, to: ChannelId, polls: u64) {
        let Some(i) = client.filter(|&i| self.clients[i].phase.is_addressable()) else {
            self.expect.dropped_unknown_id += 1;
            return;
        };
        // The channel is looked at first, then whether the stream is in one.
        if to >= self.channels || self.consumers[to].noticed_gone(polls) {
            self.expect.moves_rejected += 1;
            return;
        }
        let c = &mut self.clients[i];
        if to == c.channel {
            return;
        }
        c.channel = to;
        c.visits.push(to);
        if c.is_open() {
            c.open_moves += 1;
            self.expect.channel_change += 1;
        }
        // A leaving stream's new channel sees it arrive and leave at once,
        // with the reason it left; nothing more is counted.
    }

    /// One stream of a `Shutdown`: open or leaving, it closes (announced if
    /// it was open).
    fn expect_shutdown(&mut self, client: Option<usize>, plan: &mut Plan) {
        let Some(i) = client.filter(|&i| self.clients[i].phase.is_addressable()) else {
            self.expect.dropped_unknown_id += 1;
            return;
        };
        let c = &mut self.clients[i];
        let was_open = c.is_open();
        if was_open {
            c.left = Some(Left::Announced(DisconnectReason::Shutdown));
            self.expect.shutdown += 1;
            self.leave_rooms(i);
        }
        self.clients[i].phase = Phase::Closing;
        plan.closes.push(Planned {
            client: i,
            was_open,
            at_once: false,
            expiry: false,
            oversized: false,
        });
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
    fn observe(&mut self, start: &Start, mut plan: Plan) -> Result<(), String> {
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
            return Err("Abort did not resolve the run at once (guarantee 11)".into());
        }
        let ended_now = was_running && !self.running();
        self.shutting_down |= plan.shutdown && was_running;

        let facts = self.replay(start)?;
        self.check_expiries_first(start, &plan)?;
        self.plan_packets(start, &mut plan, &facts);
        self.check_handed(&facts)?;
        let plan = &plan;
        self.observe_admissions(&facts);
        let at_once =
            self.observe_departures(start, plan, &facts, was_running, ended_now || !was_running)?;
        self.observe_writers(plan, &facts, &at_once, aborted_or_failed || !was_running)?;
        let restarts = self.allowed.contains(&Finding::WriteLimitRestartsOnQueue);
        let flush_no_progress = self
            .allowed
            .contains(&Finding::FlushWhileClosingIsNoProgress);
        for (i, f) in facts.iter().enumerate() {
            let busy = self.busy(&self.clients[i]);
            let c = &mut self.clients[i];
            // Every flush of a stream that ends the step closing happened
            // while it was closing (packets close it before the writers
            // flush, and a pump that only hands values on does not flush).
            let progress = if flush_no_progress && c.phase == Phase::Closing {
                !f.handed.is_empty() || f.closed
            } else {
                f.progress
            };
            if f.read > 0 {
                c.last_read = self.now;
            }
            // The write limit counts from the last progress, or from when
            // the writer became busy.
            let became_busy = !start.busy.get(i).copied().unwrap_or(false);
            let restarted = restarts && plan.queued_to_empty.contains(&i);
            if busy && (progress || became_busy || restarted) {
                c.last_written = self.now;
            }
        }
        self.check_step()
    }

    /// Goes through the step's part of the trace in order, checking each
    /// event against the rules, and gathers what it shows of each client.
    fn replay(&mut self, start: &Start) -> Result<Vec<Facts>, String> {
        let events: Vec<Event> = self.trace.events.borrow()[start.events..].to_vec();
        let mut facts = vec![Facts::default(); self.clients.len()];
        let mut offers: Vec<StreamId> = Vec::new();
        // Events that must come next, in any order.
        let mut must_follow: Vec<What> = Vec::new();
        let mut previous = None;
        for (k, event) in events.iter().enumerate() {
            let at = start.events + k;
            let what = event.what;
            if !must_follow.is_empty() {
                let Some(next) = must_follow.iter().position(|w| *w == what) else {
                    return Err(format!(
                        "trace #{at}: {what:?} where {must_follow:?} had to come first"
                    ));
                };
                must_follow.swap_remove(next);
            }
            match what {
                What::Offered(id) => offers.push(id),
                What::Admitted { client, id } => {
                    // The generator takes an id only when it is free, so a
                    // live one offered last means the multiplexer took it.
                    let held = self.held(&facts);
                    let skipped = &offers[..offers.len().saturating_sub(1)];
                    if offers.last() != Some(&id)
                        || self.live(&facts, id)
                        || skipped.iter().any(|&s| !self.live(&facts, s))
                        || offers.len() > held + 1
                    {
                        return Err(format!(
                            "trace #{at}: client {client} admitted as {id} after offers {offers:?} with {held} streams held (guarantee 4)"
                        ));
                    }
                    offers.clear();
                    if self.clients[client].phase != Phase::Queued {
                        return Err(format!(
                            "trace #{at}: client {client} admitted while {:?}",
                            self.clients[client].phase
                        ));
                    }
                    facts[client].admitted = Some(id);
                    let lobby = &self.consumers[LOBBY];
                    if lobby.state == Consumption::Dropped && event.poll > lobby.dropped_at + 1 {
                        // The lobby was found closed in an earlier poll: the
                        // connection is dropped at once.
                        facts[client].closed_at_admission = true;
                        must_follow = vec![
                            What::ReaderDropped { client },
                            What::WriterDropped { client },
                        ];
                    } else if self.max_streams.is_some_and(|max| held + 1 > max)
                        && let Some(oldest) = self.oldest_left(&facts)
                    {
                        // Guarantee 10: no more than max_streams held.
                        facts[oldest].evicted = true;
                        must_follow = vec![What::WriterDropped { client: oldest }];
                    }
                }
                What::TurnedAway { client } => {
                    let held = self.held(&facts);
                    if offers.len() != held + 1 || offers.iter().any(|&id| !self.live(&facts, id)) {
                        return Err(format!(
                            "trace #{at}: client {client} turned away after offers {offers:?} with {held} streams held"
                        ));
                    }
                    offers.clear();
                    facts[client].turned_away = true;
                    must_follow = vec![
                        What::ReaderDropped { client },
                        What::WriterDropped { client },
                    ];
                }
                What::Read { client } => {
                    let c = &mut self.clients[client];
                    if !c.reader_alive || (c.id.is_none() && facts[client].admitted.is_none()) {
                        return Err(format!("trace #{at}: client {client} read while not open"));
                    }
                    c.taken += 1;
                    facts[client].read += 1;
                }
                What::ReadEnded { .. } => {}
                What::ReaderDropped { client } => {
                    let c = &mut self.clients[client];
                    c.reader_alive = false;
                    c.left_at = at;
                    facts[client].reader_dropped = Some((at, event.poll));
                    facts[client].ended = previous == Some(What::ReadEnded { client });
                }
                What::Handed { client, value } => {
                    let c = &mut self.clients[client];
                    if c.closed {
                        return Err(format!(
                            "trace #{at}: {value} handed to client {client}'s sink after it was closed"
                        ));
                    }
                    facts[client].handed.push(value);
                    c.handed += 1;
                    c.unflushed = true;
                    facts[client].progress = true;
                }
                What::Flushed { client } => {
                    self.clients[client].unflushed = false;
                    facts[client].progress = true;
                }
                What::Closed { client } => {
                    let c = &mut self.clients[client];
                    if c.unflushed {
                        return Err(format!(
                            "trace #{at}: client {client}'s sink closed with values unflushed (flush, then close)"
                        ));
                    }
                    facts[client].closed_after = c.handed;
                    c.closed = true;
                    facts[client].closed = true;
                    facts[client].progress = true;
                }
                What::WriterDropped { client } => {
                    self.clients[client].writer_alive = false;
                    facts[client].handed_when_dropped = self.clients[client].handed;
                    facts[client].writer_dropped = Some((at, event.poll));
                    facts[client].together = previous == Some(What::ReaderDropped { client });
                }
            }
            previous = Some(what);
        }
        if !must_follow.is_empty() {
            return Err(format!(
                "the step's trace ended where {must_follow:?} had to come"
            ));
        }
        if !offers.is_empty() {
            return Err(format!("ids {offers:?} offered for no connection"));
        }
        Ok(facts)
    }

    /// Each value handed to a sink in the step was the next queued for that
    /// stream, in order (guarantees 3 and 4), and a sink that was closed
    /// had taken everything queued for it first (flush, then close).
    fn check_handed(&self, facts: &[Facts]) -> Result<(), String> {
        for (i, (c, f)) in self.clients.iter().zip(facts).enumerate() {
            let first = c.handed - f.handed.len();
            if c.expected.get(first..c.handed) != Some(&f.handed[..]) {
                return Err(format!(
                    "client {i} (id {:?}) had {:?} handed to its sink after {first} values, of {:?} queued for it (guarantees 3, 4)",
                    c.id, f.handed, c.expected
                ));
            }
            if f.closed && f.closed_after != c.expected.len() {
                return Err(format!(
                    "client {i} (id {:?}) had its sink closed after {} of {:?} (flush, then close)",
                    c.id, f.closed_after, c.expected
                ));
            }
        }
        Ok(())
    }

    /// Whether the multiplexer holds a stream with this id, as the trace
    /// has it so far.
    fn live(&self, facts: &[Facts], id: StreamId) -> bool {
        self.clients
            .iter()
            .zip(facts)
            .any(|(c, f)| c.writer_alive && (c.id == Some(id) || f.admitted == Some(id)))
    }

    /// Streams the multiplexer holds, as the trace has it so far.
    fn held(&self, facts: &[Facts]) -> usize {
        self.clients
            .iter()
            .zip(facts)
            .filter(|(c, f)| c.writer_alive && (c.id.is_some() || f.admitted.is_some()))
            .count()
    }

    /// The held stream that left its open state longest ago, if any.
    fn oldest_left(&self, facts: &[Facts]) -> Option<usize> {
        (0..self.clients.len())
            .filter(|&j| {
                let c = &self.clients[j];
                c.writer_alive && !c.reader_alive && (c.id.is_some() || facts[j].admitted.is_some())
            })
            .min_by_key(|&j| self.clients[j].left_at)
    }

    /// The time limits are handled first in the poll that takes the tick:
    /// the streams they drop go before anything else happens.
    fn check_expiries_first(&self, start: &Start, plan: &Plan) -> Result<(), String> {
        let mut due: Vec<What> = Vec::new();
        for p in plan.closes.iter().filter(|p| p.expiry) {
            let client = p.client;
            if p.was_open {
                due.push(What::ReaderDropped { client });
            }
            if p.at_once {
                due.push(What::WriterDropped { client });
            }
        }
        let events = self.trace.events.borrow();
        let first = &events[start.events..];
        for (k, event) in first.iter().take(due.len()).enumerate() {
            let Some(next) = due.iter().position(|w| *w == event.what) else {
                return Err(format!(
                    "trace #{}: {:?} before the time limits of tick {} were handled ({due:?} still due)",
                    start.events + k,
                    event.what,
                    self.now
                ));
            };
            due.swap_remove(next);
            if event.poll != start.polls + 1 {
                return Err(format!(
                    "trace #{}: {:?} in poll {}, not in the poll that took tick {}",
                    start.events + k,
                    event.what,
                    event.poll,
                    self.now
                ));
            }
        }
        if !due.is_empty() {
            return Err(format!(
                "at tick {}: {due:?} should have happened (a time limit passed); the step's first events: {:?}",
                self.now,
                first.iter().take(8).map(|e| e.what).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    /// Gives ids to the clients the multiplexer admitted.
    fn observe_admissions(&mut self, facts: &[Facts]) {
        for (i, f) in facts.iter().enumerate() {
            let c = &mut self.clients[i];
            if f.turned_away {
                // Rule: no free id, an accept error, never a stream.
                c.settled = true;
                c.phase = Phase::Gone;
                self.expect.turned_away += 1;
            }
            let Some(id) = f.admitted else { continue };
            c.settled = true;
            c.id = Some(id);
            c.visits.push(LOBBY);
            c.last_read = self.now;
            c.last_written = self.now;
            self.owners.insert(id, i);
            self.expect.accepted += 1;
            if f.closed_at_admission {
                c.phase = Phase::Gone;
                c.left = Some(Left::ClosedWithChannel);
                self.expect.closed_with_channel += 1;
            } else {
                c.phase = Phase::Open;
            }
        }
    }

    /// Checks that the streams the step had to close went the way it said,
    /// and works out why each other stream that left its open state did.
    fn observe_departures(
        &mut self,
        start: &Start,
        plan: &Plan,
        facts: &[Facts],
        was_running: bool,
        run_ended: bool,
    ) -> Result<Vec<bool>, String> {
        let first_poll = start.polls + 1;
        let mut at_once = vec![false; self.clients.len()];
        for p in &plan.closes {
            let f = &facts[p.client];
            let id = self.clients[p.client].id;
            at_once[p.client] |= p.at_once;
            if p.was_open {
                let Some((_, poll)) = f.reader_dropped else {
                    return Err(format!(
                        "stream {id:?} (client {}) should have been closed ({:?}) at tick {}",
                        p.client, self.clients[p.client].left, self.now
                    ));
                };
                // It may leave, then be dropped by a later packet of the
                // same poll, by a failed write or with the whole run: its
                // write half may then go right after its reader all the
                // same.
                let dropped_later = run_ended
                    || plan.fail_late.contains(&p.client)
                    || plan
                        .closes
                        .iter()
                        .any(|q| q.client == p.client && !q.was_open && q.at_once);
                if poll != first_poll || (f.together != p.at_once && !dropped_later) {
                    return Err(format!(
                        "stream {id:?} (client {}) closed in poll {poll} (the step's first is {first_poll}), {} (expected {})",
                        p.client,
                        if f.together {
                            "dropped at once"
                        } else {
                            "left"
                        },
                        if p.at_once { "dropped at once" } else { "left" }
                    ));
                }
            } else if p.at_once && f.writer_dropped.is_none_or(|(_, poll)| poll != first_poll) {
                return Err(format!(
                    "stream {id:?} (client {}) should have been dropped at tick {}",
                    p.client, self.now
                ));
            }
            if p.was_open
                && self.clients[p.client].left
                    == Some(Left::Announced(DisconnectReason::BacklogFull))
                && !p.oversized
            {
                // Guarantee 6: only a client whose sink refuses values is
                // slow. Its sink was full as it was dropped.
                // Clients read between polls, never during the first.
                let c = &self.clients[p.client];
                let in_sink = f.handed_when_dropped - start.received[p.client];
                if !c.receiver_dropped && in_sink < self.sink_capacity {
                    return Err(format!(
                        "stream {id:?} (client {}) dropped with BacklogFull while its sink had room ({in_sink} of {})",
                        p.client, self.sink_capacity
                    ));
                }
            }
        }
        let lingers = self.lingers();
        // Streams that left their open state for a reason of their own, as
        // they went: each left its rooms then.
        let mut departed: Vec<(usize, usize)> = Vec::new();
        for i in 0..self.clients.len() {
            let f = &facts[i];
            let Some((dropped_at, _)) = f.reader_dropped else {
                continue;
            };
            let planned = plan.planned(i).is_some_and(|p| p.was_open);
            let c = &self.clients[i];
            if !planned && c.phase != Phase::Open {
                if f.turned_away || f.closed_at_admission || c.phase != Phase::Queued {
                    continue;
                }
                if self.shutting_down || run_ended {
                    // Dropped unaccepted with the listener.
                    let c = &mut self.clients[i];
                    c.settled = true;
                    c.phase = Phase::Gone;
                    continue;
                }
                return Err(format!(
                    "client {i}'s connection was dropped before it was accepted"
                ));
            }
            let left = if planned {
                c.left
                    .ok_or_else(|| format!("client {i} planned to leave for no reason"))?
            } else {
                // An open stream that left for a reason of its own.
                let dropped_channel = self.consumers[c.channel].state == Consumption::Dropped;
                let (left, phase) = if f.ended {
                    // Its reader ended: what is queued for it is still
                    // written (rule 2); a write that fails may drop it
                    // right after.
                    if c.taken != c.sent {
                        return Err(format!(
                            "stream {:?} (client {i}) ended with {} of {} frames read",
                            c.id, c.taken, c.sent
                        ));
                    }
                    let phase = if lingers {
                        Phase::Leaving { since: self.now }
                    } else {
                        Phase::Closing
                    };
                    (Left::Announced(DisconnectReason::Linkdead), phase)
                } else if f.together && dropped_channel && !plan.abort {
                    // Also at a graceful shutdown: the shutdown poll looks
                    // at every channel's sink before it closes the streams.
                    (Left::ClosedWithChannel, Phase::Gone)
                } else if f.together && plan.fail_late.contains(&i) {
                    (Left::Announced(DisconnectReason::Linkdead), Phase::Gone)
                } else if !f.together && plan.shutdown {
                    (Left::Announced(DisconnectReason::Shutdown), Phase::Closing)
                } else if f.together && plan.abort {
                    (Left::Aborted, Phase::Gone)
                } else {
                    let volatile = if plan.volatile_dropped.contains(&i) {
                        "; a volatile message found its backlog full in this step, which must not disconnect it (guarantee 16)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "stream {:?} (client {i}) was closed for no reason ({}){volatile}",
                        c.id,
                        if f.together {
                            "dropped at once"
                        } else {
                            "left"
                        }
                    ));
                };
                departed.push((dropped_at, i));
                match left {
                    Left::Announced(reason) => self.expect.announced(reason),
                    Left::ClosedWithChannel => self.expect.closed_with_channel += 1,
                    Left::Aborted => {}
                }
                at_once[i] = phase == Phase::Gone;
                let c = &mut self.clients[i];
                c.left = Some(left);
                c.phase = phase;
                left
            };
            // Everything it sent had been read if its channel was draining
            // when the step began, or if its reader ended (the items, then
            // Linkdead: guarantee 8).
            let c = &self.clients[i];
            let draining = start
                .draining
                .get(start.channel.get(i).copied().unwrap_or(LOBBY))
                .copied()
                .unwrap_or(false);
            let must_deliver = if f.ended && left == Left::Announced(DisconnectReason::Linkdead) {
                Some(c.sent)
            } else {
                draining.then(|| start.sent.get(i).copied().unwrap_or(0))
            };
            self.clients[i].must_deliver = must_deliver;
        }
        departed.sort_unstable();
        for (_, i) in departed {
            self.leave_rooms(i);
        }
        if plan.shutdown && was_running {
            // A graceful shutdown closes the leaving streams too.
            for c in &mut self.clients {
                if let Phase::Leaving { .. } = c.phase {
                    c.phase = Phase::Closing;
                }
            }
        }
        if (plan.shutdown || plan.abort)
            && let Some(c) = self.clients.iter().find(|c| c.is_open())
        {
            return Err(format!("stream {:?} still open after {plan:?}", c.id));
        }
        Ok(at_once)
    }

    /// Checks that every write half the multiplexer closed or dropped in the
    /// step went for a reason, and that those that had to go did.
    fn observe_writers(
        &mut self,
        plan: &Plan,
        facts: &[Facts],
        at_once: &[bool],
        run_ended: bool,
    ) -> Result<(), String> {
        for (i, f) in facts.iter().enumerate() {
            let must_drop = at_once[i] || plan.fail_late.contains(&i);
            let c = &self.clients[i];
            if f.writer_dropped.is_some() {
                if f.closed {
                    if c.phase != Phase::Closing {
                        return Err(format!(
                            "stream {:?} (client {i}) had its sink closed while {:?}",
                            c.id, c.phase
                        ));
                    }
                } else {
                    let why = must_drop
                        || f.evicted
                        || f.turned_away
                        || f.closed_at_admission
                        || run_ended
                        || (c.id.is_none() && self.shutting_down);
                    if !why {
                        return Err(format!(
                            "stream {:?} (client {i}, {:?}) had its write half dropped for no reason",
                            c.id, c.phase
                        ));
                    }
                }
                self.clients[i].phase = Phase::Gone;
            } else if c.writer_alive && c.phase.is_held() && self.running() {
                if must_drop {
                    return Err(format!(
                        "stream {:?} (client {i}) should have had its write half dropped",
                        c.id
                    ));
                }
                // Its sink closes once the client has read what was sent.
                let pending = c.expected.len() - c.received.len();
                if c.phase == Phase::Closing && (c.reading || c.receiver_dropped || pending == 0) {
                    return Err(format!(
                        "closing stream {:?} (client {i}) did not close, though its client read everything ({} values in its sink, {} in its backlog)",
                        c.id,
                        c.in_sink(),
                        c.backlog()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `Rooms` handle shows the model's rooms (guarantee 15): while the
    /// run runs, each room's members in order, its length, each member's
    /// rooms in the order it joined them, and the counts; once it is over,
    /// none.
    fn check_rooms(&self) -> Result<(), String> {
        let mut occupied = 0;
        let mut memberships = 0;
        for (room, members) in self.members.iter().enumerate() {
            let name = room_name(room);
            if let Some(&i) = members.iter().find(|&&i| !self.clients[i].is_open()) {
                return Err(format!(
                    "the model keeps client {i} ({:?}) in room {name} (a model error)",
                    self.clients[i].phase
                ));
            }
            let ids: Vec<StreamId> = members.iter().filter_map(|&i| self.clients[i].id).collect();
            let shown = self.rooms.members(&name);
            if shown != ids || self.rooms.len(&name) != ids.len() {
                return Err(format!(
                    "room {name} has members {shown:?} (len {}), expected {ids:?}: clients {members:?} in the order they joined, a member that left giving its place to the last (guarantee 15)",
                    self.rooms.len(&name)
                ));
            }
            occupied += usize::from(!ids.is_empty());
            memberships += ids.len();
        }
        for (i, c) in self.clients.iter().enumerate() {
            let Some(id) = c.id else { continue };
            let shown = self.rooms.rooms_of(id);
            let expected: Vec<RoomName> = c.rooms.iter().map(|&r| room_name(r)).collect();
            if shown != expected {
                return Err(format!(
                    "stream {id} (client {i}) is in rooms {shown:?}, expected {expected:?} (guarantee 15)"
                ));
            }
        }
        let counts = self.rooms.counts();
        let mut names = self.rooms.names();
        names.sort();
        let expected: Vec<RoomName> = (0..self.members.len())
            .filter(|&r| !self.members[r].is_empty())
            .map(room_name)
            .collect();
        if counts != (occupied, memberships) || names != expected {
            return Err(format!(
                "rooms {names:?} with counts {counts:?}, expected {expected:?} and {:?} (guarantee 15)",
                (occupied, memberships)
            ));
        }
        Ok(())
    }

    /// What must hold after every step.
    fn check_step(&self) -> Result<(), String> {
        self.check_rooms()?;
        for (i, c) in self.clients.iter().enumerate() {
            if !c.expected.starts_with(&c.received) || c.received.len() > c.handed {
                return Err(format!(
                    "client {i} (id {:?}) received {:?}, expected a prefix of {:?} (guarantees 3, 4)",
                    c.id, c.received, c.expected
                ));
            }
            if c.reading && c.values.is_some() && c.received.len() != c.handed {
                return Err(format!(
                    "client {i} (id {:?}) reads but received {:?} of the {} values handed to it",
                    c.id, c.received, c.handed
                ));
            }
            if !self.running() || !c.phase.is_held() {
                continue;
            }
            // What is queued moves into the sink as far as the sink takes it
            // (guarantee 6): a backlog holds only what the sink refused.
            let pending = c.expected.len() - c.received.len();
            let moved = if c.receiver_dropped || c.reading {
                c.backlog() == 0
            } else {
                c.in_sink() == pending.min(self.sink_capacity)
            };
            if !moved {
                return Err(format!(
                    "stream {:?} (client {i}, {:?}): {} values in its backlog and {} in its sink of {} (guarantee 6)",
                    c.id,
                    c.phase,
                    c.backlog(),
                    c.in_sink(),
                    self.sink_capacity
                ));
            }
        }
        if !self.running() {
            return Ok(());
        }
        let open = self.clients.iter().filter(|c| c.is_open()).count();
        let held = self.clients.iter().filter(|c| c.phase.is_held()).count();
        for (i, c) in self.clients.iter().enumerate() {
            if c.phase.is_held() != (c.writer_alive && c.id.is_some())
                || c.is_open() != (c.reader_alive && c.id.is_some())
            {
                return Err(format!(
                    "client {i} (id {:?}) is {:?} by the model, but its reader is {} and its write half {}",
                    c.id,
                    c.phase,
                    if c.reader_alive { "held" } else { "gone" },
                    if c.writer_alive { "held" } else { "gone" }
                ));
            }
            if c.is_open()
                && c.read_ended
                && self.consumers[c.channel].state == Consumption::Draining
            {
                return Err(format!(
                    "stream {:?} ended its read side in a draining channel but is still open (guarantee 8)",
                    c.id
                ));
            }
            if c.is_open() && self.consumers[c.channel].noticed_gone(self.total_polls.get()) {
                return Err(format!(
                    "stream {:?} is still open in channel {}, whose consumer went (guarantee 8)",
                    c.id, c.channel
                ));
            }
            if c.is_open()
                && self.consumers[c.channel].state == Consumption::Draining
                && c.taken != c.sent
            {
                return Err(format!(
                    "stream {:?}: {} frames sent, {} read, its channel draining (guarantees 1, 5)",
                    c.id, c.sent, c.taken
                ));
            }
        }
        // Accept errors are counted as the halves stream yields them: all of
        // them up to the first connection still waiting to be accepted,
        // unless the limit on streams stopped the multiplexer from polling
        // the halves stream after the last connection it accepted. A
        // connection turned away for want of a free id counts too.
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
        let turned_away = self.expect.turned_away;
        let stats = self.stats.snapshot();
        if !self.shutting_down
            && !(least + turned_away..=most + turned_away).contains(&stats.accept_errors)
        {
            return Err(format!(
                "stats say {} accept errors, {least}..={most} were yielded and {turned_away} connections turned away (guarantee 8)",
                stats.accept_errors
            ));
        }
        if let Some(max) = self.max_streams {
            if open > max || held > max {
                return Err(format!(
                    "{open} streams open and {held} held, at most {max} allowed (guarantee 10)"
                ));
            }
            // Streams that left but still flush do not count: they are
            // dropped for a newcomer rather than keep it waiting.
            let lobby_closed = self.consumers[LOBBY].state == Consumption::Dropped;
            if first_waiting.is_some() && open < max && !lobby_closed && !self.shutting_down {
                return Err(format!(
                    "a client waits to be accepted with {open} of {max} streams open (guarantee 10)"
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
                        "stream {:?}: {} frames sent, {} delivered, every consumer draining (guarantees 1, 5)",
                        c.id, c.sent, c.delivered
                    ));
                }
            }
        }
        let wrong = self.wrong_counters(&stats, open as u64);
        if !wrong.is_empty() {
            return Err(format!(
                "stats {stats:?} disagree (guarantee 12): {}",
                wrong.join("; ")
            ));
        }
        Ok(())
    }

    /// The counters that must equal the model's at every step and at the
    /// end; returns what disagrees.
    fn wrong_counters(&self, s: &StatsSnapshot, open: u64) -> Vec<String> {
        let e = &self.expect;
        let d = s.disconnects;
        let taken: u64 = self.clients.iter().map(|c| u64::from(c.taken)).sum();
        let handed: u64 = self.clients.iter().map(|c| c.handed as u64).sum();
        let mut wrong = Vec::new();
        let mut expect = |what: &str, counted: u64, expected: u64| {
            if counted != expected {
                wrong.push(format!("{what}: {counted} counted, {expected} expected"));
            }
        };
        expect("streams_open", s.streams_open, open);
        expect("frames_in (frames read)", s.frames_in, taken);
        expect("frames_out (values handed to sinks)", s.frames_out, handed);
        expect("linkdead", d.linkdead, e.linkdead);
        expect("shutdown", d.shutdown, e.shutdown);
        expect("backlog_full", d.backlog_full, e.backlog_full);
        expect("idle_timeout", d.idle_timeout, e.idle_timeout);
        expect("write_timeout", d.write_timeout, e.write_timeout);
        expect("channel_change", d.channel_change, e.channel_change);
        expect(
            "dropped_unknown_id",
            s.dropped_unknown_id,
            e.dropped_unknown_id,
        );
        expect("moves_rejected", s.moves_rejected, e.moves_rejected);
        expect(
            "closed_with_channel",
            s.closed_with_channel,
            e.closed_with_channel,
        );
        expect("accepted", s.accepted, e.accepted);
        expect(
            "accepted == streams_open + departed",
            s.accepted,
            s.streams_open + s.departed(),
        );
        expect("room_sends", s.room_sends, e.room_sends);
        expect("volatile_dropped", s.volatile_dropped, e.volatile_dropped);
        expect("conflated", s.conflated, e.conflated);
        let occupied = self.members.iter().filter(|m| !m.is_empty()).count();
        let memberships: usize = self.members.iter().map(Vec::len).sum();
        expect("rooms", s.rooms, occupied as u64);
        expect("room_members", s.room_members, memberships as u64);
        wrong
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
            End::ShutdownWhileTicking => {
                for c in &mut self.clients {
                    c.reading = false;
                }
                let everyone = Op::Message {
                    to: (0..self.clients.len().min(256))
                        .map(|i| Target::Client(i as u8))
                        .collect(),
                    values: self.sink_capacity.min(self.backlog) as u8,
                    class: Class::Reliable,
                };
                self.step(Step::Op(&everyone))?;
                self.step(Step::Tick(None))?;
                let odd = Op::Message {
                    to: (1..self.clients.len().min(256))
                        .step_by(2)
                        .map(|i| Target::Client(i as u8))
                        .collect(),
                    values: 0,
                    class: Class::Reliable,
                };
                self.step(Step::Op(&odd))?;
                self.step(Step::Control(ControlMessage::Shutdown))?;
                self.step(Step::Trickle)?;
                let limit = self.limits.and_then(|l| l.write).unwrap_or(1);
                for _ in 0..=limit {
                    self.step(Step::Tick(None))?;
                }
            }
        }
        self.step(Step::Release)?;
        if self.running() {
            return Err(
                "the run did not resolve after Shutdown, with every consumer and client reading (guarantee 11)"
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
                    "client {i}'s connection is still open for writing after the run (guarantee 11)"
                ));
            }
            if c.reader_alive || c.writer_alive {
                return Err(format!(
                    "client {i}'s connection is still held after the run (guarantee 11)"
                ));
            }
        }
        Ok(())
    }

    /// Values sent to rooms (guarantee 15): a client received one only if
    /// it was a member as it was sent, and never twice.
    fn check_room_values(&self, i: usize, c: &Client) -> Result<(), String> {
        let mut seen = Vec::new();
        for &value in &c.received {
            let Some(audience) = self.room_values.get(&value) else {
                continue;
            };
            if !audience.contains(&i) {
                return Err(format!(
                    "client {i} (id {:?}) received {value}, sent to a room it was not a member of (its members then: clients {audience:?}) (guarantee 15)",
                    c.id
                ));
            }
            if seen.contains(&value) {
                return Err(format!(
                    "client {i} (id {:?}) received {value}, sent to a room, twice (guarantee 15)",
                    c.id
                ));
            }
            seen.push(value);
        }
        Ok(())
    }

    /// The invariants over the whole run: every channel's packets, every
    /// client's frames and values, and the counters.
    fn check(&self) -> Result<(), String> {
        let n = self.channels;
        let dropped = |k: ChannelId| self.consumers[k].state == Consumption::Dropped;
        let graceful = matches!(
            self.end,
            Some(End::Shutdown | End::CloseControl | End::ShutdownWhileTicking)
        );

        // Per stream and channel visit: Connected, messages in order,
        // exactly one Disconnected (guarantee 1).
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
            check_conflation(i, c)?;
            self.check_room_values(i, c)?;
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
            // One visit ends with the reason it left, and so does each visit
            // it was moved to after it left.
            let leaving_visits = c.visits.len().saturating_sub(c.open_moves).max(1);
            if final_reasons.len() > leaving_visits
                || final_reasons.iter().any(|r| Some(*r) != expected_reason)
            {
                return Err(format!(
                    "stream {id} left with {final_reasons:?}, expected {:?} (guarantee 1)",
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
                    || seqs.last().is_some_and(|&s| s >= c.taken)
                {
                    return Err(format!("stream {id}: frames {seqs:?} of {} read", c.taken));
                }
                continue;
            }
            // Its visits, channel after channel, as it was moved (guarantee
            // 2): each ends by moving it to the next, the last one with the
            // reason it left. An abort drops what was still queued: a visit
            // may then be missing, or lack its Disconnected.
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
                    Some(&to) if step < c.open_moves => Some(DisconnectReason::ChannelChange(to)),
                    _ => expected_reason,
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
                    "stream {id}: visits {visits:?}, but moved through {:?} only (guarantee 2)",
                    c.visits
                ));
            }
            if c.left.is_none() || c.left == Some(Left::ClosedWithChannel) {
                return Err(format!(
                    "stream {id} left as {:?} with no channel closed",
                    c.left
                ));
            }
            // Exactly the frames it read, in order, none lost or doubled:
            // all it sent, if its channel was draining as it left.
            let in_order = seqs.iter().enumerate().all(|(n, &s)| s as usize == n);
            let count = seqs.len() as u32;
            if !in_order
                || count != c.taken
                || count > c.sent
                || c.must_deliver.is_some_and(|m| count != m)
            {
                return Err(format!(
                    "stream {id}: frames {seqs:?} delivered of {} sent and {} read, {:?} required (guarantee 1)",
                    c.sent, c.taken, c.must_deliver
                ));
            }
        }
        self.check_stats(messages, announced)
    }

    /// The counters agree with what the consumers and clients saw
    /// (guarantee 12).
    fn check_stats(&self, messages: u64, announced: [u64; 6]) -> Result<(), String> {
        let s = self.stats.snapshot();
        let any_dropped = self
            .consumers
            .iter()
            .any(|c| c.state == Consumption::Dropped);
        let graceful = matches!(
            self.end,
            Some(End::Shutdown | End::CloseControl | End::ShutdownWhileTicking)
        );
        let received: u64 = self.clients.iter().map(|c| c.received.len() as u64).sum();
        let aborted = matches!(self.end, Some(End::Abort | End::ShutdownThenAbort))
            && self.allowed.contains(&Finding::StreamsOpenAfterAbort);
        let mut wrong = self.wrong_counters(&s, if aborted { s.streams_open } else { 0 });
        let mut expect = |what: &str, ok: bool, detail: String| {
            if !ok {
                wrong.push(format!("{what}: {detail}"));
            }
        };
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
        if !any_dropped && graceful {
            let d = s.disconnects;
            let mut counted = [
                d.linkdead,
                d.channel_change,
                d.shutdown,
                d.backlog_full,
                d.idle_timeout,
                d.write_timeout,
            ];
            // A stream moved after it left is announced to each new channel
            // with the reason it left, and counted once.
            for c in &self.clients {
                if let Some(Left::Announced(reason)) = c.left {
                    let again = c.visits.len().saturating_sub(c.open_moves + 1);
                    counted[reason_index(reason)] += again as u64;
                }
            }
            expect(
                "announcements",
                counted == announced,
                format!("counted {counted:?}, announced {announced:?}"),
            );
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "stats {s:?} disagree (guarantee 12): {}",
                wrong.join("; ")
            ))
        }
    }
}

/// The values of a message its recipients are to get: of a latest-by-key
/// message, only the last (guarantee 16).
fn delivered(values: &[u32], class: Class) -> Vec<u32> {
    match class {
        Class::Latest(_) => values.last().copied().into_iter().collect(),
        Class::Reliable | Class::Volatile => values.to_vec(),
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
                moved = true;
            }
            Err(TryRecvError::Closed) => {
                client.values_closed = true;
                break;
            }
            Err(TryRecvError::Empty) => break,
        }
    }
    if moved {
        client.peer.took(client.received.len());
    }
    moved
}

/// A client's values: exactly those its sink took, in the order they were
/// addressed to it, never another's (guarantees 3, 4, 6). Values still
/// queued when its stream was dropped are lost; a sink that was closed took
/// them all (checked as it closed).
fn check_values(i: usize, c: &Client) -> Result<(), String> {
    let handed = c.expected.get(..c.handed).unwrap_or(&c.expected);
    if c.received[..] != handed[..] {
        return Err(format!(
            "client {i} (id {:?}) received {:?}, its sink took {handed:?} (guarantee 3)",
            c.id, c.received
        ));
    }
    Ok(())
}

/// Latest-by-key values (guarantee 16): no value that a newer one of its
/// key replaced while it waited was received, and the values of each key
/// came oldest first (values are numbered as they are sent).
fn check_conflation(i: usize, c: &Client) -> Result<(), String> {
    if let Some(stale) = c.received.iter().find(|v| c.replaced.contains(v)) {
        return Err(format!(
            "client {i} (id {:?}) received {stale}, which a newer value of its key replaced while it waited (guarantee 16)",
            c.id
        ));
    }
    let mut newest: HashMap<u8, u32> = HashMap::new();
    for (&value, key) in c.received.iter().zip(&c.keys) {
        let Some(key) = *key else { continue };
        if let Some(&before) = newest.get(&key)
            && before >= value
        {
            return Err(format!(
                "client {i} (id {:?}) received {value} of key {key} after {before} (guarantee 16)",
                c.id
            ));
        }
        newest.insert(key, value);
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
