//! What the soak prints: one line per sample, the checks, and a summary
//! table in markdown for RELIABILITY.md.

use std::fmt::Write as _;
use std::time::Duration;

use stream_multiplexer::StatsSnapshot;

use super::clients::{ClientSnapshot, Leave};

/// Everything read at one moment of the run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Time since the clients started.
    pub at: Duration,
    /// The process's resident memory (`VmRSS`), in bytes.
    pub rss: u64,
    /// Heap in use (allocated and not freed), where it can be read.
    pub heap: Option<u64>,
    /// The multiplexer's counters.
    pub server: StatsSnapshot,
    /// Streams in the lobby and in the room, as their consumers count them.
    pub members: (u64, u64),
    /// The clients' counters.
    pub clients: ClientSnapshot,
}

/// One sample as a line of output.
pub fn line(s: &Sample) -> String {
    let d = &s.server.disconnects;
    format!(
        "[{:>6.1}s] rss {}{} | open {} (lobby {}, room {}) accepted {} departed {} \
         (linkdead {}, shutdown {}, backlog_full {}) moves {} | frames in {} out {} | \
         cycles {} errors {}",
        s.at.as_secs_f64(),
        mib(s.rss),
        s.heap
            .map(|h| format!(", heap {}", mib(h)))
            .unwrap_or_default(),
        s.server.streams_open,
        s.members.0,
        s.members.1,
        s.server.accepted,
        s.server.departed(),
        d.linkdead,
        d.shutdown,
        d.backlog_full,
        d.channel_change,
        s.server.frames_in,
        s.server.frames_out,
        s.clients.cycles,
        s.clients.errors,
    )
}

/// How one check came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It held; the figures that show it.
    Pass(String),
    /// It did not; the figures that show it.
    Fail(String),
    /// Not checked; why.
    Skipped(String),
}

/// A named check.
#[derive(Clone, Debug)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
}

impl Check {
    /// A check that passes when `ok`, with `detail` either way.
    pub fn new(name: &'static str, ok: bool, detail: String) -> Self {
        let outcome = if ok {
            Outcome::Pass(detail)
        } else {
            Outcome::Fail(detail)
        };
        Self { name, outcome }
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail(_))
    }

    /// One line: `PASS name: detail`.
    pub fn line(&self) -> String {
        let (word, detail) = match &self.outcome {
            Outcome::Pass(d) => ("PASS", d),
            Outcome::Fail(d) => ("FAIL", d),
            Outcome::Skipped(d) => ("SKIP", d),
        };
        format!("{word} {}: {detail}", self.name)
    }
}

/// The memory figures of a run.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// The first sample after the warm-up: when and how much.
    pub start: (Duration, u64),
    /// The last sample before the clients stopped.
    pub end: (Duration, u64),
    /// The heap in use at start and end, where it can be read.
    pub heap: Option<(u64, u64)>,
    /// The largest sample.
    pub max_sampled: u64,
    /// The process's peak (`VmHWM`).
    pub peak: u64,
}

impl Memory {
    /// The change from start to end, in percent of the start.
    pub fn change_percent(&self) -> f64 {
        let (start, end) = (self.start.1 as f64, self.end.1 as f64);
        if start == 0.0 {
            0.0
        } else {
            (end - start) / start * 100.0
        }
    }

    /// One line of figures.
    pub fn describe(&self) -> String {
        let heap = self
            .heap
            .map(|(start, end)| format!("; heap in use {} then {}", mib(start), mib(end)))
            .unwrap_or_default();
        format!(
            "start {} at {:.0} s, end {} at {:.0} s: {:+.1} %; max sampled {}, \
             peak (VmHWM) {}{heap}",
            mib(self.start.1),
            self.start.0.as_secs_f64(),
            mib(self.end.1),
            self.end.0.as_secs_f64(),
            self.change_percent(),
            mib(self.max_sampled),
            mib(self.peak),
        )
    }
}

