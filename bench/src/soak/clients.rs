//! The soak's clients: `clients` slots, each an async task on one smol
//! executor thread, each going round the same cycle until told to stop:
//!
//! 1. connect, and exchange 1 to 3 echoes in the lobby (the first round trip
//!    also proves the server accepted the connection);
//! 2. dwell a while, reading (nothing may arrive in the lobby);
//! 3. unless it leaves from the lobby (one cycle in five): join the room,
//!    exchange 1 to 5 echoes there, one of them a broadcast in one cycle in
//!    six, and dwell, reading the other clients' broadcasts;
//! 4. leave, in a way drawn at random (see [`Leave`]), then pause and
//!    connect again.
//!
//! Every frame received is checked: a client waiting for its echo accepts
//! only that echo, or, once in the room, a broadcast; anything else is an
//! error, counted and (the first few) printed. The dwells keep the rate of
//! each client modest, so that the run is a soak and not a benchmark.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use futures::AsyncWriteExt;
use smol::Timer;
use smol::channel::Receiver;
use smol::future::or;
use smol::net::TcpStream;

use super::wire::{
    BYE, FrameReader, MAX_FRAME, encode, flood_payload, is_broadcast, payload, show,
};

/// The longest a client waits for an answer, a connect or a write before it
/// counts an error: far beyond any latency a working server has, even on a
/// loaded machine, so a timeout means something is stuck.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest padding of an ordinary message.
const MAX_PAD: u64 = 200;
/// Frames a slow client sends at most before it gives up waiting to be
/// disconnected (2 MB of echoes it does not read).
const FLOOD_MAX: u64 = 2_000;
/// Receive buffer of a slow client's socket: small, so that the server's
/// writes to it stall soon and its outgoing backlog overflows after a few
/// hundred frames instead of after the megabytes loopback buffers hold. Set
/// before connecting: shrunk on an established connection (whose window was
/// agreed for a larger buffer), it left the server's kernel probing a zero
/// window with exponential backoff, and 2 slow clients in a 10-minute run
/// saw nothing for 30 s after the server had closed their connections.
const SLOW_RCVBUF: usize = 4096;
/// Client errors printed; the rest are only counted.
const ERRORS_PRINTED: u64 = 20;

/// How a client ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Sends `bye`, reads until the server has answered `bye` and closed
    /// (the server's `Message` then `Shutdown`).
    Polite,
    /// Closes its socket.
    Plain,
    /// Sends half a frame, then closes its socket.
    Abrupt,
    /// Sends a frame declaring more than the server's maximum length, then
    /// reads until the server has closed the connection.
    Hostile,
    /// Stops reading and floods the server with requests for large echoes,
    /// until the server disconnects it (its backlog overflows) or it has
    /// sent `FLOOD_MAX` (2,000) frames; then reads what did come back.
    Slow,
}

impl Leave {
    /// Every way, in the order of [`ClientSnapshot::leaves`].
    pub const ALL: [Leave; 5] = [
        Leave::Polite,
        Leave::Plain,
        Leave::Abrupt,
        Leave::Hostile,
        Leave::Slow,
    ];

    /// A short name for the output.
    pub fn name(self) -> &'static str {
        match self {
            Leave::Polite => "polite",
            Leave::Plain => "plain",
            Leave::Abrupt => "abrupt",
            Leave::Hostile => "hostile",
            Leave::Slow => "slow",
        }
    }

    /// Draws a way to leave: mostly well-behaved, some rude, a few slow
    /// (each slow client makes the server echo a few hundred KB).
    fn pick(rng: &mut Rng) -> Leave {
        match rng.below(100) {
            0..40 => Leave::Polite,
            40..70 => Leave::Plain,
            70..85 => Leave::Abrupt,
            85..95 => Leave::Hostile,
            _ => Leave::Slow,
        }
    }
}

/// The clients' counters, shared with the sampler (each field is the
/// [`ClientSnapshot`] field of the same name).
#[derive(Debug, Default)]
pub struct ClientCounters {
    connects: AtomicU64,
    cycles: AtomicU64,
    round_trips: AtomicU64,
    broadcasts: AtomicU64,
    leaves: [AtomicU64; 5],
    hostile_sent: AtomicU64,
    flood_frames: AtomicU64,
    slow_kicked: AtomicU64,
    errors: AtomicU64,
}

/// The clients' counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSnapshot {
    /// Connections made.
    pub connects: u64,
    /// Cycles completed without an error.
    pub cycles: u64,
    /// Echoes received as expected.
    pub round_trips: u64,
    /// Other clients' (and their own) room broadcasts received.
    pub broadcasts: u64,
    /// Leaves begun, by way, in the order of [`Leave::ALL`].
    pub leaves: [u64; 5],
    /// Oversized frames sent (each must cost the server one `InvalidData`
    /// read error).
    pub hostile_sent: u64,
    /// Frames sent by slow clients.
    pub flood_frames: u64,
    /// Slow clients the server disconnected before it had echoed their
    /// whole flood.
    pub slow_kicked: u64,
    /// Errors: unexpected frames, unexpected ends, timeouts, failed
    /// connects.
    pub errors: u64,
}

