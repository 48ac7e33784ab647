//! Adapters that turn a runtime's TCP listener into a stream of connections,
//! and its timer into a [`Clock`](crate::Clock).
//!
//! The multiplexer is built on the `futures` traits only and runs on any
//! executor. What differs between runtimes is how connections are accepted:
//! each adapter here takes one runtime's listener and gives an owned,
//! `'static` [`Stream`](futures::Stream) of `io::Result<connection>`, where
//! the connection is a `futures::io` [`AsyncRead`](futures::io::AsyncRead) +
//! [`AsyncWrite`](futures::io::AsyncWrite) that
//! [`HalvesStream`](crate::HalvesStream) frames.
//!
//! There is one module per runtime, each behind a cargo feature of the same
//! name, so that an application compiles only its own runtime:
//!
//! | module    | feature            | listener                        |
//! |-----------|--------------------|---------------------------------|
//! | [`smol`]  | `smol` (default)   | `async_net::TcpListener`        |
//! | [`async_std`] | `async-std`    | `async_std::net::TcpListener`   |
//! | [`tokio`] | `tokio`            | `tokio::net::TcpListener`       |
//!
//! # Accepted connections
//!
//! Every adapter sets the same options on each connection it accepts:
//!
//! - `TCP_NODELAY`, so that a small frame is not held back by Nagle's
//!   algorithm waiting for more.
//! - TCP keepalive: the kernel probes a connection after 60 s idle, then
//!   every 10 s, and resets it after 5 unanswered probes, so that a peer
//!   that vanished without a FIN (its host lost power, a NAT forgot the
//!   connection) is found in about two minutes even with no time limits
//!   set. The multiplexer then sees a read error and disconnects it. Where
//!   the platform does not let the interval and count be set per socket,
//!   the system's values apply. A connection on which keepalive cannot be
//!   set is accepted all the same.
//!
//! # Timers
//!
//! The adapters are the only place that uses a runtime's timer, for two
//! things:
//!
//! - The accept backoff: when accepting fails because the process or
//!   system is out of file descriptors or memory, the adapter waits 50 ms
//!   before accepting again rather than spinning on an accept that keeps
//!   failing. Every failed accept is still yielded, for the multiplexer to
//!   count.
//! - The clock: each adapter's `clock(period)` builds the one
//!   [`Clock`](crate::Clock) from which the multiplexer measures its time
//!   limits, on that runtime's timer. The core itself never reads a timer.

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(any(feature = "smol", feature = "async-std", feature = "tokio"))]
mod backoff;
#[cfg(any(feature = "smol", feature = "async-std", feature = "tokio"))]
mod keepalive;

#[cfg(all(test, any(feature = "smol", feature = "async-std", feature = "tokio")))]
mod clock_scenarios;