/// What the summary table describes.
#[derive(Debug)]
pub struct Summary<'a> {
    /// The command line that reproduces the run.
    pub command: String,
    /// The clients' settings, as text.
    pub settings: String,
    /// How long the clients ran.
    pub duration: Duration,
    /// The last sample, taken once every stream had gone.
    pub last: &'a Sample,
    /// Room broadcasts the server sent.
    pub broadcasts: u64,
    /// Memory figures.
    pub memory: Memory,
    /// The checks.
    pub checks: &'a [Check],
}

/// The summary, as a markdown table to paste into RELIABILITY.md.
pub fn markdown(s: &Summary<'_>) -> String {
    let server = &s.last.server;
    let clients = &s.last.clients;
    let d = &server.disconnects;
    let minutes = s.duration.as_secs_f64() / 60.0;
    let leaves = Leave::ALL
        .iter()
        .zip(clients.leaves)
        .map(|(how, n)| format!("{} {n}", how.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let failed = s.checks.iter().filter(|c| c.failed()).count();
    let verdict = if failed == 0 {
        "**pass**".to_string()
    } else {
        format!("**FAIL** ({failed} checks)")
    };
    let mut out = String::new();
    let _ = writeln!(out, "| soak: `{}` | |", s.command);
    let _ = writeln!(out, "|---|---|");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "| {name} | {value} |");
    };
    row("clients", format!("{} for {minutes:.1} min", s.settings));
    row(
        "churn",
        format!(
            "{} connections ({:.0}/s), {} cycles completed; leaves: {leaves}",
            server.accepted,
            server.accepted as f64 / s.duration.as_secs_f64().max(1e-9),
            clients.cycles,
        ),
    );
    row(
        "traffic",
        format!(
            "frames in {}, out {}; {} echoes checked, {} broadcasts sent, {} received; \
             {} flood frames, {} slow clients disconnected",
            server.frames_in,
            server.frames_out,
            clients.round_trips,
            s.broadcasts,
            clients.broadcasts,
            clients.flood_frames,
            clients.slow_kicked,
        ),
    );
    row(
        "disconnects",
        format!(
            "linkdead {}, shutdown {}, backlog_full {}; channel changes {}; \
             dropped (unknown id) {}, accept errors {}",
            d.linkdead,
            d.shutdown,
            d.backlog_full,
            d.channel_change,
            server.dropped_unknown_id,
            server.accept_errors,
        ),
    );
    row("RSS (server and clients, one process)", s.memory.describe());
    for check in s.checks {
        let value = match &check.outcome {
            Outcome::Pass(d) => format!("yes: {d}"),
            Outcome::Fail(d) => format!("**no**: {d}"),
            Outcome::Skipped(d) => format!("not checked: {d}"),
        };
        row(check.name, value);
    }
    row("verdict", verdict);
    out
}

/// Bytes as MiB, one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_change_is_relative_to_the_start() {
        let memory = Memory {
            start: (Duration::from_secs(60), 100),
            end: (Duration::from_secs(600), 108),
            heap: Some((50, 51)),
            max_sampled: 110,
            peak: 120,
        };
        assert!((memory.change_percent() - 8.0).abs() < 1e-9);
        assert!(memory.describe().contains("+8.0 %"));
    }

    #[test]
    fn a_failed_check_fails_the_verdict() {
        let sample = Sample {
            at: Duration::from_secs(1),
            rss: 1 << 20,
            heap: Some(1 << 19),
            server: StatsSnapshot::default(),
            members: (0, 0),
            clients: ClientSnapshot::default(),
        };
        let checks = [
            Check::new("stats balanced", true, "0 = 0 + 0".into()),
            Check::new("client errors", false, "3".into()),
        ];
        let summary = Summary {
            command: "soak".into(),
            settings: "1 client".into(),
            duration: Duration::from_secs(1),
            last: &sample,
            broadcasts: 0,
            memory: Memory {
                start: (Duration::ZERO, 1),
                end: (Duration::ZERO, 1),
                heap: None,
                max_sampled: 1,
                peak: 1,
            },
            checks: &checks,
        };
        let table = markdown(&summary);
        assert!(table.contains("| client errors | **no**: 3 |"), "{table}");
        assert!(table.contains("**FAIL** (1 checks)"), "{table}");
        assert!(line(&sample).contains("rss 1.0 MiB, heap 0.5 MiB"));
    }
}
