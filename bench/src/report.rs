//! Turns [`Results`] into the markdown table of `BENCHMARKS.md` and SVG plots
//! of throughput against C (hand-written SVG, no plotting dependency).

use std::fmt::Write as _;

use crate::control::Class;
use crate::harness::{Config, Metric, Results, UpdateFigure};
use crate::server::Peer;

/// One table of the report.
struct Table {
    metric: Metric,
    title: &'static str,
    unit: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    Rate,
    Seconds,
    Bytes,
    Ratio,
    Count,
    /// CPU seconds per second of wall time.
    CpuShare,
}

const TABLES: &[Table] = &[
    Table {
        metric: Metric::Ingress,
        title: "ingress: frames/s reaching the channel-0 consumer (higher is better)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::IngressCpu,
        title: "ingress: server CPU time per frame over the window (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Broadcast,
        title: "broadcast: deliveries/s counted by the clients (higher is better)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::BroadcastCpu,
        title: "broadcast: server CPU time per delivery (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::EchoRate,
        title: "echo: round trips/s (higher is better)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::EchoCpu,
        title: "echo: server CPU time per round trip over the window (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::EchoP50,
        title: "echo: median latency (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::EchoP99,
        title: "echo: p99 latency (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::IdleAlone,
        title: "idle: frames/s from one busy client alone (the baseline of the next two tables)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::IdleRate,
        title: "idle: frames/s from the same busy client beside C idle clients (higher is better)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::IdleRatio,
        title: "idle: busy client's throughput beside C idle clients / alone, same server process (target ≥ 0.9)",
        unit: Unit::Ratio,
    },
    Table {
        metric: Metric::IdleCpuRatio,
        title: "idle: server CPU time per frame of the busy client beside C idle clients / alone, same server process (at most 1.11 for 0.9× the rate at equal CPU)",
        unit: Unit::Ratio,
    },
    Table {
        metric: Metric::IdleMemory,
        title: "memory per idle connection: server RSS with C idle clients minus without them, / C (lower is better)",
        unit: Unit::Bytes,
    },
    Table {
        metric: Metric::QuietCpuBefore,
        title: "idle, no traffic: server CPU time per second before the idle clients connect (lower is better)",
        unit: Unit::CpuShare,
    },
    Table {
        metric: Metric::QuietCpu,
        title: "idle, no traffic: server CPU time per second beside C idle clients (lower is better)",
        unit: Unit::CpuShare,
    },
    Table {
        metric: Metric::Accept,
        title: "connect storm: time until the server has taken in C connects, listen backlog as large as the kernel allows (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Overflows,
        title: "connect storm: listen-queue overflows (kernel ListenOverflows) during those connects, large backlog",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Accept128,
        title: "connect storm with std's listen backlog of 128: time until the server has taken in C connects (lower is better)",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Overflows128,
        title: "connect storm with std's listen backlog of 128: listen-queue overflows",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::RssGrowth),
        title: "keyed updates, latest by key: server RSS growth from a quarter of the run to its end (flat is the goal)",
        unit: Unit::Bytes,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::RssGrowth),
        title: "keyed updates, reliable: server RSS growth from a quarter of the run to its end",
        unit: Unit::Bytes,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::Disconnects),
        title: "keyed updates, latest by key: readers disconnected (target 0)",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::Disconnects),
        title: "keyed updates, reliable: readers disconnected",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::AgeP50),
        title: "keyed updates, latest by key: median age of an update when read, second half of the run",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::AgeP50),
        title: "keyed updates, reliable: median age of an update when read, second half of the run",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::AgeP99),
        title: "keyed updates, latest by key: p99 age of an update when read",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::AgeP99),
        title: "keyed updates, reliable: p99 age of an update when read",
        unit: Unit::Seconds,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::ReadRate),
        title: "keyed updates, latest by key: updates read per reader per second, second half of the run",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::ReadRate),
        title: "keyed updates, reliable: updates read per reader per second, second half of the run",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::ProducedRate),
        title: "keyed updates, latest by key: updates the producer sent per second, each to every reader (the rate asked for, unless the server fell behind)",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::ProducedRate),
        title: "keyed updates, reliable: updates the producer sent per second, each to every reader",
        unit: Unit::Rate,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::Conflated),
        title: "keyed updates, latest by key: values replaced by a newer one of their key, per reader",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Updates(Class::Latest, UpdateFigure::Stale),
        title: "keyed updates, latest by key: connected readers not ending on the last update of every key (target 0)",
        unit: Unit::Count,
    },
    Table {
        metric: Metric::Updates(Class::Reliable, UpdateFigure::Stale),
        title: "keyed updates, reliable: connected readers not ending on the last update of every key",
        unit: Unit::Count,
    },
];

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Rate => {
            if v >= 1e6 {
                format!("{:.2} M/s", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.1} k/s", v / 1e3)
            } else {
                format!("{v:.0}/s")
            }
        }
        Unit::Seconds => {
            if v >= 1.0 {
                format!("{v:.2} s")
            } else if v >= 1e-3 {
                format!("{:.2} ms", v * 1e3)
            } else if v >= 1e-5 {
                format!("{:.0} µs", v * 1e6)
            } else if v >= 1e-6 {
                format!("{:.2} µs", v * 1e6)
            } else {
                format!("{:.0} ns", v * 1e9)
            }
        }
        Unit::Bytes => fmt_bytes(v),
        Unit::Ratio => format!("{v:.2}"),
        Unit::Count => format!("{v:.0}"),
        Unit::CpuShare => {
            if v >= 1e-3 {
                format!("{:.2} ms/s", v * 1e3)
            } else {
                format!("{:.1} µs/s", v * 1e6)
            }
        }
    }
}

