//! The load generator, used identically against every server: a few threads,
//! each driving its share of the client sockets through its own mio `Poll`
//! (edge-triggered, non-blocking). Ingress clients write one pre-encoded
//! buffer of 1,024 frames over and over (one syscall moves ~34 KiB), so the
//! generator stays far above what the servers can take.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::proto::{
    BROADCAST_PAYLOAD, FRAME, HEADER, INGRESS_PAYLOAD, PAYLOAD, echo_payload, frame, frames,
    split_frames,
};

/// Frames in the ingress clients' pre-encoded buffer.
const INGRESS_BATCH: usize = 1024;
/// Per-thread read buffer.
const SCRATCH: usize = 64 * 1024;
/// How long a stopped run waits for outstanding echoes (echo) or to finish
/// the frames in progress (ingress).
const ECHO_DRAIN: Duration = Duration::from_secs(10);

/// Connects `n` clients to `addr` at once (non-blocking connects, then one
/// poll for all of them) and returns them established on the client side.
/// Each socket has `TCP_NODELAY` and `SO_LINGER(0)` (closing resets, so that
/// tens of thousands of runs leave no `TIME_WAIT` behind).
pub fn connect(addr: SocketAddr, n: usize, deadline: Duration) -> io::Result<Vec<TcpStream>> {
    let poll = Poll::new()?;
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.set_linger(Some(Duration::ZERO))?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        poll.registry()
            .register(&mut stream, Token(i), Interest::WRITABLE)?;
        socks.push(stream);
    }
    let mut poll = poll;
    let mut events = Events::with_capacity(1024);
    let mut done = vec![false; n];
    let mut left = n;
    let until = Instant::now() + deadline;
    while left > 0 {
        let now = Instant::now();
        if now >= until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{left} of {n} connects still pending"),
            ));
        }
        poll.poll(&mut events, Some(until - now))?;
        for event in &events {
            let i = event.token().0;
            if done[i] {
                continue;
            }
            if let Some(e) = socks[i].take_error()? {
                return Err(e);
            }
            if socks[i].peer_addr().is_ok() {
                done[i] = true;
                left -= 1;
            }
        }
    }
    for sock in &mut socks {
        poll.registry().deregister(sock)?;
    }
    Ok(socks)
}

/// Writes one ingress frame on each socket (used by idle clients, so that
/// every server has read something from every connection at least once).
pub fn send_hello(socks: &mut [TcpStream]) -> io::Result<()> {
    let hello = frame(&INGRESS_PAYLOAD);
    for sock in socks {
        // A fresh socket's send buffer is empty: 34 bytes always fit.
        if sock.write(&hello)? != FRAME {
            return Err(io::Error::other("short hello write"));
        }
    }
    Ok(())
}

/// What each client does.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Send frames as fast as possible; `Some(k)`: exactly `k` frames, then stop.
    Ingress(Option<u64>),
    /// Read and check broadcast frames.
    Receive,
    /// Send one frame, wait for its echo, check it, repeat.
    Echo,
}

/// Counters shared by the generator threads and the harness.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the harness: stop (echo: stop sending, then drain).
    pub stop: AtomicBool,
    /// Set by the harness when its measuring window opens (never reset).
    pub window_open: AtomicBool,
    /// Set by the harness when the window closes. Every request alive at
    /// some time inside the window (sent before it closed, answered after
    /// it opened) has its latency recorded, however late its echo comes:
    /// stopping waits for it. A client the server starves is the tail, not
    /// something left out.
    pub window_closed: AtomicBool,
    /// Ingress: whole frames written. Receive: frames received. Echo: round trips.
    pub frames: AtomicU64,
    /// Frames with a wrong length or content, or echoes nobody asked for.
    pub bad: AtomicU64,
    /// Echo requests still unanswered after the drain.
    pub lost: AtomicU64,
    /// Connections the server closed or that failed.
    pub closed: AtomicU64,
}

/// What a generator thread gives back: its sockets and its latencies.
type Finished = io::Result<(Vec<TcpStream>, Histogram<u64>)>;

