//! The control protocol between the harness and a server child process.
//!
//! A server binds its listener, prints `PORT <n>` on stdout, then answers
//! one line on stdout for each line the harness writes on its stdin:
//!
//! ```text
//! count        -> <frames that reached the channel-0 consumer so far>
//! conns        -> <connections the server has taken in so far>
//! broadcast R  -> ok            (R rounds of BROADCAST_PAYLOAD to every id start)
//! updates S R K latest|reliable
//!              -> ok            (for S seconds, R keyed updates per second over K
//!                                keys to every client start; `ours` servers only)
//! produced     -> <updates sent so far> <1 once the producer is done, else 0>
//! stats        -> conflated=<n> backlog_full=<n> volatile_dropped=<n>
//!                               (the multiplexer's own counters; `ours` only)
//! quit         -> (the process exits)
//! ```
//!
//! A server that does not know a command answers `error: ...`.
//!
//! Counting is done by the server's own consumer into [`Counters`]; the
//! harness reads the server's memory from `/proc/<pid>/status` itself.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// What a server publishes for the harness. Each counter has one writer (the
/// server's consumer or acceptor), so plain stores are enough.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames that reached the channel-0 consumer.
    pub frames: AtomicU64,
    /// Connections taken in (accepted, or announced to the consumer).
    pub conns: AtomicU64,
    /// Keyed updates sent so far (see [`Updates`]).
    pub produced: AtomicU64,
    /// The producer of keyed updates has sent its last one.
    pub produced_all: AtomicBool,
}

/// How keyed updates are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// `OutgoingMessage::latest(key)`: a value not yet written is replaced
    /// by the newer one of its key.
    Latest,
    /// The default delivery: every value is queued.
    Reliable,
}

impl Class {
    /// The word of the control protocol.
    pub fn word(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Reliable => "reliable",
        }
    }
}

/// A run of keyed updates: `rate` per second, key after key, for `duration`.
/// Update number `seq` (from 0) is for key `seq % keys`
/// ([`proto::update_payload`](crate::proto::update_payload)).
#[derive(Clone, Copy, Debug)]
pub struct Updates {
    /// How long the producer runs.
    pub duration: Duration,
    /// Updates per second, all keys together.
    pub rate: u32,
    /// Distinct keys.
    pub keys: u32,
    /// How they are delivered.
    pub class: Class,
}

impl Updates {
    fn parse<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<Self> {
        let secs: f64 = words.next()?.parse().ok()?;
        let rate = words.next()?.parse().ok()?;
        let keys = words.next()?.parse().ok().filter(|&k| k > 0)?;
        let class = match words.next()? {
            "latest" => Class::Latest,
            "reliable" => Class::Reliable,
            _ => return None,
        };
        Some(Self {
            duration: Duration::try_from_secs_f64(secs).ok()?,
            rate,
            keys,
            class,
        })
    }
}

/// What a server does on the commands beyond counting: a broadcast (every
/// server), keyed updates and its multiplexer's counters (`ours` only).
pub struct Hooks {
    broadcast: Box<dyn Fn(u32) + Send>,
    updates: Option<Box<dyn Fn(Updates) + Send>>,
    stats: Option<Box<dyn Fn() -> String + Send>>,
}

impl Hooks {
    /// A server that can broadcast and nothing more.
    pub fn broadcast(on_broadcast: impl Fn(u32) + Send + 'static) -> Self {
        Self {
            broadcast: Box::new(on_broadcast),
            updates: None,
            stats: None,
        }
    }

    /// Also starts runs of keyed updates.
    pub fn updates(mut self, on_updates: impl Fn(Updates) + Send + 'static) -> Self {
        self.updates = Some(Box::new(on_updates));
        self
    }

    /// Also answers `stats`.
    pub fn stats(mut self, stats: impl Fn() -> String + Send + 'static) -> Self {
        self.stats = Some(Box::new(stats));
        self
    }
}

impl Counters {
    /// New shared counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// The listen backlog `std` (and so `async-net`) always asks for.
pub const STD_BACKLOG: i32 = 128;

/// Binds `127.0.0.1:0` with a listen backlog of `backlog` (the kernel caps it
/// at `net.core.somaxconn`), non-blocking, with `TCP_NODELAY` set so that
/// accepted sockets inherit it.
pub fn bind(backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Prints `PORT <n>` and serves the control protocol on a thread of its own.
/// `on_broadcast(rounds)` starts a broadcast and must not block for long.
/// The process exits on `quit` or when stdin closes (the harness is gone).
pub fn serve(
    listener: &TcpListener,
    counters: Arc<Counters>,
    on_broadcast: impl Fn(u32) + Send + 'static,
) -> io::Result<()> {
    serve_port(
        listener.local_addr()?.port(),
        counters,
        Hooks::broadcast(on_broadcast),
    )
}

/// [`serve`] for a server that bound its listener itself (as `ours` does,
/// through the crate's own `runtime::smol::bind` or through `async-net`),
/// with all its [`Hooks`].
pub fn serve_port(port: u16, counters: Arc<Counters>, hooks: Hooks) -> io::Result<()> {
    {
        let mut out = io::stdout().lock();
        writeln!(out, "PORT {port}")?;
        out.flush()?;
    }
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                let reply = match words.next() {
                    Some("count") => counters.frames.load(Ordering::Relaxed).to_string(),
                    Some("conns") => counters.conns.load(Ordering::Relaxed).to_string(),
                    Some("broadcast") => {
                        let rounds = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                        (hooks.broadcast)(rounds);
                        "ok".to_string()
                    }
                    Some("updates") => match (&hooks.updates, Updates::parse(words)) {
                        (Some(start), Some(updates)) => {
                            start(updates);
                            "ok".to_string()
                        }
                        (None, _) => "error: this server sends no keyed updates".to_string(),
                        (_, None) => {
                            "error: usage: updates SECS RATE KEYS latest|reliable".to_string()
                        }
                    },
                    Some("produced") => format!(
                        "{} {}",
                        counters.produced.load(Ordering::Relaxed),
                        u8::from(counters.produced_all.load(Ordering::Relaxed))
                    ),
                    Some("stats") => match &hooks.stats {
                        Some(stats) => stats(),
                        None => "error: this server has no stats".to_string(),
                    },
                    Some("quit") => break,
                    other => format!("error: unknown command {other:?}"),
                };
                let mut out = io::stdout().lock();
                if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        })?;
    Ok(())
}
