//! The servers under test, one module each. Every server runs as a child
//! process of the harness (`bench server --impl NAME ...`) so that its peak
//! RSS is its own, and speaks the [`control`](crate::control) protocol.

use std::io;
use std::time::Duration;

pub mod mio_floor;
#[cfg(feature = "ours")]
pub mod ours;
pub mod tokio_server;
pub mod v016;

/// Options common to every server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// Worker threads (the mio floor is always single-threaded).
    pub threads: usize,
    /// Echo every frame back to its sender instead of only counting it.
    pub echo: bool,
    /// Listen backlog asked of the kernel.
    pub backlog: i32,
    /// Capacity of the channel-0 consumer's bounded queue.
    pub channel_capacity: usize,
    /// Per-connection outgoing queue (values), where the server has one.
    pub writer_capacity: usize,
    /// `ours` with [`Policy::Disconnect`]: each stream's outgoing backlog
    /// (values). Large enough that no broadcast run overflows it, so the
    /// peak RSS beside the rate shows what that costs.
    pub sender_buffer: usize,
    /// `ours`: what a full outgoing backlog does.
    pub policy: Policy,
    /// `ours-clock`: the clock and the time limits, used only when `clock`
    /// is set.
    pub timing: Timing,
    /// `ours`: run with a clock and [`timing`](Self::timing)'s limits.
    pub clock: bool,
    /// `ours`: channel 0's consumer channel.
    pub consumer: ConsumerChannel,
    /// `ours`: how a broadcast is addressed.
    pub send_to: SendTo,
    /// `ours` on smol: `SO_SNDBUF` set on the listener, which every
    /// accepted socket inherits (`None`: the kernel's autotuning).
    pub send_buffer: Option<usize>,
    /// `ours` on smol: `HalvesStream::builder(..).read_chunk_size(..)`,
    /// the most bytes one read of a connection asks for (`None`: the
    /// crate's default).
    pub read_chunk: Option<usize>,
    /// `ours` on smol: `HalvesStream::builder(..).write_high_water_mark(..)`,
    /// how many bytes a connection's write buffer holds before it is
    /// written out (`None`: the crate's default).
    pub write_hwm: Option<usize>,
}

/// The channel between the multiplexer and the channel-0 consumer of an
/// `ours` server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerChannel {
    /// The crate's `batch::channel`: one lock and one wake-up per batch.
    Batch,
    /// A plain `futures::channel::mpsc` (bounded): an allocation and a
    /// wake-up per packet.
    Mpsc,
    /// `batch::channel`, its consumer taking everything waiting at once
    /// (`BatchReceiver::next_batch`) and flushing its replies once per
    /// batch, as the crate's quick start does.
    Batches,
}

/// How an `ours` server addresses a message to every client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendTo {
    /// A list of every id connected (copied into each message).
    Ids,
    /// A room that every client joins as it connects.
    Room,
}

/// The clock of a server with time limits, and the limits.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Time between two ticks.
    pub period: Duration,
    /// `MultiplexerBuilder::idle_timeout`: longer than any run, so that
    /// the benchmark's silent idle clients are never closed.
    pub idle_timeout: Duration,
    /// `MultiplexerBuilder::write_timeout` (the crate's default).
    pub write_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The backlog policy of the `ours` server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Disconnect a client whose backlog overflows (the crate's default).
    Disconnect,
    /// Let the outgoing stream wait for room (lossless, like the peers).
    Wait,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            threads: 1,
            echo: false,
            backlog: 65_535,
            channel_capacity: 1024,
            writer_capacity: 128,
            sender_buffer: 32_768,
            policy: Policy::Disconnect,
            timing: Timing::default(),
            clock: false,
            consumer: ConsumerChannel::Batch,
            send_to: SendTo::Ids,
            send_buffer: None,
            read_chunk: None,
            write_hwm: None,
        }
    }
}

/// The server kinds this build knows.
pub fn kinds() -> &'static [&'static str] {
    if cfg!(feature = "ours") {
        &[
            "mio",
            "tokio",
            "v016",
            "ours",
            "ours-wait",
            "ours-tokio",
            "ours-clock",
            "ours-room",
            "ours-mpsc",
            "ours-batches",
            "ours-shards",
        ]
    } else {
        &["mio", "tokio", "v016"]
    }
}

/// Runs server `kind` until the harness says `quit`.
pub fn run(kind: &str, opts: &ServerOpts) -> io::Result<()> {
    match kind {
        "mio" => mio_floor::run(opts),
        "tokio" => tokio_server::run(opts),
        "v016" => v016::run(opts),
        #[cfg(feature = "ours")]
        "ours" => ours::on_smol::run(opts),
        #[cfg(feature = "ours")]
        "ours-wait" => ours::on_smol::run(&ServerOpts {
            policy: Policy::Wait,
            ..opts.clone()
        }),
        #[cfg(feature = "ours")]
        "ours-tokio" => ours::on_tokio::run(opts),
        #[cfg(feature = "ours")]
        "ours-clock" => ours::on_smol::run(&ServerOpts {
            clock: true,
            ..opts.clone()
        }),
        #[cfg(feature = "ours")]
        "ours-room" => ours::on_smol::run(&ServerOpts {
            send_to: SendTo::Room,
            ..opts.clone()
        }),
        #[cfg(feature = "ours")]
        "ours-mpsc" => ours::on_smol::run(&ServerOpts {
            consumer: ConsumerChannel::Mpsc,
            ..opts.clone()
        }),
        #[cfg(feature = "ours")]
        "ours-batches" => ours::on_smol::run(&ServerOpts {
            consumer: ConsumerChannel::Batches,
            ..opts.clone()
        }),
        #[cfg(feature = "ours")]
        "ours-shards" => ours::shards::run(&ServerOpts {
            send_to: SendTo::Room,
            ..opts.clone()
        }),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown server {other:?} (this build has {:?})", kinds()),
        )),
    }
}
