//! The scenarios, each run against a fresh server process per
//! (peer, client count), with the same load generator for every peer.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use crate::control::{Class, Updates};
use crate::idle_clients::IdleClients;
use crate::load::{self, Work};
use crate::readers::{self, Readers};
use crate::server::{Launch, Peer, Server};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client counts (C).
    pub clients: Vec<usize>,
    /// Measured window of the timed scenarios.
    pub duration: Duration,
    /// Load before the window opens.
    pub warmup: Duration,
    /// Broadcast: deliveries per run (rounds = deliveries / C, at least 1).
    pub deliveries: u64,
    /// Load generator threads.
    pub gen_threads: usize,
    /// Listen backlog asked of every server.
    pub backlog: i32,
    /// `ours` with policy Disconnect: each stream's outgoing backlog in
    /// values (`None`: the server's default, 32,768).
    pub sender_buffer: Option<usize>,
    /// Smoke mode: tiny sizes, exact counts checked, no figures that matter.
    pub smoke: bool,
    /// Servers under test.
    pub peers: Vec<Peer>,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Longest wait for anything (connections, deliveries, a drain).
    pub timeout: Duration,
    /// `ours-clock`: the clock's period.
    pub clock_period: Duration,
    /// `ours-clock`: the idle timeout (longer than any run: the idle
    /// scenario's clients stay silent).
    pub idle_timeout: Duration,
    /// Idle scenario: helper processes that hold the idle clients (0: this
    /// process holds them).
    pub idle_procs: usize,
    /// `ours` on smol: `SO_SNDBUF` of the accepted sockets (`None`: the
    /// kernel's autotuning).
    pub send_buffer: Option<usize>,
    /// `ours` on smol: the read chunk size of every connection (`None`:
    /// the crate's default).
    pub read_chunk: Option<usize>,
    /// `ours` on smol: the write high-water mark of every connection
    /// (`None`: the crate's default).
    pub write_hwm: Option<usize>,
    /// Idle scenario: how long the server's CPU time is measured with no
    /// traffic, without and with the idle clients (zero: not measured).
    pub quiet: Duration,
    /// Ingress: send exactly this many frames per client and count them
    /// all (as the smoke run does), instead of a timed window: for tools
    /// that count instructions, whose runs must do the same work.
    pub frames: Option<u64>,
    /// `latest`, `reliable`: the producer of keyed updates.
    pub updates: UpdatesConfig,
}

/// The `latest` and `reliable` scenarios: a producer of keyed updates and
/// slow readers.
#[derive(Clone, Copy, Debug)]
pub struct UpdatesConfig {
    /// How long the producer runs.
    pub duration: Duration,
    /// Updates per second, all keys together (each goes to every client).
    pub rate: u32,
    /// Distinct keys.
    pub keys: u32,
    /// Frames per second each client reads, at most, while the producer
    /// runs.
    pub reader_rate: u32,
    /// `SO_RCVBUF` of each reader (`None`: the kernel's default).
    pub reader_rcvbuf: Option<usize>,
}

impl Config {
    /// How to start a server for this run.
    fn launch(&self, echo: bool, backlog: i32) -> Launch {
        Launch {
            echo,
            backlog,
            sender_buffer: self.sender_buffer,
            clock_period: self.clock_period,
            idle_timeout: self.idle_timeout,
            send_buffer: self.send_buffer,
            read_chunk: self.read_chunk,
            write_hwm: self.write_hwm,
        }
    }

    /// Sockets this process holds at once in the largest run: the idle
    /// scenario holds only its busy client when helpers hold the idle ones.
    pub fn sockets_held(&self) -> usize {
        let max_c = self.clients.iter().copied().max().unwrap_or(0);
        let others = self.scenarios.iter().any(|s| *s != Scenario::Idle);
        if others || self.idle_procs == 0 {
            max_c
        } else {
            2
        }
    }
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// All clients send; the server's channel-0 consumer counts.
    Ingress,
    /// One message to every id, R rounds; clients count.
    Broadcast,
    /// One frame out, wait for its echo, repeat.
    Echo,
    /// C idle clients plus one busy one; memory per idle connection; accept time.
    Idle,
    /// Accept time for C connects with std's listen backlog of 128.
    Storm,
    /// Keyed updates to slow readers (`latest`: conflated; `reliable`:
    /// every one queued). `ours` servers only.
    Updates(Class),
}

