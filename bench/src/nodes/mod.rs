//! `bench nodes`: a room across two nodes through Redis, against the same
//! room on one node.
//!
//! C members in one room, a producer sending M room messages (32-byte
//! payloads) to node A. Two setups, measured in alternation:
//!
//! ```text
//!  one node:   producer ──▶ node A ──▶ C members
//!
//!  two nodes:  producer ──▶ node A ──▶ C/2 members
//!                             │ PUBLISH
//!                             ▼
//!                        redis-server ──▶ node A (its own envelope back: ignored)
//!                             │ message
//!                             ▼
//!                           node B ──▶ C/2 members
//! ```
//!
//! Each node is a child process (`bench nodes serve`, see `node.rs`): a
//! multiplexer on smol, one thread, with the crate's Redis backplane in
//! the two-node setup; `redis-server` is started by the benchmark on a
//! free port with persistence off (`redis.rs`). The members and the
//! producer run in the harness process: each payload carries its number
//! and the time it was written (`stamp.rs`), and each member checks that it
//! gets every message once, in order, and times it (`members.rs`).
//!
//! A measurement (`measure.rs`) has three phases: a warm-up (not
//! reported); a flood (the producer writes M messages as fast as node A
//! reads them: deliveries/s from the first write to the last delivery);
//! and a paced phase (messages at a fixed rate far below capacity: the
//! latency of a message that does not queue behind others). The CPU time
//! of each node, of `redis-server` and of the harness is read before and
//! after each phase.

mod measure;
mod members;
mod node;
mod producer;
mod redis;
mod report;
mod stamp;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

pub use measure::{Measurement, measure};
pub use node::{NodeOpts, serve};
pub use stamp::Clock;

const USAGE: &str = "\
usage:
  bench nodes [options]      a room of C members on one node, and across two nodes
                             through Redis (a redis-server of its own, on a free port):
                             deliveries/s, latency, CPU of each node and of redis-server
  bench nodes serve [--redis ADDR] [--node-id N] [--publish-queue N] [--sender-buffer N]
                             one node (how `bench nodes` starts each)

options of `nodes`:
  --clients C                members of the room, split evenly over the nodes (default 1000)
  --messages M               messages of the flood phase (default 10000)
  --paced N                  messages of the paced phase (default 500)
  --rate R                   messages/s of the paced phase (default 100)
  --warmup N                 messages before anything is measured (default 100)
  --runs N                   measurements of each setup, alternating (default 3)
  --setups LIST              one,two (default both)
  --threads N                threads reading the members (default 1)
  --publish-queue N          the backplane's publication queue (default 1024, the crate's)
  --timeout SECS             longest wait for connects or a phase (default 120)
  --stall SECS               a phase ends early, its missing deliveries counted, after this
                             long with none (default 3)
  --smoke                    tiny sizes (C 20, M 50, 20 paced at 200/s, one run); exact
                             counts checked; exits non-zero on a mismatch
";

/// A room on one node, or across two through Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Every member on node A; no Redis.
    One,
    /// Half the members on A, half on B, through the backplane.
    Two,
}

impl Setup {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "one" => Some(Self::One),
            "two" => Some(Self::Two),
            _ => None,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::One => "one node",
            Self::Two => "two nodes + Redis",
        })
    }
}

/// What `bench nodes` runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Members of the room (C).
    pub clients: usize,
    /// Messages of the flood phase (M).
    pub messages: u64,
    /// Messages of the paced phase.
    pub paced: u64,
    /// Messages per second of the paced phase.
    pub rate: f64,
    /// Messages before anything is measured.
    pub warmup: u64,
    /// Measurements of each setup.
    pub runs: usize,
    /// The setups, in the order of the first run (the next runs alternate).
    pub setups: Vec<Setup>,
    /// Threads reading the members.
    pub threads: usize,
    /// The backplane's publication queue.
    pub publish_queue: usize,
    /// Longest wait for connects, or for a phase's deliveries.
    pub timeout: Duration,
    /// How long a phase may go without a delivery before it ends.
    pub stall: Duration,
    /// Tiny sizes, exact counts checked.
    pub smoke: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            clients: 1000,
            messages: 10_000,
            paced: 500,
            rate: 100.0,
            warmup: 100,
            runs: 3,
            setups: vec![Setup::One, Setup::Two],
            threads: 1,
            publish_queue: 1024,
            timeout: Duration::from_secs(120),
            stall: Duration::from_secs(3),
            smoke: false,
        }
    }
}

