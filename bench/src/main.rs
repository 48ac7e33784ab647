//! `bench all` runs every scenario against every server and prints the
//! table; `bench server ...` is how the harness starts each server, `bench
//! clients ...` how it starts a helper holding idle clients; `bench soak` is
//! the long run (with the `ours` feature).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::harness::{self, Config, Metric, Scenario, UpdatesConfig};
use bench::report;
use bench::server::Peer;
use bench::servers::{self, ServerOpts};

const USAGE: &str = "\
usage:
  bench all [options]        run the scenarios, print the markdown table, write plots
  bench server --impl KIND [--threads N] [--echo] [--backlog N] [--sender-buffer N]
               [--clock-ms MS] [--idle-timeout SECS] [--write-timeout SECS] [--sndbuf BYTES]
               [--read-chunk BYTES] [--write-hwm BYTES]
  bench clients --addr ADDR --count N [--timeout SECS]
                             hold N idle clients of ADDR (each sends one frame), print
                             `READY N`, close them when stdin ends (the idle scenario's
                             helper processes, see --idle-procs)
  bench tick-floor [--clock-ms MS] [--secs S]
                             CPU time per tick of a bare async-io interval on a smol
                             executor (needs `--features ours`): the floor under what a
                             clock costs `ours-clock` (defaults: 1 ms, 5 s)
  bench nodes [options]      a room on one node and across two through Redis (needs
                             `--features ours`; `bench nodes --help` lists its options)
  bench ws [options]         WebSocket and TLS against tokio-tungstenite (`bench ws --help`)
  bench soak [options]       the soak run (needs `--features ours`, on by default): many
                             clients with churn against one in-process server; RSS sampled;
                             exits non-zero if a check fails