impl Scenario {
    /// All scenarios, in table order.
    pub const ALL: [Scenario; 5] = [
        Self::Ingress,
        Self::Broadcast,
        Self::Echo,
        Self::Idle,
        Self::Storm,
    ];

    /// Parses a scenario name.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ingress" => Self::Ingress,
            "broadcast" => Self::Broadcast,
            "echo" => Self::Echo,
            "idle" => Self::Idle,
            "storm" => Self::Storm,
            "latest" => Self::Updates(Class::Latest),
            "reliable" => Self::Updates(Class::Reliable),
            _ => return Err(format!("unknown scenario {s:?}")),
        })
    }
}

/// One figure of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Frames/s that reached the consumer.
    Ingress,
    /// Server CPU time per frame that reached the consumer (seconds).
    IngressCpu,
    /// Deliveries/s of broadcast frames, counted by the clients.
    Broadcast,
    /// Server CPU time per broadcast delivery (seconds).
    BroadcastCpu,
    /// Echo round trips/s.
    EchoRate,
    /// Server CPU time per echo round trip (seconds).
    EchoCpu,
    /// Echo latency, median (seconds).
    EchoP50,
    /// Echo latency, 99th percentile (seconds).
    EchoP99,
    /// Frames/s from one busy client alone.
    IdleAlone,
    /// Frames/s from the same busy client beside C idle ones.
    IdleRate,
    /// `IdleRate` over `IdleAlone`, in the same server process.
    IdleRatio,
    /// The server's CPU time per frame of the busy client beside C idle
    /// ones over the same alone, in the same process: steadier than
    /// `IdleRatio` when other work shares the machine (a rate ratio of at
    /// least 0.9 at equal CPU is a CPU ratio of at most 1.11).
    IdleCpuRatio,
    /// Server RSS per idle connection (bytes).
    IdleMemory,
    /// Server CPU time per second with no traffic, before the idle
    /// clients connect (only the busy client's silent connection).
    QuietCpuBefore,
    /// Server CPU time per second with no traffic, beside C idle clients.
    QuietCpu,
    /// Time for C connects to be taken in by the server (seconds).
    Accept,
    /// The kernel's `ListenOverflows` during those connects.
    Overflows,
    /// `Accept` with a listen backlog of 128, as `std` binds.
    Accept128,
    /// `Overflows` with a listen backlog of 128.
    Overflows128,
    /// A figure of the keyed-updates scenarios, by delivery class.
    Updates(Class, UpdateFigure),
}

/// What the keyed-updates scenarios measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateFigure {
    /// Server RSS at the end of the producer's run minus at a quarter of
    /// it (bytes; once the sockets' buffers have filled).
    RssGrowth,
    /// Clients the server disconnected (or that failed).
    Disconnects,
    /// Median age of the updates read in the second half of the run
    /// (seconds since the server made them).
    AgeP50,
    /// 99th percentile of the same.
    AgeP99,
    /// Updates read per client per second while the producer ran.
    ReadRate,
    /// Updates the producer sent per second (each to every client): below
    /// the rate asked for when the server cannot keep up.
    ProducedRate,
    /// Values replaced in a backlog by a newer one of their key (the
    /// multiplexer's `conflated` counter), per client.
    Conflated,
    /// Clients still connected whose last update of some key is not the
    /// last one produced, after the drain.
    Stale,
}

