//! The markdown `bench ws` prints: one table per figure (a row per run,
//! a column per peer, each figure beside its ratio to the best `tt`
//! configuration of the same run), then the targets, each judged from
//! ratios measured in the same run.

use std::fmt::Write as _;

use super::scenarios::{Config, Metric, Results};
use crate::server::Peer;

/// How a figure is written.
#[derive(Clone, Copy)]
enum Unit {
    Rate,
    Seconds,
    Bytes,
}

/// A table: its figure, the CPU time per unit of work shown beside it
/// (for rates), its title, its unit.
struct Table {
    metric: Metric,
    cpu: Option<Metric>,
    title: &'static str,
    unit: Unit,
}

const TABLES: [Table; 6] = [
    Table {
        metric: Metric::Ingress,
        cpu: Some(Metric::IngressCpu),
        title: "ingress: binary messages/s reaching the consumer (higher is better) · server CPU time per message",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::Broadcast,
        cpu: Some(Metric::BroadcastCpu),
        title: "broadcast: deliveries/s counted by the clients (higher is better) · server CPU time per delivery",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::EchoRate,
        cpu: Some(Metric::EchoCpu),
        title: "echo: round trips/s (higher is better) · server CPU time per round trip",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::EchoP50,
        cpu: None,
        title: "echo: median latency (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::EchoP99,
        cpu: None,
        title: "echo: p99 latency (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::IdleMemory,
        cpu: None,
        title: "memory per idle WebSocket connection: server RSS with C idle clients minus without, / C (lower is better)",
        unit: Unit::Bytes,
    },
];

fn fmt(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Rate if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::Rate if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Unit::Rate => format!("{v:.0}/s"),
        Unit::Seconds if v >= 1.0 => format!("{v:.2} s"),
        Unit::Seconds if v >= 1e-3 => format!("{:.2} ms", v * 1e3),
        Unit::Seconds if v >= 1e-6 => format!("{:.2} µs", v * 1e6),
        Unit::Seconds => format!("{:.0} ns", v * 1e9),
        Unit::Bytes if v >= 1024.0 * 1024.0 => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        Unit::Bytes if v >= 1024.0 => format!("{:.2} KiB", v / 1024.0),
        Unit::Bytes => format!("{v:.0} B"),
    }
}

/// The best `tt` figure of run `r` (the highest rate, the lowest cost).
fn tt_best(results: &Results, peers: &[Peer], metric: Metric, r: usize) -> Option<f64> {
    let values = peers
        .iter()
        .filter(|p| p.kind == "tt")
        .filter_map(|p| results.cells.get(&(metric, r, p.clone())))
        .map(|c| c.value);
    if metric.higher_is_better() {
        values.reduce(f64::max)
    } else {
        values.reduce(f64::min)
    }
}

