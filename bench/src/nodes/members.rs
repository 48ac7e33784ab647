//! The room's members: C client sockets, read by a few threads, each
//! through its own mio `Poll` (as the load generator does), that check
//! every message and time it.
//!
//! Every member expects the producer's messages in order, each once
//! (messages from one node reach another node's members in order, and the
//! local ones in order too). A message with a higher number than expected
//! counts the ones skipped as missing; one with a lower number counts as a
//! duplicate. Latency is the time the frame's read returned minus the
//! time in its [`Stamp`], recorded per phase and per node of the member.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::stamp::{Clock, Phase, Stamp};
use crate::proto::{FRAME, HEADER, PAYLOAD, split_frames};

/// Each thread's read buffer.
const SCRATCH: usize = 64 * 1024;

/// Counters the member threads keep and the harness reads while they run.
#[derive(Debug, Default)]
pub struct Tally {
    stop: AtomicBool,
    /// Messages received in order or after a gap (not duplicates).
    pub delivered: AtomicU64,
    /// The latest time ([`Clock::now_ns`]) a read returned messages.
    pub last_ns: AtomicU64,
    /// Frames that are not one of the producer's.
    pub bad: AtomicU64,
    /// Members whose connection the node closed, or that failed.
    pub closed: AtomicU64,
}

/// Latency histograms (nanoseconds), per phase and per node of the member.
#[derive(Debug)]
pub struct Latency {
    by_phase: Vec<[Histogram<u64>; 2]>,
}

impl Latency {
    fn new() -> Self {
        Self {
            by_phase: (0..Phase::COUNT)
                .map(|_| [histogram(), histogram()])
                .collect(),
        }
    }

    fn record(&mut self, phase: Phase, node: usize, ns: u64) {
        let _ = self.by_phase[phase as usize][node.min(1)].record(ns.max(1));
    }

    fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.by_phase.iter_mut().zip(&other.by_phase) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.add(t).expect("histograms of the same bounds");
            }
        }
    }

    /// The members of node `node` (0 is A), in `phase`.
    pub fn of(&self, phase: Phase, node: usize) -> &Histogram<u64> {
        &self.by_phase[phase as usize][node]
    }

    /// Every member, in `phase`.
    pub fn all(&self, phase: Phase) -> Histogram<u64> {
        let [a, b] = &self.by_phase[phase as usize];
        let mut both = a.clone();
        both.add(b).expect("histograms of the same bounds");
        both
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// What one member saw, once the members stop.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// The node it is a client of (0 is A).
    pub node: usize,
    /// The number of the message it expects next: all the producer sent,
    /// if nothing went missing at the end.
    pub next: u64,
    /// Messages skipped over (a later one came first).
    pub skipped: u64,
    /// Messages that came again, or out of order.
    pub duplicates: u64,
}

/// What a member thread gives back: what each of its members saw, and
/// their latencies.
type Finished = io::Result<(Vec<Seen>, Latency)>;

/// The running members.
#[derive(Debug)]
pub struct Members {
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<Finished>>,
}

impl Members {
    /// Starts reading `socks`, each with the node it is a client of,
    /// on `threads` threads.
    pub fn start(
        mut socks: Vec<(TcpStream, usize)>,
        threads: usize,
        clock: Clock,
    ) -> io::Result<Self> {
        let tally = Arc::new(Tally::default());
        let threads = threads.clamp(1, socks.len().max(1));
        let total = socks.len();
        let mut handles = Vec::with_capacity(threads);
        for t in (0..threads).rev() {
            let mine = socks.split_off(total * t / threads);
            let tally = Arc::clone(&tally);
            handles.push(
                thread::Builder::new()
                    .name(format!("members-{t}"))
                    .spawn(move || Reader::new(mine, tally, clock)?.run())?,
            );
        }
        Ok(Self {
            tally,
            threads: handles,
        })
    }

