//! The soak run, outside CI: many clients connecting,
//! talking and leaving in every way for minutes against one in-process
//! server, with the process's RSS sampled along the way. At the end the
//! clients stop, every stream must be gone, the multiplexer's counters must
//! balance (`accepted == streams_open + departed()`), no client may have
//! seen anything it did not expect, and (for runs of a minute or more) the
//! RSS at the end must be within 10 % of the RSS after the warm-up.
//!
//! `cargo run --release -p bench -- soak [--clients 1000] [--minutes 10]`
//!
//! The server ([`server`]) and the clients ([`clients`]) each run on their
//! own thread in this process, so that the multiplexer's counters can be
//! read directly; the RSS sampled is theirs together.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use stream_multiplexer::StatsSnapshot;

use crate::server::Memory as ProcMemory;

pub mod clients;
pub mod report;
pub mod server;
pub mod wire;

use clients::{ClientCounters, Settings};
use report::{Check, Memory, Outcome, Sample, Summary};
use server::Server;

/// Runs shorter than this are too short for the RSS to mean anything: its
/// check is skipped.
const RSS_MIN_RUN: Duration = Duration::from_secs(60);
/// The largest change of RSS from start to end, in percent.
const RSS_TOLERANCE: f64 = 10.0;
/// The longest warm-up (it is otherwise a tenth of the run).
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// How long the clients may take to finish their last cycle once told to
/// stop: each step of a cycle gives up after 30 s, so this only runs out if
/// something is stuck.
const CLIENTS_STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the server may take to see every stream gone once the clients
/// have stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the multiplexer may take to end after `Shutdown`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The soak's options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client slots (each holds one connection at a time).
    pub clients: usize,
    /// How long the clients run.
    pub duration: Duration,
    /// Time between samples.
    pub sample: Duration,
    /// Mean dwell of a client in the lobby; see [`Settings::pace`].
    pub pace: Duration,
    /// Seeds the clients' random choices.
    pub seed: u64,
}

impl Default for Config {
    /// The full soak: 1,000 clients for 10 minutes.
    fn default() -> Self {
        Self {
            clients: 1_000,
            duration: Duration::from_secs(600),
            sample: Duration::from_secs(10),
            pace: Duration::from_millis(1_000),
            seed: 1,
        }
    }
}

impl Config {
    /// CI's smoke run: 20 clients for 3 seconds, cycling fast so that every
    /// way of leaving comes up. It checks everything but the RSS.
    pub fn smoke() -> Self {
        Self {
            clients: 20,
            duration: Duration::from_secs(3),
            sample: Duration::from_secs(1),
            pace: Duration::from_millis(100),
            seed: 1,
        }
    }

    /// The warm-up: a tenth of the run, at most a minute. The first sample
    /// after it is the start of the RSS comparison.
    fn warmup(&self) -> Duration {
        (self.duration / 10).min(MAX_WARMUP)
    }
}