impl Config {
    /// The smoke run's sizes (later options may change them).
    pub fn smoke() -> Self {
        Self {
            clients: 20,
            messages: 50,
            paced: 20,
            rate: 200.0,
            warmup: 5,
            runs: 1,
            timeout: Duration::from_secs(30),
            smoke: true,
            ..Self::default()
        }
    }
}

/// `bench nodes ...` (the arguments after `nodes`).
pub fn main(args: &[String]) -> ExitCode {
    if args.first().map(String::as_str) == Some("serve") {
        return serve_main(&args[1..]);
    }
    let mut config = if args.iter().any(|a| a == "--smoke") {
        Config::smoke()
    } else {
        Config::default()
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => config.clients = parse(value(args, &mut i)),
            "--messages" => config.messages = parse(value(args, &mut i)),
            "--paced" => config.paced = parse(value(args, &mut i)),
            "--rate" => config.rate = parse(value(args, &mut i)),
            "--warmup" => config.warmup = parse(value(args, &mut i)),
            "--runs" => config.runs = parse(value(args, &mut i)),
            "--threads" => config.threads = parse(value(args, &mut i)),
            "--publish-queue" => config.publish_queue = parse(value(args, &mut i)),
            "--timeout" => config.timeout = secs(value(args, &mut i)),
            "--stall" => config.stall = secs(value(args, &mut i)),
            "--setups" => {
                let list = value(args, &mut i);
                config.setups = list
                    .split(',')
                    .map(|s| Setup::parse(s).unwrap_or_else(|| bad_value(s)))
                    .collect();
            }
            "--smoke" => {}
            "--help" | "-h" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    if config.clients < 2
        || !config.rate.is_finite()
        || config.rate <= 0.0
        || config.setups.is_empty()
    {
        eprint!("need at least 2 clients, a positive rate and a setup\n{USAGE}");
        return ExitCode::from(2);
    }
    if let Err(e) = crate::raise_fd_limit(config.clients as u64 + 1_000) {
        eprintln!("warning: could not raise the open-file limit: {e}");
    }

    let clock = Clock::start();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for run in 0..config.runs {
        // Alternate the order, so that neither setup always goes first.
        let mut order = config.setups.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            eprintln!("nodes: run {}, {setup}", run + 1);
            match measure(setup, &config, clock) {
                Ok(m) => {
                    failures.extend(
                        m.problems
                            .iter()
                            .map(|p| format!("run {}, {setup}: {p}", run + 1)),
                    );
                    results.push((run, m));
                }
                Err(e) => failures.push(format!("run {}, {setup}: {e}", run + 1)),
            }
        }
    }
    println!("{}", report::markdown(&config, &results));
    if failures.is_empty() {
        eprintln!("nodes: {} measurements, no problems", results.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("nodes: {} problems:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        ExitCode::FAILURE
    }
}

/// `bench nodes serve ...`: one node, until the harness says `quit`.
fn serve_main(args: &[String]) -> ExitCode {
    let mut opts = NodeOpts::default();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--redis" => opts.redis = Some(value(args, &mut i).to_string()),
            "--node-id" => opts.node_id = parse(value(args, &mut i)),
            "--publish-queue" => opts.publish_queue = parse(value(args, &mut i)),
            "--sender-buffer" => opts.sender_buffer = parse(value(args, &mut i)),
            other => {
                eprint!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    match serve(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node: {e}");
            ExitCode::FAILURE
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

fn secs(s: &str) -> Duration {
    Duration::try_from_secs_f64(parse(s)).unwrap_or_else(|_| bad_value(s))
}

fn bad_value(s: &str) -> ! {
    eprint!("bad value {s:?}\n{USAGE}");
    std::process::exit(2)
}