fn fmt_bytes(v: f64) -> String {
    if v < 0.0 {
        format!("−{}", fmt_bytes(-v))
    } else if v >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if v >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

fn tokio_best(results: &Results, peers: &[Peer], metric: Metric, c: usize) -> Option<f64> {
    let values = peers
        .iter()
        .filter(|p| p.kind == "tokio")
        .filter_map(|p| results.cells.get(&(metric, c, p.clone())))
        .map(|cell| cell.value);
    if metric.higher_is_better() {
        values.reduce(f64::max)
    } else {
        values.reduce(f64::min)
    }
}

/// The markdown tables: one per metric, a row per C, a column per peer.
/// Each cell: the figure, its ratio to the best tokio configuration (`×T`),
/// its fraction of the mio floor (`F`), and the server's peak RSS.
pub fn markdown(results: &Results, config: &Config) -> String {
    let peers = &config.peers;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each cell: the figure · its ratio to the best tokio configuration in the same run \
         (`×T`) · the same figure as a fraction of the mio floor (`F`) · the server's peak \
         RSS (VmHWM) during that run. Peers are named `server/worker threads`.\n"
    );
    for table in TABLES {
        let mut rows: Vec<usize> = results
            .cells
            .keys()
            .filter(|(m, _, _)| *m == table.metric)
            .map(|&(_, c, _)| c)
            .collect();
        rows.dedup();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {}\n", table.title);
        let _ = write!(out, "| C |");
        for p in peers {
            let _ = write!(out, " {p} |");
        }
        let _ = write!(out, "\n|---:|");
        for _ in peers {
            let _ = write!(out, "---|");
        }
        out.push('\n');
        for c in rows {
            let _ = write!(out, "| {c} |");
            let best = tokio_best(results, peers, table.metric, c);
            let floor = results
                .cells
                .iter()
                .find(|((m, cc, p), _)| *m == table.metric && *cc == c && p.kind == "mio")
                .map(|(_, cell)| cell.value);
            for p in peers {
                let Some(cell) = results.cells.get(&(table.metric, c, p.clone())) else {
                    let _ = write!(out, " – |");
                    continue;
                };
                let mut parts = vec![fmt_value(cell.value, table.unit)];
                if !matches!(table.unit, Unit::Ratio | Unit::Count) {
                    if let Some(best) = best.filter(|b| *b > 0.0) {
                        parts.push(format!("{:.2}×T", cell.value / best));
                    }
                    if let Some(floor) = floor.filter(|f| *f > 0.0) {
                        let f = cell.value / floor;
                        parts.push(if f < 0.1 {
                            format!("{:.1}%F", f * 100.0)
                        } else {
                            format!("{:.0}%F", f * 100.0)
                        });
                    }
                }
                if let Some(rss) = cell.peak_rss {
                    parts.push(fmt_bytes(rss as f64));
                }
                if cell.note.is_some() {
                    parts.push("(!)".into());
                }
                if cell.info.is_some() {
                    parts.push("(*)".into());
                }
                let _ = write!(out, " {} |", parts.join(" · "));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    for series in &results.series {
        let _ = writeln!(out, "### server RSS over time: {}\n", series.title);
        let _ = writeln!(out, "| s | RSS |\n|---:|---:|");
        // One row a second is enough to see a slope.
        let mut next = 0.0;
        for (i, &(t, v)) in series.points.iter().enumerate() {
            if t >= next || i + 1 == series.points.len() {
                let _ = writeln!(out, "| {t:.1} | {} |", fmt_bytes(v));
                next = t.floor() + 1.0;
            }
        }
        out.push('\n');
    }
    if results.cells.values().any(|c| c.info.is_some()) {
        let _ = writeln!(out, "Notes (cells marked (*)):\n");
        for n in &results.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    if !results.failures.is_empty() {
        let _ = writeln!(out, "Problems seen in this run (cells marked (!)):\n");
        for f in &results.failures {
            let _ = writeln!(out, "- {f}");
        }
        out.push('\n');
    }
    out
}

const COLORS: &[&str] = &[
    "#444444", "#1f77b4", "#6baed6", "#d62728", "#ff9896", "#2ca02c", "#98df8a",
];

/// An SVG line plot of `metric` against C, one line per peer, both axes log.
pub fn svg(results: &Results, config: &Config, metric: Metric, title: &str) -> Option<String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = config
        .peers
        .iter()
        .map(|p| {
            let pts = config
                .clients
                .iter()
                .filter_map(|&c| {
                    results
                        .cells
                        .get(&(metric, c, p.clone()))
                        .filter(|cell| cell.value > 0.0)
                        .map(|cell| (c as f64, cell.value))
                })
                .collect();
            (p.to_string(), pts)
        })
        .filter(|(_, pts): &(String, Vec<_>)| !pts.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (lx0, lx1) = (
        x0.log10().floor(),
        x1.log10().ceil().max(x0.log10().floor() + 1.0),
    );
    let (ly0, ly1) = (
        y0.log10().floor(),
        y1.log10().ceil().max(y0.log10().floor() + 1.0),
    );
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 80.0, 170.0, 40.0, 50.0);
    let px = |x: f64| left + (x.log10() - lx0) / (lx1 - lx0) * (w - left - right);
    let py = |y: f64| h - bottom - (y.log10() - ly0) / (ly1 - ly0) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#,
        (w - right + left) / 2.0
    );
    let mut e = ly0;
    while e <= ly1 {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/>"##,
            w - right
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            fmt_tick(10f64.powf(e))
        );
        e += 1.0;
    }
    for &c in &config.clients {
        let x = px(c as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x}" x2="{x}" y1="{top}" y2="{}" stroke="#eee"/>"##,
            h - bottom
        );
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{c}</text>"#,
            h - bottom + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">clients (C), log scale</text>"#,
        (w - right + left) / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        w - left - right,
        h - top - bottom
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                px(x),
                py(y)
            );
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = w - right + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{name}</text>"#,
            lx + 28.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// An axis label for a power of ten: `10 k/s`, `1 M/s`, `100 M/s`.
fn fmt_tick(v: f64) -> String {
    let (scaled, unit) = if v >= 1e6 {
        (v / 1e6, " M/s")
    } else if v >= 1e3 {
        (v / 1e3, " k/s")
    } else {
        (v, "/s")
    };
    format!("{}{unit}", scaled.round())
}