impl Metric {
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Self::IngressCpu
                | Self::BroadcastCpu
                | Self::EchoCpu
                | Self::EchoP50
                | Self::EchoP99
                | Self::IdleMemory
                | Self::IdleCpuRatio
                | Self::QuietCpuBefore
                | Self::QuietCpu
                | Self::Accept
                | Self::Overflows
                | Self::Accept128
                | Self::Overflows128
                | Self::Updates(
                    _,
                    UpdateFigure::RssGrowth
                        | UpdateFigure::Disconnects
                        | UpdateFigure::AgeP50
                        | UpdateFigure::AgeP99
                        | UpdateFigure::Stale
                )
        )
    }
}

/// One measured figure, with the server's peak RSS during the run.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The figure.
    pub value: f64,
    /// The server's `VmHWM` at the end of the run.
    pub peak_rss: Option<u64>,
    /// A correctness problem (lost, duplicated or malformed frames): the run
    /// fails.
    pub note: Option<String>,
    /// Something the reader must know that is not a failure (a broadcast
    /// that did not finish within `--timeout`: its rate is over what arrived).
    pub info: Option<String>,
}

impl Cell {
    fn new(value: f64, peak_rss: Option<u64>) -> Self {
        Self {
            value,
            peak_rss,
            note: None,
            info: None,
        }
    }
}

/// Everything one run measured, by (metric, C, peer).
#[derive(Debug, Default)]
pub struct Results {
    /// The figures.
    pub cells: BTreeMap<(Metric, usize, Peer), Cell>,
    /// Failures: a run with any of these exits non-zero.
    pub failures: Vec<String>,
    /// Footnotes that are not failures.
    pub notes: Vec<String>,
    /// Samples over time: the server's RSS during each keyed-updates run.
    pub series: Vec<Series>,
}

/// Samples of one quantity over one run.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was sampled, in which run.
    pub title: String,
    /// (seconds since the start, value).
    pub points: Vec<(f64, f64)>,
}

/// Runs every scenario of `config` against every peer.
pub fn run(config: &Config) -> Results {
    let mut results = Results::default();
    for &scenario in &config.scenarios {
        for &c in &config.clients {
            for peer in &config.peers {
                record(&mut results, config, scenario, peer, c);
            }
        }
    }
    results
}

fn record(results: &mut Results, config: &Config, scenario: Scenario, peer: &Peer, c: usize) {
    eprint!("{scenario:?} C={c} {peer}: ");
    let outcome = match scenario {
        Scenario::Ingress => ingress(config, peer, c),
        Scenario::Broadcast => broadcast(config, peer, c),
        Scenario::Echo => echo(config, peer, c),
        Scenario::Idle => idle(config, peer, c),
        Scenario::Storm => storm(config, peer, c),
        Scenario::Updates(_) if !peer.kind.starts_with("ours") => {
            eprintln!("skipped (keyed updates are `ours` only)");
            return;
        }
        Scenario::Updates(class) => updates(config, peer, c, class, &mut results.series),
    };
    match outcome {
        Ok(cells) => {
            let mut line = Vec::new();
            for (metric, cell) in cells {
                line.push(format!("{metric:?}={:.4e}", cell.value));
                if let Some(note) = &cell.note {
                    line.push(format!("[{note}]"));
                    results
                        .failures
                        .push(format!("{scenario:?} C={c} {peer}: {note}"));
                }
                if let Some(info) = &cell.info {
                    line.push(format!("[{info}]"));
                    results
                        .notes
                        .push(format!("{metric:?} C={c} {peer}: {info}"));
                }
                results.cells.insert((metric, c, peer.clone()), cell);
            }
            eprintln!("{}", line.join(" "));
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            results
                .failures
                .push(format!("{scenario:?} C={c} {peer}: {e}"));
        }
    }
}

type Outcome = io::Result<Vec<(Metric, Cell)>>;

/// Sets up a server and `c` connected clients it has taken in.
fn start(
    config: &Config,
    peer: &Peer,
    echo: bool,
    c: usize,
) -> io::Result<(Server, Vec<mio::net::TcpStream>)> {
    let mut server = Server::spawn(peer, &config.launch(echo, config.backlog))?;
    let socks = load::connect(server.addr, c, config.timeout)?;
    server.wait_conns(c as u64, config.timeout)?;
    Ok((server, socks))
}

