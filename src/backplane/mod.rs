//! Rooms across processes: a backplane that carries room messages between
//! nodes through Redis pub/sub (feature `redis`).
//!
//! Several processes (*nodes*), each with its own multiplexer and its own
//! clients, sit behind a load balancer; the members of a room are spread
//! over all of them. With a [`Backplane`] on each node, a message that any
//! node sends to a room reaches the room's members on every node, once.
//!
//! # Design
//!
//! The multiplexer stays as it is. The backplane sits on the application's
//! outgoing side: the application's stream of [`OutgoingPacket`]s goes
//! through it, and the multiplexer polls what comes out.
//!
//! ```text
//!  application ──packets──▶ BackplaneOutgoing ──packets──▶ Run ──▶ local members
//!                              │           ▲
//!        room messages, queue  │           │  messages of other nodes, queue
//!        (bounded; full: drop) ▼           │  (bounded; full: stop reading)
//!                             BackplaneRun (spawned by the application)
//!                              │ publisher            ▲ subscriber
//!                              ▼ PUBLISH              │ message
//!                                     Redis pub/sub
//! ```
//!
//! - Every [`Message`](OutgoingPacket::Message) to a room goes to the local
//!   multiplexer unchanged: local members are served by their own node,
//!   never through Redis. It is also offered to a bounded queue, from
//!   which the backplane's future publishes it once, on the room's
//!   channel: the payload crosses Redis once per message (and once more to
//!   each node subscribed to the room), never once per member.
//! - What is published is an [envelope](#the-envelope): the layout's
//!   version, the id of the node it comes from, the room, the id left out
//!   (`except`), the delivery class, and the values, encoded by the
//!   application's [`RoomCodec`].
//! - A node that receives an envelope from another node hands the
//!   multiplexer `OutgoingMessage::to_room(room, values)` with the same
//!   delivery class, which reaches the node's own members of the room. It
//!   is never published again. A node ignores its own envelopes, which
//!   Redis sends back to it when it has members in the room: its members
//!   had the message already. The `except` id is only meaningful on the
//!   node that sent the message (another node's stream with that id is
//!   another connection), so only that node applies it.
//! - Membership stays local, in each multiplexer's [`Rooms`]. A node
//!   subscribes to a room's channel when the room gains its first local
//!   member, and unsubscribes when it loses its last: one subscription per
//!   room with local members.
//! - The multiplexer spawns nothing, and neither does the backplane:
//!   [`Backplane::run`] gives the future that talks to Redis, for the
//!   application to spawn next to [`Run`](crate::Run) on its executor.
//!
//! The multiplexer is built from the outgoing stream, and the rooms are
//! known only once it is built, so making a node takes two steps:
//! [`Backplane::new`] makes the stream to build the multiplexer with, then
//! [`Backplane::run`] takes the multiplexer's [`Rooms`].
//!
//! # Example
//!
//! One node of a chat in which every line goes to everyone, on every node.
//! It needs a Redis server at `127.0.0.1:6379`.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use futures::channel::mpsc;
//! use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::{HalvesStream, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<std::io::Result<Bytes>>>(32);
//!     let (app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
//!
//!     // The application's packets go through the backplane to the multiplexer.
//!     let config = BackplaneConfig::new(
//!         Connector::smol("127.0.0.1:6379"),
//!         clock(Duration::from_millis(100)),
//!     );
//!     let (backplane, outgoing) = Backplane::new(config, app_outgoing, RawCodec);
//!     let multiplexer = Multiplexer::new(128, outgoing, vec![lobby]);
//!     let stats = backplane.stats();
//!     smol::spawn(backplane.run(multiplexer.rooms())).detach();
//!
//!     let listener = async_net::TcpListener::bind("0.0.0.0:7000").await?;
//!     let halves = HalvesStream::new(incoming(listener), 2);
//!     let (_control, control_rx) = mpsc::unbounded();
//!     let run = smol::spawn(multiplexer.run(halves, control_rx));
//!
//!     while let Some(packet) = lobby_rx.next().await {
//!         match packet {
//!             IncomingPacket::StreamConnected(id) => {
//!                 app.unbounded_send(OutgoingPacket::Join(vec![id], "lobby".into()))?;
//!             }
//!             IncomingPacket::Message(message) => {
//!                 let Ok(line) = message.value else { continue };
//!                 let to_all = OutgoingMessage::to_room("lobby", [line]).except(message.stream_id);
//!                 app.unbounded_send(OutgoingPacket::Message(to_all))?;
//!             }
//!             _ => {}
//!         }
//!     }
//!     eprintln!("published {}", stats.snapshot().published);
//!     run.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Guarantees
//!
//! 1. **Local delivery never waits for Redis.** The stream the multiplexer
//!    polls does, per room message, a clone of its values and one push
//!    under a lock; if the publication queue is full, the publication is
//!    dropped and counted, and the local members get the message all the
//!    same. Redis slow, away or restarting never stalls [`Run`](crate::Run).
//! 2. **Once per node.** A message reaches each node's members once: its
//!    own node's directly, every other node's through that node's one
//!    subscription to the room. It is never published twice: a
//!    publication whose connection is lost before Redis confirmed it is
//!    counted as failed, not sent again.
//! 3. **Order.** Messages that one node sends to a room reach another
//!    node's members in the order they were sent, as long as neither
//!    node's connection to Redis is lost in between.
//! 4. **Bounded memory.** The publication queue holds at most
//!    [`publish_queue`](BackplaneConfig::publish_queue) messages, the
//!    arrival queue at most [`arrival_queue`](BackplaneConfig::arrival_queue)
//!    (when it is full the backplane stops reading from Redis), a
//!    connection's write buffer at most a bounded window of publications,
//!    and a reply being read is given up past
//!    [`max_message_size`](BackplaneConfig::max_message_size) bytes.
//!    Nothing grows with the time Redis is away.
//! 5. **Losses are counted.** Every room message the application sends is,
//!    at any moment, queued, in flight, published, failed or dropped
//!    ([`BackplaneStats`]). Every message from Redis that is not passed on
//!    is counted as rejected.
//! 6. **Input from Redis is untrusted.** A corrupt envelope, one of another
//!    version, one whose room is not its channel's, or a value the codec
//!    cannot decode is rejected and counted ([`Rejection`]); a connection
//!    that sends what Redis never sends, or a reply over the maximum size,
//!    is dropped and made again. Nothing from Redis makes the backplane
//!    panic.
//!
//! # At most once
//!
//! Redis pub/sub stores nothing: it passes a message to the connections
//! subscribed to its channel at that moment. So a node misses what is
//! published to a room while it is not subscribed: just after the room's
//! first local member joined (until Redis confirms the subscription, which
//! [`BackplaneEvent::Subscribed`] reports), and while its subscriber
//! connection is down. Publications queued while Redis was away are
//! published once it is back; nodes that have not subscribed again by then
//! miss them. Applications that need every message on every node need a
//! log (Redis streams, a database), not pub/sub.
//!
//! # Faults
//!
//! | what happens                     | what the backplane does                                               | counted in |
//! |----------------------------------|-----------------------------------------------------------------------|------------|
//! | Redis refuses, or does not answer within [`reply_timeout`](BackplaneConfig::reply_timeout) | tries again after a wait that doubles, from and to the [backoff](BackplaneConfig::reconnect_backoff) bounds | `connect_failures` |
//! | a connection is lost (Redis stopped, restarted, dropped a slow subscriber) | makes it again at once, then with backoff; the subscriber subscribes to every room with local members again | `disconnects`, then `reconnects` |
//! | a connection goes silent         | a `PING` after [`ping_interval`](BackplaneConfig::ping_interval), dropped if no answer within the reply timeout | `disconnects` |
//! | the publication queue is full    | drops the new publication; local members still get the message        | `publish_dropped` |
//! | a publication's connection is lost before its reply | not sent again                                         | `publish_failed` |
//! | the multiplexer is behind        | stops reading from Redis until the arrival queue has room             | nothing lost here (Redis may drop the subscriber if this lasts: `disconnects`) |
//! | a bad message on a room's channel | drops it, reports [`BackplaneEvent::Rejected`]                        | `rejected` |
//!
//! Time is measured in ticks of the [`Clock`] given to the
//! config, never with a timer of the backplane's own.
//!
//! # The envelope
//!
//! One message on a room's channel (`prefix` + room name), big-endian
//! numbers:
//!
//! ```text
//! +-------+---------+--------+----------+------+--------+-------------+----------+-------------+-------------------+
//! | "smx" | version | origin | room len | room | except | [except id] | delivery | [delivery   | value count,      |
//! |       | = 1     | node id| u16      | UTF-8| 0 or 1 | u64         | 0, 1, 2  |  key u64]   | then per value:   |
//! | 3 B   | 1 B     | u64    |          |      | 1 B    |             | 1 B      |             | u32 len + bytes   |
//! +-------+---------+--------+----------+------+--------+-------------+----------+-------------+-------------------+
//! ```
//!
//! The delivery byte is 0 for [`Delivery::Reliable`](crate::Delivery::Reliable),
//! 1 for [`Volatile`](crate::Delivery::Volatile), 2 for
//! [`Latest`](crate::Delivery::Latest) (followed by its key). For example,
//! the value `hi`, volatile, to room `r`, from node 42, with no one left
//! out:
//!
//! ```text
//! 73 6d 78 01 | 00 00 00 00 00 00 00 2a | 00 01 72 | 00 | 01 | 00 00 00 01 | 00 00 00 02 68 69
//!  s  m  x v1 | origin 42               | len 1 r  | -  | vol| 1 value     | len 2  h  i
//! ```
//!
//! A node rejects an envelope of any other version: nodes of two versions
//! side by side (during a rolling upgrade) do not exchange room messages,
//! and count what they reject.
//!
//! # Scaling
//!
//! Each node holds two connections to Redis, and one subscription per room
//! with local members. Redis keeps subscriptions in a hash table, so a
//! node may follow many thousands of rooms, and subscribing or leaving one
//! costs one command; after a reconnect a node subscribes again in
//! commands of 256 rooms. The work of Redis per message is one `PUBLISH`
//! plus one send to each node subscribed to the room: it grows with the
//! message rate and with how many nodes share each room, not with the
//! members. One Redis server does all of it on one core, which bounds the
//! total message rate of all nodes together.
//!
//! A sharded scheme would go past that bound: in Redis Cluster,
//! `SSUBSCRIBE`/`SPUBLISH` hash each channel to one shard, so each room's
//! traffic stays on its shard and the shards share the load. The
//! backplane would then hold a subscriber connection per shard, route
//! each subscription and publication by the hash slot of its channel, and
//! follow the cluster when slots move (`MOVED` replies, a shard failing
//! over); its ordering and once-per-node guarantees would hold per room.
//! Another scheme, for very many short-lived rooms, subscribes to a fixed
//! number of bucket channels (a hash of the room) instead of one per room:
//! no subscription churn, at the price of receiving, and dropping, the
//! messages of rooms in the same bucket that have no local members.
//!
//! # Dependencies
//!
//! The [`redis`](https://docs.rs/redis) crate, without its default
//! features and without its `aio` feature, for the protocol only: commands
//! are packed by its `Cmd`, replies parsed by its `Parser`. The backplane
//! does the I/O itself, over whatever byte stream the [`Connector`] gives
//! (the runtime's own TCP socket: smol, async-std or tokio). The crate's
//! own async pub/sub was not used: its connection reads the socket from a
//! task it spawns (on tokio or smol, which it must then pull in) into an
//! unbounded queue, which would break guarantee 4 whenever the multiplexer
//! is behind, and it speaks tokio's I/O traits only. Without `aio` the
//! crate pulls in `combine` (its parser, with `memchr`), `url` (with
//! `idna` and its Unicode tables, about thirty small crates), `socket2`,
//! `arcstr`, `itoa`, `ryu`, `percent-encoding` and `xxhash-rust`; no
//! runtime, no tokio.
//!
//! # Performance notes
//!
//! On the multiplexer's task, per room message from the application: one
//! clone of the message's values (a reference count for [`bytes::Bytes`])
//! and one push under a lock; per message from another node: one pop under
//! a lock. On the backplane's task, per publication: the envelope encoded
//! (each value written once by the codec) and packed into a `PUBLISH`;
//! per message received: one parse, the envelope's fields checked, each
//! value decoded (for [`RawCodec`] with `Bytes`, a slice of the payload:
//! no copy). A poll of the backplane's future does a bounded amount of
//! work (at most 256 values read per connection and 256 publications
//! taken), then wakes itself to let other tasks run.

