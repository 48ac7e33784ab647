//! The soak's server: one `Multiplexer` with a lobby (channel 0) and a room
//! (channel 1), on a smol executor on its own thread, serving the protocol
//! of [`wire`](super::wire), on sockets with a fixed send buffer (see
//! `SEND_BUFFER`). Its consumers also check the crate's
//! announcement guarantee as they go: every message and departure must come
//! from a stream that is in the channel, every arrival from one that is not.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use stream_multiplexer::{
    ControlMessage, HalvesStream, IncomingPacket, MultiplexerBuilder, MultiplexerError,
    OutgoingMessage, OutgoingPacket, Stats, StreamId, runtime,
};

use super::wire::{ALL, BYE, HEADER, JOIN, MAX_FRAME};

/// Capacity of each channel's queue and of the outgoing queue.
const QUEUE: usize = 1024;
/// Each stream's outgoing backlog, in values: a reading client never comes
/// near it, a client that stops reading overflows it in a few hundred frames.
const SENDER_BUFFER: usize = 256;
/// Streams beyond the client count that may be open at once: a client's
/// old connection can still be open (its close not yet read) when it
/// connects again.
const STREAMS_HEADROOM: usize = 64;
/// Listen backlog: every client may connect at the same moment.
const LISTEN_BACKLOG: u32 = 4096;
/// Kernel send buffer of each accepted socket. Left alone, Linux grows it up
/// to `tcp_wmem`'s maximum (4 MB by default) even towards a client that
/// does not read, and a slow client parks megabytes in the kernel before
/// the multiplexer's backlog sees anything. Fixed at this size (as a server
/// of many clients would want, to bound the kernel's memory per client), a
/// client that stops reading overflows its backlog after a few hundred KB
/// and is disconnected with `BacklogFull`. Plenty for a reading client.
const SEND_BUFFER: usize = 64 * 1024;
/// Announcement anomalies printed; the rest are only counted.
const ANOMALIES_PRINTED: u64 = 20;

/// The channels, in the order the multiplexer gets their sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    /// Channel 0, where new streams arrive.
    Lobby = 0,
    /// Channel 1, which broadcasts.
    Room = 1,
}

/// What the server's consumers saw, beyond the multiplexer's own [`Stats`].
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Streams in the lobby now, as its consumer counts them.
    pub lobby: AtomicU64,
    /// Streams in the room now, as its consumer counts them.
    pub room: AtomicU64,
    /// Packets that broke the announcement guarantee (a message or a
    /// departure from a stream not in the channel, an arrival of one
    /// already there). Must stay 0.
    pub anomalies: AtomicU64,
    /// Read errors of kind `InvalidData`: frames declaring more than the
    /// maximum length, which only the hostile clients send.
    pub oversized: AtomicU64,
    /// Read errors of kind `UnexpectedEof`: connections that ended inside
    /// a frame.
    pub truncated: AtomicU64,
    /// Other read errors (connection resets, mostly: a client that closes
    /// with unread data sends a reset instead of a FIN).
    pub other_read_errors: AtomicU64,
    /// Room broadcasts sent.
    pub broadcasts: AtomicU64,
}

/// The running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The multiplexer's counters.
    pub stats: Stats,
    /// The consumers' counters.
    pub counters: Arc<ServerCounters>,
    control: mpsc::UnboundedSender<ControlMessage>,
    thread: JoinHandle<Result<(), MultiplexerError>>,
}