impl ClientCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> ClientSnapshot {
        ClientSnapshot {
            connects: self.connects.load(Relaxed),
            cycles: self.cycles.load(Relaxed),
            round_trips: self.round_trips.load(Relaxed),
            broadcasts: self.broadcasts.load(Relaxed),
            leaves: std::array::from_fn(|i| self.leaves[i].load(Relaxed)),
            hostile_sent: self.hostile_sent.load(Relaxed),
            flood_frames: self.flood_frames.load(Relaxed),
            slow_kicked: self.slow_kicked.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// What the clients need to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The server.
    pub addr: SocketAddr,
    /// Client slots, each one connection at a time.
    pub clients: usize,
    /// Mean dwell in the lobby (the room's is twice as long, the pause
    /// between connections a quarter).
    pub pace: Duration,
    /// Seeds every slot's generator.
    pub seed: u64,
}

/// Starts the clients on a thread of their own. They run until `stop` is
/// closed (its sender dropped), then finish their cycle by leaving, and the
/// thread ends.
pub fn start(
    settings: Settings,
    stop: Receiver<()>,
) -> io::Result<(Arc<ClientCounters>, JoinHandle<()>)> {
    let counters = Arc::new(ClientCounters::default());
    let thread = {
        let counters = Arc::clone(&counters);
        thread::Builder::new()
            .name("soak-clients".into())
            .spawn(move || {
                let ex = smol::LocalExecutor::new();
                let shared = Rc::new(Shared {
                    settings,
                    counters,
                    stop,
                });
                let slots: Vec<_> = (0..shared.settings.clients)
                    .map(|slot| ex.spawn(run_slot(slot, Rc::clone(&shared))))
                    .collect();
                smol::block_on(ex.run(async {
                    for slot in slots {
                        slot.await;
                    }
                }));
            })?
    };
    Ok((counters, thread))
}

/// What every slot shares.
struct Shared {
    settings: Settings,
    counters: Arc<ClientCounters>,
    stop: Receiver<()>,
}

/// One client slot, cycling until stopped.
async fn run_slot(slot: usize, shared: Rc<Shared>) {
    let mut client = Client {
        slot,
        seq: 0,
        rng: Rng::new(shared.settings.seed, slot),
        shared,
    };
    let mut cycle = 0;
    while !client.shared.stop.is_closed() {
        cycle += 1;
        match client.cycle().await {
            Ok(()) => client.count(|c| &c.cycles, 1),
            Err(e) => {
                let n = client.shared.counters.errors.fetch_add(1, Relaxed) + 1;
                if n <= ERRORS_PRINTED {
                    eprintln!("soak client {slot}, cycle {cycle}: {e}");
                }
            }
        }
        let pause = client.rng.below_duration(client.shared.settings.pace / 4);
        // The pause ends early when the run stops.
        or(
            async {
                Timer::after(pause).await;
            },
            async {
                let _ = client.shared.stop.recv().await;
            },
        )
        .await;
    }
}

/// One slot's state across its connections.
struct Client {
    slot: usize,
    /// The next sequence number: never repeated by this slot, so every
    /// payload it sends is unique in the run.
    seq: u64,
    rng: Rng,
    shared: Rc<Shared>,
}

/// One connection of a client.
struct Conn {
    stream: TcpStream,
    frames: FrameReader,
    /// Whether the client has had its `join` echoed: only then may room
    /// broadcasts arrive.
    in_room: bool,
}

impl Conn {
    /// Sends one frame.
    async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&encode(payload)).await
    }

    /// The next frame; see [`FrameReader::next`].
    async fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.frames.next(&mut self.stream).await
    }
}

impl Client {
    /// Adds `n` to one of the shared counters.
    fn count(&self, counter: impl Fn(&ClientCounters) -> &AtomicU64, n: u64) {
        counter(&self.shared.counters).fetch_add(n, Relaxed);
    }