/// Runs the soak, printing as it goes. `Ok(true)` if every check passed.
pub fn run(config: &Config) -> io::Result<bool> {
    // Two descriptors per client (its socket and the server's), and spare
    // ones for connections still closing.
    let want = 2 * config.clients as u64 + 1_000;
    match crate::raise_fd_limit(want) {
        Ok(n) if n < want => eprintln!("warning: open-file limit {n} < {want}"),
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e}"),
    }
    let server = Server::start(config.clients)?;
    let (stop, stop_rx) = smol::channel::bounded::<()>(1);
    let settings = Settings {
        addr: server.addr,
        clients: config.clients,
        pace: config.pace,
        seed: config.seed,
    };
    println!(
        "soak: {} clients for {:.1} min against {} (pace {} ms, seed {}), a sample every {} s",
        config.clients,
        config.duration.as_secs_f64() / 60.0,
        server.addr,
        config.pace.as_millis(),
        config.seed,
        config.sample.as_secs_f64(),
    );
    println!(
        "soak: the server and the clients share this process: the RSS is theirs together; \
         warm-up {:.0} s",
        config.warmup().as_secs_f64()
    );
    let (client_counters, client_thread) = clients::start(settings, stop_rx)?;
    let started = Instant::now();
    let take = |at: Duration| sample(at, &server, &client_counters);

    // Samples up to and including the deadline; the clients are told to
    // stop only after the last one, so that it shows them all cycling.
    let mut samples = Vec::new();
    let mut tick = 1;
    loop {
        let at = (config.sample * tick).min(config.duration);
        thread::sleep((started + at).saturating_duration_since(Instant::now()));
        let s = take(started.elapsed());
        println!("{}", report::line(&s));
        samples.push(s);
        if at >= config.duration {
            break;
        }
        tick += 1;
    }
    let peak_while_running = ProcMemory::of("self").map(|m| m.peak).unwrap_or(0);

    println!("soak: stopping the clients");
    drop(stop);
    let clients_stopped = wait_thread(&client_thread, CLIENTS_STOP_TIMEOUT);
    let drained = wait_until(DRAIN_TIMEOUT, || {
        let s = take(started.elapsed());
        s.server.streams_open == 0 && s.members == (0, 0)
    });
    let last = take(started.elapsed());
    println!("{}", report::line(&last));
    let broadcasts = server.counters.broadcasts.load(Relaxed);
    let oversized = server.counters.oversized.load(Relaxed);
    let anomalies = server.counters.anomalies.load(Relaxed);
    let stats = server.stats.clone();
    let shutdown = server.stop(SHUTDOWN_TIMEOUT);
    let after_shutdown = stats.snapshot();

    let memory = memory(config, &samples, peak_while_running);
    let checks = checks(&Verdict {
        config,
        last: &last,
        after_shutdown: &after_shutdown,
        clients_stopped,
        drained,
        oversized,
        anomalies,
        shutdown: shutdown.map(|run| run.map_err(|e| e.to_string())),
        memory: &memory,
    });
    println!();
    for check in &checks {
        println!("{}", check.line());
    }
    let summary = Summary {
        command: command(config),
        settings: format!(
            "{} clients (pace {} ms, seed {})",
            config.clients,
            config.pace.as_millis(),
            config.seed
        ),
        duration: config.duration,
        last: &last,
        broadcasts,
        memory,
        checks: &checks,
    };
    println!();
    println!("{}", report::markdown(&summary));
    let pass = !checks.iter().any(Check::failed);
    println!("soak: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}

/// Reads everything at once.
fn sample(at: Duration, server: &Server, clients: &ClientCounters) -> Sample {
    Sample {
        at,
        rss: ProcMemory::of("self").map(|m| m.rss).unwrap_or(0),
        heap: heap_in_use(),
        server: server.stats.snapshot(),
        members: (
            server.counters.lobby.load(Relaxed),
            server.counters.room.load(Relaxed),
        ),
        clients: clients.snapshot(),
    }
}

/// Bytes the allocator has handed out and not had back (glibc's
/// `mallinfo2`: in-use chunks of every arena plus mmapped ones), where the
/// allocator is glibc's. Beside the RSS it tells a leak (this grows too)
/// from memory the allocator keeps after it was freed (only the RSS grows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

/// Not available off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<u64> {
    None
}

/// The RSS figures: start is the first sample after the warm-up, end the
/// last one (taken at the deadline, before the clients stop).
fn memory(config: &Config, samples: &[Sample], peak: u64) -> Memory {
    let warmup = config.warmup();
    let start = samples.iter().find(|s| s.at >= warmup).or(samples.last());
    let end = samples.last();
    let at = |s: Option<&Sample>| s.map_or((Duration::ZERO, 0), |s| (s.at, s.rss));
    let heap = |s: Option<&Sample>| s.and_then(|s| s.heap);
    Memory {
        start: at(start),
        end: at(end),
        heap: heap(start).zip(heap(end)),
        max_sampled: samples.iter().map(|s| s.rss).max().unwrap_or(0),
        peak,
    }
}