impl Server {
    /// Binds 127.0.0.1 on a free port and starts serving up to `clients`
    /// clients (plus some headroom) on a thread of its own.
    pub fn start(clients: usize) -> io::Result<Self> {
        let listener = runtime::smol::bind(SocketAddr::from(([127, 0, 0, 1], 0)), LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let incoming = runtime::smol::incoming(listener).map(|accepted| {
            accepted.inspect(|stream| {
                // Best effort: the default only makes slow clients costlier.
                let _ = socket2::SockRef::from(stream).set_send_buffer_size(SEND_BUFFER);
            })
        });
        let halves = HalvesStream::builder(HEADER)
            .max_frame_length(MAX_FRAME)
            .build(incoming);
        let (lobby_tx, lobby_rx) = mpsc::channel(QUEUE);
        let (room_tx, room_rx) = mpsc::channel(QUEUE);
        let (outgoing_tx, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(QUEUE);
        let (control, control_rx) = mpsc::unbounded();
        let multiplexer = MultiplexerBuilder::new(SENDER_BUFFER)
            .max_streams(clients + STREAMS_HEADROOM)
            .build(outgoing_rx, vec![lobby_tx, room_tx]);
        let stats = multiplexer.stats();
        let counters = Arc::new(ServerCounters::default());

        let thread = {
            let counters = Arc::clone(&counters);
            thread::Builder::new()
                .name("soak-server".into())
                .spawn(move || {
                    let ex = smol::LocalExecutor::new();
                    let lobby = consume(
                        Channel::Lobby,
                        lobby_rx,
                        outgoing_tx.clone(),
                        counters.clone(),
                    );
                    let room = consume(Channel::Room, room_rx, outgoing_tx, counters);
                    ex.spawn(lobby).detach();
                    ex.spawn(room).detach();
                    smol::block_on(ex.run(multiplexer.run(halves, control_rx)))
                })?
        };
        Ok(Self {
            addr,
            stats,
            counters,
            control,
            thread,
        })
    }

    /// Shuts the multiplexer down gracefully and waits up to `timeout` for
    /// its `Run` to end. `Err` if it did not end in time.
    pub fn stop(self, timeout: Duration) -> Result<Result<(), MultiplexerError>, String> {
        let _ = self.control.unbounded_send(ControlMessage::Shutdown);
        let until = Instant::now() + timeout;
        while !self.thread.is_finished() {
            if Instant::now() > until {
                return Err(format!("Run did not end within {timeout:?} of Shutdown"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.thread
            .join()
            .map_err(|_| "the server thread panicked".to_string())
    }
}

/// One channel's consumer: answers what its streams send (see
/// [`wire`](super::wire)) and keeps the set of streams in the channel, which
/// the room needs for its broadcasts and both use to check the
/// announcements. The set is bounded by the streams open.
async fn consume(
    channel: Channel,
    mut packets: mpsc::Receiver<IncomingPacket<io::Result<Bytes>>>,
    mut outgoing: mpsc::Sender<OutgoingPacket<Bytes>>,
    counters: Arc<ServerCounters>,
) {
    let counters = &*counters;
    let gauge = match channel {
        Channel::Lobby => &counters.lobby,
        Channel::Room => &counters.room,
    };
    let mut members: HashSet<StreamId> = HashSet::new();
    while let Some(packet) = packets.next().await {
        let replies = match packet {
            IncomingPacket::StreamConnected(id) => {
                if !members.insert(id) {
                    anomaly(counters, channel, id, "connected twice");
                }
                gauge.store(members.len() as u64, Relaxed);
                continue;
            }
            IncomingPacket::StreamDisconnected(id, _) => {
                if !members.remove(&id) {
                    anomaly(counters, channel, id, "disconnected but not connected");
                }
                gauge.store(members.len() as u64, Relaxed);
                continue;
            }
            IncomingPacket::Message(message) => {
                let id = message.stream_id;
                if !members.contains(&id) {
                    anomaly(counters, channel, id, "message from a stream not connected");
                }
                match message.value {
                    Ok(value) => answer(channel, id, value, &members, counters),
                    Err(error) => {
                        let counter = match error.kind() {
                            io::ErrorKind::InvalidData => &counters.oversized,
                            io::ErrorKind::UnexpectedEof => &counters.truncated,
                            _ => &counters.other_read_errors,
                        };
                        counter.fetch_add(1, Relaxed);
                        continue;
                    }
                }
            }
        };
        for reply in replies {
            if outgoing.send(reply).await.is_err() {
                // The multiplexer has ended: nothing more to answer.
                return;
            }
        }
    }
}

/// The packets that answer `value`, sent by stream `id` in `channel`.
fn answer(
    channel: Channel,
    id: StreamId,
    value: Bytes,
    members: &HashSet<StreamId>,
    counters: &ServerCounters,
) -> Vec<OutgoingPacket<Bytes>> {
    let to_sender = |value| OutgoingPacket::Message(OutgoingMessage::new([id], [value]));
    if value == BYE {
        // The crate guarantees the message is delivered before the close.
        vec![to_sender(value), OutgoingPacket::Shutdown(vec![id])]
    } else if channel == Channel::Lobby && value.starts_with(JOIN) {
        // Echo first: the client takes the echo as "I am in the room now",
        // and no broadcast can reach it before the echo.
        vec![
            to_sender(value),
            OutgoingPacket::ChangeChannel(vec![id], Channel::Room as usize),
        ]
    } else if channel == Channel::Room && value.starts_with(ALL) {
        counters.broadcasts.fetch_add(1, Relaxed);
        let everyone = members.iter().copied();
        vec![OutgoingPacket::Message(OutgoingMessage::new(
            everyone,
            [value],
        ))]
    } else {
        vec![to_sender(value)]
    }
}

/// Counts (and prints the first few of) the packets that break the
/// announcement guarantee.
fn anomaly(counters: &ServerCounters, channel: Channel, id: StreamId, what: &str) {
    let n = counters.anomalies.fetch_add(1, Relaxed) + 1;
    if n <= ANOMALIES_PRINTED {
        eprintln!("soak server: {channel:?}: stream {id}: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_protocol() {
        let counters = ServerCounters::default();
        let members: HashSet<StreamId> = [1, 2, 3].into();
        let answer = |channel, value: &'static [u8]| {
            answer(channel, 2, Bytes::from_static(value), &members, &counters)
        };
        let ids = |packet: &OutgoingPacket<Bytes>| packet.stream_ids().copied().collect::<Vec<_>>();

        let bye = answer(Channel::Room, BYE);
        assert!(matches!(
            bye[..],
            [OutgoingPacket::Message(_), OutgoingPacket::Shutdown(_)]
        ));
        assert_eq!(ids(&bye[1]), [2]);
        let join = answer(Channel::Lobby, b"join:0:1");
        assert!(matches!(join[1], OutgoingPacket::ChangeChannel(_, 1)));
        let all = answer(Channel::Room, b"all:0:1:");
        assert_eq!(ids(&all[0]).len(), 3, "a broadcast goes to every member");
        let echo = answer(Channel::Lobby, b"all:0:1:");
        assert_eq!(ids(&echo[0]), [2], "the lobby only echoes");
        assert_eq!(counters.broadcasts.load(Relaxed), 1);
    }
}