options of `all`:
  --clients 100,1000,10000   client counts C
  --duration SECS            measured window (default 2)
  --warmup SECS              load before the window (default 0.5)
  --deliveries N             broadcast deliveries per run (rounds = N / C; default 2000000)
  --peers LIST               e.g. mio,tokio/1,tokio/2,v016/1,v016/2,ours/1,ours/2,ours-wait/1
                             (`ours`: backlog policy Disconnect on smol, `ours-wait`: Wait
                             on smol, `ours-tokio`: Disconnect on tokio, `ours-clock`: `ours`
                             with a clock and time limits, `ours-room`: `ours` broadcasting
                             to a room every client joins, `ours-mpsc`: `ours` with a
                             futures mpsc for channel 0, `ours-batches`: `ours` whose consumer
                             takes a batch per wait (next_batch) and flushes its replies
                             once per batch, `ours-shards/N`: N multiplexers on
                             N threads behind one port, a router and one consumer; all need
                             `--features ours`, on by default)
  --scenarios LIST           ingress,broadcast,echo,idle,storm (the default), and
                             latest,reliable: keyed updates to slow readers (`ours` only)
  --frames N                 ingress: exactly N frames per client, all counted, instead of
                             a timed window (for instruction counts; see BENCH_WRAP)
  --update-secs S            latest, reliable: how long the producer runs (default 10)
  --update-rate N            latest, reliable: updates per second to every client (10000)
  --keys K                   latest, reliable: distinct keys (default 100)
  --reader-rate N            latest, reliable: frames per second each client reads (1000)
  --reader-rcvbuf BYTES      latest, reliable: SO_RCVBUF of each reader (default: the kernel's)
  --sndbuf BYTES             `ours` on smol: SO_SNDBUF of the accepted sockets (set on the
                             listener; default: the kernel's autotuning)
  --read-chunk BYTES         `ours` on smol: the most bytes one read of a connection asks
                             for (HalvesStream's read_chunk_size; default: the crate's, 8 KiB)
  --write-hwm BYTES          `ours` on smol: the bytes a connection's write buffer gathers before
                             it is written out (HalvesStream's write_high_water_mark; default:
                             the crate's, 16 KiB)
  --gen-threads N            load generator threads (default 1)
  --backlog N                listen backlog of every server (default 65535, capped by somaxconn)
  --sender-buffer N          `ours` (policy Disconnect): per-stream outgoing backlog in values
                             (default 32768: no broadcast run overflows it)
  --timeout SECS             longest wait for connects or deliveries (default 60)
  --clock-ms MS              `ours-clock`: the clock's period (default 1000)
  --idle-timeout SECS        `ours-clock`: the idle timeout (default 3600: longer than any
                             run, so the idle clients are never closed); the write timeout
                             is the crate's default, 30 s
  --idle-procs N             idle: N helper processes hold the idle clients (default 0: this
                             process does); for C near the per-process descriptor limit
  --quiet SECS               idle: also measure the server's CPU time per second with no
                             traffic over SECS, before and beside the idle clients (default 0:
                             not measured)
  --out DIR                  where the table and plots go (default bench/results)
  --smoke                    tiny sizes; exact counts checked; exits non-zero on a mismatch

options of `soak`:
  --clients N                client slots, one connection each at a time (default 1000)
  --minutes M                how long the clients run (default 10; fractions allowed)
  --sample-secs S            time between samples (default 10)
  --pace-ms MS               mean dwell in the lobby; the room's is twice that, the pause
                             between connections a quarter (default 1000)
  --seed N                   seeds the clients' random choices (default 1)
  --smoke                    20 clients for 3 s at pace 100 ms (CI); the RSS is not checked
                             (it is not, either, for any run shorter than a minute)

environment:
  BENCH_ATTACH=CMD           ingress, broadcast, echo: run `sh -c CMD` ({pid} = the server's
                             pid) once the clients are connected, 1 s before the load starts,
                             e.g. 'strace -c -f -o /tmp/strace.{pid} -p {pid}'
  BENCH_WRAP=CMD             start every server as `CMD <bench> server ...`, e.g.
                             'valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p'
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(&args[1..]),
        Some("all") => all(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("clients") => clients(&args[1..]),
        Some("tick-floor") => tick_floor(&args[1..]),
        #[cfg(feature = "ours")]
        Some("nodes") => bench::nodes::main(&args[1..]),
        #[cfg(feature = "ws")]
        Some("ws") => bench::ws::main(&args[1..]),
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize) -> &'a str {
    *i += 1;
    match args.get(*i) {
        Some(v) => v,
        None => {
            eprint!("missing value for {}\n{USAGE}", args[*i - 1]);
            std::process::exit(2)
        }
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| bad_value(s))
}

fn bad_value(s: &str) -> ! {
    eprint!("bad value {s:?}\n{USAGE}");
    std::process::exit(2)
}

fn server(args: &[String]) -> ExitCode {
    let mut kind = String::new();
    let mut opts = ServerOpts::default();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--impl" => kind = value(args, &mut i).to_string(),
            "--threads" => opts.threads = parse(value(args, &mut i)),
            "--backlog" => opts.backlog = parse(value(args, &mut i)),
            "--sender-buffer" => opts.sender_buffer = parse(value(args, &mut i)),
            "--clock-ms" => opts.timing.period = millis(value(args, &mut i)),
            "--idle-timeout" => opts.timing.idle_timeout = secs(value(args, &mut i)),
            "--write-timeout" => opts.timing.write_timeout = secs(value(args, &mut i)),
            "--sndbuf" => opts.send_buffer = Some(parse(value(args, &mut i))),
            "--read-chunk" => opts.read_chunk = Some(parse(value(args, &mut i))),
            "--write-hwm" => opts.write_hwm = Some(parse(value(args, &mut i))),
            "--echo" => opts.echo = true,
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    match servers::run(&kind, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server {kind}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A non-negative number of seconds.
fn secs(s: &str) -> Duration {
    Duration::try_from_secs_f64(parse(s)).unwrap_or_else(|_| bad_value(s))
}

/// A positive number of milliseconds (fractions allowed).
fn millis(s: &str) -> Duration {
    let ms: f64 = parse(s);
    Duration::try_from_secs_f64(ms / 1e3)
        .ok()
        .filter(|d| !d.is_zero())
        .unwrap_or_else(|| bad_value(s))
}

/// `bench clients`: holds idle clients for the harness (see `--idle-procs`).
fn clients(args: &[String]) -> ExitCode {
    let (mut addr, mut count) = (None::<SocketAddr>, 0usize);
    let mut timeout = Duration::from_secs(60);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--addr" => addr = Some(parse(value(args, &mut i))),
            "--count" => count = parse(value(args, &mut i)),
            "--timeout" => timeout = secs(value(args, &mut i)),
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let Some(addr) = addr else {
        eprint!("clients needs --addr\n{USAGE}");
        return ExitCode::from(2);
    };
    match bench::idle_clients::hold(addr, count, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clients: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `bench tick-floor`: prints the CPU time per tick of a bare interval.
#[cfg(feature = "ours")]
fn tick_floor(args: &[String]) -> ExitCode {
    let (mut period, mut window) = (Duration::from_millis(1), Duration::from_secs(5));
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clock-ms" => period = millis(value(args, &mut i)),
            "--secs" => window = secs(value(args, &mut i)),
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    match bench::tick_floor::measure(period, window) {
        Ok(floor) => {
            let wall = floor.wall.as_secs_f64();
            println!(
                "period {period:?}: {:.0} ticks/s, CPU {:.2} ms/s, {:.1} µs per tick",
                floor.ticks as f64 / wall,
                floor.cpu.as_secs_f64() * 1e3 / wall,
                floor.cpu.as_secs_f64() * 1e6 / floor.ticks.max(1) as f64,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tick-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without the `ours` feature there is no smol to tick on.
#[cfg(not(feature = "ours"))]
fn tick_floor(_args: &[String]) -> ExitCode {
    eprintln!("tick-floor needs the `ours` feature (on by default)");
    ExitCode::from(2)
}

/// `bench soak`: parses its options (`--smoke` first sets the smoke run's,
/// which later options may change) and runs it.
#[cfg(feature = "ours")]
fn soak(args: &[String]) -> ExitCode {
    let mut config = if args.iter().any(|a| a == "--smoke") {
        bench::soak::Config::smoke()
    } else {
        bench::soak::Config::default()
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => config.clients = parse(value(args, &mut i)),
            "--minutes" => {
                let minutes: f64 = parse(value(args, &mut i));
                config.duration = Duration::try_from_secs_f64(minutes * 60.0)
                    .unwrap_or_else(|_| bad_value(&minutes.to_string()));
            }
            "--sample-secs" => {
                let secs: f64 = parse(value(args, &mut i));
                config.sample = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .unwrap_or_else(|| bad_value(&secs.to_string()));
            }
            "--pace-ms" => config.pace = Duration::from_millis(parse(value(args, &mut i))),
            "--seed" => config.seed = parse(value(args, &mut i)),
            "--smoke" => {}
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    if config.clients == 0 {
        bad_value("0");
    }
    match bench::soak::run(&config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without the `ours` feature there is no server to soak.
#[cfg(not(feature = "ours"))]
fn soak(_args: &[String]) -> ExitCode {
    eprintln!("soak needs the `ours` feature (on by default)");
    ExitCode::from(2)
}

fn default_peers() -> Vec<Peer> {
    let mut peers = vec!["mio", "tokio/1", "tokio/2", "v016/1", "v016/2"];
    if cfg!(feature = "ours") {
        peers.extend(["ours/1", "ours/2", "ours-wait/1", "ours-tokio/1"]);
    }
    peers
        .into_iter()
        .map(|p| Peer::parse(p).expect("valid peer"))
        .collect()
}

fn all(args: &[String]) -> ExitCode {
    let mut config = Config {
        clients: vec![100, 1_000, 10_000],
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        deliveries: 2_000_000,
        gen_threads: 1,
        backlog: 65_535,
        sender_buffer: None,
        smoke: false,
        peers: default_peers(),
        scenarios: Scenario::ALL.to_vec(),
        timeout: Duration::from_secs(60),
        clock_period: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3600),
        idle_procs: 0,
        send_buffer: None,
        read_chunk: None,
        write_hwm: None,
        quiet: Duration::ZERO,
        frames: None,
        updates: UpdatesConfig {
            duration: Duration::from_secs(10),
            rate: 10_000,
            keys: 100,
            reader_rate: 1_000,
            reader_rcvbuf: None,
        },
    };
    let mut out_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut clients_given = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => {
                config.clients = value(args, &mut i).split(',').map(parse).collect();
                clients_given = true;
            }
            "--duration" => config.duration = Duration::from_secs_f64(parse(value(args, &mut i))),
            "--warmup" => config.warmup = Duration::from_secs_f64(parse(value(args, &mut i))),
            "--deliveries" => config.deliveries = parse(value(args, &mut i)),
            "--gen-threads" => config.gen_threads = parse(value(args, &mut i)),
            "--backlog" => config.backlog = parse(value(args, &mut i)),
            "--sender-buffer" => config.sender_buffer = Some(parse(value(args, &mut i))),
            "--timeout" => config.timeout = Duration::from_secs_f64(parse(value(args, &mut i))),
            "--clock-ms" => config.clock_period = millis(value(args, &mut i)),
            "--idle-timeout" => config.idle_timeout = secs(value(args, &mut i)),
            "--idle-procs" => config.idle_procs = parse(value(args, &mut i)),
            "--quiet" => config.quiet = secs(value(args, &mut i)),
            "--frames" => config.frames = Some(parse(value(args, &mut i))),
            "--update-secs" => config.updates.duration = secs(value(args, &mut i)),
            "--update-rate" => config.updates.rate = parse(value(args, &mut i)),
            "--keys" => config.updates.keys = parse::<u32>(value(args, &mut i)).max(1),
            "--reader-rate" => config.updates.reader_rate = parse(value(args, &mut i)),
            "--sndbuf" => config.send_buffer = Some(parse(value(args, &mut i))),
            "--read-chunk" => config.read_chunk = Some(parse(value(args, &mut i))),
            "--write-hwm" => config.write_hwm = Some(parse(value(args, &mut i))),
            "--reader-rcvbuf" => config.updates.reader_rcvbuf = Some(parse(value(args, &mut i))),
            "--out" => out_dir = PathBuf::from(value(args, &mut i)),
            "--smoke" => config.smoke = true,
            "--peers" => {
                let list = value(args, &mut i);
                match list.split(',').map(Peer::parse).collect() {
                    Ok(p) => config.peers = p,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            }
            "--scenarios" => {
                let list = value(args, &mut i);
                match list.split(',').map(Scenario::parse).collect() {
                    Ok(s) => config.scenarios = s,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                }
            }
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    if config.smoke {
        if !clients_given {
            config.clients = vec![20];
        }
        config.duration = Duration::from_millis(300);
        config.warmup = Duration::from_millis(100);
        config.timeout = Duration::from_secs(30);
        // Enough updates to fill small socket buffers within the second,
        // so that `latest` conflates (with `--sndbuf` and `--reader-rcvbuf`).
        config.updates = UpdatesConfig {
            duration: Duration::from_secs(1),
            rate: 20_000,
            keys: 100,
            reader_rate: 200,
            reader_rcvbuf: config.updates.reader_rcvbuf,
        };
    }
    for p in &config.peers {
        if !servers::kinds().contains(&p.kind.as_str()) {
            eprintln!("unknown peer {p} (this build has {:?})", servers::kinds());
            return ExitCode::from(2);
        }
    }
    let held = config.sockets_held() as u64;
    match bench::raise_fd_limit(held + 1_000) {
        Ok(n) if n < held + 100 => {
            eprintln!("open-file limit is {n}: too low for {held} clients (see --idle-procs)");
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e}"),
    }

    let results = harness::run(&config);
    let table = report::markdown(&results, &config);
    println!("{table}");
    // A smoke run's figures mean nothing: it leaves the artifacts alone.
    let written = if config.smoke {
        Ok(())
    } else {
        write_artifacts(&results, &config, &table, &out_dir)
    };
    if let Err(e) = written {
        eprintln!("writing {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    if results.failures.is_empty() {
        eprintln!("bench: {} figures, no problems", results.cells.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: {} problems:", results.failures.len());
        for f in &results.failures {
            eprintln!("  {f}");
        }
        ExitCode::FAILURE
    }
}

fn write_artifacts(
    results: &harness::Results,
    config: &Config,
    table: &str,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("latest.md"), table)?;
    for (metric, name, title) in [
        (
            Metric::Ingress,
            "ingress",
            "ingress: frames/s reaching the consumer",
        ),
        (Metric::Broadcast, "broadcast", "broadcast: deliveries/s"),
        (Metric::EchoRate, "echo", "echo: round trips/s"),
    ] {
        if let Some(svg) = report::svg(results, config, metric, title) {
            std::fs::write(dir.join(format!("{name}.svg")), svg)?;
        }
    }
    Ok(())
}
