//! One node: a multiplexer on smol (one thread), alone or with the crate's
//! Redis backplane, run as a child process of the harness (`bench nodes
//! serve ...`) so that its CPU time is its own.
//!
//! Its application does two things. Every frame a client sends becomes one
//! message to the room [`ROOM`] (the producer is the only client that
//! sends). On the harness's `join`, every client connected so far joins
//! the room (the members connect first; the producer comes after and stays
//! out). The backplane, when there is one, publishes each room message and
//! hands the node the messages of the other node.
//!
//! The control protocol, one line each way, as the other servers'
//! ([`control`](crate::control)):
//!
//! ```text
//! (node prints)  PORT <n>
//! conns          -> <clients connected so far>
//! join           -> <how many joined the room>
//! members        -> <members of the room now>
//! subscriptions  -> <rooms the backplane is subscribed to, as Redis confirmed; 0 without one>
//! relay          -> <the backplane's counters, `name=value ...`; `none` without one>
//! quit           -> (the process exits)
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt, future};
use stream_multiplexer::backplane::{
    Backplane, BackplaneConfig, BackplaneStats, BackplaneStatsSnapshot, Connector, RawCodec,
};
use stream_multiplexer::batch::{self, BatchReceiver};
use stream_multiplexer::{
    HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage, OutgoingPacket, RoomName,
    Rooms, StreamId, runtime,
};

use crate::proto::HEADER;

/// The one room of the benchmark.
pub const ROOM: &str = "bench";

/// Every room's channel on Redis starts with this.
const CHANNEL_PREFIX: &str = "bench:room:";

/// The backplane's clock: it times reconnects and pings only, nothing on
/// the path of a message.
const BACKPLANE_TICK: Duration = Duration::from_millis(100);

/// Channel 0's queue and the application's outgoing queue, as in the
/// `ours` server.
const QUEUE: usize = 1024;

/// How a node is started.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// Redis's address: with it, the node runs a backplane.
    pub redis: Option<String>,
    /// The backplane's node id (the nodes of one run need two).
    pub node_id: u64,
    /// The backplane's publication queue (its default: 1,024).
    pub publish_queue: usize,
    /// Each stream's outgoing backlog in values, under the default policy
    /// (Disconnect): large enough that no flood overflows it, as in `ours`.
    pub sender_buffer: usize,
}

impl Default for NodeOpts {
    fn default() -> Self {
        Self {
            redis: None,
            node_id: 1,
            publish_queue: 1024,
            sender_buffer: 32_768,
        }
    }
}

/// What the node's application and its control thread share.
#[derive(Debug, Default)]
struct State {
    /// The ids connected now.
    ids: Mutex<Vec<StreamId>>,
    /// Clients connected so far.
    conns: AtomicU64,
}

type Incoming = IncomingPacket<io::Result<Bytes>>;