    /// The live counters.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Stops reading; gives back what each member saw and the latencies.
    pub fn stop(self) -> io::Result<(Vec<Seen>, Latency)> {
        self.tally.stop.store(true, Relaxed);
        let mut seen = Vec::new();
        let mut latency = Latency::new();
        for t in self.threads {
            let (s, l) = t
                .join()
                .map_err(|_| io::Error::other("member thread panicked"))??;
            seen.extend(s);
            latency.add(&l);
        }
        Ok((seen, latency))
    }
}

/// One member socket.
struct Member {
    stream: TcpStream,
    seen: Seen,
    /// A partial frame from the previous read.
    carry: [u8; FRAME],
    carry_len: usize,
    open: bool,
}

/// One thread's members.
struct Reader {
    poll: Poll,
    members: Vec<Member>,
    tally: Arc<Tally>,
    clock: Clock,
    latency: Latency,
    scratch: Vec<u8>,
}

impl Reader {
    fn new(socks: Vec<(TcpStream, usize)>, tally: Arc<Tally>, clock: Clock) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut members = Vec::with_capacity(socks.len());
        for (i, (mut stream, node)) in socks.into_iter().enumerate() {
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            members.push(Member {
                stream,
                seen: Seen {
                    node,
                    next: 0,
                    skipped: 0,
                    duplicates: 0,
                },
                carry: [0; FRAME],
                carry_len: 0,
                open: true,
            });
        }
        Ok(Self {
            poll,
            members,
            tally,
            clock,
            latency: Latency::new(),
            scratch: vec![0; SCRATCH],
        })
    }

    fn run(mut self) -> Finished {
        let mut events = Events::with_capacity(1024);
        while !self.tally.stop.load(Relaxed) {
            match self.poll.poll(&mut events, Some(Duration::from_millis(5))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                self.read(event.token().0);
            }
        }
        Ok((self.members.iter().map(|m| m.seen).collect(), self.latency))
    }

    /// Reads member `i` until its socket is empty.
    fn read(&mut self, i: usize) {
        loop {
            let m = &mut self.members[i];
            if !m.open {
                return;
            }
            let kept = m.carry_len;
            self.scratch[..kept].copy_from_slice(&m.carry[..kept]);
            let n = match m.stream.read(&mut self.scratch[kept..]) {
                Ok(0) => {
                    self.close(i);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(i);
                    return;
                }
            };
            // One reading of the clock per read: the frames of one read
            // arrived together.
            let now = self.clock.now_ns();
            let total = kept + n;
            let (mut delivered, mut bad) = (0u64, 0u64);
            let seen = &mut m.seen;
            let latency = &mut self.latency;
            let used = split_frames(&self.scratch[..total], |payload| {
                let Some(stamp) = Stamp::decode(payload) else {
                    bad += 1;
                    return;
                };
                if stamp.seq < seen.next {
                    seen.duplicates += 1;
                    return;
                }
                seen.skipped += stamp.seq - seen.next;
                seen.next = stamp.seq + 1;
                delivered += 1;
                latency.record(stamp.phase, seen.node, now.saturating_sub(stamp.sent_ns));
            });
            let left = total - used;
            if left >= FRAME
                || (left >= HEADER && self.scratch[used..used + HEADER] != [0, PAYLOAD as u8])
            {
                // Not one of the producer's frames: count it, and stop
                // parsing this member (nothing after it can be trusted).
                bad += 1;
                m.carry_len = 0;
            } else {
                m.carry[..left].copy_from_slice(&self.scratch[used..total]);
                m.carry_len = left;
            }
            if delivered > 0 {
                self.tally.delivered.fetch_add(delivered, Relaxed);
                self.tally.last_ns.fetch_max(now, Relaxed);
            }
            if bad > 0 {
                self.tally.bad.fetch_add(bad, Relaxed);
            }
        }
    }

    /// Member `i`'s connection ended: counted, and read no more.
    fn close(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.open = false;
        self.tally.closed.fetch_add(1, Relaxed);
        let _ = self.poll.registry().deregister(&mut m.stream);
    }
}
