//! `ours-tokio`: `ours` on tokio, as a tokio user would run it: a
//! `tokio::net::TcpListener` (from a socket bound with the harness's
//! backlog), connections from `runtime::tokio::incoming`, the multiplexer and
//! its consumer as tasks on a tokio runtime: current-thread for
//! `--threads 1`, multi-thread with that many workers otherwise. `Run` is
//! awaited inside `tokio::task::unconstrained`, as the adapter's docs say.

use std::io;
use std::sync::Arc;

use futures::channel::mpsc;
use stream_multiplexer::{HalvesStream, batch, runtime};

use super::{Parts, broadcast, consume};
use crate::control::{self, Counters};
use crate::proto::HEADER;
use crate::servers::ServerOpts;

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    let tokio = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    let std_listener = control::bind(opts.backlog)?;
    let counters = Counters::new();
    let (channel0, channel0_rx) = batch::channel(opts.channel_capacity);
    let parts = Parts::new(opts, channel0, None);

    {
        let (handle, audience, outgoing) = (
            tokio.handle().clone(),
            parts.audience.clone(),
            parts.outgoing.clone(),
        );
        control::serve(&std_listener, Arc::clone(&counters), move |rounds| {
            handle.spawn(broadcast(audience.clone(), rounds, outgoing.clone()));
        })?;
    }

    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let halves = HalvesStream::new(runtime::tokio::incoming(listener), HEADER);
        tokio::spawn(consume(
            channel0_rx,
            parts.outgoing,
            parts.audience,
            counters,
            opts.echo,
        ));
        // Never sent to: the server runs until the process exits.
        let (_control_tx, control_rx) = mpsc::unbounded();
        // Unconstrained, as `runtime::tokio`'s docs say: under tokio's
        // per-task budget, a few of 10,000 echo clients waited seconds.
        let run = parts.multiplexer.run(halves, control_rx);
        if let Err(e) = tokio::task::unconstrained(run).await {
            eprintln!("ours-tokio server: run: {e}");
        }
        Ok(())
    })
}