mod codec;
mod config;
mod connection;
mod envelope;
mod events;
mod link;
mod outgoing;
mod publisher;
mod shared;
mod stats;
mod subscriber;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

pub use codec::{RawCodec, RoomCodec};
pub use config::{BackplaneConfig, Connector};
pub use envelope::Rejection;
pub use events::{BackplaneEvent, LinkError, LinkKind};
pub use outgoing::BackplaneOutgoing;
pub use stats::{BackplaneStats, BackplaneStatsSnapshot};

use connection::Liveness;
use events::Events;
use link::{Env, Link, Timing};
use publisher::Publisher;
use shared::Shared;
use subscriber::Subscriber;

use crate::{Clock, OutgoingPacket, Rooms};

/// Ticks counted per poll at most: a clock whose stream is always ready
/// (a zero period) cannot keep the backplane's future in one poll.
const TICKS_PER_POLL: usize = 64;

/// One node's link to the others through Redis, before it runs.
///
/// [`Backplane::new`] makes it, with the stream to give the multiplexer;
/// [`Backplane::run`] then takes the multiplexer's [`Rooms`] and gives the
/// future to spawn. See the [module docs](self) for the whole design.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use futures::channel::mpsc;
/// use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
/// use stream_multiplexer::runtime::smol::clock;
/// use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
///
/// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<std::io::Result<Bytes>>>(32);
/// let (_app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
///
/// let config = BackplaneConfig::new(Connector::smol("127.0.0.1:6379"), clock(Duration::from_millis(100)))
///     .node_id(1);
/// let (backplane, outgoing) = Backplane::new(config, app_outgoing, RawCodec);
/// let multiplexer = Multiplexer::new(128, outgoing, vec![lobby]);
/// assert_eq!(backplane.node_id(), 1);
///
/// let stats = backplane.stats();
/// let redis_side = backplane.run(multiplexer.rooms());
/// // Spawn `redis_side` and `multiplexer.run(..)` on the executor.
/// # drop((redis_side, multiplexer));
/// assert_eq!(stats.snapshot().published, 0);
/// ```
pub struct Backplane<V, K> {
    config: BackplaneConfig,
    codec: K,
    node_id: u64,
    shared: Arc<Shared<V>>,
}

