//! The WebSocket load generator, the same against every server: a few
//! threads, each driving its share of the open connections through its own
//! mio `Poll` (edge-triggered, non-blocking), like the TCP generator
//! ([`crate::load`]) whose counters it shares. Ingress clients write one
//! pre-encoded buffer of 1,024 masked frames over and over; receivers and
//! echo clients parse server frames in place.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use super::conn::Conn;
use super::wire::{self, CLIENT_FRAME, FIN_BINARY, FIN_CLOSE};
use crate::load::Shared;
use crate::proto::{BROADCAST_PAYLOAD, INGRESS_PAYLOAD, echo_payload};

/// Frames in the ingress clients' pre-encoded buffer (38 KiB).
const INGRESS_BATCH: usize = 1024;
/// Per-thread read buffer.
const SCRATCH: usize = 64 * 1024;
/// The longest partial frame kept between reads: a server frame here is 34
/// bytes, a close frame at most 129.
const CARRY: usize = 256;
/// How long a stopped run waits for outstanding echoes, or for ingress
/// clients to finish the frame in progress and flush what TLS holds.
const DRAIN: Duration = Duration::from_secs(10);

/// What each client does.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Send binary messages as fast as possible; `Some(k)`: exactly `k`.
    Ingress(Option<u64>),
    /// Read and check broadcast messages.
    Receive,
    /// Send one message, wait for its echo, check it, repeat.
    Echo,
}

/// What a generator thread gives back: its connections and latencies.
type Finished = io::Result<(Vec<Conn>, Histogram<u64>)>;

/// A running load.
pub struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Finished>>,
}

