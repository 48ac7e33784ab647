//! One measurement of one setup: fresh node processes (and a fresh
//! `redis-server` for two nodes), the members connected and joined, then
//! the phases (warm-up, flood, paced), each with the CPU time of every
//! process read before and after, and the checks.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::members::{Latency, Members, Seen, Tally};
use super::node::{Node, NodeOpts, Relay};
use super::producer::Producer;
use super::redis::Redis;
use super::stamp::{Clock, Phase};
use super::{Config, Setup};
use crate::load;
use crate::server::cpu_time;

/// CPU time of every process, read at one moment.
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    /// Each node's, A first.
    pub nodes: Vec<Duration>,
    /// `redis-server`'s (two nodes only).
    pub redis: Option<Duration>,
    /// This process's: the members' threads and the producer.
    pub load: Duration,
}

impl Cpu {
    fn read(nodes: &[Node], redis: Option<&Redis>) -> io::Result<Self> {
        Ok(Self {
            nodes: nodes
                .iter()
                .map(|n| cpu_time(n.pid()))
                .collect::<io::Result<_>>()?,
            redis: redis.map(|r| cpu_time(r.pid())).transpose()?,
            load: cpu_time(std::process::id())?,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            nodes: self
                .nodes
                .iter()
                .zip(&before.nodes)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            redis: self
                .redis
                .zip(before.redis)
                .map(|(a, b)| a.saturating_sub(b)),
            load: self.load.saturating_sub(before.load),
        }
    }

    /// Every node's together.
    pub fn nodes_total(&self) -> Duration {
        self.nodes.iter().sum()
    }
}

/// Latency quantiles of one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantiles {
    /// Median, every member.
    pub p50: Duration,
    /// 99th percentile, every member.
    pub p99: Duration,
    /// 99th percentile of node A's members, and of node B's (two nodes).
    pub p99_by_node: [Option<Duration>; 2],
}

fn quantile(h: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_nanos(h.value_at_quantile(q))
}

impl Quantiles {
    fn of(latency: &Latency, phase: Phase) -> Self {
        let all = latency.all(phase);
        let by_node = |node| {
            let h = latency.of(phase, node);
            (!h.is_empty()).then(|| quantile(h, 0.99))
        };
        Self {
            p50: quantile(&all, 0.5),
            p99: quantile(&all, 0.99),
            p99_by_node: [by_node(0), by_node(1)],
        }
    }
}

/// What one phase measured.
#[derive(Clone, Debug, Default)]
pub struct PhaseFigures {
    /// Messages the producer sent.
    pub messages: u64,
    /// Deliveries expected: messages × members.
    pub expected: u64,
    /// Deliveries counted by the members.
    pub delivered: u64,
    /// From the first message written to the last delivery read.
    pub elapsed: Duration,
    /// Latency, from the stamps.
    pub latency: Quantiles,
    /// CPU time over the phase.
    pub cpu: Cpu,
}

impl PhaseFigures {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU time of every node together, per delivery.
    pub fn node_cpu_per_delivery(&self) -> Duration {
        per(self.cpu.nodes_total(), self.delivered)
    }
}

/// `total / n`, zero for no `n`.
pub fn per(total: Duration, n: u64) -> Duration {
    if n == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos((total.as_nanos() / u128::from(n)) as u64)
    }
}

/// One setup, measured once.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The setup.
    pub setup: Setup,
    /// The members of each node (A first).
    pub members: Vec<usize>,
    /// The flood phase.
    pub flood: PhaseFigures,
    /// The paced phase.
    pub paced: PhaseFigures,
    /// Each node's backplane counters at the end (two nodes).
    pub relays: Vec<Relay>,
    /// Checks that failed.
    pub problems: Vec<String>,
    /// What is worth saying that is not a failure (drops the backplane
    /// counted, and what the members missed because of them).
    pub notes: Vec<String>,
}

