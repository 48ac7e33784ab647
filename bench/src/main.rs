//! `bench all` runs every scenario against every server and prints the
//! table; `bench server ...` is how the harness starts each server; `bench
//! soak` is the long run of SPEC issue 5 (with the `ours` feature).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::harness::{self, Config, Metric, Scenario};
use bench::report;
use bench::server::Peer;
use bench::servers::{self, ServerOpts};

const USAGE: &str = "\
usage:
  bench all [options]        run the scenarios, print the markdown table, write plots
  bench server --impl KIND [--threads N] [--echo] [--backlog N] [--sender-buffer N]
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
                             on smol, `ours-tokio`: Disconnect on tokio; all three need
                             `--features ours`, on by default)
  --scenarios LIST           ingress,broadcast,echo,idle
  --gen-threads N            load generator threads (default 1)
  --backlog N                listen backlog of every server (default 65535, capped by somaxconn)
  --sender-buffer N          `ours` (policy Disconnect): per-stream outgoing backlog in values
                             (default 32768: no broadcast run overflows it)
  --timeout SECS             longest wait for connects or deliveries (default 60)
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
  BENCH_ATTACH=CMD           broadcast, echo: run `sh -c CMD` ({pid} = the server's pid) once
                             the clients are connected, 1 s before the load starts, e.g.
                             'strace -c -f -o /tmp/strace.{pid} -p {pid}'
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(&args[1..]),
        Some("all") => all(&args[1..]),
        Some("soak") => soak(&args[1..]),
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
    }
    for p in &config.peers {
        if !servers::kinds().contains(&p.kind.as_str()) {
            eprintln!("unknown peer {p} (this build has {:?})", servers::kinds());
            return ExitCode::from(2);
        }
    }
    let max_c = config.clients.iter().copied().max().unwrap_or(0) as u64;
    match bench::raise_fd_limit(max_c + 1_000) {
        Ok(n) if n < max_c + 100 => {
            eprintln!("open-file limit is {n}: too low for {max_c} clients");
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