/// Runs a node until the harness says `quit` (or goes away).
pub fn serve(opts: &NodeOpts) -> io::Result<()> {
    let listener = runtime::smol::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 65_535)?;
    let port = listener.local_addr()?.port();
    let (channel0, channel0_rx) = batch::channel(QUEUE);
    let (outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(QUEUE);

    // One type for both setups: the boxed stream costs one virtual call
    // per packet (per message, not per delivery), in both alike.
    let (to_multiplexer, backplane): (BoxStream<'static, OutgoingPacket<Bytes>>, _) =
        match &opts.redis {
            Some(address) => {
                let config = BackplaneConfig::new(
                    Connector::smol(address.clone()),
                    runtime::smol::clock(BACKPLANE_TICK),
                )
                .node_id(opts.node_id)
                .channel_prefix(CHANNEL_PREFIX)
                .publish_queue(opts.publish_queue);
                let (backplane, stream) = Backplane::new(config, outgoing_rx, RawCodec);
                (stream.boxed(), Some(backplane))
            }
            None => (outgoing_rx.boxed(), None),
        };
    let multiplexer =
        MultiplexerBuilder::new(opts.sender_buffer).build(to_multiplexer, vec![channel0]);
    let rooms = multiplexer.rooms();
    let stats = backplane.as_ref().map(Backplane::stats);

    let ex = smol::Executor::new();
    if let Some(backplane) = backplane {
        ex.spawn(backplane.run(rooms.clone())).detach();
    }
    let halves = HalvesStream::new(runtime::smol::incoming(listener), HEADER);
    // Never sent to: the node runs until the process exits.
    let (_control, control_rx) = mpsc::unbounded();
    let run = multiplexer.run(halves, control_rx);
    ex.spawn(async move {
        if let Err(e) = run.await {
            eprintln!("node: run: {e}");
        }
    })
    .detach();
    let state = Arc::new(State::default());
    ex.spawn(application(
        channel0_rx,
        outgoing.clone(),
        Arc::clone(&state),
    ))
    .detach();

    {
        let mut out = io::stdout().lock();
        writeln!(out, "PORT {port}")?;
        out.flush()?;
    }
    thread::Builder::new()
        .name("control".into())
        .spawn(move || control(outgoing, state, rooms, stats))?;
    smol::block_on(ex.run(future::pending::<()>()));
    Ok(())
}

/// The node's application: keeps the ids, and sends every frame it reads
/// to the room.
async fn application(
    mut channel0: BatchReceiver<Incoming>,
    mut outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    state: Arc<State>,
) {
    let room = RoomName::from(ROOM);
    while let Some(packet) = channel0.next().await {
        match packet {
            IncomingPacket::StreamConnected(id) => {
                state.ids.lock().expect("ids lock").push(id);
                state.conns.fetch_add(1, Relaxed);
            }
            IncomingPacket::Message(message) => {
                let Ok(value) = message.value else { continue };
                let to_room = OutgoingMessage::to_room(room.clone(), [value]);
                if outgoing
                    .send(OutgoingPacket::Message(to_room))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            IncomingPacket::StreamDisconnected(id, _) => {
                state.ids.lock().expect("ids lock").retain(|&x| x != id);
            }
        }
    }
}

/// Answers the harness, one line per line, until `quit` or the end of
/// stdin; then ends the process.
fn control(
    outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    state: Arc<State>,
    rooms: Rooms,
    stats: Option<BackplaneStats>,
) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let reply = match line.trim() {
            "conns" => state.conns.load(Relaxed).to_string(),
            "join" => {
                let ids = state.ids.lock().expect("ids lock").clone();
                let joined = ids.len();
                let join = OutgoingPacket::Join(ids, ROOM.into());
                match futures::executor::block_on(outgoing.clone().send(join)) {
                    Ok(()) => joined.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            }
            "members" => rooms.len(ROOM).to_string(),
            "subscriptions" => stats
                .as_ref()
                .map_or(0, |s| s.snapshot().subscriptions)
                .to_string(),
            "relay" => stats.as_ref().map_or_else(
                || "none".to_string(),
                |s| Relay::of(&s.snapshot()).to_line(),
            ),
            "quit" => break,
            other => format!("error: unknown command {other:?}"),
        };
        let mut out = io::stdout().lock();
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0);
}

/// The backplane counters the harness reports (from
/// [`BackplaneStatsSnapshot`]); on the control protocol, their values in
/// this order, separated by spaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relay {
    /// Room messages offered for publishing.
    pub offered: u64,
    /// Publications waiting in the queue.
    pub queued: u64,
    /// Publications written to Redis, not yet confirmed.
    pub in_flight: u64,
    /// Publications Redis confirmed.
    pub published: u64,
    /// Publications whose confirmation never came.
    pub publish_failed: u64,
    /// Room messages never sent to Redis (queue full).
    pub publish_dropped: u64,
    /// The most publications the queue held.
    pub queue_peak: u64,
    /// Messages of the other node passed to this node's members.
    pub received: u64,
    /// Messages from Redis refused.
    pub rejected: u64,
    /// Connections to Redis lost.
    pub disconnects: u64,
}

impl Relay {
    fn of(s: &BackplaneStatsSnapshot) -> Self {
        Self {
            offered: s.offered,
            queued: s.queued,
            in_flight: s.in_flight,
            published: s.published,
            publish_failed: s.publish_failed,
            publish_dropped: s.publish_dropped,
            queue_peak: s.queue_peak,
            received: s.received,
            rejected: s.rejected,
            disconnects: s.disconnects,
        }
    }