impl<V, K> Backplane<V, K> {
    /// A backplane configured by `config`, whose values `codec` encodes,
    /// and the stream to build the multiplexer with: `application`'s
    /// packets, each unchanged and in order, with the room messages of
    /// other nodes woven in (see [`BackplaneOutgoing`]).
    ///
    /// # Examples
    ///
    /// See [`Backplane`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
    /// use stream_multiplexer::{Clock, OutgoingPacket};
    ///
    /// let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
    /// let (_app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<String>>();
    /// let (backplane, _outgoing) = Backplane::new(BackplaneConfig::new(connector, clock), app_outgoing, RawCodec);
    /// assert_eq!(backplane.stats().snapshot().offered, 0);
    /// ```
    pub fn new<S>(
        config: BackplaneConfig,
        application: S,
        codec: K,
    ) -> (Self, BackplaneOutgoing<S, V>)
    where
        S: Stream<Item = OutgoingPacket<V>> + Unpin,
    {
        let shared = Arc::new(Shared::new(config.publish_queue, config.arrival_queue));
        let node_id = config.node_id.unwrap_or_else(random_node_id);
        let outgoing = BackplaneOutgoing::new(application, Arc::clone(&shared));
        let backplane = Self {
            config,
            codec,
            node_id,
            shared,
        };
        (backplane, outgoing)
    }

