//! The WebSocket scenarios, each against a fresh server process per peer,
//! with the same load generator for every peer; peers alternate within a
//! run, and runs repeat, so that the ratios of one run are measured side by
//! side.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use stream_multiplexer::tls::rustls::pki_types::CertificateDer;
use stream_multiplexer::tls::rustls::{self, ClientConfig, RootCertStore};

use super::child::WsServer;
use super::conn::{self, Conn};
use super::load::{self, Work};
use crate::server::Peer;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Clients (C).
    pub clients: usize,
    /// Measured window of ingress and echo.
    pub duration: Duration,
    /// Load before the window opens.
    pub warmup: Duration,
    /// Broadcast: deliveries per run (rounds = deliveries / C, at least 1).
    pub deliveries: u64,
    /// Load generator threads.
    pub gen_threads: usize,
    /// Listen backlog asked of every server.
    pub backlog: i32,
    /// How many times every scenario runs against every peer.
    pub runs: usize,
    /// Servers under test (`ours-ws`, `ours-wss`, `tt`, each `/threads`).
    pub peers: Vec<Peer>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Longest wait for anything (handshakes, deliveries, a drain).
    pub timeout: Duration,
    /// Tiny sizes, exact counts checked, no figure that matters.
    pub smoke: bool,
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// All clients send binary messages; the server's consumer counts.
    Ingress,
    /// One message to every connection, R rounds; clients count.
    Broadcast,
    /// One message out, wait for its echo, repeat.
    Echo,
    /// Server RSS per idle WebSocket connection.
    Idle,
}

impl Scenario {
    /// All scenarios, in table order.
    pub const ALL: [Scenario; 4] = [Self::Ingress, Self::Broadcast, Self::Echo, Self::Idle];

    /// Parses a scenario name.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ingress" => Self::Ingress,
            "broadcast" => Self::Broadcast,
            "echo" => Self::Echo,
            "idle" => Self::Idle,
            _ => return Err(format!("unknown scenario {s:?}")),
        })
    }
}

/// One figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Messages/s that reached the consumer.
    Ingress,
    /// Server CPU time per message that reached the consumer (seconds).
    IngressCpu,
    /// Deliveries/s of broadcast messages, counted by the clients.
    Broadcast,
    /// Server CPU time per broadcast delivery (seconds).
    BroadcastCpu,
    /// Echo round trips/s.
    EchoRate,
    /// Server CPU time per round trip (seconds).
    EchoCpu,
    /// Echo latency, median (seconds).
    EchoP50,
    /// Echo latency, 99th percentile (seconds).
    EchoP99,
    /// Server RSS per idle connection (bytes).
    IdleMemory,
}

impl Metric {
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Ingress | Self::Broadcast | Self::EchoRate)
    }
}

/// One measured figure, with the server's peak RSS during its run.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    /// The figure.
    pub value: f64,
    /// The server's `VmHWM` at the end of the run.
    pub peak_rss: u64,
}

/// Everything measured, by (metric, run, peer).
#[derive(Debug, Default)]
pub struct Results {
    /// The figures.
    pub cells: BTreeMap<(Metric, usize, Peer), Cell>,
    /// Correctness problems and failed runs: any of these fails the command.
    pub failures: Vec<String>,
    /// Footnotes that are not failures.
    pub notes: Vec<String>,
}

/// The certificate of a run with TLS, made with rcgen at its start: PEM
/// files for the server, and a client configuration that trusts it.
pub struct Certificate {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<ClientConfig>,
}