    fn to_line(self) -> String {
        let fields = [
            self.offered,
            self.queued,
            self.in_flight,
            self.published,
            self.publish_failed,
            self.publish_dropped,
            self.queue_peak,
            self.received,
            self.rejected,
            self.disconnects,
        ];
        fields.map(|v| v.to_string()).join(" ")
    }

    fn parse(line: &str) -> Option<Self> {
        let values = line
            .split_whitespace()
            .map(|word| word.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        let [
            offered,
            queued,
            in_flight,
            published,
            publish_failed,
            publish_dropped,
            queue_peak,
            received,
            rejected,
            disconnects,
        ] = <[u64; 10]>::try_from(values).ok()?;
        Some(Self {
            offered,
            queued,
            in_flight,
            published,
            publish_failed,
            publish_dropped,
            queue_peak,
            received,
            rejected,
            disconnects,
        })
    }

    /// Publications that never reached Redis or were never confirmed: the
    /// other node's members miss each of them.
    pub fn lost(&self) -> u64 {
        self.publish_failed + self.publish_dropped
    }

    /// Nothing queued and nothing waiting for Redis's confirmation.
    pub fn settled(&self) -> bool {
        self.queued + self.in_flight == 0
    }
}

/// The harness's handle on a node child process.
#[derive(Debug)]
pub struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Node {
    /// Starts `<this exe> nodes serve ...` and waits for its port.
    pub fn spawn(opts: &NodeOpts) -> io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["nodes", "serve"])
            .args(["--node-id", &opts.node_id.to_string()])
            .args(["--publish-queue", &opts.publish_queue.to_string()])
            .args(["--sender-buffer", &opts.sender_buffer.to_string()]);
        if let Some(redis) = &opts.redis {
            cmd.args(["--redis", redis]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other(format!("node: expected PORT, got {line:?}")))?;
        Ok(Self {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn ask(&mut self, command: &str) -> io::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(io::Error::other("node exited"));
        }
        Ok(line.trim().to_string())
    }

    fn ask_number(&mut self, command: &str) -> io::Result<u64> {
        let reply = self.ask(command)?;
        reply
            .parse()
            .map_err(|_| io::Error::other(format!("{command}: unexpected reply {reply:?}")))
    }

    /// Joins every client connected so far to the room; returns how many.
    pub fn join(&mut self) -> io::Result<u64> {
        self.ask_number("join")
    }

    /// Waits until `command`'s answer reaches `target`.
    pub fn wait_for(&mut self, command: &str, target: u64, timeout: Duration) -> io::Result<()> {
        let start = Instant::now();
        loop {
            let now = self.ask_number(command)?;
            if now >= target {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node {command}: {now} of {target} after {timeout:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The backplane's counters (`None` without a backplane).
    pub fn relay(&mut self) -> io::Result<Option<Relay>> {
        let line = self.ask("relay")?;
        if line == "none" {
            return Ok(None);
        }
        Relay::parse(&line)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("relay: unexpected reply {line:?}")))
    }

    /// The backplane's counters once nothing is queued or in flight (the
    /// confirmation of a publication may come after the other node's
    /// members had it), or as they are after `timeout`.
    pub fn settled_relay(&mut self, timeout: Duration) -> io::Result<Option<Relay>> {
        let start = Instant::now();
        loop {
            let relay = self.relay()?;
            if relay.is_none_or(|r| r.settled()) || start.elapsed() > timeout {
                return Ok(relay);
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_line_reads_back_as_written() {
        let relay = Relay {
            offered: 1,
            queued: 2,
            in_flight: 3,
            published: 4,
            publish_failed: 5,
            publish_dropped: 6,
            queue_peak: 7,
            received: 8,
            rejected: 9,
            disconnects: 10,
        };
        assert_eq!(Relay::parse(&relay.to_line()), Some(relay));
        assert_eq!(Relay::parse("1 2 3"), None, "too few");
        assert_eq!(Relay::parse("1 2 3 4 5 6 7 8 9 x"), None);
    }
}
