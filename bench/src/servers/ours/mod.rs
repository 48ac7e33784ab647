//! The server on this crate, as its docs show it: connections from one of
//! the crate's runtime adapters, framed by `HalvesStream` (2-byte length
//! prefix), one `Multiplexer` with the crate's batching `batch::channel` for
//! channel 0, a consumer task that counts (and echoes through the outgoing
//! stream), and a broadcast that is one `OutgoingPacket::Message` per round
//! addressed to every id.
//!
//! The kind picks the backlog policy and the runtime: `ours` (policy
//! `Disconnect`, the crate's default: a client whose backlog overflows is
//! dropped, the producer never waits) and `ours-wait` (policy `Wait`:
//! lossless, the outgoing stream waits while a target's backlog is full, as
//! the peers' producers do) run on smol ([`on_smol`]); `ours-tokio` is
//! `ours` on tokio ([`on_tokio`]), the same code on tokio's reactor;
//! `ours-clock` is `ours` on smol with a clock and time limits on (an idle
//! timeout longer than any run, so that no benchmark client is closed).

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use stream_multiplexer::batch::{self, BatchReceiver, BatchSender};
use stream_multiplexer::{
    BacklogPolicy, Clock, IncomingPacket, Multiplexer, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket, StreamId,
};

use super::{Policy, ServerOpts};
use crate::control::Counters;
use crate::proto::BROADCAST_PAYLOAD;

pub mod on_smol;
pub mod on_tokio;

/// What channel 0 carries: each frame read, or the read error that ends a
/// connection.
type Incoming = IncomingPacket<io::Result<Bytes>>;

/// The outgoing stream the multiplexer reads.
type Outgoing = mpsc::Receiver<OutgoingPacket<Bytes>>;

/// The multiplexer of one server and the ends the application holds.
pub struct Parts {
    /// Ready to run on the connections of a runtime adapter.
    pub multiplexer: Multiplexer<Outgoing, BatchSender<Incoming>>,
    /// Channel 0's consumer end.
    pub channel0: BatchReceiver<Incoming>,
    /// Where the consumer and the broadcasts send.
    pub outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    /// The ids connected now: a broadcast's targets.
    pub ids: Arc<Mutex<Vec<StreamId>>>,
}

impl Parts {
    /// Builds the multiplexer `opts` asks for; with `clock`, its time
    /// limits are `opts.timing`'s.
    pub fn new(opts: &ServerOpts, clock: Option<Clock>) -> Self {
        // The crate's batching channel: one lock and one wake-up per batch
        // of packets instead of an allocation and a wake-up per packet.
        let (channel0, channel0_rx) = batch::channel(opts.channel_capacity);
        let (outgoing, outgoing_rx) = mpsc::channel(opts.channel_capacity);
        let (policy, backlog) = match opts.policy {
            Policy::Disconnect => (BacklogPolicy::Disconnect, opts.sender_buffer),
            Policy::Wait => (BacklogPolicy::Wait, opts.writer_capacity),
        };
        let mut builder = MultiplexerBuilder::new(backlog).backlog_policy(policy);
        if let Some(clock) = clock {
            builder = builder
                .clock(clock)
                .idle_timeout(opts.timing.idle_timeout)
                .write_timeout(opts.timing.write_timeout);
        }
        let multiplexer = builder.build(outgoing_rx, vec![channel0]);
        Self {
            multiplexer,
            channel0: channel0_rx,
            outgoing,
            ids: Arc::default(),
        }
    }
}

/// `rounds` messages to every id in `targets`, one packet per round.
pub async fn broadcast(
    targets: Vec<StreamId>,
    rounds: u32,
    mut outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
) {
    let message = Bytes::from_static(&BROADCAST_PAYLOAD);
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

/// Channel 0's consumer: keeps `ids` current, counts frames into
/// `counters`, and echoes each one to its sender if `echo`.
pub async fn consume(
    mut channel0: BatchReceiver<Incoming>,
    mut outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    ids: Arc<Mutex<Vec<StreamId>>>,
    counters: Arc<Counters>,
    echo: bool,
) {
    let (mut frames, mut conns) = (0u64, 0u64);
    while let Some(packet) = channel0.next().await {
        match packet {
            IncomingPacket::StreamConnected(id) => {
                ids.lock().expect("ids lock").push(id);
                conns += 1;
                counters.conns.store(conns, Relaxed);
            }
            // A read error is delivered as an `Err` value before the
            // disconnect; like the peers, count only frames.
            IncomingPacket::Message(message) => {
                let Ok(value) = message.value else { continue };
                frames += 1;
                counters.frames.store(frames, Relaxed);
                if echo {
                    let reply = OutgoingMessage::new([message.stream_id], [value]);
                    let _ = outgoing.send(OutgoingPacket::Message(reply)).await;
                }
            }
            IncomingPacket::StreamDisconnected(id, _) => {
                ids.lock().expect("ids lock").retain(|&x| x != id);
            }
        }
    }
}
