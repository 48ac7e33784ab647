//! TCP keepalive on accepted connections, the same in every adapter.
//!
//! A peer that vanishes without a FIN or a reset (its host lost power, a
//! NAT or firewall between us dropped the mapping, the cable was pulled)
//! leaves a connection that looks open and idle forever: nothing is read
//! from it, and writes succeed until the send buffer fills. Without a time
//! limit on the multiplexer, such a connection would hold its descriptor
//! and its slot for good. Keepalive has the kernel probe an idle
//! connection and reset it when the probes go unanswered, which the
//! multiplexer sees as a read error, as for any broken connection.
//!
//! The kernel's defaults (on Linux, the first probe after two hours idle,
//! then nine probes 75 s apart) would find such a peer after more than two
//! hours; the values here find it in about two minutes:
//! [`IDLE`] + [`RETRIES`](probes::RETRIES) × [`INTERVAL`](probes::INTERVAL)
//! = 60 s + 5 × 10 s.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// How long a connection is idle before the kernel sends the first probe.
/// A minute costs one small packet each way per idle minute and
/// connection, and also keeps the connection's mapping alive in NATs and
/// firewalls that forget idle flows after a few minutes.
const IDLE: Duration = Duration::from_secs(60);

/// Turns keepalive on for an accepted connection, with [`IDLE`], and with
/// the interval and count of [`probes`] where the platform lets them be
/// set per socket (elsewhere the system's values apply).
///
/// A failure is ignored: keepalive is a safety net, and a connection
/// without it still works and is still subject to the multiplexer's time
/// limits; failing the accept for it would turn a client away.
pub(super) fn enable(socket: SockRef<'_>) {
    let keepalive = probes::add(TcpKeepalive::new().with_time(IDLE));
    let _ = socket.set_tcp_keepalive(&keepalive);
}

/// The probes after the first, on the platforms where their interval and
/// count can be set per socket.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos",
    target_os = "visionos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "fuchsia",
    windows
))]
mod probes {
    use std::time::Duration;

    use socket2::TcpKeepalive;

    /// The time between two unanswered probes. Ten seconds is many round
    /// trips even on a slow link, so an answer that is merely late is not
    /// taken for a missing one.
    pub(super) const INTERVAL: Duration = Duration::from_secs(10);

    /// How many probes go unanswered before the kernel resets the
    /// connection: enough that a few lost packets do not end a live one.
    pub(super) const RETRIES: u32 = 5;

    /// `keepalive` with [`INTERVAL`] and [`RETRIES`].
    pub(super) fn add(keepalive: TcpKeepalive) -> TcpKeepalive {
        keepalive.with_interval(INTERVAL).with_retries(RETRIES)
    }
}

/// Where the interval and count of the probes cannot be set per socket,
/// the system's values apply.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "tvos",
    target_os = "watchos",
    target_os = "visionos",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "fuchsia",
    windows
)))]
mod probes {
    use socket2::TcpKeepalive;

    /// `keepalive` as it is.
    pub(super) fn add(keepalive: TcpKeepalive) -> TcpKeepalive {
        keepalive
    }
}
