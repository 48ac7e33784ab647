//! `ours`, `ours-wait`, `ours-clock`, `ours-room`, `ours-mpsc` and
//! `ours-batches` on smol:
//! a listener from `runtime::smol::bind` (or `async-net`'s own `bind` when
//! the harness asks for std's backlog of 128), connections from
//! `runtime::smol::incoming`, everything on one `smol::Executor` driven by
//! `--threads` threads (1: the main thread alone). With a clock, its ticks
//! come from smol's `Timer::interval` (`async-io`'s timer, which smol
//! re-exports).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use futures::channel::mpsc;
use futures::{Sink, Stream, future};
use stream_multiplexer::{Clock, batch, runtime};

use super::{
    ChannelZero, Incoming, Parts, broadcast, halves, limit_send_buffer, produce, smol_ticks,
    stats_line,
};
use crate::control::{self, Counters, Hooks};
use crate::servers::{ConsumerChannel, ServerOpts};

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    match opts.consumer {
        // The crate's batching channel: one lock and one wake-up per batch
        // of packets instead of an allocation and a wake-up per packet.
        ConsumerChannel::Batch => {
            let (sink, receiver) = batch::channel(opts.channel_capacity);
            serve(opts, (sink, ChannelZero::Next(receiver)))
        }
        ConsumerChannel::Batches => {
            let (sink, receiver) = batch::channel(opts.channel_capacity);
            serve::<_, batch::BatchReceiver<Incoming>>(opts, (sink, ChannelZero::Batches(receiver)))
        }
        ConsumerChannel::Mpsc => {
            let (sink, receiver) = mpsc::channel(opts.channel_capacity);
            serve(opts, (sink, ChannelZero::Next(receiver)))
        }
    }
}

/// Serves with channel 0 made of `sink` and `channel0`.
fn serve<Ch, Rx>(opts: &ServerOpts, (sink, channel0): (Ch, ChannelZero<Rx>)) -> io::Result<()>
where
    Ch: Sink<Incoming> + Unpin + Send + 'static,
    Rx: Stream<Item = Incoming> + Unpin + Send + 'static,
{
    // Bound the way a user of the crate would: `async-net`'s own `bind`
    // (std's backlog of 128) when the harness asks for 128, the crate's
    // `runtime::smol::bind` with a backlog of choice otherwise.
    let address = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = if opts.backlog == control::STD_BACKLOG {
        smol::block_on(async_net::TcpListener::bind(address))?
    } else {
        runtime::smol::bind(address, u32::try_from(opts.backlog).unwrap_or(0))?
    };
    limit_send_buffer(&listener, opts)?;
    let counters = Counters::new();
    let ex: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
    let clock = opts.clock.then(|| {
        let period = opts.timing.period;
        Clock::new(period, smol::Timer::interval(period))
    });
    let parts = Parts::new(opts, sink, clock);
    let stats = parts.multiplexer.stats();

    let on_broadcast = {
        let (ex, audience, outgoing) = (
            Arc::clone(&ex),
            parts.audience.clone(),
            parts.outgoing.clone(),
        );
        move |rounds| {
            ex.spawn(broadcast(audience.clone(), rounds, outgoing.clone()))
                .detach();
        }
    };
    let on_updates = {
        let (ex, audience, outgoing, counters) = (
            Arc::clone(&ex),
            parts.audience.clone(),
            parts.outgoing.clone(),
            Arc::clone(&counters),
        );
        move |updates| {
            let run = produce(
                audience.clone(),
                updates,
                outgoing.clone(),
                smol_ticks(),
                Arc::clone(&counters),
            );
            ex.spawn(run).detach();
        }
    };
    let hooks = Hooks::broadcast(on_broadcast)
        .updates(on_updates)
        .stats(move || stats_line([stats.snapshot()]));
    control::serve_port(listener.local_addr()?.port(), Arc::clone(&counters), hooks)?;

    let connections = halves(runtime::smol::incoming(listener), opts);
    // Never sent to: the server runs until the process exits.
    let (_control_tx, control_rx) = mpsc::unbounded();
    let run = parts.multiplexer.run(connections, control_rx);
    ex.spawn(async move {
        if let Err(e) = run.await {
            eprintln!("ours server: run: {e}");
        }
    })
    .detach();
    ex.spawn(channel0.consume(parts.outgoing, parts.audience, counters, opts.echo))
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
