//! `bench tick-floor`: what a clock's tick costs before the multiplexer
//! does anything with it. One task on a `smol::Executor` (driven by
//! `smol::block_on` on its own thread, as the `ours` servers run) awaits
//! smol's `Timer::interval` (`async-io`'s) and counts its ticks; the process's CPU time
//! per tick over a window is the floor under the `ours-clock` server's
//! quiet CPU time.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use futures::{StreamExt, future};

use crate::server::cpu_time;

/// Ticks, CPU time and wall time over one window.
#[derive(Clone, Copy, Debug)]
pub struct TickFloor {
    /// Ticks counted in the window.
    pub ticks: u64,
    /// This process's CPU time in the window.
    pub cpu: Duration,
    /// The window.
    pub wall: Duration,
}

/// Runs the interval for a second of warm-up, then measures it over `window`.
pub fn measure(period: Duration, window: Duration) -> io::Result<TickFloor> {
    let ex = Arc::new(smol::Executor::<'static>::new());
    let ticks = Arc::new(AtomicU64::new(0));
    {
        let ticks = Arc::clone(&ticks);
        ex.spawn(async move {
            let mut interval = smol::Timer::interval(period);
            while interval.next().await.is_some() {
                ticks.fetch_add(1, Relaxed);
            }
        })
        .detach();
    }
    {
        let ex = Arc::clone(&ex);
        thread::Builder::new()
            .name("smol".into())
            .spawn(move || smol::block_on(ex.run(future::pending::<()>())))?;
    }
    let me = std::process::id();
    thread::sleep(Duration::from_secs(1));
    let (n0, cpu0, t0) = (ticks.load(Relaxed), cpu_time(me)?, Instant::now());
    thread::sleep(window);
    let (n1, cpu1, t1) = (ticks.load(Relaxed), cpu_time(me)?, Instant::now());
    Ok(TickFloor {
        ticks: n1 - n0,
        cpu: cpu1 - cpu0,
        wall: t1 - t0,
    })
}