impl Running {
    /// The live counters (readable after [`stop`](Self::stop) too).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Stops the load (echo: waits for outstanding replies; ingress: ends
    /// on a frame boundary) and gives back the connections and the merged
    /// latency histogram (nanoseconds).
    pub fn stop(self) -> io::Result<(Vec<Conn>, Histogram<u64>)> {
        self.shared.stop.store(true, Relaxed);
        let mut conns = Vec::new();
        let mut hist = histogram();
        for t in self.threads {
            let (c, h) = t
                .join()
                .map_err(|_| io::Error::other("load thread panicked"))??;
            conns.extend(c);
            hist.add(&h)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
        Ok((conns, hist))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Starts `work` on `conns`, split over `threads` threads.
pub fn start(work: Work, mut conns: Vec<Conn>, threads: usize) -> io::Result<Running> {
    let shared = Arc::new(Shared::default());
    let threads = threads.clamp(1, conns.len().max(1));
    let total = conns.len();
    let mut handles = Vec::new();
    for t in (0..threads).rev() {
        let first = total * t / threads;
        let mine = conns.split_off(first);
        let shared = Arc::clone(&shared);
        handles.push(
            thread::Builder::new()
                .name(format!("ws-load-{t}"))
                .spawn(move || Worker::new(work, mine, first as u32, shared)?.run())?,
        );
    }
    Ok(Running {
        shared,
        threads: handles,
    })
}

/// One client's state.
struct Client {
    conn: Conn,
    /// Ingress: offset in the shared buffer. Echo: bytes of `request` written.
    pos: usize,
    /// Ingress with a limit: bytes still to send.
    budget: u64,
    /// A partial frame from the previous read.
    carry: Vec<u8>,
    /// Gone: closed by the server or failed.
    gone: bool,
    /// Echo: this client's id, request number, when it was sent, whether
    /// before the window closed, and whether it awaits its reply.
    id: u32,
    seq: u32,
    sent_at: Instant,
    sent_before_close: bool,
    outstanding: bool,
    request: [u8; CLIENT_FRAME],
}

struct Worker {
    work: Work,
    poll: Poll,
    clients: Vec<Client>,
    shared: Arc<Shared>,
    ingress: Vec<u8>,
    scratch: Vec<u8>,
    hist: Histogram<u64>,
    written: u64,
}

impl Worker {
    fn new(work: Work, conns: Vec<Conn>, first_id: u32, shared: Arc<Shared>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let budget = match work {
            Work::Ingress(Some(k)) => k * CLIENT_FRAME as u64,
            _ => u64::MAX,
        };
        let mut clients = Vec::with_capacity(conns.len());
        for (i, mut conn) in conns.into_iter().enumerate() {
            poll.registry().register(
                &mut conn.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            clients.push(Client {
                conn,
                pos: 0,
                budget,
                carry: Vec::with_capacity(CARRY),
                gone: false,
                id: first_id + i as u32,
                seq: 0,
                sent_at: Instant::now(),
                sent_before_close: false,
                outstanding: false,
                request: [0; CLIENT_FRAME],
            });
        }
        Ok(Self {
            work,
            poll,
            clients,
            shared,
            ingress: wire::client_frames(&INGRESS_PAYLOAD, INGRESS_BATCH),
            scratch: vec![0; SCRATCH],
            hist: histogram(),
            written: 0,
        })
    }

    fn run(mut self) -> Finished {
        if let Work::Echo = self.work {
            for i in 0..self.clients.len() {
                self.send_request(i);
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut drain_until = None;
        loop {
            if self.shared.stop.load(Relaxed) {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
                if self.drained() || Instant::now() >= until {
                    if let Work::Echo = self.work {
                        let outstanding = self.clients.iter().filter(|c| c.outstanding).count();
                        self.shared.lost.fetch_add(outstanding as u64, Relaxed);
                    }
                    break;
                }
            }
            match self.poll.poll(&mut events, Some(Duration::from_millis(5))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                let i = event.token().0;
                if event.is_writable() {
                    self.on_writable(i);
                }
                if event.is_readable() || event.is_read_closed() {
                    self.on_readable(i);
                }
            }
        }
        let mut conns = Vec::with_capacity(self.clients.len());
        for mut c in self.clients {
            self.poll.registry().deregister(&mut c.conn.sock)?;
            conns.push(c.conn);
        }
        Ok((conns, self.hist))
    }

    /// After a stop: whether every client is done (echo: its reply came;
    /// ingress: it ended on a frame boundary and TLS holds nothing more).
    fn drained(&mut self) -> bool {
        match self.work {
            Work::Receive => true,
            Work::Echo => self.clients.iter().all(|c| !c.outstanding || c.gone),
            Work::Ingress(_) => {
                let mut done = true;
                for i in 0..self.clients.len() {
                    self.on_writable(i);
                    let c = &mut self.clients[i];
                    let flushed = c.conn.flush().is_ok();
                    let boundary = c.budget == 0 || c.pos.is_multiple_of(CLIENT_FRAME);
                    done &= c.gone || (boundary && flushed);
                }
                done
            }
        }
    }

    fn on_writable(&mut self, i: usize) {
        match self.work {
            Work::Ingress(_) => self.write_ingress(i),
            Work::Echo => self.flush_request(i),
            Work::Receive => {}
        }
        let c = &mut self.clients[i];
        if !c.gone {
            match c.conn.flush() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => self.gone(i),
                _ => {}
            }
        }
    }

    fn gone(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !c.gone {
            c.gone = true;
            c.budget = 0;
            self.shared.closed.fetch_add(1, Relaxed);
            let _ = self.poll.registry().deregister(&mut c.conn.sock);
        }
    }

    fn write_ingress(&mut self, i: usize) {
        let stopping = self.shared.stop.load(Relaxed);
        let c = &mut self.clients[i];
        while c.budget > 0 && !c.gone {
            let mut end = (c.pos as u64 + c.budget).min(self.ingress.len() as u64) as usize;
            if stopping {
                // Only finish the frame in progress.
                if c.pos.is_multiple_of(CLIENT_FRAME) {
                    return;
                }
                end = end.min((c.pos / CLIENT_FRAME + 1) * CLIENT_FRAME);
            }
            match c.conn.write(&self.ingress[c.pos..end]) {
                Ok(n) => {
                    c.pos = (c.pos + n) % self.ingress.len();
                    c.budget -= n as u64;
                    let before = self.written / CLIENT_FRAME as u64;
                    self.written += n as u64;
                    let whole = self.written / CLIENT_FRAME as u64 - before;
                    if whole > 0 {
                        self.shared.frames.fetch_add(whole, Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone(i);
                    return;
                }
            }
        }
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            if c.gone {
                return;
            }
            let kept = c.carry.len();
            self.scratch[..kept].copy_from_slice(&c.carry);
            let n = match c.conn.read(&mut self.scratch[kept..]) {
                Ok(0) => return self.gone(i),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.gone(i),
            };
            let total = kept + n;
            let (mut got, mut bad, mut replies, mut closed) = (0u64, 0u64, 0u32, false);
            let (id, seq, outstanding) = (c.id, c.seq, c.outstanding);
            let work = self.work;
            let used = wire::split_frames(&self.scratch[..total], |op, payload| {
                if op == FIN_CLOSE {
                    closed = true;
                    return;
                }
                let ok = op == FIN_BINARY
                    && match work {
                        Work::Receive => payload == BROADCAST_PAYLOAD,
                        Work::Echo => {
                            outstanding && replies == 0 && payload == echo_payload(id, seq)
                        }
                        // Ingress clients are never written to.
                        Work::Ingress(_) => false,
                    };
                match (ok, work) {
                    (true, Work::Echo) => replies += 1,
                    (true, _) => got += 1,
                    (false, _) => bad += 1,
                }
            });
            let left = total - used;
            c.carry.clear();
            if left > CARRY {
                // No frame of ours is this long: count it, resynchronise nowhere.
                bad += 1;
            } else {
                c.carry.extend_from_slice(&self.scratch[used..total]);
            }
            if got > 0 {
                self.shared.frames.fetch_add(got, Relaxed);
            }
            if bad > 0 {
                self.shared.bad.fetch_add(bad, Relaxed);
            }
            if replies > 0 {
                let c = &mut self.clients[i];
                c.outstanding = false;
                if c.sent_before_close && self.shared.window_open.load(Relaxed) {
                    let ns = c.sent_at.elapsed().as_nanos() as u64;
                    let _ = self.hist.record(ns.max(1));
                }
                self.shared.frames.fetch_add(1, Relaxed);
                if !self.shared.stop.load(Relaxed) {
                    self.send_request(i);
                }
            }
            if closed {
                return self.gone(i);
            }
        }
    }

    /// Echo: sends this client's next request.
    fn send_request(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.seq = c.seq.wrapping_add(1);
        c.request = wire::client_frame(&echo_payload(c.id, c.seq));
        c.pos = 0;
        c.outstanding = true;
        c.sent_before_close = !self.shared.window_closed.load(Relaxed);
        c.sent_at = Instant::now();
        self.flush_request(i);
    }

    fn flush_request(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while c.outstanding && !c.gone && c.pos < CLIENT_FRAME {
            match c.conn.write(&c.request[c.pos..]) {
                Ok(n) => c.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.gone(i),
            }
        }
    }
}