impl Certificate {
    /// A self-signed certificate for `localhost`, in a directory of its own
    /// under the system's temporary directory (removed on drop).
    pub fn make() -> io::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .map_err(io::Error::other)?;
        let dir = std::env::temp_dir().join(format!("bench-ws-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem())?;
        std::fs::write(&key, certified.signing_key.serialize_pem())?;
        let mut roots = RootCertStore::empty();
        let der: CertificateDer<'static> = certified.cert.der().clone();
        roots.add(der).map_err(io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            dir,
            cert,
            key,
            client: Arc::new(client),
        })
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a peer serves `wss://`.
pub fn is_tls(peer: &Peer) -> bool {
    matches!(
        super::servers::Kind::parse(&peer.kind),
        Ok(super::servers::Kind::Ours { tls: true, .. })
    )
}

/// Runs every scenario against every peer, `config.runs` times over.
pub fn run(config: &Config, cert: Option<&Certificate>) -> Results {
    let mut results = Results::default();
    for r in 0..config.runs {
        for &scenario in &config.scenarios {
            for peer in &config.peers {
                record(&mut results, config, cert, scenario, peer, r);
            }
        }
    }
    results
}

fn record(
    results: &mut Results,
    config: &Config,
    cert: Option<&Certificate>,
    scenario: Scenario,
    peer: &Peer,
    r: usize,
) {
    eprint!("run {} {scenario:?} C={} {peer}: ", r + 1, config.clients);
    let setup = Setup {
        config,
        cert: if is_tls(peer) { cert } else { None },
        peer,
    };
    let outcome = match scenario {
        Scenario::Ingress => ingress(&setup),
        Scenario::Broadcast => broadcast(&setup),
        Scenario::Echo => echo(&setup),
        Scenario::Idle => idle(&setup),
    };
    match outcome {
        Ok(measured) => {
            let mut line = Vec::new();
            for (metric, cell) in measured.cells {
                line.push(format!("{metric:?}={:.4e}", cell.value));
                results.cells.insert((metric, r, peer.clone()), cell);
            }
            if let Some(problem) = measured.problem {
                line.push(format!("[{problem}]"));
                results
                    .failures
                    .push(format!("run {} {scenario:?} {peer}: {problem}", r + 1));
            }
            if let Some(note) = measured.note {
                line.push(format!("[{note}]"));
                results
                    .notes
                    .push(format!("run {} {scenario:?} {peer}: {note}", r + 1));
            }
            eprintln!("{}", line.join(" "));
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            results
                .failures
                .push(format!("run {} {scenario:?} {peer}: {e}", r + 1));
        }
    }
}

/// What one scenario measured.
#[derive(Default)]
struct Measured {
    cells: Vec<(Metric, Cell)>,
    /// A correctness problem (lost, duplicated or malformed messages).
    problem: Option<String>,
    /// Something to know that is not a failure.
    note: Option<String>,
}

/// One scenario's server and how to reach it.
struct Setup<'a> {
    config: &'a Config,
    cert: Option<&'a Certificate>,
    peer: &'a Peer,
}

impl Setup<'_> {
    fn spawn(&self, echo: bool) -> io::Result<WsServer> {
        let files = self.cert.map(|c| (c.cert.as_path(), c.key.as_path()));
        WsServer::spawn(self.peer, echo, self.config.backlog, files)
    }

    /// `n` open WebSocket clients of `server`.
    fn open(&self, server: &WsServer, n: usize) -> io::Result<Vec<Conn>> {
        let tls = self.cert.map(|c| &c.client);
        conn::open(server.addr, n, tls, self.config.timeout)
    }

    /// A server and C clients it has opened.
    fn start(&self, echo: bool) -> io::Result<(WsServer, Vec<Conn>)> {
        let mut server = self.spawn(echo)?;
        let conns = self.open(&server, self.config.clients)?;
        server.wait_conns(self.config.clients as u64, self.config.timeout)?;
        Ok((server, conns))
    }
}

/// Messages per client in a smoke ingress run (checked exactly).
const SMOKE_MESSAGES: u64 = 300;
/// Broadcast rounds in a smoke run (checked exactly).
const SMOKE_ROUNDS: u64 = 30;
/// The window is cut in this many slices; the rate is their median.
const SLICES: usize = 5;

/// CPU time per unit of work, in seconds (0 for no work).
fn per(cpu: Duration, work: u64) -> f64 {
    if work == 0 {
        0.0
    } else {
        cpu.as_secs_f64() / work as f64
    }
}

