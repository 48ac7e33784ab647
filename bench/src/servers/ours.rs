//! The server on this crate, as its docs show it: a listener from
//! `runtime::smol::bind` (or `async-net`'s `bind` when the harness asks for
//! std's backlog of 128) turned into connections by `runtime::smol::incoming`,
//! framed by `HalvesStream` (2-byte length prefix), one `Multiplexer` with the
//! crate's batching `batch::channel` for channel 0, a consumer task that
//! counts (and echoes through the outgoing stream), and a broadcast that is
//! one `OutgoingPacket::Message` per round addressed to every id.
//!
//! Runs on a `smol::Executor` driven by `--threads` threads (1: the main
//! thread alone). The kind picks the backlog policy: `ours` is `Disconnect`
//! (the crate's default: a client whose backlog overflows is dropped, the
//! producer never waits), `ours-wait` is `Wait` (lossless: the outgoing
//! stream waits while a target's backlog is full, as the peers' producers do).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, future};
use stream_multiplexer::{
    BacklogPolicy, HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket, StreamId, batch, runtime,
};

use super::{Policy, ServerOpts};
use crate::control::{self, Counters};
use crate::proto::{BROADCAST_PAYLOAD, HEADER};

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    // Bound the way a user of the crate would: `async-net`'s own `bind`
    // (std's backlog of 128) when the harness asks for 128, the crate's
    // `runtime::smol::bind` with a backlog of choice otherwise.
    let address = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = if opts.backlog == control::STD_BACKLOG {
        smol::block_on(async_net::TcpListener::bind(address))?
    } else {
        runtime::smol::bind(address, u32::try_from(opts.backlog).unwrap_or(0))?
    };
    let counters = Counters::new();
    let ids: Arc<Mutex<Vec<StreamId>>> = Arc::default();
    let ex: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());

    // The crate's batching channel: one lock and one wake-up per batch of
    // packets instead of an allocation and a wake-up per packet.
    let (channel0, mut channel0_rx) = batch::channel(opts.channel_capacity);
    let (outgoing_tx, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(opts.channel_capacity);
    let (policy, backlog) = match opts.policy {
        Policy::Disconnect => (BacklogPolicy::Disconnect, opts.sender_buffer),
        Policy::Wait => (BacklogPolicy::Wait, opts.writer_capacity),
    };
    let multiplexer = MultiplexerBuilder::new(backlog)
        .backlog_policy(policy)
        .build(outgoing_rx, vec![channel0]);

    {
        let (ex, ids, outgoing_tx) = (Arc::clone(&ex), Arc::clone(&ids), outgoing_tx.clone());
        control::serve_port(
            listener.local_addr()?.port(),
            Arc::clone(&counters),
            move |rounds| {
                let targets = ids.lock().expect("ids lock").clone();
                let mut outgoing_tx = outgoing_tx.clone();
                ex.spawn(async move {
                    let message = Bytes::from_static(&BROADCAST_PAYLOAD);
                    for _ in 0..rounds {
                        let packet =
                            OutgoingMessage::new(targets.iter().copied(), [message.clone()]);
                        if outgoing_tx
                            .send(OutgoingPacket::Message(packet))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                })
                .detach();
            },
        )?;
    }

    let halves = HalvesStream::new(runtime::smol::incoming(listener), HEADER);
    // Never sent to: the server runs until the process exits.
    let (_control_tx, control_rx) = mpsc::unbounded();
    let run = multiplexer.run(halves, control_rx);
    ex.spawn(async move {
        if let Err(e) = run.await {
            eprintln!("ours server: run: {e}");
        }
    })
    .detach();

    let echo = opts.echo;
    let mut outgoing_tx = outgoing_tx;
    ex.spawn(async move {
        let (mut frames, mut conns) = (0u64, 0u64);
        while let Some(packet) = channel0_rx.next().await {
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
                        let _ = outgoing_tx.send(OutgoingPacket::Message(reply)).await;
                    }
                }
                IncomingPacket::StreamDisconnected(id, _) => {
                    ids.lock().expect("ids lock").retain(|&x| x != id);
                }
            }
        }
    })
    .detach();

    for _ in 1..opts.threads.max(1) {
        let ex = Arc::clone(&ex);
        thread::Builder::new()
            .name("smol".into())
            .spawn(move || smol::block_on(ex.run(future::pending::<()>())))?;
    }
    smol::block_on(ex.run(future::pending::<()>()));
    Ok(())
}
