//! `ours-shards/N`: N multiplexers, each on a thread of its own with its
//! own `SO_REUSEPORT` listener on one port (`runtime::smol::bind_reuse_port`;
//! the kernel spreads the connections over them), ids from
//! `shard::ShardIds`, as `examples/sharded_echo.rs` does it. Their channel-0
//! sinks are clones of one `batch::channel` sender, so one consumer hears
//! every shard; it and the broadcasts run on the main thread and reach the
//! shards through a `shard::Router` each. Every client joins [`ROOM`] as it
//! connects (the router sends the join to the client's shard), and a
//! broadcast is one message to the room per round, which the router hands
//! to every shard.
//!
//! [`ROOM`]: super::ROOM

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use futures::channel::mpsc;
use futures::{future, stream};
use stream_multiplexer::shard::{Router, ShardIds};
use stream_multiplexer::{batch, runtime};

use super::{
    Audience, ROOM, broadcast, builder, consume, halves, limit_send_buffer, produce, smol_ticks,
    stats_line,
};
use crate::control::{self, Counters, Hooks};
use crate::servers::ServerOpts;

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    let shards = opts.threads.max(1);
    let backlog = u32::try_from(opts.backlog).unwrap_or(0);
    let (channel0, channel0_rx) = batch::channel(opts.channel_capacity);
    let mut address = SocketAddr::from(([127, 0, 0, 1], 0));
    let (mut outputs, mut stats) = (Vec::new(), Vec::new());
    for shard in 0..shards {
        let listener = runtime::smol::bind_reuse_port(address, backlog)?;
        limit_send_buffer(&listener, opts)?;
        address = listener.local_addr()?;
        let (output, outgoing) = mpsc::channel(opts.channel_capacity);
        outputs.push(output);
        let multiplexer = builder(opts)
            .id_gen(ShardIds::new(shard, shards))
            .build(outgoing, vec![channel0.clone()]);
        stats.push(multiplexer.stats());
        let connections = halves(runtime::smol::incoming(listener), opts);
        thread::Builder::new()
            .name(format!("shard-{shard}"))
            .spawn(move || {
                // Runs until the process exits.
                let run = multiplexer.run(connections, stream::pending());
                if let Err(e) = smol::block_on(run) {
                    eprintln!("ours-shards: shard {shard}: {e}");
                }
            })?;
    }
    drop(channel0);

    let counters = Counters::new();
    let ex: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
    let audience = Audience::Room(ROOM.into());
    let on_broadcast = {
        let (ex, audience, outputs) = (Arc::clone(&ex), audience.clone(), outputs.clone());
        move |rounds| {
            let router = Router::new(outputs.clone());
            ex.spawn(broadcast(audience.clone(), rounds, router))
                .detach();
        }
    };
    let on_updates = {
        let (ex, audience, outputs, counters) = (
            Arc::clone(&ex),
            audience.clone(),
            outputs.clone(),
            Arc::clone(&counters),
        );
        move |updates| {
            let router = Router::new(outputs.clone());
            let run = produce(
                audience.clone(),
                updates,
                router,
                smol_ticks(),
                Arc::clone(&counters),
            );
            ex.spawn(run).detach();
        }
    };
    let hooks = Hooks::broadcast(on_broadcast)
        .updates(on_updates)
        .stats(move || stats_line(stats.iter().map(|s| s.snapshot())));
    control::serve_port(address.port(), Arc::clone(&counters), hooks)?;

    ex.spawn(consume(
        channel0_rx,
        Router::new(outputs),
        audience,
        counters,
        opts.echo,
    ))
    .detach();
    smol::block_on(ex.run(future::pending::<()>()));
    Ok(())
}