fn value(results: &Results, metric: Metric, r: usize, peer: Option<&Peer>) -> Option<f64> {
    results
        .cells
        .get(&(metric, r, peer?.clone()))
        .map(|c| c.value)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The whole report.
pub fn markdown(results: &Results, config: &Config) -> String {
    let mut out = String::new();
    let peers = &config.peers;
    let _ = writeln!(
        out,
        "C = {} clients, {} run(s), peers alternating within each run. Each cell: the figure · its ratio to the best `tt` configuration of the same run (`×tt`) · beside rates, the server's CPU time per unit of work and its ratio to the lowest `tt`'s · the server's peak RSS.\n",
        config.clients, config.runs
    );
    for table in &TABLES {
        let has_any = results.cells.keys().any(|(m, _, _)| *m == table.metric);
        if !has_any {
            continue;
        }
        let _ = writeln!(out, "### {}\n", table.title);
        let header: Vec<String> = peers.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "| run | {} |", header.join(" | "));
        let _ = writeln!(out, "|---:|{}", "---|".repeat(peers.len()));
        for r in 0..config.runs {
            let best = tt_best(results, peers, table.metric, r);
            let best_cpu = table.cpu.and_then(|m| tt_best(results, peers, m, r));
            let cells: Vec<String> = peers
                .iter()
                .map(|p| {
                    let Some(cell) = results.cells.get(&(table.metric, r, p.clone())) else {
                        return "—".to_string();
                    };
                    let mut s = fmt(cell.value, table.unit);
                    if let Some(best) = best.filter(|b| *b > 0.0) {
                        let _ = write!(s, " · {:.2}×tt", cell.value / best);
                    }
                    if let Some(cpu) = table.cpu.and_then(|m| value(results, m, r, Some(p))) {
                        let _ = write!(s, " · CPU {}", fmt(cpu, Unit::Seconds));
                        if let Some(b) = best_cpu.filter(|b| *b > 0.0) {
                            let _ = write!(s, " ({:.2}×tt)", cpu / b);
                        }
                    }
                    let _ = write!(s, " · {}", fmt(cell.peak_rss as f64, Unit::Bytes));
                    s
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", r + 1, cells.join(" | "));
        }
        out.push('\n');
    }
    targets(&mut out, results, config);
    if !results.notes.is_empty() {
        out.push_str("Notes:\n\n");
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// The first peer of `kind`.
fn first<'a>(peers: &'a [Peer], kind: &str) -> Option<&'a Peer> {
    peers.iter().find(|p| p.kind == kind)
}

/// The targets: per run, then the median over runs.
fn targets(out: &mut String, results: &Results, config: &Config) {
    let peers = &config.peers;
    let (ours, wss) = (first(peers, "ours-ws"), first(peers, "ours-wss"));
    let _ = writeln!(out, "### targets\n");
    let _ = writeln!(out, "| target | each run | median | met? |");
    let _ = writeln!(out, "|---|---|---|---|");
    let runs = 0..config.runs;
    for (metric, goal, name) in [
        (Metric::Ingress, 2.0, "ingress ≥ 2× tt"),
        (Metric::Broadcast, 10.0, "broadcast ≥ 10× tt"),
    ] {
        let ratios: Vec<f64> = runs
            .clone()
            .filter_map(|r| {
                Some(value(results, metric, r, ours)? / tt_best(results, peers, metric, r)?)
            })
            .collect();
        if let Some(m) = median(ratios.clone()) {
            let met = ratios.iter().filter(|&&x| x >= goal).count();
            let each: Vec<String> = ratios.iter().map(|x| format!("{x:.2}×")).collect();
            let _ = writeln!(
                out,
                "| {name} ({}) | {} | {m:.2}× | {} ({met} of {} runs) |",
                ours.map(ToString::to_string).unwrap_or_default(),
                each.join(", "),
                if m >= goal { "yes" } else { "**no**" },
                ratios.len()
            );
        }
    }
    let memory: Vec<f64> = runs
        .clone()
        .filter_map(|r| value(results, Metric::IdleMemory, r, ours))
        .collect();
    if let Some(m) = median(memory.clone()) {
        let each: Vec<String> = memory.iter().map(|&x| fmt(x, Unit::Bytes)).collect();
        let tt: Vec<String> = peers
            .iter()
            .filter(|p| p.kind != "ours-ws")
            .filter_map(|p| {
                let v = median(
                    runs.clone()
                        .filter_map(|r| value(results, Metric::IdleMemory, r, Some(p)))
                        .collect(),
                )?;
                Some(format!("{p}: {}", fmt(v, Unit::Bytes)))
            })
            .collect();
        let _ = writeln!(
            out,
            "| ≤ 4 KiB per idle connection | {} | {} | {} (others: {}) |",
            each.join(", "),
            fmt(m, Unit::Bytes),
            if m <= 4096.0 { "yes" } else { "**no**" },
            tt.join(", ")
        );
    }
    for (metric, name) in [
        (Metric::EchoP50, "TLS: echo p50, wss / ws"),
        (Metric::EchoP99, "TLS: echo p99, wss / ws"),
        (Metric::EchoRate, "TLS: echo round trips/s, wss / ws"),
        (Metric::EchoCpu, "TLS: echo CPU per round trip, wss / ws"),
        (Metric::Broadcast, "TLS: broadcast deliveries/s, wss / ws"),
        (
            Metric::BroadcastCpu,
            "TLS: broadcast CPU per delivery, wss / ws",
        ),
        (Metric::Ingress, "TLS: ingress messages/s, wss / ws"),
        (Metric::IngressCpu, "TLS: ingress CPU per message, wss / ws"),
        (
            Metric::IdleMemory,
            "TLS: memory per idle connection, wss / ws",
        ),
    ] {
        let ratios: Vec<f64> = runs
            .clone()
            .filter_map(|r| {
                Some(value(results, metric, r, wss)? / value(results, metric, r, ours)?)
            })
            .collect();
        if let Some(m) = median(ratios.clone()) {
            let each: Vec<String> = ratios.iter().map(|x| format!("{x:.2}×")).collect();
            let _ = writeln!(
                out,
                "| {name} | {} | {m:.2}× | (reported) |",
                each.join(", ")
            );
        }
    }
    out.push('\n');
}