    /// A handle on the backplane's counters; see [`BackplaneStats`].
    ///
    /// # Examples
    ///
    /// See [`Backplane`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use futures::channel::mpsc;
    /// # use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
    /// # use stream_multiplexer::{Clock, OutgoingPacket};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let (_app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<String>>();
    /// # let (backplane, _outgoing) = Backplane::new(BackplaneConfig::new(connector, clock), app_outgoing, RawCodec);
    /// let stats = backplane.stats();
    /// assert_eq!(stats.snapshot().subscriptions, 0);
    /// ```
    pub fn stats(&self) -> BackplaneStats {
        self.shared.stats.clone()
    }

    /// This node's id, as its envelopes carry it (see
    /// [`BackplaneConfig::node_id`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use futures::channel::mpsc;
    /// # use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
    /// # use stream_multiplexer::{Clock, OutgoingPacket};
    /// # let connector = || Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = || Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let app = || mpsc::unbounded::<OutgoingPacket<String>>().1;
    /// let (one, _) = Backplane::new(BackplaneConfig::new(connector(), clock()), app(), RawCodec);
    /// let (two, _) = Backplane::new(BackplaneConfig::new(connector(), clock()), app(), RawCodec);
    /// assert_ne!(one.node_id(), two.node_id(), "random, unless configured");
    /// ```
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The future that talks to Redis for the multiplexer whose rooms are
    /// `rooms` (from [`Multiplexer::rooms`](crate::Multiplexer::rooms)):
    /// spawn it on the executor, next to the multiplexer's
    /// [`Run`](crate::Run). One backplane per multiplexer.
    ///
    /// # Examples
    ///
    /// See [`BackplaneRun`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use futures::channel::mpsc;
    /// # use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
    /// # use stream_multiplexer::{Clock, IncomingPacket, Multiplexer, OutgoingPacket};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let (_app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<String>>();
    /// # let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<String>>(8);
    /// let (backplane, outgoing) = Backplane::new(BackplaneConfig::new(connector, clock), app_outgoing, RawCodec);
    /// let multiplexer = Multiplexer::new(16, outgoing, vec![lobby]);
    /// let redis_side = backplane.run(multiplexer.rooms());
    /// # drop(redis_side);
    /// ```
    pub fn run(self, rooms: Rooms) -> BackplaneRun<V, K> {
        let BackplaneConfig {
            connector,
            clock,
            channel_prefix,
            max_message_size,
            reply_timeout,
            ping_interval,
            reconnect_min,
            reconnect_max,
            events,
            ..
        } = self.config;
        let timing = Timing {
            liveness: Liveness {
                ping_ticks: clock.ticks_in(ping_interval),
                reply_ticks: clock.ticks_in(reply_timeout),
            },
            reconnect_min: clock.ticks_in(reconnect_min),
            reconnect_max: clock.ticks_in(reconnect_max),
            max_message_size,
        };
        BackplaneRun {
            subscriber: Subscriber::new(
                Link::new(LinkKind::Subscriber, &timing),
                channel_prefix.clone(),
                self.node_id,
            ),
            publisher: Publisher::new(
                Link::new(LinkKind::Publisher, &timing),
                channel_prefix,
                self.node_id,
            ),
            shared: self.shared,
            rooms,
            codec: self.codec,
            clock,
            clock_stopped: false,
            now: 0,
            timing,
            connector,
            events,
        }
    }
}