    /// Takes a fresh sequence number.
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// One connection, from connect to leave.
    async fn cycle(&mut self) -> Result<(), String> {
        let pace = self.shared.settings.pace;
        let leave = Leave::pick(&mut self.rng);
        let from_lobby = leave != Leave::Slow && self.rng.below(5) == 0;
        let receive_buffer = (leave == Leave::Slow).then_some(SLOW_RCVBUF);
        let stream = timeout(
            "connect",
            connect(self.shared.settings.addr, receive_buffer),
        )
        .await?
        .map_err(|e| format!("connect: {e}"))?;
        self.count(|c| &c.connects, 1);
        // Small frames answered one at a time: Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            frames: FrameReader::default(),
            in_room: false,
        };
        for _ in 0..1 + self.rng.below(3) {
            self.round_trip(&mut conn, "m").await?;
        }
        let lobby_dwell = self.rng.below_duration(pace);
        let stopped = self.dwell(&mut conn, lobby_dwell).await?;
        // A stopping run skips the room: the client leaves at once.
        if !from_lobby && !stopped {
            let join = payload("join", self.slot, self.next_seq(), 0);
            self.exchange(&mut conn, &join).await?;
            conn.in_room = true;
            let n = 1 + self.rng.below(5);
            let broadcast_at = (self.rng.below(6) == 0).then(|| self.rng.below(n));
            for i in 0..n {
                let prefix = if Some(i) == broadcast_at { "all" } else { "m" };
                self.round_trip(&mut conn, prefix).await?;
            }
            let room_dwell = self.rng.below_duration(2 * pace);
            self.dwell(&mut conn, room_dwell).await?;
        }
        self.leave(conn, leave).await
    }

    /// Sends a message with this prefix and random padding, and waits for
    /// it to come back (as an echo, or as the room's broadcast).
    async fn round_trip(&mut self, conn: &mut Conn, prefix: &str) -> Result<(), String> {
        let pad = self.rng.below(MAX_PAD) as usize;
        let message = payload(prefix, self.slot, self.next_seq(), pad);
        self.exchange(conn, &message).await
    }

    /// Sends `message` and reads until it comes back.
    async fn exchange(&mut self, conn: &mut Conn, message: &[u8]) -> Result<(), String> {
        debug_assert!(message.len() <= MAX_FRAME);
        timeout("write", conn.send(message))
            .await?
            .map_err(|e| format!("write: {e}"))?;
        loop {
            let frame = timeout("waiting for an echo", conn.recv()).await?;
            match frame {
                Ok(Some(frame)) if frame == message => break,
                Ok(Some(frame)) => self.passing(conn, &frame, message)?,
                Ok(None) => {
                    return Err(format!("closed while waiting for {}", show(message)));
                }
                Err(e) => return Err(format!("{e} while waiting for {}", show(message))),
            }
        }
        self.count(|c| &c.round_trips, 1);
        Ok(())
    }

    /// A frame that arrived while waiting for something else: a broadcast
    /// is fine in the room, anything else is an error.
    fn passing(&self, conn: &Conn, frame: &[u8], waiting_for: &[u8]) -> Result<(), String> {
        if conn.in_room && is_broadcast(frame) {
            self.count(|c| &c.broadcasts, 1);
            Ok(())
        } else {
            let place = if conn.in_room { "room" } else { "lobby" };
            Err(format!(
                "unexpected frame {} in the {place} while waiting for {}",
                show(frame),
                show(waiting_for)
            ))
        }
    }

    /// Stays connected for `time`, reading whatever arrives. Returns early,
    /// with `true`, if the run is stopping.
    async fn dwell(&self, conn: &mut Conn, time: Duration) -> Result<bool, String> {
        let stop = &self.shared.stop;
        let wait = async {
            Ok(or(
                async {
                    Timer::after(time).await;
                    false
                },
                async {
                    let _ = stop.recv().await;
                    true
                },
            )
            .await)
        };
        let watch = async {
            loop {
                match conn.recv().await {
                    Ok(Some(frame)) => self.passing(conn, &frame, b"nothing")?,
                    Ok(None) => return Err("closed while dwelling".to_string()),
                    Err(e) => return Err(format!("{e} while dwelling")),
                }
            }
        };
        or(wait, watch).await
    }

    /// Ends the connection the way drawn for this cycle.
    async fn leave(&mut self, mut conn: Conn, how: Leave) -> Result<(), String> {
        let index = Leave::ALL.iter().position(|&l| l == how).unwrap_or(0);
        self.count(|c| &c.leaves[index], 1);
        match how {
            Leave::Polite => {
                timeout("write bye", conn.send(BYE))
                    .await?
                    .map_err(|e| format!("write bye: {e}"))?;
                loop {
                    match timeout("waiting for bye", conn.recv()).await? {
                        Ok(Some(frame)) if frame == BYE => break,
                        Ok(Some(frame)) => self.passing(&conn, &frame, BYE)?,
                        Ok(None) => return Err("closed before its bye".to_string()),
                        Err(e) => return Err(format!("{e} while waiting for bye")),
                    }
                }
                // The server closes right after the bye: nothing may follow.
                match timeout("waiting for the close after bye", conn.recv()).await? {
                    Ok(None) => Ok(()),
                    Ok(Some(frame)) => Err(format!("frame {} after bye", show(&frame))),
                    Err(e) => Err(format!("{e} instead of a clean close after bye")),
                }
            }
            Leave::Plain => Ok(()),
            Leave::Abrupt => {
                // Declares 500 bytes, sends 100.
                let mut half = 500u16.to_be_bytes().to_vec();
                half.extend([b'x'; 100]);
                let _ = timeout("write half a frame", conn.stream.write_all(&half)).await?;
                Ok(())
            }
            Leave::Hostile => {
                let mut oversized = u16::MAX.to_be_bytes().to_vec();
                oversized.extend_from_slice(b"hostile");
                timeout("write oversized", conn.stream.write_all(&oversized))
                    .await?
                    .map_err(|e| format!("write oversized: {e}"))?;
                self.count(|c| &c.hostile_sent, 1);
                self.read_until_closed(&mut conn).await
            }
            Leave::Slow => self.flood(&mut conn).await,
        }
    }

    /// After a hostile frame: reads until the server closes, which it must
    /// do; only broadcasts may arrive meanwhile.
    async fn read_until_closed(&self, conn: &mut Conn) -> Result<(), String> {
        loop {
            match timeout("waiting to be disconnected", conn.recv()).await? {
                Ok(Some(frame)) => self.passing(conn, &frame, b"the close")?,
                Ok(None) => return Ok(()),
                Err(e) if ended(&e) => return Ok(()),
                Err(e) => return Err(format!("{e} while waiting to be disconnected")),
            }
        }
    }

    /// The slow client: sends flood frames without reading (the server's
    /// echoes pile up), then reads what came back, which must be the echoes
    /// in order, possibly cut short by the server disconnecting it.
    async fn flood(&mut self, conn: &mut Conn) -> Result<(), String> {
        let first = self.seq + 1;
        let mut sent = 0;
        while sent < FLOOD_MAX {
            let message = flood_payload(self.slot, self.next_seq());
            match timeout("flood write", conn.send(&message)).await? {
                Ok(()) => sent += 1,
                // Disconnected already: the server reset the connection.
                Err(_) => break,
            }
        }
        self.count(|c| &c.flood_frames, sent);
        let mut echoed = 0;
        while echoed < sent {
            let expected = flood_payload(self.slot, first + echoed);
            match timeout("reading the flood's echoes", conn.recv()).await? {
                Ok(Some(frame)) if frame == expected => echoed += 1,
                Ok(Some(frame)) => self.passing(conn, &frame, &expected)?,
                Ok(None) => break,
                Err(e) if ended(&e) => break,
                Err(e) => return Err(format!("{e} while reading the flood's echoes")),
            }
        }
        if echoed < sent {
            self.count(|c| &c.slow_kicked, 1);
        }
        Ok(())
    }
}