/// Measures `setup` once.
pub fn measure(setup: Setup, config: &Config, clock: Clock) -> io::Result<Measurement> {
    let redis = match setup {
        Setup::One => None,
        Setup::Two => Some(Redis::start()?),
    };
    let node_count = match setup {
        Setup::One => 1,
        Setup::Two => 2,
    };
    let mut nodes = (0..node_count)
        .map(|i| {
            Node::spawn(&NodeOpts {
                redis: redis.as_ref().map(Redis::address),
                node_id: i as u64 + 1,
                publish_queue: config.publish_queue,
                ..NodeOpts::default()
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let members: Vec<usize> = (0..node_count)
        .map(|i| config.clients * (i + 1) / node_count - config.clients * i / node_count)
        .collect();

    // Members first, then the join: the producer, connected after it, is
    // in no room.
    let mut socks = Vec::with_capacity(config.clients);
    for (i, node) in nodes.iter_mut().enumerate() {
        for sock in load::connect(node.addr, members[i], config.timeout)? {
            socks.push((sock, i));
        }
        node.wait_for("conns", members[i] as u64, config.timeout)?;
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let joined = node.join()?;
        if joined != members[i] as u64 {
            return Err(io::Error::other(format!(
                "node {i}: {joined} joined, {} connected",
                members[i]
            )));
        }
        node.wait_for("members", joined, config.timeout)?;
        if redis.is_some() {
            // Redis confirmed the subscription: from now on nothing
            // published to the room misses this node.
            node.wait_for("subscriptions", 1, config.timeout)?;
        }
    }
    let mut producer = Producer::connect(nodes[0].addr, clock)?;
    nodes[0].wait_for("conns", members[0] as u64 + 1, config.timeout)?;
    let receivers = Members::start(socks, config.threads, clock)?;
    let phases = Phases {
        nodes: &nodes,
        redis: redis.as_ref(),
        tally: receivers.tally(),
        config,
    };
    let mut stalls = Vec::new();
    let (messages, paced) = (config.messages, config.paced);
    phases.run(Phase::Warmup, config.warmup, &mut stalls, || {
        producer.flood(config.warmup, Phase::Warmup)
    })?;
    let mut flood = phases.run(Phase::Flood, messages, &mut stalls, || {
        producer.flood(messages, Phase::Flood)
    })?;
    let mut paced = phases.run(Phase::Paced, paced, &mut stalls, || {
        producer.paced(paced, config.rate, Phase::Paced)
    })?;

    let relays = nodes
        .iter_mut()
        .map(|node| node.settled_relay(config.stall))
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let tally = receivers.tally();
    let (bad, closed) = (tally.bad.load(Relaxed), tally.closed.load(Relaxed));
    let (seen, latency) = receivers.stop()?;
    flood.latency = Quantiles::of(&latency, Phase::Flood);
    paced.latency = Quantiles::of(&latency, Phase::Paced);

    let mut problems = Vec::new();
    if bad > 0 {
        problems.push(format!("{bad} frames were not the producer's"));
    }
    if closed > 0 {
        problems.push(format!("{closed} members' connections were closed"));
    }
    // A phase that stalled is explained if the members' counts match
    // what the backplane lost (`check`), and a problem otherwise.
    let mut notes = stalls;
    check(
        &seen,
        &relays,
        producer.sent(),
        config.smoke,
        &mut problems,
        &mut notes,
    );
    Ok(Measurement {
        setup,
        members,
        flood,
        paced,
        relays,
        problems,
        notes,
    })
}

/// What the phases of one measurement share.
struct Phases<'a> {
    nodes: &'a [Node],
    redis: Option<&'a Redis>,
    tally: &'a Tally,
    config: &'a Config,
}

impl Phases<'_> {
    /// Runs one phase of `messages` messages: reads the CPU times, lets
    /// `send` write them (it returns when the first was written), waits
    /// until the members have every delivery (or none has come for the
    /// stall time: some were lost, which `stalls` tells), and reads the
    /// CPU times again.
    fn run(
        &self,
        phase: Phase,
        messages: u64,
        stalls: &mut Vec<String>,
        send: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<PhaseFigures> {
        let expected = messages * self.config.clients as u64;
        let before = Cpu::read(self.nodes, self.redis)?;
        // The previous phase has ended: every delivery, or a stall.
        let start = self.tally.delivered.load(Relaxed);
        let first_ns = send()?;
        let began = Instant::now();
        let mut last = (0, Instant::now());
        loop {
            let delivered = self.tally.delivered.load(Relaxed) - start;
            if delivered >= expected {
                break;
            }
            if delivered != last.0 {
                last = (delivered, Instant::now());
            }
            if last.1.elapsed() > self.config.stall || began.elapsed() > self.config.timeout {
                stalls.push(format!(
                    "{phase:?}: {delivered} of {expected} deliveries, then none for {:.1?}",
                    last.1.elapsed()
                ));
                break;
            }
            thread::sleep(Duration::from_micros(500));
        }
        let cpu = Cpu::read(self.nodes, self.redis)?.since(&before);
        let delivered = self.tally.delivered.load(Relaxed) - start;
        let last_ns = self.tally.last_ns.load(Relaxed);
        Ok(PhaseFigures {
            messages,
            expected,
            delivered,
            elapsed: Duration::from_nanos(last_ns.saturating_sub(first_ns)),
            latency: Quantiles::default(),
            cpu,
        })
    }
}

/// Every member got every message once, in order, except what the
/// backplane counted as lost (which node B's members all miss); the
/// backplanes' counters agree with what was sent.
fn check(
    seen: &[Seen],
    relays: &[Relay],
    sent: u64,
    smoke: bool,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let lost = relays.first().map_or(0, Relay::lost);
    if lost > 0 {
        let a = relays[0];
        notes.push(format!(
            "node A's backplane lost {lost} of {sent} publications ({} dropped: queue full, peak {}; {} failed)",
            a.publish_dropped, a.queue_peak, a.publish_failed
        ));
        if smoke {
            problems.push(format!("{lost} publications lost on tiny sizes"));
        }
    }
    if let [a, b] = relays {
        if a.offered != sent || a.published + a.lost() != sent {
            problems.push(format!("node A's backplane: {a:?}, {sent} sent"));
        }
        if b.offered != 0 || a.received != 0 {
            problems.push(format!("only node A publishes: A {a:?}, B {b:?}"));
        }
        if b.received != sent - lost || a.rejected + b.rejected + a.disconnects + b.disconnects > 0
        {
            problems.push(format!(
                "node B's backplane: {b:?}, {} expected",
                sent - lost
            ));
        }
    }
    let mut wrong = 0;
    let mut first_wrong = None;
    for (index, member) in seen.iter().enumerate() {
        let missing = member.skipped + sent.saturating_sub(member.next);
        let expected_missing = if member.node == 1 { lost } else { 0 };
        if missing != expected_missing || member.duplicates > 0 || member.next > sent {
            wrong += 1;
            first_wrong.get_or_insert((index, *member, missing, expected_missing));
        }
    }
    if let Some((index, member, missing, expected)) = first_wrong {
        problems.push(format!(
            "{wrong} members saw something else than every message once: member {index} \
             of node {}: {missing} missing ({expected} expected), {} duplicates, next {} of {sent}",
            member.node, member.duplicates, member.next
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: usize, next: u64, skipped: u64) -> Seen {
        Seen {
            node,
            next,
            skipped,
            duplicates: 0,
        }
    }

    fn relays(sent: u64, dropped: u64) -> Vec<Relay> {
        let a = Relay {
            offered: sent,
            published: sent - dropped,
            publish_dropped: dropped,
            ..Relay::default()
        };
        let b = Relay {
            received: sent - dropped,
            ..Relay::default()
        };
        vec![a, b]
    }

    #[test]
    fn node_b_missing_what_node_a_dropped_is_a_note_not_a_problem() {
        let seen = [member(0, 10, 0), member(1, 10, 2)];
        let (mut problems, mut notes) = (Vec::new(), Vec::new());
        check(&seen, &relays(10, 2), 10, false, &mut problems, &mut notes);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn a_message_missing_at_the_end_or_twice_is_a_problem() {
        let (mut problems, mut notes) = (Vec::new(), Vec::new());
        check(
            &[member(0, 9, 0), member(0, 10, 0)],
            &[],
            10,
            false,
            &mut problems,
            &mut notes,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");

        let mut twice = member(1, 10, 0);
        twice.duplicates = 1;
        let mut problems = Vec::new();
        check(
            &[twice],
            &relays(10, 0),
            10,
            false,
            &mut problems,
            &mut notes,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_drop_on_tiny_sizes_is_a_problem() {
        let seen = [member(1, 10, 1)];
        let (mut problems, mut notes) = (Vec::new(), Vec::new());
        check(&seen, &relays(10, 1), 10, true, &mut problems, &mut notes);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
