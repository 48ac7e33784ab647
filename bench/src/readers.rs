//! Slow readers of keyed updates: the clients of the `latest` and
//! `reliable` scenarios. One thread reads every client's socket at a fixed
//! small rate (a budget of bytes per client per 10 ms tick), checks every
//! update (its key is known, its sequence number grows for its key; under
//! reliable delivery, by exactly one turn of the keys), and records how old
//! each update is when it is read. Once told to drain, it reads as fast as
//! the sockets give, and counts a client complete when, for every key, the
//! last update it read is the last one the server produced.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;

use crate::control::Class;
use crate::proto::{FRAME, HEADER, PAYLOAD, last_update_of, monotonic_ns, parse_update};

/// How often each reader gets its budget.
const TICK: Duration = Duration::from_millis(10);
/// A reader that fell behind (the thread was late) may catch up by at most
/// this many ticks' worth at once: the rate stays small.
const MAX_TICKS_OWED: u64 = 4;
/// "Not known yet", for [`Shared::produced`].
const UNKNOWN: u64 = u64::MAX;

/// What the readers read and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Frames per second each reader takes, at most, until it drains.
    pub per_sec: u32,
    /// Keys of the updates (update `seq` is for key `seq % keys`).
    pub keys: u32,
    /// The delivery the server uses: under reliable delivery a reader
    /// that is still connected must see every update of every key.
    pub class: Class,
}

/// Counters shared by the reader thread and the harness.
#[derive(Debug)]
pub struct Shared {
    /// Set by the harness: stop reading and give back the latencies.
    pub stop: AtomicBool,
    /// Set by the harness: ages are recorded while this is set and
    /// [`drain`](Self::drain) is not.
    pub window_open: AtomicBool,
    /// Set by the harness once the producer is done: read as fast as the
    /// sockets give.
    pub drain: AtomicBool,
    /// Set by the harness with [`drain`](Self::drain): how many updates
    /// the server produced in all.
    pub produced: AtomicU64,
    /// Updates read, all clients.
    pub frames: AtomicU64,
    /// Frames that are not updates, keys out of range, sequence numbers
    /// that did not grow for their key (and, under reliable delivery, gaps).
    pub bad: AtomicU64,
    /// Clients whose connection the server closed or that failed.
    pub closed: AtomicU64,
    /// Clients whose last update of every key is the last one produced.
    pub complete: AtomicU64,
}

/// One client.
struct Reader {
    stream: TcpStream,
    /// Bytes it may still read now.
    allowance: u64,
    /// A partial frame from the previous read.
    carry: [u8; FRAME],
    carry_len: usize,
    /// The last sequence number read per key, plus one (0: none yet).
    last: Vec<u64>,
    closed: bool,
    complete: bool,
}

/// Running readers.
#[derive(Debug)]
pub struct Readers {
    shared: Arc<Shared>,
    thread: JoinHandle<io::Result<Histogram<u64>>>,
}

impl Readers {
    /// Starts reading `socks` as `spec` says, on a thread of its own.
    pub fn start(socks: Vec<TcpStream>, spec: Spec) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            window_open: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            produced: AtomicU64::new(UNKNOWN),
            frames: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            complete: AtomicU64::new(0),
        });
        let readers = socks
            .into_iter()
            .map(|stream| Reader {
                stream,
                allowance: 0,
                carry: [0; FRAME],
                carry_len: 0,
                last: vec![0; spec.keys as usize],
                closed: false,
                complete: false,
            })
            .collect();
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("slow-readers".into())
                .spawn(move || read_all(readers, spec, &shared))?
        };
        Ok(Self { shared, thread })
    }

    /// The live counters.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Stops reading; the ages of the updates read inside the window
    /// (nanoseconds).
    pub fn stop(self) -> io::Result<Histogram<u64>> {
        self.shared.stop.store(true, Relaxed);
        self.thread
            .join()
            .map_err(|_| io::Error::other("reader thread panicked"))?
    }
}