/// Whether a read error is the end of a connection the server dropped:
/// a reset, or (when it dropped a frame half written) a cut frame.
fn ended(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe
    )
}

/// Runs `future` for at most [`IO_TIMEOUT`].
/// Connects to `addr`, with a receive buffer of `receive_buffer` bytes set
/// before the handshake if given (so that the window agreed fits it).
async fn connect(addr: SocketAddr, receive_buffer: Option<usize>) -> io::Result<TcpStream> {
    let Some(size) = receive_buffer else {
        return TcpStream::connect(addr).await;
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_recv_buffer_size(size)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = smol::Async::new(std::net::TcpStream::from(socket))?;
    // Writable once the handshake is over, or failed.
    stream.writable().await?;
    if let Some(error) = stream.get_ref().take_error()? {
        return Err(error);
    }
    Ok(TcpStream::from(stream))
}

async fn timeout<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    or(async { Ok(future.await) }, async {
        Timer::after(IO_TIMEOUT).await;
        Err(format!("{what}: nothing within {IO_TIMEOUT:?}"))
    })
    .await
}

/// A xorshift64* generator: enough randomness to mix the clients'
/// behaviour, no dependency, and reproducible from the run's seed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// The generator of one slot: the seed and the slot mixed by a
    /// splitmix64 step, so that neighbouring slots differ from the start.
    fn new(seed: u64, slot: usize) -> Self {
        let mut z = seed ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // xorshift must not start at 0.
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next number of the sequence.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 if `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A duration in `0..max`, to the millisecond.
    fn below_duration(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_to_leave_is_drawn() {
        let mut rng = Rng::new(1, 0);
        let mut seen = [0u32; 5];
        for _ in 0..1_000 {
            let how = Leave::pick(&mut rng);
            seen[Leave::ALL.iter().position(|&l| l == how).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
    }

    #[test]
    fn slots_get_different_streams() {
        let (mut a, mut b) = (Rng::new(7, 0), Rng::new(7, 1));
        assert_ne!(a.next(), b.next());
        assert!(Rng::new(7, 2).below(10) < 10);
    }
}
