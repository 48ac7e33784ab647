//! `bench ws`: WebSocket and TLS, side by side. This crate's server
//! (`ours-ws`; `ours-wss` for `wss://`) against a hand-written
//! tokio-tungstenite server (`tt`), each a child process of the harness,
//! under one load generator that writes masked frames by hand over mio
//! sockets ([`load`]), with rustls for `wss://`.
//!
//! Scenarios ([`scenarios`]): ingress, broadcast, echo and memory per idle
//! connection, at C clients; peers alternate within a run and runs repeat
//! (`--runs`), so that every ratio is taken within one run. TLS runs on a
//! certificate made with rcgen when the command starts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::server::Peer;

mod child;
mod conn;
mod load;
pub mod report;
pub mod scenarios;
pub mod servers;
mod wire;

use scenarios::{Certificate, Config, Scenario};

const USAGE: &str = "\
usage:
  bench ws [options]         WebSocket (and TLS) scenarios: ours-ws, ours-wss and tt; prints
                             the markdown tables and targets, writes them to --out
  bench ws server --impl ours-ws|ours-wss|tt [--threads N] [--echo] [--backlog N]
                  [--cert CERT.pem --key KEY.pem]
                             how the harness starts each server (ours-wss needs the PEM files)

options of `bench ws`:
  --clients N                clients C (default 1000)
  --runs N                   times every scenario runs against every peer (default 3)
  --duration SECS            measured window of ingress and echo (default 2)
  --warmup SECS              load before the window (default 0.5)
  --deliveries N             broadcast deliveries per run (rounds = N / C; default 2000000)
  --peers LIST               default ours-ws/1,ours-ws:4096/1,tt/1,tt/2,ours-wss/1; `ours-ws:BYTES/N` is
                             ours-ws with that WebSocket read buffer (the crate's default: 512)
  --scenarios LIST           ingress,broadcast,echo,idle (default all)
  --gen-threads N            load generator threads (default 1)
  --timeout SECS             longest wait for handshakes or deliveries (default 60)
  --out FILE                 where the markdown goes besides stdout (default
                             bench/results/ws.md; not written by --smoke)
  --smoke                    20 clients, one run, exact counts checked, non-zero exit on a
                             mismatch; figures mean nothing
";

/// `bench ws ...`: the harness, or (`bench ws server ...`) one server.
pub fn main(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("server") => server(&args[1..]),
        _ => harness(args),
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

/// A non-negative number of seconds.
fn secs(s: &str) -> Duration {
    Duration::try_from_secs_f64(parse(s)).unwrap_or_else(|_| bad_value(s))
}

fn server(args: &[String]) -> ExitCode {
    let mut kind = String::new();
    let mut opts = servers::Opts {
        threads: 1,
        echo: false,
        backlog: 65_535,
        cert: None,
    };
    let (mut cert, mut key) = (None, None);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--impl" => kind = value(args, &mut i).to_string(),
            "--threads" => opts.threads = parse(value(args, &mut i)),
            "--backlog" => opts.backlog = parse(value(args, &mut i)),
            "--echo" => opts.echo = true,
            "--cert" => cert = Some(PathBuf::from(value(args, &mut i))),
            "--key" => key = Some(PathBuf::from(value(args, &mut i))),
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    opts.cert = cert.zip(key);
    match servers::run(&kind, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws server {kind}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn harness(args: &[String]) -> ExitCode {
    let peers = ["ours-ws/1", "ours-ws:4096/1", "tt/1", "tt/2", "ours-wss/1"];
    let mut config = Config {
        clients: 1_000,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        deliveries: 2_000_000,
        gen_threads: 1,
        backlog: 65_535,
        runs: 3,
        peers: peers
            .iter()
            .map(|p| Peer::parse(p).expect("valid"))
            .collect(),
        scenarios: Scenario::ALL.to_vec(),
        timeout: Duration::from_secs(60),
        smoke: false,
    };
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results/ws.md"));
    let (mut clients_given, mut runs_given) = (false, false);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => {
                config.clients = parse(value(args, &mut i));
                clients_given = true;
            }
            "--runs" => {
                config.runs = parse(value(args, &mut i));
                runs_given = true;
            }
            "--duration" => config.duration = secs(value(args, &mut i)),
            "--warmup" => config.warmup = secs(value(args, &mut i)),
            "--deliveries" => config.deliveries = parse(value(args, &mut i)),
            "--gen-threads" => config.gen_threads = parse(value(args, &mut i)),
            "--timeout" => config.timeout = secs(value(args, &mut i)),
            "--out" => out = PathBuf::from(value(args, &mut i)),
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
            config.clients = 20;
        }
        if !runs_given {
            config.runs = 1;
        }
        config.duration = Duration::from_millis(300);
        config.warmup = Duration::from_millis(100);
        config.timeout = Duration::from_secs(30);
    }
    if config.clients == 0 || config.runs == 0 {
        eprint!("--clients and --runs must be at least 1\n{USAGE}");
        return ExitCode::from(2);
    }
    if let Some(e) = config
        .peers
        .iter()
        .find_map(|p| servers::Kind::parse(&p.kind).err())
    {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let held = config.clients as u64 * 2;
    if let Err(e) = crate::raise_fd_limit(held + 1_000) {
        eprintln!("warning: could not raise the open-file limit: {e}");
    }
    let cert = if config.peers.iter().any(scenarios::is_tls) {
        match Certificate::make() {
            Ok(cert) => Some(cert),
            Err(e) => {
                eprintln!("bench ws: making a certificate: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let results = scenarios::run(&config, cert.as_ref());
    let table = report::markdown(&results, &config);
    println!("{table}");
    if !config.smoke {
        let written = out
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&out, &table));
        if let Err(e) = written {
            eprintln!("writing {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    if results.failures.is_empty() {
        eprintln!("bench ws: {} figures, no problems", results.cells.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("bench ws: {} problems:", results.failures.len());
        for f in &results.failures {
            eprintln!("  {f}");
        }
        ExitCode::FAILURE
    }
}