fn ingress(setup: &Setup<'_>) -> io::Result<Measured> {
    let config = setup.config;
    let (mut server, conns) = setup.start(false)?;
    if config.smoke {
        let expected = config.clients as u64 * SMOKE_MESSAGES;
        let (t0, cpu0) = (Instant::now(), server.cpu_time()?);
        let run = load::start(
            Work::Ingress(Some(SMOKE_MESSAGES)),
            conns,
            config.gen_threads,
        )?;
        let got = server.wait_count(expected, config.timeout)?;
        let secs = t0.elapsed().as_secs_f64();
        // Anything past the target would be a duplicate: look once more.
        thread::sleep(Duration::from_millis(50));
        let got = got.max(server.count()?);
        let cpu = per(server.cpu_time()? - cpu0, got);
        let peak_rss = server.memory()?.peak;
        let shared = run.shared();
        run.stop()?;
        let closed = shared.closed.load(Relaxed);
        let problem = (got != expected || closed != 0).then(|| {
            format!("consumer saw {got} messages, clients sent {expected}; {closed} closed")
        });
        return Ok(Measured {
            cells: vec![
                (Metric::Ingress, Cell::new(got as f64 / secs, peak_rss)),
                (Metric::IngressCpu, Cell::new(cpu, peak_rss)),
            ],
            problem,
            note: None,
        });
    }
    let run = load::start(Work::Ingress(None), conns, config.gen_threads)?;
    thread::sleep(config.warmup);
    let mut rates = Vec::with_capacity(SLICES);
    let (first, cpu0) = (server.count()?, server.cpu_time()?);
    let (mut c0, mut t0) = (first, Instant::now());
    for _ in 0..SLICES {
        thread::sleep(config.duration / SLICES as u32);
        let (c1, t1) = (server.count()?, Instant::now());
        rates.push((c1 - c0) as f64 / (t1 - t0).as_secs_f64());
        (c0, t0) = (c1, t1);
    }
    let cpu = server.cpu_time()? - cpu0;
    let peak_rss = server.memory()?.peak;
    let shared = run.shared();
    run.stop()?;
    rates.sort_by(f64::total_cmp);
    let closed = shared.closed.load(Relaxed);
    Ok(Measured {
        cells: vec![
            (Metric::Ingress, Cell::new(rates[SLICES / 2], peak_rss)),
            (
                Metric::IngressCpu,
                Cell::new(per(cpu, c0 - first), peak_rss),
            ),
        ],
        problem: (closed != 0).then(|| format!("{closed} clients closed")),
        note: None,
    })
}