/// What the checks look at.
struct Verdict<'a> {
    config: &'a Config,
    /// Taken once every stream had gone (or the drain timed out).
    last: &'a Sample,
    after_shutdown: &'a StatsSnapshot,
    clients_stopped: bool,
    drained: bool,
    /// `InvalidData` read errors the server saw.
    oversized: u64,
    anomalies: u64,
    /// Whether `Run` ended after `Shutdown`, and how.
    shutdown: Result<Result<(), String>, String>,
    memory: &'a Memory,
}

/// Every check of the run.
fn checks(v: &Verdict<'_>) -> Vec<Check> {
    let s = &v.last.server;
    let c = &v.last.clients;
    let (lobby, room) = v.last.members;
    let mut checks = vec![
        Check::new(
            "stats balanced",
            s.accepted == s.streams_open + s.departed(),
            format!(
                "accepted {} = open {} + departed {}",
                s.accepted,
                s.streams_open,
                s.departed()
            ),
        ),
        Check::new(
            "every stream gone",
            v.drained && s.streams_open == 0 && lobby == 0 && room == 0,
            format!(
                "streams_open {}, lobby {lobby}, room {room}",
                s.streams_open
            ),
        ),
        Check::new(
            "client errors",
            c.errors == 0,
            format!("{} errors in {} cycles", c.errors, c.cycles),
        ),
        Check::new(
            "clients stopped",
            v.clients_stopped,
            format!(
                "within {} s of the deadline",
                CLIENTS_STOP_TIMEOUT.as_secs()
            ),
        ),
        Check::new(
            "announcements in order",
            v.anomalies == 0,
            format!("{} packets from streams not in their channel", v.anomalies),
        ),
        Check::new(
            "every connection accepted",
            s.accepted == c.connects,
            format!(
                "server accepted {}, clients connected {}",
                s.accepted, c.connects
            ),
        ),
        Check::new(
            "every hostile frame rejected",
            v.oversized == c.hostile_sent,
            format!(
                "server read errors InvalidData {}, oversized frames sent {}",
                v.oversized, c.hostile_sent
            ),
        ),
    ];
    let shutdown = match &v.shutdown {
        Ok(Ok(())) => Check::new(
            "clean shutdown",
            v.after_shutdown.streams_open == 0
                && v.after_shutdown.accepted == v.after_shutdown.departed(),
            format!(
                "Run ended Ok; then accepted {} = departed {}",
                v.after_shutdown.accepted,
                v.after_shutdown.departed()
            ),
        ),
        Ok(Err(e)) => Check::new("clean shutdown", false, format!("Run ended with {e}")),
        Err(e) => Check::new("clean shutdown", false, e.clone()),
    };
    checks.push(shutdown);
    checks.push(if v.config.duration < RSS_MIN_RUN {
        Check {
            name: "RSS steady",
            outcome: Outcome::Skipped(format!(
                "the run is shorter than {} s ({})",
                RSS_MIN_RUN.as_secs(),
                v.memory.describe()
            )),
        }
    } else {
        Check::new(
            "RSS steady",
            v.memory.change_percent().abs() <= RSS_TOLERANCE,
            format!("{} (limit ±{RSS_TOLERANCE} %)", v.memory.describe()),
        )
    });
    checks
}

/// The command line that reproduces a run.
fn command(config: &Config) -> String {
    format!(
        "cargo run --release -p bench -- soak --clients {} --minutes {} --pace-ms {} --seed {}",
        config.clients,
        config.duration.as_secs_f64() / 60.0,
        config.pace.as_millis(),
        config.seed
    )
}

/// Waits up to `timeout` for a thread to end; whether it did. (It is not
/// joined: a thread that is stuck would hold the verdict back forever.)
fn wait_thread(thread: &JoinHandle<()>, timeout: Duration) -> bool {
    wait_until(timeout, || thread.is_finished())
}

/// Polls `done` every 20 ms for up to `timeout`; whether it became true.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
