//! Real-TCP support for the integration tests that talk to a server over
//! loopback sockets: `runtimes.rs`, `hostile.rs` and `chat_example.rs`.
//!
//! - `server`: [`Server`](server::Server), a multiplexer served in this
//!   process on a [`Runtime`](runtime::Runtime) under test (`runtime`:
//!   smol, async-std, tokio, a thread pool), driven by the test thread as
//!   the application; with [`TimeLimits`](server::TimeLimits), on a clock
//!   the test ticks by hand.
//! - `child`: [`ExampleServer`](child::ExampleServer), one of the crate's
//!   examples, built and run as a child process.
//! - `client`: [`Client`](client::Client), a blocking `std` client for
//!   either [`Framing`](framing::Framing) (`framing`): length-delimited
//!   frames (2- or 4-byte lengths) or text lines.
//! - [`within_safety_timeout`]: a watchdog, so that a hang fails the test
//!   instead of blocking CI.
//! - `open_files` (Linux): this process's limit on open file descriptors,
//!   raised for tests that hold thousands of sockets.
//! - `redis_server`: [`RedisServer`](redis_server::RedisServer), a
//!   `redis-server` of a test's own (`redis.rs`, `chat_nodes.rs`).
//!
//! Nothing sleeps: every wait is on an event (a packet on a channel, a
//! client's read, a line from the child), with [`SAFETY_TIMEOUT`] as a
//! safety net only.

#![allow(dead_code, unreachable_pub)]

pub mod child;
pub mod client;
pub mod framing;
#[cfg(target_os = "linux")]
pub mod open_files;
pub mod redis_server;
pub mod runtime;
pub mod server;

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

/// A safety net, never a synchronisation: every wait in these tests ends
/// on an event long before this.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a scenario on its own thread and fails if it does not finish within
/// the safety timeout, so a hang cannot block CI.
pub fn within_safety_timeout(scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std_mpsc::channel();
    let worker = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(SAFETY_TIMEOUT * 2) {
        Ok(()) => worker.join().expect("scenario panicked"),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => panic!("the scenario hung"),
    }
}