/// Frames per client in a smoke ingress run (checked exactly).
const SMOKE_FRAMES: u64 = 500;
/// Broadcast rounds in a smoke run (checked exactly).
const SMOKE_ROUNDS: u64 = 50;

fn ingress(config: &Config, peer: &Peer, c: usize) -> Outcome {
    let (mut server, socks) = start(config, peer, false, c)?;
    let attached = attach(&server)?;
    let counted = config.frames.or(config.smoke.then_some(SMOKE_FRAMES));
    if let Some(frames) = counted {
        let expected = c as u64 * frames;
        let (t0, cpu0) = (Instant::now(), server.cpu_time()?);
        let run = load::start(Work::Ingress(Some(frames)), socks, config.gen_threads)?;
        let got = server.wait_count(expected, config.timeout)?;
        let secs = t0.elapsed().as_secs_f64();
        // Anything past the target would be a duplicate: look once more.
        thread::sleep(Duration::from_millis(50));
        let got = got.max(server.count()?);
        let cpu = per(server.cpu_time()? - cpu0, got);
        let memory = server.memory()?;
        run.stop()?;
        let peak = Some(memory.peak);
        let mut cell = Cell::new(got as f64 / secs, peak);
        if got != expected {
            cell.note = Some(format!(
                "consumer saw {got} frames, clients sent {expected}"
            ));
        }
        detach(server, attached)?;
        return Ok(vec![
            (Metric::Ingress, cell),
            (Metric::IngressCpu, Cell::new(cpu, peak)),
        ]);
    }
    let run = load::start(Work::Ingress(None), socks, config.gen_threads)?;
    let window = window(config, &mut server)?;
    let memory = server.memory()?;
    run.stop()?;
    detach(server, attached)?;
    let peak = Some(memory.peak);
    Ok(vec![
        (Metric::Ingress, Cell::new(window.rate, peak)),
        (Metric::IngressCpu, Cell::new(window.cpu_per_frame, peak)),
    ])
}

/// What the consumer's count did over the measured window.
struct Window {
    /// Frames/s: the median of the window's slices.
    rate: f64,
    /// The server's CPU time over the whole window per frame counted in it.
    cpu_per_frame: f64,
}

/// The window is cut in this many slices; the rate is their median, so a
/// burst of someone else's work on the shared machine moves it less.
const SLICES: usize = 5;

/// Consumer frames/s over the measured window, after the warm-up, and the
/// server's CPU time per frame meanwhile.
fn window(config: &Config, server: &mut Server) -> io::Result<Window> {
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
    rates.sort_by(f64::total_cmp);
    Ok(Window {
        rate: rates[SLICES / 2],
        cpu_per_frame: per(cpu, c0 - first),
    })
}

/// CPU time per unit of work, in seconds (0 for no work).
fn per(cpu: Duration, work: u64) -> f64 {
    if work == 0 {
        0.0
    } else {
        cpu.as_secs_f64() / work as f64
    }
}