impl<V, K> fmt::Debug for Backplane<V, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backplane")
            .field("config", &self.config)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The future that talks to Redis for one node: it publishes the room
/// messages of the node's application, subscribes to the rooms with local
/// members, and hands the multiplexer the messages of other nodes.
///
/// Made by [`Backplane::run`]; spawn it on any executor. It reconnects by
/// itself for as long as it runs, and never ends with an error: whatever
/// fails is counted in [`BackplaneStats`] and reported to
/// [`BackplaneConfig::on_event`]. It resolves once the multiplexer's
/// outgoing stream ([`BackplaneOutgoing`]) has ended or been dropped, and
/// the publications queued by then are published; if the publisher
/// connection is not up at that point, they are counted as dropped and it
/// resolves at once.
///
/// # Examples
///
/// With no Redis to reach: the local members get their room messages all
/// the same, and what could not be published is counted.
///
/// ```
/// use std::io;
/// use std::time::Duration;
/// use futures::channel::mpsc;
/// use futures::{StreamExt, executor::block_on, stream};
/// use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
/// use stream_multiplexer::{Clock, ControlMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket};
///
/// # block_on(async {
/// let refused = Connector::new(|| async {
///     Err::<futures::io::Cursor<Vec<u8>>, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
/// });
/// let (_ticks, tick_rx) = mpsc::unbounded::<()>();
/// let config = BackplaneConfig::new(refused, Clock::new(Duration::from_millis(100), tick_rx));
///
/// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<String>>(8);
/// let (app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<String>>();
/// let (backplane, outgoing) = Backplane::new(config, app_outgoing, RawCodec);
/// let multiplexer = Multiplexer::new(16, outgoing, vec![lobby]);
/// let stats = backplane.stats();
/// let redis_side = backplane.run(multiplexer.rooms());
///
/// let (write, mut client) = mpsc::channel::<String>(8);
/// let halves = stream::iter([Ok((write, stream::pending::<String>()))]);
/// let (control, control_rx) = mpsc::unbounded();
/// let application = async move {
///     let id = lobby_rx.next().await.unwrap().id();
///     app.unbounded_send(OutgoingPacket::Join(vec![id], "general".into())).unwrap();
///     let hello = OutgoingMessage::to_room("general", ["hello".to_string()]);
///     app.unbounded_send(OutgoingPacket::Message(hello)).unwrap();
///     assert_eq!(client.next().await.as_deref(), Some("hello"));
///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
/// };
/// let (result, (), ()) = futures::join!(multiplexer.run(halves, control_rx), redis_side, application);
/// assert!(result.is_ok());
///
/// let stats = stats.snapshot();
/// assert_eq!((stats.offered, stats.publish_dropped), (1, 1));
/// assert!(stats.connect_failures >= 1);
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct BackplaneRun<V, K> {
    shared: Arc<Shared<V>>,
    rooms: Rooms,
    codec: K,
    clock: Clock,
    /// The clock's stream ended: time stands still.
    clock_stopped: bool,
    /// Ticks counted so far.
    now: u64,
    timing: Timing,
    connector: Connector,
    events: Events,
    subscriber: Subscriber<V>,
    publisher: Publisher,
}