/// A running load.
#[derive(Debug)]
pub struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Finished>>,
}

impl Running {
    /// The live counters (they stay readable after [`stop`](Self::stop)).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Stops the load (echo: waits for outstanding replies) and gives back
    /// the sockets and the merged latency histogram (nanoseconds).
    pub fn stop(self) -> io::Result<(Vec<TcpStream>, Histogram<u64>)> {
        self.shared.stop.store(true, Relaxed);
        let mut socks = Vec::new();
        let mut hist = new_histogram();
        for t in self.threads {
            let (s, h) = t
                .join()
                .map_err(|_| io::Error::other("load thread panicked"))??;
            socks.extend(s);
            hist.add(&h)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
        Ok((socks, hist))
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Starts `work` on `socks`, split over `threads` threads.
pub fn start(work: Work, mut socks: Vec<TcpStream>, threads: usize) -> io::Result<Running> {
    let shared = Arc::new(Shared::default());
    let threads = threads.clamp(1, socks.len().max(1));
    let mut handles = Vec::new();
    let total = socks.len();
    for t in (0..threads).rev() {
        let first = total * t / threads;
        let mine = socks.split_off(first);
        let shared = Arc::clone(&shared);
        handles.push(
            thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || Worker::new(work, mine, first as u32, shared)?.run())?,
        );
    }
    Ok(Running {
        shared,
        threads: handles,
    })
}

/// One client socket's state.
struct Client {
    stream: TcpStream,
    /// Ingress: offset in the shared buffer. Echo: bytes of `request` written.
    pos: usize,
    /// Ingress with a limit: bytes still to send.
    budget: u64,
    /// A partial frame from the previous read.
    carry: [u8; FRAME],
    carry_len: usize,
    /// Echo: this client's id, request number, and when it was sent.
    id: u32,
    seq: u32,
    sent_at: Instant,
    /// The request was sent before the measuring window closed.
    sent_before_close: bool,
    outstanding: bool,
    request: [u8; FRAME],
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
    fn new(
        work: Work,
        socks: Vec<TcpStream>,
        first_id: u32,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let budget = match work {
            Work::Ingress(Some(k)) => k * FRAME as u64,
            _ => u64::MAX,
        };
        let mut clients = Vec::with_capacity(socks.len());
        for (i, mut stream) in socks.into_iter().enumerate() {
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            clients.push(Client {
                stream,
                pos: 0,
                budget,
                carry: [0; FRAME],
                carry_len: 0,
                id: first_id + i as u32,
                seq: 0,
                sent_at: Instant::now(),
                sent_before_close: false,
                outstanding: false,
                request: [0; FRAME],
            });
        }
        Ok(Self {
            work,
            poll,
            clients,
            shared,
            ingress: frames(&INGRESS_PAYLOAD, INGRESS_BATCH),
            scratch: vec![0; SCRATCH],
            hist: new_histogram(),
            written: 0,
        })
    }

    fn run(mut self) -> io::Result<(Vec<TcpStream>, Histogram<u64>)> {
        if let Work::Echo = self.work {
            for i in 0..self.clients.len() {
                self.send_request(i);
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut drain_until = None;
        loop {
            if self.shared.stop.load(Relaxed) {
                match self.work {
                    Work::Echo => {
                        let until = *drain_until.get_or_insert_with(|| Instant::now() + ECHO_DRAIN);
                        let outstanding = self.clients.iter().filter(|c| c.outstanding).count();
                        if outstanding == 0 || Instant::now() >= until {
                            self.shared.lost.fetch_add(outstanding as u64, Relaxed);
                            break;
                        }
                    }
                    Work::Ingress(_) => {
                        // Stop on a frame boundary, so that the sockets can be
                        // handed to another run and the stream stays parseable.
                        let until = *drain_until.get_or_insert_with(|| Instant::now() + ECHO_DRAIN);
                        let mut partial = 0;
                        for i in 0..self.clients.len() {
                            let c = &self.clients[i];
                            if c.budget > 0 && !c.pos.is_multiple_of(FRAME) {
                                self.on_writable(i);
                                let c = &self.clients[i];
                                partial +=
                                    usize::from(c.budget > 0 && !c.pos.is_multiple_of(FRAME));
                            }
                        }
                        if partial == 0 || Instant::now() >= until {
                            break;
                        }
                    }
                    Work::Receive => break,
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
        let mut socks = Vec::with_capacity(self.clients.len());
        for mut c in self.clients {
            self.poll.registry().deregister(&mut c.stream)?;
            socks.push(c.stream);
        }
        Ok((socks, self.hist))
    }

    fn on_writable(&mut self, i: usize) {
        match self.work {
            Work::Ingress(_) => {
                let stopping = self.shared.stop.load(Relaxed);
                let c = &mut self.clients[i];
                while c.budget > 0 {
                    let mut end = (c.pos as u64 + c.budget).min(self.ingress.len() as u64) as usize;
                    if stopping {
                        // Only finish the frame in progress (see `run`).
                        if c.pos.is_multiple_of(FRAME) {
                            return;
                        }
                        end = end.min((c.pos / FRAME + 1) * FRAME);
                    }
                    match c.stream.write(&self.ingress[c.pos..end]) {
                        Ok(n) => {
                            c.pos = (c.pos + n) % self.ingress.len();
                            c.budget -= n as u64;
                            let before = self.written / FRAME as u64;
                            self.written += n as u64;
                            let whole = self.written / FRAME as u64 - before;
                            if whole > 0 {
                                self.shared.frames.fetch_add(whole, Relaxed);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.shared.closed.fetch_add(1, Relaxed);
                            c.budget = 0;
                        }
                    }
                }
            }
            Work::Echo => self.flush_request(i),
            Work::Receive => {}
        }
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            let kept = c.carry_len;
            self.scratch[..kept].copy_from_slice(&c.carry[..kept]);
            let n = match c.stream.read(&mut self.scratch[kept..]) {
                Ok(0) => {
                    self.shared.closed.fetch_add(1, Relaxed);
                    let _ = self.poll.registry().deregister(&mut c.stream);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.shared.closed.fetch_add(1, Relaxed);
                    let _ = self.poll.registry().deregister(&mut c.stream);
                    return;
                }
            };
            let total = kept + n;
            let mut got = 0u64;
            let mut bad = 0u64;
            let mut replies = 0u32;
            let used = match self.work {
                Work::Receive => split_frames(&self.scratch[..total], |p| {
                    if p == BROADCAST_PAYLOAD {
                        got += 1;
                    } else {
                        bad += 1;
                    }
                }),
                Work::Echo => {
                    let (id, seq, outstanding) = (c.id, c.seq, c.outstanding);
                    split_frames(&self.scratch[..total], |p| {
                        if outstanding && replies == 0 && p == echo_payload(id, seq) {
                            replies += 1;
                        } else {
                            bad += 1;
                        }
                    })
                }
                Work::Ingress(_) => split_frames(&self.scratch[..total], |_| {}),
            };
            let left = total - used;
            if left >= FRAME
                || (left >= HEADER && self.scratch[used..used + HEADER] != [0, PAYLOAD as u8])
            {
                // Not one of our frames: count it and resynchronise nowhere.
                bad += 1;
                c.carry_len = 0;
            } else {
                c.carry[..left].copy_from_slice(&self.scratch[used..total]);
                c.carry_len = left;
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
        }
    }

    /// Echo: sends this client's next request.
    fn send_request(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.seq = c.seq.wrapping_add(1);
        c.request = frame(&echo_payload(c.id, c.seq));
        c.pos = 0;
        c.outstanding = true;
        c.sent_before_close = !self.shared.window_closed.load(Relaxed);
        c.sent_at = Instant::now();
        self.flush_request(i);
    }

    fn flush_request(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while c.outstanding && c.pos < FRAME {
            match c.stream.write(&c.request[c.pos..]) {
                Ok(n) => c.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.shared.closed.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
    }
}
