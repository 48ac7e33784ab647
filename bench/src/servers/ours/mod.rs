//! The server on this crate, as its docs show it: connections from one of
//! the crate's runtime adapters, framed by `HalvesStream` (2-byte length
//! prefix), one `Multiplexer` with the crate's batching `batch::channel` for
//! channel 0, a consumer task that counts (and echoes through the outgoing
//! stream), and a broadcast that is one `OutgoingPacket::Message` per round
//! addressed to every id.
//!
//! The kind picks the backlog policy, the runtime, the consumer channel and
//! how a broadcast is addressed: `ours` (policy `Disconnect`, the crate's
//! default: a client whose backlog overflows is dropped, the producer never
//! waits) and `ours-wait` (policy `Wait`: lossless, the outgoing stream
//! waits while a target's backlog is full, as the peers' producers do) run
//! on smol ([`on_smol`]); `ours-tokio` is `ours` on tokio ([`on_tokio`]),
//! the same code on tokio's reactor; `ours-clock` is `ours` on smol with a
//! clock and time limits on (an idle timeout longer than any run, so that no
//! benchmark client is closed); `ours-room` is `ours` whose clients each
//! join one room as they connect, so that a broadcast is one message to the
//! room instead of one to a list of every id; `ours-mpsc` is `ours` with a
//! plain `futures::channel::mpsc` for channel 0 instead of `batch::channel`;
//! `ours-batches` is `ours` whose consumer takes everything waiting in one
//! call (`BatchReceiver::next_batch`) and flushes its replies once per
//! batch, as the crate's quick start does;
//! `ours-shards` is one multiplexer per thread behind one port
//! ([`shards`]), sending to the room through a `shard::Router`.
//!
//! The `ours` servers also answer the harness's `updates` command (a paced
//! producer of keyed updates, see [`produce`]) and `stats`.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{Sink, SinkExt, Stream, StreamExt};
use stream_multiplexer::{
    BacklogPolicy, Clock, IncomingPacket, Multiplexer, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket, RoomName, StatsSnapshot, StreamId, batch,
};

use super::{Policy, SendTo, ServerOpts};
use crate::control::{Class, Counters, Updates};
use crate::proto::{BROADCAST_PAYLOAD, monotonic_ns, update_payload};

pub mod on_smol;
pub mod on_tokio;
pub mod shards;

/// What channel 0 carries: each frame read, or the read error that ends a
/// connection.
pub type Incoming = IncomingPacket<io::Result<Bytes>>;

/// The outgoing stream the multiplexer reads.
type Outgoing = mpsc::Receiver<OutgoingPacket<Bytes>>;

/// The room every client of `ours-room` and `ours-shards` joins as it
/// connects.
pub const ROOM: &str = "everyone";

/// The multiplexer of one server and the ends the application holds, with
/// channel 0's sink `Ch`.
pub struct Parts<Ch> {
    /// Ready to run on the connections of a runtime adapter.
    pub multiplexer: Multiplexer<Outgoing, Ch>,
    /// Where the consumer and the broadcasts send.
    pub outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    /// Whom a broadcast goes to.
    pub audience: Audience,
}

impl<Ch> Parts<Ch> {
    /// Builds the multiplexer `opts` asks for around channel 0's sink
    /// `channel0`; with `clock`, its time limits are `opts.timing`'s.
    pub fn new(opts: &ServerOpts, channel0: Ch, clock: Option<Clock>) -> Self {
        let (outgoing, outgoing_rx) = mpsc::channel(opts.channel_capacity);
        let mut builder = builder(opts);
        if let Some(clock) = clock {
            builder = builder
                .clock(clock)
                .idle_timeout(opts.timing.idle_timeout)
                .write_timeout(opts.timing.write_timeout);
        }
        Self {
            multiplexer: builder.build(outgoing_rx, vec![channel0]),
            outgoing,
            audience: Audience::new(opts.send_to),
        }
    }
}

/// The builder with the backlog and policy `opts` asks for.
pub fn builder(opts: &ServerOpts) -> MultiplexerBuilder {
    let (policy, backlog) = match opts.policy {
        Policy::Disconnect => (BacklogPolicy::Disconnect, opts.sender_buffer),
        Policy::Wait => (BacklogPolicy::Wait, opts.writer_capacity),
    };
    MultiplexerBuilder::new(backlog).backlog_policy(policy)
}

/// Whom a broadcast (or a keyed update) goes to: every id connected now,
/// listed in the message, or the room they all joined.
#[derive(Clone, Debug)]
pub enum Audience {
    /// The ids connected now (kept by the consumer).
    Ids(Arc<Mutex<Vec<StreamId>>>),
    /// [`ROOM`], which every client joins as it connects.
    Room(RoomName),
}

impl Audience {
    fn new(send_to: SendTo) -> Self {
        match send_to {
            SendTo::Ids => Self::Ids(Arc::default()),
            SendTo::Room => Self::Room(ROOM.into()),
        }
    }

