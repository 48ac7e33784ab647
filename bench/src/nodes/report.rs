//! The markdown tables of `bench nodes`: each measurement on its own row,
//! and on each two-node row its ratio to the one-node row of the same run.

use std::fmt::Write;
use std::time::Duration;

use super::measure::{Measurement, PhaseFigures, per};
use super::{Config, Setup};

/// The tables, for `results` (run index, measurement).
pub fn markdown(config: &Config, results: &[(usize, Measurement)]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "C = {} members in one room; flood of {} messages, then {} paced at {}/s; \
         32-byte payloads; {} run(s), setups alternating.\n",
        config.clients, config.messages, config.paced, config.rate, config.runs
    );
    let one_of = |run: usize| {
        results
            .iter()
            .find(|(r, m)| *r == run && m.setup == Setup::One)
            .map(|(_, m)| m)
    };

    let _ = writeln!(
        w,
        "Flood (the producer writes as fast as node A reads; latency includes the queueing):\n"
    );
    let _ = writeln!(
        w,
        "| run | setup | deliveries/s | × one node | p50 | p99 | node CPU per delivery: A · B | all nodes | × one node | redis-server CPU: total · per message | harness CPU per delivery |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (run, m) in results {
        let f = &m.flood;
        let one = one_of(*run).filter(|_| m.setup == Setup::Two);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run + 1,
            m.setup,
            delivered(f),
            one.map_or(String::new(), |o| ratio(f.rate() / o.flood.rate())),
            dur(f.latency.p50),
            dur(f.latency.p99),
            per_node(f, &m.members),
            dur(f.node_cpu_per_delivery()),
            one.map_or(String::new(), |o| ratio(
                secs(f.node_cpu_per_delivery()) / secs(o.flood.node_cpu_per_delivery())
            )),
            redis_cpu(f),
            dur(per(f.cpu.load, f.delivered)),
        );
    }

    let _ = writeln!(
        w,
        "\nPaced ({} messages/s, so {} deliveries; latency of a message that does not queue behind others):\n",
        config.rate,
        rate(config.rate * config.clients as f64)
    );
    let _ = writeln!(
        w,
        "| run | setup | p50 | p99 | p99 of A's · B's members | p99 × one node | node CPU per delivery: A · B | all nodes | redis-server CPU: per message · share of a core |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    for (run, m) in results {
        let p = &m.paced;
        let one = one_of(*run).filter(|_| m.setup == Setup::Two);
        let by_node = p
            .latency
            .p99_by_node
            .iter()
            .map(|q| q.map_or("–".to_string(), dur))
            .collect::<Vec<_>>()
            .join(" · ");
        let redis = p.cpu.redis.map_or("–".to_string(), |r| {
            format!(
                "{} · {:.1} %",
                dur(per(r, p.messages)),
                100.0 * secs(r) / secs(p.elapsed).max(1e-9)
            )
        });
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run + 1,
            m.setup,
            dur(p.latency.p50),
            dur(p.latency.p99),
            by_node,
            one.map_or(String::new(), |o| ratio(
                secs(p.latency.p99) / secs(o.paced.latency.p99)
            )),
            per_node(p, &m.members),
            dur(p.node_cpu_per_delivery()),
            redis,
        );
    }

    if results.iter().any(|(_, m)| !m.relays.is_empty()) {
        let _ = writeln!(
            w,
            "\nThe backplanes' counters at the end of each two-node run (every phase):\n"
        );
        let _ = writeln!(
            w,
            "| run | node | offered | published | dropped | failed | queue peak | received | rejected | disconnects |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
        for (run, m) in results {
            for (name, r) in ["A", "B"].iter().zip(&m.relays) {
                let _ = writeln!(
                    w,
                    "| {} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    run + 1,
                    r.offered,
                    r.published,
                    r.publish_dropped,
                    r.publish_failed,
                    r.queue_peak,
                    r.received,
                    r.rejected,
                    r.disconnects
                );
            }
        }
    }

    summary(w, results);

    let notes: Vec<String> = results
        .iter()
        .flat_map(|(run, m)| {
            m.notes
                .iter()
                .chain(&m.problems)
                .map(move |n| format!("- run {}, {}: {n}", run + 1, m.setup))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(w, "\nNotes:\n\n{}", notes.join("\n"));
    }
    out
}

/// Two nodes ÷ one node, each ratio from the two measurements of one run:
/// the median and the range over the runs.
fn summary(w: &mut String, results: &[(usize, Measurement)]) {
    let pairs: Vec<(&Measurement, &Measurement)> = results
        .iter()
        .filter(|(_, m)| m.setup == Setup::Two)
        .filter_map(|(run, two)| {
            results
                .iter()
                .find(|(r, m)| r == run && m.setup == Setup::One)
                .map(|(_, one)| (one, two))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    type Phase = fn(&Measurement) -> &PhaseFigures;
    type Figure = fn(&PhaseFigures) -> f64;
    let flood: Phase = |m| &m.flood;
    let paced: Phase = |m| &m.paced;
    let figures: [(&str, Phase, Figure); 6] = [
        ("flood deliveries/s", flood, PhaseFigures::rate),
        ("flood p99", flood, |f| secs(f.latency.p99)),
        ("flood node CPU per delivery (all nodes)", flood, |f| {
            secs(f.node_cpu_per_delivery())
        }),
        ("paced p50", paced, |f| secs(f.latency.p50)),
        ("paced p99", paced, |f| secs(f.latency.p99)),
        ("paced node CPU per delivery (all nodes)", paced, |f| {
            secs(f.node_cpu_per_delivery())
        }),
    ];
    let _ = writeln!(
        w,
        "\nTwo nodes ÷ one node, each ratio within one run; the median (range) over the runs \
         in which every delivery of the phase arrived in both setups:\n"
    );
    let _ = writeln!(w, "| figure | two ÷ one | runs |");
    let _ = writeln!(w, "|---|---|---|");
    for (name, phase, figure) in figures {
        let complete = |m: &Measurement| phase(m).delivered == phase(m).expected;
        let mut ratios: Vec<f64> = pairs
            .iter()
            .filter(|(one, two)| complete(one) && complete(two))
            .map(|(one, two)| figure(phase(two)) / figure(phase(one)))
            .filter(|r| r.is_finite())
            .collect();
        if ratios.is_empty() {
            let _ = writeln!(w, "| {name} | – | 0 of {} |", pairs.len());
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        let median = if ratios.len() % 2 == 1 {
            ratios[ratios.len() / 2]
        } else {
            (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
        };
        let _ = writeln!(
            w,
            "| {name} | {} ({:.2}–{:.2}) | {} of {} |",
            ratio(median),
            ratios[0],
            ratios[ratios.len() - 1],
            ratios.len(),
            pairs.len()
        );
    }
}

/// The phase's rate, and how much of it came if not all did.
fn delivered(f: &PhaseFigures) -> String {
    if f.delivered == f.expected {
        rate(f.rate())
    } else {
        format!(
            "{} ({} of {} deliveries)",
            rate(f.rate()),
            f.delivered,
            f.expected
        )
    }
}

/// Each node's CPU per delivery to its own members.
fn per_node(f: &PhaseFigures, members: &[usize]) -> String {
    let share = |i: usize| f.messages * members[i] as u64;
    f.cpu
        .nodes
        .iter()
        .enumerate()
        .map(|(i, cpu)| dur(per(*cpu, share(i))))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn redis_cpu(f: &PhaseFigures) -> String {
    f.cpu.redis.map_or("–".to_string(), |r| {
        format!("{} · {}", dur(r), dur(per(r, f.messages)))
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ratio(x: f64) -> String {
    format!("{x:.2}×")
}

fn rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

fn dur(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 1_000_000_000 {
        format!("{:.2} s", d.as_secs_f64())
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else if ns >= 10_000 {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{ns} ns")
    }
}