fn read_all(mut readers: Vec<Reader>, spec: Spec, shared: &Shared) -> io::Result<Histogram<u64>> {
    let mut ages = Histogram::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let per_tick = (u64::from(spec.per_sec) * FRAME as u64 * TICK.as_micros() as u64 / 1_000_000)
        .max(FRAME as u64);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut next = Instant::now();
    while !shared.stop.load(Relaxed) {
        let drain = shared.drain.load(Relaxed);
        let record = shared.window_open.load(Relaxed) && !drain;
        let produced = shared.produced.load(Relaxed);
        for r in readers.iter_mut().filter(|r| !r.closed) {
            r.allowance = if drain {
                u64::MAX
            } else {
                (r.allowance + per_tick).min(per_tick * MAX_TICKS_OWED)
            };
            read_one(r, &spec, shared, &mut scratch, record.then_some(&mut ages));
            if produced != UNKNOWN && !r.closed && !r.complete && is_complete(r, &spec, produced) {
                r.complete = true;
                shared.complete.fetch_add(1, Relaxed);
            }
        }
        if drain {
            thread::sleep(Duration::from_millis(1));
        } else {
            next += TICK;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }
    Ok(ages)
}

/// Reads what `r`'s allowance lets it, checks each update.
fn read_one(
    r: &mut Reader,
    spec: &Spec,
    shared: &Shared,
    scratch: &mut [u8],
    mut ages: Option<&mut Histogram<u64>>,
) {
    while r.allowance > 0 {
        let kept = r.carry_len;
        scratch[..kept].copy_from_slice(&r.carry[..kept]);
        let room = (scratch.len() - kept).min(usize::try_from(r.allowance).unwrap_or(usize::MAX));
        let n = match r.stream.read(&mut scratch[kept..kept + room]) {
            Ok(0) => {
                r.closed = true;
                shared.closed.fetch_add(1, Relaxed);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                r.closed = true;
                shared.closed.fetch_add(1, Relaxed);
                return;
            }
        };
        r.allowance = r.allowance.saturating_sub(n as u64);
        let total = kept + n;
        let now = monotonic_ns();
        let (mut got, mut bad) = (0u64, 0u64);
        let mut pos = 0;
        while total - pos >= FRAME {
            let frame = &scratch[pos..pos + FRAME];
            pos += FRAME;
            if frame[..HEADER] != (PAYLOAD as u16).to_be_bytes() {
                bad += 1;
                continue;
            }
            let Some((key, seq, at)) = parse_update(&frame[HEADER..]) else {
                bad += 1;
                continue;
            };
            let Some(last) = r.last.get_mut(key as usize) else {
                bad += 1;
                continue;
            };
            let in_order = match (*last, spec.class) {
                (0, Class::Latest) => true,
                (0, Class::Reliable) => seq == u64::from(key),
                (l, Class::Latest) => seq >= l,
                (l, Class::Reliable) => seq == l - 1 + u64::from(spec.keys),
            };
            if !in_order {
                bad += 1;
            }
            *last = seq + 1;
            got += 1;
            if let Some(ages) = ages.as_deref_mut() {
                let _ = ages.record(now.saturating_sub(at).max(1));
            }
        }
        r.carry_len = total - pos;
        r.carry[..r.carry_len].copy_from_slice(&scratch[pos..total]);
        shared.frames.fetch_add(got, Relaxed);
        if bad > 0 {
            shared.bad.fetch_add(bad, Relaxed);
        }
    }
}

/// Whether every key's last update read is the last of `produced`.
fn is_complete(r: &Reader, spec: &Spec, produced: u64) -> bool {
    r.last.iter().enumerate().all(|(key, &last)| {
        let want = last_update_of(key as u32, spec.keys, produced).map_or(0, |s| s + 1);
        last == want
    })
}