fn broadcast(setup: &Setup<'_>) -> io::Result<Measured> {
    let config = setup.config;
    let c = config.clients as u64;
    let (mut server, conns) = setup.start(false)?;
    let rounds = if config.smoke {
        SMOKE_ROUNDS
    } else {
        (config.deliveries / c).max(1)
    };
    let expected = rounds * c;
    let run = load::start(Work::Receive, conns, config.gen_threads)?;
    let shared = run.shared();
    let (t0, cpu0) = (Instant::now(), server.cpu_time()?);
    server.broadcast(rounds)?;
    let mut late = None;
    while shared.frames.load(Relaxed) < expected {
        if t0.elapsed() > config.timeout {
            late = Some(format!(
                "{} of {expected} delivered within the {:?} timeout",
                shared.frames.load(Relaxed),
                config.timeout
            ));
            break;
        }
        thread::sleep(Duration::from_micros(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = server.cpu_time()? - cpu0;
    let peak_rss = server.memory()?.peak;
    if config.smoke {
        // Anything past the target would be a duplicate.
        thread::sleep(Duration::from_millis(50));
    }
    run.stop()?;
    let (got, bad, closed) = (
        shared.frames.load(Relaxed),
        shared.bad.load(Relaxed),
        shared.closed.load(Relaxed),
    );
    let wrong = got != expected || bad != 0 || closed != 0;
    let summary = format!("{got} of {expected} delivered, {bad} malformed, {closed} closed");
    let (problem, note) = match late {
        Some(late) if !config.smoke => (None, Some(late)),
        Some(late) => (Some(late), None),
        None => (wrong.then_some(summary), None),
    };
    Ok(Measured {
        cells: vec![
            (Metric::Broadcast, Cell::new(got as f64 / secs, peak_rss)),
            (Metric::BroadcastCpu, Cell::new(per(cpu, got), peak_rss)),
        ],
        problem,
        note,
    })
}

fn echo(setup: &Setup<'_>) -> io::Result<Measured> {
    let config = setup.config;
    let (server, conns) = setup.start(true)?;
    let run = load::start(Work::Echo, conns, config.gen_threads)?;
    let shared = run.shared();
    thread::sleep(config.warmup);
    shared.window_open.store(true, Relaxed);
    let (c0, t0, cpu0) = (
        shared.frames.load(Relaxed),
        Instant::now(),
        server.cpu_time()?,
    );
    thread::sleep(config.duration);
    let (c1, t1, cpu1) = (
        shared.frames.load(Relaxed),
        Instant::now(),
        server.cpu_time()?,
    );
    shared.window_closed.store(true, Relaxed);
    let peak_rss = server.memory()?.peak;
    // Stopping drains: every client waits for its last echo.
    let (_, hist) = run.stop()?;
    let (bad, lost, closed) = (
        shared.bad.load(Relaxed),
        shared.lost.load(Relaxed),
        shared.closed.load(Relaxed),
    );
    let problem = (bad != 0 || lost != 0 || closed != 0 || c1 == c0).then(|| {
        format!(
            "{bad} wrong echoes, {lost} unanswered, {closed} closed, {} answered",
            c1 - c0
        )
    });
    let quantile = |q| Cell::new(hist.value_at_quantile(q) as f64 * 1e-9, peak_rss);
    Ok(Measured {
        cells: vec![
            (
                Metric::EchoRate,
                Cell::new((c1 - c0) as f64 / (t1 - t0).as_secs_f64(), peak_rss),
            ),
            (
                Metric::EchoCpu,
                Cell::new(per(cpu1 - cpu0, c1 - c0), peak_rss),
            ),
            (Metric::EchoP50, quantile(0.50)),
            (Metric::EchoP99, quantile(0.99)),
        ],
        problem,
        note: None,
    })
}

/// Server RSS with C idle clients minus without them, over C. One client
/// opens, says hello and leaves first, so that what a server sets up on
/// first use is not counted per connection; the idle clients each send
/// one message (every server has then read from each) and then nothing.
fn idle(setup: &Setup<'_>) -> io::Result<Measured> {
    let config = setup.config;
    let c = config.clients;
    let mut server = setup.spawn(false)?;
    let mut warm = setup.open(&server, 1)?;
    conn::send_hello(&mut warm, config.timeout)?;
    server.wait_count(1, config.timeout)?;
    drop(warm);
    thread::sleep(Duration::from_millis(300));
    let before = server.memory()?;

    let mut idle = setup.open(&server, c)?;
    conn::send_hello(&mut idle, config.timeout)?;
    server.wait_conns(c as u64 + 1, config.timeout)?;
    server.wait_count(c as u64 + 1, config.timeout)?;
    // Give per-connection state time to shrink back after the burst.
    thread::sleep(Duration::from_millis(300));
    let after = server.memory()?;
    let hellos = server.count()? - 1;
    drop(idle);
    let per_conn = after.rss.saturating_sub(before.rss) as f64 / c.max(1) as f64;
    Ok(Measured {
        cells: vec![(Metric::IdleMemory, Cell::new(per_conn, after.peak))],
        problem: (hellos != c as u64)
            .then(|| format!("consumer saw {hellos} hellos from {c} clients")),
        note: None,
    })
}

impl Cell {
    fn new(value: f64, peak_rss: u64) -> Self {
        Self { value, peak_rss }
    }
}