fn broadcast(config: &Config, peer: &Peer, c: usize) -> Outcome {
    let (mut server, socks) = start(config, peer, false, c)?;
    let rounds = if config.smoke {
        SMOKE_ROUNDS
    } else {
        (config.deliveries / c as u64).max(1)
    };
    let expected = rounds * c as u64;
    let run = load::start(Work::Receive, socks, config.gen_threads)?;
    let attached = attach(&server)?;
    let (t0, cpu0) = (Instant::now(), server.cpu_time()?);
    server.broadcast(rounds)?;
    let shared = run.shared();
    let (mut note, mut info) = (None, None);
    loop {
        let got = shared.frames.load(Relaxed);
        if got >= expected {
            break;
        }
        if t0.elapsed() > config.timeout {
            let partial = format!(
                "{got} of {expected} delivered within the {:?} timeout",
                config.timeout
            );
            if config.smoke {
                note = Some(partial);
            } else {
                info = Some(partial);
            }
            break;
        }
        thread::sleep(Duration::from_micros(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = server.cpu_time()? - cpu0;
    let memory = server.memory()?;
    if config.smoke {
        thread::sleep(Duration::from_millis(50));
    }
    let got = shared.frames.load(Relaxed);
    let bad = shared.bad.load(Relaxed);
    let closed = shared.closed.load(Relaxed);
    if info.is_none() && (got != expected || bad != 0 || closed != 0) {
        note = Some(format!(
            "{got} of {expected} delivered, {bad} malformed, {closed} clients closed"
        ));
    }
    run.stop()?;
    detach(server, attached)?;
    let peak = Some(memory.peak);
    let mut cell = Cell::new(got as f64 / secs, peak);
    cell.note = note;
    cell.info = info;
    Ok(vec![
        (Metric::Broadcast, cell),
        (Metric::BroadcastCpu, Cell::new(per(cpu, got), peak)),
    ])
}

/// With `BENCH_ATTACH` set (e.g. `strace -c -f -o /tmp/s.{pid} -p {pid}`),
/// runs it through `sh -c` with `{pid}` replaced by the server's pid, once
/// the clients are connected and just before the ingress, broadcast or
/// echo load starts, and gives it a second to attach: a tool then sees the
/// whole run and nothing else but the harness's queries. Without the
/// variable, nothing happens. The tool is waited for once the server has
/// exited ([`detach`]).
fn attach(server: &Server) -> io::Result<Option<std::process::Child>> {
    let Ok(template) = std::env::var("BENCH_ATTACH") else {
        return Ok(None);
    };
    let command = template.replace("{pid}", &server.pid().to_string());
    eprint!("[attaching: {command}] ");
    let child = std::process::Command::new("sh")
        .args(["-c", &command])
        .spawn()?;
    thread::sleep(Duration::from_secs(1));
    Ok(Some(child))
}

/// Stops `server` and waits for the tool [`attach`] started, if any.
fn detach(server: Server, attached: Option<std::process::Child>) -> io::Result<()> {
    drop(server);
    if let Some(mut tool) = attached {
        tool.wait()?;
    }
    Ok(())
}

fn echo(config: &Config, peer: &Peer, c: usize) -> Outcome {
    let (server, socks) = start(config, peer, true, c)?;
    let attached = attach(&server)?;
    let run = load::start(Work::Echo, socks, config.gen_threads)?;
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
    let memory = server.memory()?;
    // Stopping drains: every client waits for its last echo.
    let (_, hist) = run.stop()?;
    let (bad, lost, closed) = (
        shared.bad.load(Relaxed),
        shared.lost.load(Relaxed),
        shared.closed.load(Relaxed),
    );
    let note = (bad != 0 || lost != 0 || closed != 0).then(|| {
        format!("{bad} wrong echoes, {lost} requests unanswered, {closed} clients closed")
    });
    detach(server, attached)?;
    let peak = Some(memory.peak);
    let mut rate = Cell::new((c1 - c0) as f64 / (t1 - t0).as_secs_f64(), peak);
    rate.note = note;
    Ok(vec![
        (Metric::EchoRate, rate),
        (Metric::EchoCpu, Cell::new(per(cpu1 - cpu0, c1 - c0), peak)),
        (
            Metric::EchoP50,
            Cell::new(hist.value_at_quantile(0.50) as f64 * 1e-9, peak),
        ),
        (
            Metric::EchoP99,
            Cell::new(hist.value_at_quantile(0.99) as f64 * 1e-9, peak),
        ),
    ])
}

/// One busy client floods the server alone, then again beside C idle
/// clients (each sends one frame, then nothing), in the same server process
/// so the two rates are paired. Between the two, the idle clients' connect
/// storm is timed and the server's RSS per idle connection is taken; with
/// `--quiet`, also its CPU time per second with no traffic, before the idle
/// clients come and beside them (what a clock's ticks cost, for one).
fn idle(config: &Config, peer: &Peer, c: usize) -> Outcome {
    let mut server = Server::spawn(peer, &config.launch(false, config.backlog))?;
    // One client comes and goes first, so that what a server sets up on first
    // use (read buffers, lazily grown tables) is not counted per connection.
    let mut warm = load::connect(server.addr, 1, config.timeout)?;
    load::send_hello(&mut warm)?;
    server.wait_count(1, config.timeout)?;
    drop(warm);

    let busy = load::connect(server.addr, 1, config.timeout)?;
    server.wait_conns(2, config.timeout)?;
    let run = load::start(Work::Ingress(None), busy, 1)?;
    // A fresh connection's buffers are still growing (TCP autotuning): give
    // it longer, or "alone" would be measured on a colder path than "beside".
    thread::sleep(config.warmup * 2);
    let alone = window(config, &mut server)?;
    let shared = run.shared();
    let (busy, _) = run.stop()?;
    // The busy client is now quiet too (it stopped on a frame boundary):
    // let the server drain all it sent, the warm client's frame beside it.
    // Waiting for the count itself, not only for it to stop moving: a
    // consumer that stalls for a while on a loaded machine would otherwise
    // have its late frames counted as the idle clients' hellos.
    server.wait_count(1 + shared.frames.load(Relaxed), config.timeout)?;
    let base = settle(&mut server)?;
    let before = server.memory()?;
    let quiet_before = quiet_cpu(config, &server)?;

    let overflows = listen_overflows()?;
    let t0 = Instant::now();
    let idle = IdleClients::connect(server.addr, c, config.idle_procs, config.timeout)?;
    server.wait_conns(c as u64 + 2, config.timeout)?;
    let accept = t0.elapsed();
    let overflows = listen_overflows()? - overflows;
    server.wait_count(base + c as u64, config.timeout)?;
    let hellos = settle(&mut server)? - base;
    // Give per-connection state time to shrink back after the burst.
    thread::sleep(Duration::from_millis(300));
    let after = server.memory()?;
    let quiet = quiet_cpu(config, &server)?;

    let run = load::start(Work::Ingress(None), busy, 1)?;
    let beside = window(config, &mut server)?;
    let memory = server.memory()?;
    run.stop()?;
    drop(idle);

    let mut accept = Cell::new(accept.as_secs_f64(), Some(after.peak));
    if hellos != c as u64 {
        accept.note = Some(format!("consumer saw {hellos} hellos from {c} clients"));
    }
    let per = after.rss.saturating_sub(before.rss) as f64 / c.max(1) as f64;
    let mut cells = vec![
        (Metric::Accept, accept),
        (Metric::Overflows, Cell::new(overflows as f64, None)),
        (Metric::IdleMemory, Cell::new(per, Some(after.peak))),
        (Metric::IdleAlone, Cell::new(alone.rate, Some(before.peak))),
        (Metric::IdleRate, Cell::new(beside.rate, Some(memory.peak))),
        (
            Metric::IdleRatio,
            Cell::new(beside.rate / alone.rate, Some(memory.peak)),
        ),
        (
            Metric::IdleCpuRatio,
            Cell::new(
                beside.cpu_per_frame / alone.cpu_per_frame,
                Some(memory.peak),
            ),
        ),
    ];
    if let (Some(quiet_before), Some(quiet)) = (quiet_before, quiet) {
        cells.push((
            Metric::QuietCpuBefore,
            Cell::new(quiet_before, Some(before.peak)),
        ));
        cells.push((Metric::QuietCpu, Cell::new(quiet, Some(after.peak))));
    }
    Ok(cells)
}

/// With `--quiet`: the server's CPU time per second of wall time over that
/// long, with no traffic and no questions asked of it meanwhile.
fn quiet_cpu(config: &Config, server: &Server) -> io::Result<Option<f64>> {
    if config.quiet.is_zero() {
        return Ok(None);
    }
    let (cpu0, t0) = (server.cpu_time()?, Instant::now());
    thread::sleep(config.quiet);
    let (cpu1, t1) = (server.cpu_time()?, Instant::now());
    Ok(Some((cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64()))
}

/// Waits until the consumer's count stops moving (two equal readings 50 ms
/// apart, at most 5 s); returns it.
fn settle(server: &mut Server) -> io::Result<u64> {
    let mut last = server.count()?;
    for _ in 0..100 {
        thread::sleep(Duration::from_millis(50));
        let now = server.count()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// C clients connect at once to a server listening with std's backlog of
/// 128: how long until it has taken them all in, and how many handshakes the
/// kernel dropped on the way (each costs its client a retry after 1 s+).
fn storm(config: &Config, peer: &Peer, c: usize) -> Outcome {
    let mut server = Server::spawn(peer, &config.launch(false, crate::control::STD_BACKLOG))?;
    let overflows = listen_overflows()?;
    let t0 = Instant::now();
    let mut socks = load::connect(server.addr, c, config.timeout)?;
    // Clients speak first, as real ones do. It matters: under SYN cookies a
    // handshake whose last ACK met a full queue leaves the client believing
    // it is connected, and only its data (retransmitted) gets it accepted.
    load::send_hello(&mut socks)?;
    server.wait_conns(c as u64, config.timeout)?;
    let accept = t0.elapsed();
    let overflows = listen_overflows()? - overflows;
    let memory = server.memory()?;
    drop(socks);
    Ok(vec![
        (
            Metric::Accept128,
            Cell::new(accept.as_secs_f64(), Some(memory.peak)),
        ),
        (Metric::Overflows128, Cell::new(overflows as f64, None)),
    ])
}

/// The kernel's count of connections dropped because a listen queue was
/// full (`TcpExt: ListenOverflows` in `/proc/net/netstat`; machine-wide).
fn listen_overflows() -> io::Result<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat")?;
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let found = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "ListenOverflows")
            .and_then(|(_, v)| v.parse().ok());
        return found.ok_or_else(|| io::Error::other("no ListenOverflows in /proc/net/netstat"));
    }
    Err(io::Error::other("no TcpExt in /proc/net/netstat"))
}

/// How often the server's RSS is sampled during a keyed-updates run.
const RSS_SAMPLE: Duration = Duration::from_millis(250);
/// How long the readers may take, once the producer is done, to read what
/// is still queued for them.
const DRAIN: Duration = Duration::from_secs(30);

/// Keyed updates from a paced producer on the server to every client, the
/// clients reading slowly: the server's RSS sampled over the run, the age
/// of what the readers read, who got disconnected; then the readers drain
/// and each must end with the last update of every key (unless the server
/// closed it). Under `latest`, a disconnect or a reader that ends on a
/// stale value is a failure; under `reliable`, a reader still connected
/// must have read every update in order.
fn updates(
    config: &Config,
    peer: &Peer,
    c: usize,
    class: Class,
    series: &mut Vec<Series>,
) -> Outcome {
    let u = &config.updates;
    let (mut server, socks) = start(config, peer, false, c)?;
    if let Some(bytes) = u.reader_rcvbuf {
        for sock in &socks {
            socket2::SockRef::from(sock).set_recv_buffer_size(bytes)?;
        }
    }
    let spec = readers::Spec {
        per_sec: u.reader_rate,
        keys: u.keys,
        class,
    };
    let readers = Readers::start(socks, spec)?;
    let shared = readers.shared();
    let run = Updates {
        duration: u.duration,
        rate: u.rate,
        keys: u.keys,
        class,
    };
    let rss0 = server.memory()?.rss;
    let t0 = Instant::now();
    server.updates(&run)?;
    let mut points = vec![(0.0, rss0 as f64)];
    let (mut at_quarter, mut frames_half) = (None, None);
    let (produced, production) = loop {
        thread::sleep(RSS_SAMPLE);
        let t = t0.elapsed();
        let rss = server.memory()?.rss;
        points.push((t.as_secs_f64(), rss as f64));
        if at_quarter.is_none() && t >= u.duration / 4 {
            at_quarter = Some(rss);
        }
        if frames_half.is_none() && t >= u.duration / 2 {
            shared.window_open.store(true, Relaxed);
            frames_half = Some((shared.frames.load(Relaxed), Instant::now()));
        }
        let (produced, done) = server.produced()?;
        if done {
            break (produced, t);
        }
        if t > u.duration + config.timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the producer sent {produced} updates in {t:?}"),
            ));
        }
    };
    let (frames_end, t_end) = (shared.frames.load(Relaxed), Instant::now());
    let rss_end = server.memory()?.rss;
    let at_quarter = at_quarter.unwrap_or(rss0);
    shared.produced.store(produced, Relaxed);
    shared.drain.store(true, Relaxed);
    let until = Instant::now() + DRAIN;
    let drained = loop {
        let settled = shared.complete.load(Relaxed) + shared.closed.load(Relaxed);
        if settled >= c as u64 {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let conflated = server.stat("conflated")?;
    let memory = server.memory()?;
    let ages = readers.stop()?;
    let (closed, bad, complete) = (
        shared.closed.load(Relaxed),
        shared.bad.load(Relaxed),
        shared.complete.load(Relaxed),
    );
    let stale = (c as u64).saturating_sub(closed + complete);
    drop(server);

    let mut problems = Vec::new();
    if bad > 0 {
        problems.push(format!("{bad} updates out of order or malformed"));
    }
    let mut info = None;
    if stale > 0 && (drained || class == Class::Latest) {
        problems.push(format!(
            "{stale} connected readers did not end on the last update of every key"
        ));
    } else if stale > 0 {
        // Under reliable delivery a reader may hold a long queue (the
        // kernel's buffers and its backlog) that one thread cannot read
        // within the drain: not a delivery failure.
        info = Some(format!(
            "{stale} readers still draining after {DRAIN:?} (their queues are long)"
        ));
    }
    if class == Class::Latest && closed > 0 {
        problems.push(format!("{closed} readers disconnected under latest-by-key"));
    }
    let read_rate = match frames_half {
        Some((f0, t_half)) if t_end > t_half => {
            (frames_end - f0) as f64 / (t_end - t_half).as_secs_f64() / c as f64
        }
        _ => 0.0,
    };
    let peak = Some(memory.peak);
    let figure = |f: UpdateFigure, v: f64| (Metric::Updates(class, f), Cell::new(v, peak));
    let mut growth = figure(UpdateFigure::RssGrowth, rss_end as f64 - at_quarter as f64);
    if !problems.is_empty() {
        growth.1.note = Some(problems.join("; "));
    }
    growth.1.info = info;
    series.push(Series {
        title: format!(
            "{} C={c} {peer}: {produced} updates over {} keys, readers at {}/s",
            class.word(),
            u.keys,
            u.reader_rate
        ),
        points,
    });
    let age = |q: f64| ages.value_at_quantile(q) as f64 * 1e-9;
    let mut figures = vec![growth, figure(UpdateFigure::Disconnects, closed as f64)];
    // No ages when every reader was gone before the second half.
    if !ages.is_empty() {
        figures.push(figure(UpdateFigure::AgeP50, age(0.50)));
        figures.push(figure(UpdateFigure::AgeP99, age(0.99)));
    }
    figures.extend([
        figure(UpdateFigure::ReadRate, read_rate),
        figure(
            UpdateFigure::ProducedRate,
            produced as f64 / production.as_secs_f64(),
        ),
        figure(UpdateFigure::Conflated, conflated as f64 / c as f64),
        figure(UpdateFigure::Stale, stale as f64),
    ]);
    Ok(figures)
}