    /// A message of `values` to everyone, as things stand: for a list of
    /// ids, the list is copied now (the id-list send's cost per message).
    fn message(&self, values: impl IntoIterator<Item = Bytes>) -> OutgoingMessage<Bytes> {
        match self {
            Self::Ids(ids) => {
                let ids = ids.lock().expect("ids lock");
                OutgoingMessage::new(ids.iter().copied(), values)
            }
            Self::Room(room) => OutgoingMessage::to_room(Arc::clone(room), values),
        }
    }
}

/// The multiplexers' own counters as the control protocol's `stats` reply,
/// summed over `snapshots` (one per shard).
pub fn stats_line(snapshots: impl IntoIterator<Item = StatsSnapshot>) -> String {
    let (mut conflated, mut backlog_full, mut volatile) = (0, 0, 0);
    for s in snapshots {
        conflated += s.conflated;
        backlog_full += s.disconnects.backlog_full;
        volatile += s.volatile_dropped;
    }
    format!("conflated={conflated} backlog_full={backlog_full} volatile_dropped={volatile}")
}

/// `rounds` messages to everyone in `audience`, one packet per round.
pub async fn broadcast<S>(audience: Audience, rounds: u32, mut outgoing: S)
where
    S: Sink<OutgoingPacket<Bytes>> + Unpin,
{
    let message = Bytes::from_static(&BROADCAST_PAYLOAD);
    match audience {
        Audience::Ids(ids) => {
            // The targets of the whole broadcast, taken once; each round
            // builds its own list from them (a copy of C ids per message).
            let targets = ids.lock().expect("ids lock").clone();
            for _ in 0..rounds {
                let packet = OutgoingMessage::new(targets.iter().copied(), [message.clone()]);
                if outgoing
                    .send(OutgoingPacket::Message(packet))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        Audience::Room(room) => {
            for _ in 0..rounds {
                let packet = OutgoingMessage::to_room(Arc::clone(&room), [message.clone()]);
                if outgoing
                    .send(OutgoingPacket::Message(packet))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Keyed updates to everyone in `audience` as `updates` says: update `seq`
/// is for key `seq % keys`, stamped with the time it was made; paced by
/// `ticks` (each tick sends what the rate allows by then, so a late tick
/// catches up). Counts into `counters.produced` and sets
/// `counters.produced_all` at the end.
pub async fn produce<S, T>(
    audience: Audience,
    updates: Updates,
    mut outgoing: S,
    mut ticks: T,
    counters: Arc<Counters>,
) where
    S: Sink<OutgoingPacket<Bytes>> + Unpin,
    T: Stream + Unpin,
{
    counters.produced.store(0, Relaxed);
    counters.produced_all.store(false, Relaxed);
    let start = Instant::now();
    let total = (updates.duration.as_secs_f64() * f64::from(updates.rate)) as u64;
    let mut seq = 0u64;
    'run: while seq < total {
        let due = ((start.elapsed().as_secs_f64() * f64::from(updates.rate)) as u64).min(total);
        while seq < due {
            let key = (seq % u64::from(updates.keys)) as u32;
            let value = Bytes::copy_from_slice(&update_payload(key, seq, monotonic_ns()));
            let message = audience.message([value]);
            let message = match updates.class {
                Class::Latest => message.latest(u64::from(key)),
                Class::Reliable => message,
            };
            if outgoing
                .feed(OutgoingPacket::Message(message))
                .await
                .is_err()
            {
                break 'run;
            }
            seq += 1;
        }
        if outgoing.flush().await.is_err() {
            break;
        }
        counters.produced.store(seq, Relaxed);
        if seq < total && ticks.next().await.is_none() {
            break;
        }
    }
    counters.produced.store(seq, Relaxed);
    counters.produced_all.store(true, Relaxed);
}

/// Sets `SO_SNDBUF` on `listener` if `opts` asks for it: the sockets it
/// accepts inherit it (and with it, no send-buffer autotuning).
pub fn limit_send_buffer(listener: &async_net::TcpListener, opts: &ServerOpts) -> io::Result<()> {
    match opts.send_buffer {
        Some(bytes) => socket2::SockRef::from(listener).set_send_buffer_size(bytes),
        None => Ok(()),
    }
}

/// Frames the connections of `incoming` as `opts` asks: 2-byte length
/// prefix, and the read chunk size if one is given.
pub fn halves<S>(incoming: S, opts: &ServerOpts) -> stream_multiplexer::HalvesStream<S> {
    let mut builder = stream_multiplexer::HalvesStream::builder(crate::proto::HEADER);
    if let Some(bytes) = opts.read_chunk {
        builder = builder.read_chunk_size(bytes);
    }
    if let Some(bytes) = opts.write_hwm {
        builder = builder.write_high_water_mark(bytes);
    }
    builder.build(incoming)
}

/// The pace of [`produce`] on smol: a tick every millisecond.
pub fn smol_ticks() -> smol::Timer {
    smol::Timer::interval(Duration::from_millis(1))
}

/// Channel 0's consumer: keeps `audience` current (a list of ids, or the
/// room: each new client joins it before it is counted, so that once the
/// harness sees every connection, a room send reaches them all), counts
/// frames into `counters`, and echoes each one to its sender if `echo`.
/// Takes one packet per wait (`StreamExt::next`), as the crate's seed
/// example does.
pub async fn consume<R, S>(
    mut channel0: R,
    outgoing: S,
    audience: Audience,
    counters: Arc<Counters>,
    echo: bool,
) where
    R: Stream<Item = Incoming> + Unpin,
    S: Sink<OutgoingPacket<Bytes>> + Unpin,
{
    let mut consumer = Consumer::new(audience, counters, echo);
    let mut outgoing = outgoing;
    while let Some(packet) = channel0.next().await {
        if let Some(reply) = consumer.take(packet) {
            let _ = outgoing.send(reply).await;
            consumer.sent();
        }
    }
}

/// [`consume`], taking everything waiting in one call
/// (`BatchReceiver::next_batch`) and handing what it sends over with one
/// flush per batch, as the crate's quick start does (`ours-batches`).
pub async fn consume_batches<S>(
    mut channel0: batch::BatchReceiver<Incoming>,
    outgoing: S,
    audience: Audience,
    counters: Arc<Counters>,
    echo: bool,
) where
    S: Sink<OutgoingPacket<Bytes>> + Unpin,
{
    let mut consumer = Consumer::new(audience, counters, echo);
    let mut outgoing = outgoing;
    let (mut packets, mut replies) = (Vec::new(), Vec::new());
    while channel0.next_batch(&mut packets).await > 0 {
        // The batch first, with nothing awaited inside the loop; then what
        // it has to send.
        for packet in packets.drain(..) {
            if let Some(reply) = consumer.take(packet) {
                replies.push(reply);
            }
        }
        if replies.is_empty() {
            continue;
        }
        for reply in replies.drain(..) {
            let _ = outgoing.feed(reply).await;
        }
        let _ = outgoing.flush().await;
        consumer.sent();
    }
}

/// Channel 0's receiving end, and which of the two consumers takes it.
pub enum ChannelZero<R> {
    /// Any stream, consumed one packet per wait ([`consume`]).
    Next(R),
    /// A `batch::channel` receiver, consumed a batch per wait
    /// ([`consume_batches`]).
    Batches(batch::BatchReceiver<Incoming>),
}

impl<R> ChannelZero<R>
where
    R: Stream<Item = Incoming> + Unpin,
{
    /// Runs the consumer that fits.
    pub async fn consume<S>(
        self,
        outgoing: S,
        audience: Audience,
        counters: Arc<Counters>,
        echo: bool,
    ) where
        S: Sink<OutgoingPacket<Bytes>> + Unpin,
    {
        match self {
            ChannelZero::Next(channel0) => {
                consume(channel0, outgoing, audience, counters, echo).await;
            }
            ChannelZero::Batches(channel0) => {
                consume_batches(channel0, outgoing, audience, counters, echo).await;
            }
        }
    }
}

/// What both consumers do with one packet.
struct Consumer {
    audience: Audience,
    counters: Arc<Counters>,
    echo: bool,
    frames: u64,
    conns: u64,
    /// Clients whose join of the room was taken but not yet sent: counted
    /// once it is, so that a broadcast the harness starts on seeing them
    /// all reaches them all.
    joining: u64,
}

impl Consumer {
    fn new(audience: Audience, counters: Arc<Counters>, echo: bool) -> Self {
        Self {
            audience,
            counters,
            echo,
            frames: 0,
            conns: 0,
            joining: 0,
        }
    }

    /// What `take` returned has been sent: the clients who joined count.
    fn sent(&mut self) {
        if self.joining > 0 {
            self.conns += std::mem::take(&mut self.joining);
            self.counters.conns.store(self.conns, Relaxed);
        }
    }

    /// Takes one packet; returns what it has to send, if anything (a join
    /// of the room, an echo). Not `async`: a packet that only counts costs
    /// no future. Inlined into both loops: it runs for every frame.
    #[inline(always)]
    fn take(&mut self, packet: Incoming) -> Option<OutgoingPacket<Bytes>> {
        match packet {
            IncomingPacket::StreamConnected(id) => match &self.audience {
                Audience::Ids(ids) => {
                    ids.lock().expect("ids lock").push(id);
                    self.conns += 1;
                    self.counters.conns.store(self.conns, Relaxed);
                    None
                }
                Audience::Room(room) => {
                    self.joining += 1;
                    Some(OutgoingPacket::Join(vec![id], Arc::clone(room)))
                }
            },
            // A read error is delivered as an `Err` value before the
            // disconnect; like the peers, count only frames.
            IncomingPacket::Message(message) => {
                let Ok(value) = message.value else {
                    return None;
                };
                self.frames += 1;
                self.counters.frames.store(self.frames, Relaxed);
                self.echo.then(|| {
                    OutgoingPacket::Message(OutgoingMessage::new([message.stream_id], [value]))
                })
            }
            // A departed stream has left its rooms by itself.
            IncomingPacket::StreamDisconnected(id, _) => {
                if let Audience::Ids(ids) = &self.audience {
                    ids.lock().expect("ids lock").retain(|&x| x != id);
                }
                None
            }
        }
    }
}
