//! `ours`, `ours-wait` and `ours-clock` on smol: a listener from
//! `runtime::smol::bind` (or `async-net`'s own `bind` when the harness asks
//! for std's backlog of 128), connections from `runtime::smol::incoming`,
//! everything on one `smol::Executor` driven by `--threads` threads (1: the
//! main thread alone). With a clock, its ticks come from smol's
//! `Timer::interval` (`async-io`'s timer, which smol re-exports).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use futures::channel::mpsc;
use futures::future;
use stream_multiplexer::{Clock, HalvesStream, runtime};

use super::{Parts, broadcast, consume};
use crate::control::{self, Counters};
use crate::proto::HEADER;
use crate::servers::ServerOpts;

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
    let ex: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
    let clock = opts.clock.then(|| {
        let period = opts.timing.period;
        Clock::new(period, smol::Timer::interval(period))
    });
    let parts = Parts::new(opts, clock);

    {
        let (ex, ids, outgoing) = (
            Arc::clone(&ex),
            Arc::clone(&parts.ids),
            parts.outgoing.clone(),
        );
        control::serve_port(
            listener.local_addr()?.port(),
            Arc::clone(&counters),
            move |rounds| {
                let targets = ids.lock().expect("ids lock").clone();
                ex.spawn(broadcast(targets, rounds, outgoing.clone()))
                    .detach();
            },
        )?;
    }

    let halves = HalvesStream::new(runtime::smol::incoming(listener), HEADER);
    // Never sent to: the server runs until the process exits.
    let (_control_tx, control_rx) = mpsc::unbounded();
    let run = parts.multiplexer.run(halves, control_rx);
    ex.spawn(async move {
        if let Err(e) = run.await {
            eprintln!("ours server: run: {e}");
        }
    })
    .detach();
    ex.spawn(consume(
        parts.channel0,
        parts.outgoing,
        parts.ids,
        counters,
        opts.echo,
    ))
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