// Nothing in it is pinned: the connections are boxed, and values are only
// moved in and out of queues.
impl<V, K> Unpin for BackplaneRun<V, K> {}

impl<V, K> BackplaneRun<V, K> {
    /// Counts the ticks that came. Returns whether its budget ran out
    /// with ticks left.
    fn count_ticks(&mut self, cx: &mut Context<'_>) -> bool {
        if self.clock_stopped {
            return false;
        }
        for _ in 0..TICKS_PER_POLL {
            match self.clock.ticks().poll_next(cx) {
                Poll::Ready(Some(())) => self.now += 1,
                Poll::Ready(None) => {
                    self.clock_stopped = true;
                    return false;
                }
                Poll::Pending => return false,
            }
        }
        true
    }

    /// Takes the rooms that gained their first local member or lost their
    /// last, for the subscriber to follow.
    fn follow_rooms(&mut self, cx: &mut Context<'_>) {
        // Until `Pending`: only then is this task woken by the next change.
        while let Poll::Ready(changes) = self.rooms.poll_changes(cx) {
            self.subscriber.rooms_changed(changes, self.now);
        }
    }

    /// Whether the backplane's work is over: the outgoing stream is gone,
    /// and what it queued is published (or cannot be: it is then counted).
    fn is_finished(&mut self) -> bool {
        if !self.shared.is_closed() {
            return false;
        }
        if !self.publisher.is_up() {
            self.shared.drop_publications();
            return true;
        }
        self.shared.no_publications() && self.publisher.is_idle()
    }
}

impl<V, K> Future for BackplaneRun<V, K>
where
    V: Clone,
    K: RoomCodec<V>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Registered first, so that a publication queued (or room made for
        // an arrival) while this poll runs still wakes the next one.
        this.shared.redis_side.register(cx.waker());
        let more_ticks = this.count_ticks(cx);
        this.follow_rooms(cx);
        let env = Env {
            now: this.now,
            timing: &this.timing,
            connector: &this.connector,
            stats: &this.shared.stats,
            events: &this.events,
        };
        let more_arrivals = this.subscriber.poll(cx, env, &this.shared, &this.codec);
        let more_publications = this.publisher.poll(cx, env, &this.shared, &this.codec);
        if this.is_finished() {
            return Poll::Ready(());
        }
        if more_ticks || more_arrivals || more_publications {
            // A budget ran out: let other tasks run, then go on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<V, K> fmt::Debug for BackplaneRun<V, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackplaneRun")
            .field("now", &self.now)
            .field("subscriber", &self.subscriber)
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

/// A node id that no other node is likely to have: the standard library's
/// per-process random hash keys, over the time and the process id.
fn random_node_id() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(since_epoch);
    hasher.write_u32(std::process::id());
    hasher.finish()
}
