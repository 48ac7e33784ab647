//! [`Multiplexer`], the options it takes, and how it starts running.

use std::io;
use std::time::Duration;

use futures::{Sink, Stream};

use crate::config::{BacklogPolicy, Config};
use crate::run::{Run, Setup};
use crate::{
    ChannelId, Clock, ControlMessage, IdGen, IncomingPacket, IncrementIdGen, OutgoingPacket, Rooms,
    Stats,
};

/// Manages incoming streams of data and the enqueueing of outgoing data.
///
/// A multiplexer is built from the application's side of the conversation:
/// the stream of [`OutgoingPacket`]s it sends, and one sink per channel into
/// which the packets read from that channel's connections go. Calling
/// [`run`](Multiplexer::run) with a stream of connections (as `(write sink,
/// read stream)` halves) and a control stream gives the [`Run`] future that
/// does the work.
///
/// # Examples
///
/// ```
/// use futures::channel::mpsc;
/// use futures::{SinkExt, StreamExt, executor::block_on, stream};
/// use stream_multiplexer::{ControlMessage, IncomingPacket, Multiplexer, OutgoingPacket};
///
/// # block_on(async {
/// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<&str>>(8);
/// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<&str>>(8);
/// let multiplexer = Multiplexer::new(16, outgoing, vec![lobby]);
///
/// // One in-memory "connection": it sends "hi" and then hangs up.
/// let (write, _client_reads) = mpsc::channel::<&str>(8);
/// let read = stream::iter(["hi"]);
/// let halves = stream::iter([Ok((write, read))]);
///
/// let (mut control, control_rx) = mpsc::unbounded();
/// let run = multiplexer.run(halves, control_rx);
/// let consumer = async {
///     let id = lobby_rx.next().await.unwrap().id();
///     let message = lobby_rx.next().await.unwrap();
///     assert_eq!(message.value(), Some(&"hi"));
///     assert!(matches!(
///         lobby_rx.next().await,
///         Some(IncomingPacket::StreamDisconnected(i, _)) if i == id
///     ));
///     control.send(ControlMessage::Shutdown).await.unwrap();
/// };
/// let (result, ()) = futures::join!(run, consumer);
/// assert!(result.is_ok());
/// # });
/// ```
#[derive(Debug)]
pub struct Multiplexer<Out, Ch, Id = IncrementIdGen> {
    setup: Setup<Out, Ch, Id>,
}

/// Every option of a [`Multiplexer`]; [`Multiplexer::new`] takes the
/// defaults.
///
/// # Examples
///
/// ```
/// use futures::channel::mpsc;
/// use stream_multiplexer::{IncomingPacket, MultiplexerBuilder, OutgoingPacket};
///
/// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
/// let (players, _players_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
/// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
///
/// let multiplexer = MultiplexerBuilder::new(128)
///     .default_channel(0)
///     .max_streams(10_000)
///     .build(outgoing, vec![lobby, players]);
/// assert_eq!(multiplexer.stats().snapshot().streams_open, 0);
/// ```
#[derive(Debug)]
pub struct MultiplexerBuilder<Id = IncrementIdGen> {
    config: Config,
    clock: Option<Clock>,
    id_gen: Id,
}

impl MultiplexerBuilder {
    /// Starts with the defaults: new streams join channel 0, no limit on
    /// streams, [`BacklogPolicy::Disconnect`], ids from [`IncrementIdGen`],
    /// and no clock (so no time limits).
    ///
    /// `sender_buffer_size` is each stream's outgoing backlog: how many
    /// values sent to it may wait for its socket (at least 1; 0 is taken as
    /// 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// // The same as `Multiplexer::new(64, outgoing, vec![lobby])`.
    /// let multiplexer = MultiplexerBuilder::new(64).build(outgoing, vec![lobby]);
    /// assert_eq!(multiplexer.stats().snapshot().accepted, 0);
    /// ```
    pub fn new(sender_buffer_size: usize) -> Self {
        Self {
            config: Config::new(sender_buffer_size),
            clock: None,
            id_gen: IncrementIdGen::default(),
        }
    }
}

impl<Id: IdGen> MultiplexerBuilder<Id> {
    /// The channel new streams join (default 0). A channel that does not
    /// exist makes [`Run`] end with
    /// [`MultiplexerError::NoSuchChannel`](crate::MultiplexerError::NoSuchChannel).
    ///
    /// # Examples
    ///
    /// A connection lands in channel 1, and channel 0 hears nothing of it.
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use futures::{StreamExt, executor::block_on, stream};
    /// use stream_multiplexer::{ControlMessage, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// # block_on(async {
    /// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (players, mut players_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .default_channel(1)
    ///     .build(outgoing, vec![lobby, players]);
    ///
    /// let (write, _client) = mpsc::channel::<u8>(8);
    /// let halves = stream::iter([Ok((write, stream::pending::<u8>()))]);
    /// let (control, control_rx) = mpsc::unbounded();
    /// let consumer = async {
    ///     let first = players_rx.next().await;
    ///     assert!(matches!(first, Some(IncomingPacket::StreamConnected(_))));
    ///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
    /// };
    /// let (result, ()) = futures::join!(multiplexer.run(halves, control_rx), consumer);
    /// assert!(result.is_ok());
    /// assert!(lobby_rx.next().await.is_none(), "the lobby saw nothing");
    /// # });
    /// ```
    pub fn default_channel(mut self, channel: ChannelId) -> Self {
        self.config.default_channel = channel;
        self
    }

    /// The most streams open at once (default: no limit). At the limit,
    /// [`Run`] stops accepting, so new clients wait in the listen backlog,
    /// until a stream leaves. A stream that has left its channel (closed by
    /// [`Shutdown`](OutgoingPacket::Shutdown), or whose client half-closed)
    /// no longer counts, though it keeps flushing what was queued for it
    /// while there is room. When a newcomer would bring the connections
    /// held above the limit, the one that left longest ago is dropped, its
    /// flush abandoned: a client that never reads cannot hold its place,
    /// and no more than `max_streams` connections (file descriptors,
    /// buffers) are ever held.
    ///
    /// # Examples
    ///
    /// With a limit of one, the second connection is not even taken from
    /// the listener while the first is open.
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use futures::{StreamExt, executor::block_on, stream};
    /// use stream_multiplexer::{ControlMessage, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// # block_on(async {
    /// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16).max_streams(1).build(outgoing, vec![lobby]);
    /// let stats = multiplexer.stats();
    ///
    /// let (first, _a) = mpsc::channel::<u8>(8);
    /// let (second, _b) = mpsc::channel::<u8>(8);
    /// let halves = stream::iter([
    ///     Ok((first, stream::pending::<u8>())),
    ///     Ok((second, stream::pending::<u8>())),
    /// ]);
    /// let (control, control_rx) = mpsc::unbounded();
    /// let consumer = async {
    ///     let connected = lobby_rx.next().await;
    ///     assert!(matches!(connected, Some(IncomingPacket::StreamConnected(_))));
    ///     assert_eq!(stats.snapshot().accepted, 1, "the second waits in the listener");
    ///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
    /// };
    /// let (result, ()) = futures::join!(multiplexer.run(halves, control_rx), consumer);
    /// assert!(result.is_ok());
    /// # });
    /// ```
    pub fn max_streams(mut self, max_streams: usize) -> Self {
        self.config.max_streams = max_streams;
        self
    }

    /// What to do when a value is sent to a stream whose backlog is full
    /// and whose socket takes no more bytes (default:
    /// [`BacklogPolicy::Disconnect`]).
    ///
    /// # Examples
    ///
    /// See [`BacklogPolicy`] for both policies at work.
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{BacklogPolicy, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// let (peers, _peers_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// // Trusted peers: every value is delivered, at the pace of the slowest.
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .backlog_policy(BacklogPolicy::Wait)
    ///     .build(outgoing, vec![peers]);
    /// # drop(multiplexer);
    /// ```
    pub fn backlog_policy(mut self, policy: BacklogPolicy) -> Self {
        self.config.backlog_policy = policy;
        self
    }

    /// The value passed to [`IdGen::seed`] before the first id is taken
    /// (default 0). With [`IncrementIdGen`], the first id is `seed + 1`.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use futures::{StreamExt, executor::block_on, stream};
    /// use stream_multiplexer::{ControlMessage, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// # block_on(async {
    /// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16).id_seed(1_000).build(outgoing, vec![lobby]);
    ///
    /// let (write, _client) = mpsc::channel::<u8>(8);
    /// let halves = stream::iter([Ok((write, stream::pending::<u8>()))]);
    /// let (control, control_rx) = mpsc::unbounded();
    /// let consumer = async {
    ///     let first = lobby_rx.next().await;
    ///     assert_eq!(first.map(|packet| packet.id()), Some(1_001));
    ///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
    /// };
    /// let (result, ()) = futures::join!(multiplexer.run(halves, control_rx), consumer);
    /// assert!(result.is_ok());
    /// # });
    /// ```
    pub fn id_seed(mut self, seed: usize) -> Self {
        self.config.id_seed = seed;
        self
    }

    /// Uses another id generator (the default is [`IncrementIdGen`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IdGen, IncomingPacket, MultiplexerBuilder, OutgoingPacket, StreamId};
    ///
    /// /// Ids that tell two servers' streams apart: this one's are odd.
    /// struct OddIds(StreamId);
    ///
    /// impl IdGen for OddIds {
    ///     fn next(&mut self) -> StreamId {
    ///         self.0 = self.0.wrapping_add(2);
    ///         self.0
    ///     }
    ///     fn id(&self) -> StreamId {
    ///         self.0
    ///     }
    /// }
    /// # impl Default for OddIds { fn default() -> Self { OddIds(1) } }
    ///
    /// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .id_gen(OddIds(1))
    ///     .build(outgoing, vec![lobby]);
    /// # drop(multiplexer);
    /// ```
    pub fn id_gen<Other: IdGen>(self, id_gen: Other) -> MultiplexerBuilder<Other> {
        MultiplexerBuilder {
            config: self.config,
            clock: self.clock,
            id_gen,
        }
    }

    /// Gives the multiplexer a clock, which turns its time limits on: the
    /// [idle timeout](Self::idle_timeout) (5 minutes unless set) and the
    /// [write timeout](Self::write_timeout) (30 seconds unless set). Each
    /// runtime adapter makes one in a call (`runtime::smol::clock`, ...);
    /// see [`Clock`].
    ///
    /// One clock serves every connection: checking deadlines costs nothing
    /// per connection per tick while no deadline is near. The clock's period
    /// is the resolution of the limits: a limit passes at most one period
    /// late. A period of a second suits limits of tens of seconds.
    ///
    /// Without a clock, nothing is timed: a silent client stays connected,
    /// and a flush to a client that never reads waits for a newcomer to
    /// need its place under [`max_streams`](Self::max_streams).
    ///
    /// # Examples
    ///
    /// A clock the test drives: a silent client is closed once the idle
    /// timeout of three ticks has passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::channel::mpsc;
    /// use futures::{StreamExt, executor::block_on, stream};
    /// use stream_multiplexer::{
    ///     Clock, ControlMessage, DisconnectReason, IncomingPacket, MultiplexerBuilder,
    ///     OutgoingPacket,
    /// };
    ///
    /// # block_on(async {
    /// let (ticks, tick_rx) = mpsc::unbounded::<()>();
    /// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .clock(Clock::new(Duration::from_secs(1), tick_rx))
    ///     .idle_timeout(Duration::from_secs(3))
    ///     .build(outgoing, vec![lobby]);
    ///
    /// let (write, _client) = mpsc::channel::<u8>(8);
    /// let halves = stream::iter([Ok((write, stream::pending::<u8>()))]);
    /// let (control, control_rx) = mpsc::unbounded();
    /// let consumer = async {
    ///     let id = lobby_rx.next().await.unwrap().id();
    ///     for _ in 0..3 {
    ///         ticks.unbounded_send(()).unwrap();
    ///     }
    ///     let gone = lobby_rx.next().await;
    ///     assert!(matches!(
    ///         gone,
    ///         Some(IncomingPacket::StreamDisconnected(i, DisconnectReason::IdleTimeout)) if i == id
    ///     ));
    ///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
    /// };
    /// let (result, ()) = futures::join!(multiplexer.run(halves, control_rx), consumer);
    /// assert!(result.is_ok());
    /// # });
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How long a stream may go without completing a frame before it is
    /// closed with
    /// [`DisconnectReason::IdleTimeout`](crate::DisconnectReason::IdleTimeout)
    /// (default 5 minutes; `None` for no limit). Only with a
    /// [`clock`](Self::clock).
    ///
    /// It catches silent clients and slow ones that trickle a frame a byte
    /// at a time: what counts is a *complete* frame. Like a half-closed
    /// client, an idle one is announced as gone but can still be sent a
    /// last word (such as "idle, bye") until the application closes it with
    /// [`Shutdown`](OutgoingPacket::Shutdown), or the write timeout passes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{Clock, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// let (_ticks, tick_rx) = mpsc::unbounded::<()>();
    /// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// // A game server whose clients send a heartbeat every 10 seconds.
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .clock(Clock::new(Duration::from_secs(1), tick_rx))
    ///     .idle_timeout(Duration::from_secs(30))
    ///     .build(outgoing, vec![lobby]);
    /// # drop(multiplexer);
    /// ```
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// How long a stream's socket may take no bytes while values wait for
    /// it before the stream is dropped with
    /// [`DisconnectReason::WriteTimeout`](crate::DisconnectReason::WriteTimeout)
    /// (default 30 seconds; `None` for no limit). Only with a
    /// [`clock`](Self::clock).
    ///
    /// It bounds every flush: to a client that stopped reading, after
    /// [`Shutdown`](OutgoingPacket::Shutdown), after the client half-closed,
    /// and during a graceful shutdown of the whole multiplexer. It is also
    /// how long a stream that left (half-closed, or idle) can still be sent
    /// a last word.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{Clock, IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// let (_ticks, tick_rx) = mpsc::unbounded::<()>();
    /// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
    /// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
    /// let multiplexer = MultiplexerBuilder::new(16)
    ///     .clock(Clock::new(Duration::from_secs(1), tick_rx))
    ///     .write_timeout(Duration::from_secs(10))
    ///     .idle_timeout(None) // the clients may be silent for as long as they like
    ///     .build(outgoing, vec![lobby]);
    /// # drop(multiplexer);
    /// ```
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.write_timeout = timeout.into();
        self
    }

    /// Builds the multiplexer around the application's outgoing packet
    /// stream and its channel sinks (channel `k` is `channels[k]`).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, MultiplexerBuilder, OutgoingPacket};
    ///
    /// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (players, _players_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer = MultiplexerBuilder::new(128).build(outgoing, vec![lobby, players]);
    /// assert_eq!(multiplexer.stats().snapshot().streams_open, 0);
    /// ```
    pub fn build<Out, Ch>(self, outgoing: Out, channels: Vec<Ch>) -> Multiplexer<Out, Ch, Id> {
        let stats = Stats::new(channels.len());
        Multiplexer {
            setup: Setup {
                config: self.config,
                clock: self.clock,
                id_gen: self.id_gen,
                outgoing,
                channels,
                stats,
                rooms: Rooms::default(),
            },
        }
    }
}

impl<Out, Ch> Multiplexer<Out, Ch> {
    /// A multiplexer whose streams each queue at most `sender_buffer_size`
    /// outgoing values, with new streams joining channel 0 and every other
    /// option at its default (see [`MultiplexerBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
    ///
    /// let (channel0, _rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer = Multiplexer::new(128, outgoing, vec![channel0]);
    /// assert_eq!(multiplexer.stats().snapshot().streams_open, 0);
    /// ```
    pub fn new(sender_buffer_size: usize, outgoing: Out, channels: Vec<Ch>) -> Self {
        MultiplexerBuilder::new(sender_buffer_size).build(outgoing, channels)
    }
}

impl<Out, Ch, Id: IdGen> Multiplexer<Out, Ch, Id> {
    /// Like [`new`](Multiplexer::new), with ids from `id_gen`: a shorthand
    /// for [`MultiplexerBuilder::id_gen`], kept from earlier versions.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, IncrementIdGen, Multiplexer, OutgoingPacket};
    ///
    /// let (channel0, _rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer =
    ///     Multiplexer::with_id_gen(128, IncrementIdGen::default(), outgoing, vec![channel0]);
    /// assert_eq!(multiplexer.stats().snapshot().accepted, 0);
    /// ```
    pub fn with_id_gen(
        sender_buffer_size: usize,
        id_gen: Id,
        outgoing: Out,
        channels: Vec<Ch>,
    ) -> Self {
        MultiplexerBuilder::new(sender_buffer_size)
            .id_gen(id_gen)
            .build(outgoing, channels)
    }

    /// A handle on this multiplexer's counters; see [`Stats`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
    ///
    /// let (channel0, _rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer = Multiplexer::new(128, outgoing, vec![channel0]);
    /// let stats = multiplexer.stats();
    /// assert_eq!(stats.snapshot().accepted, 0);
    /// ```
    pub fn stats(&self) -> Stats {
        self.setup.stats.clone()
    }

    /// A handle on this multiplexer's rooms: who is in which; see [`Rooms`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
    ///
    /// let (channel0, _rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer = Multiplexer::new(128, outgoing, vec![channel0]);
    /// assert_eq!(multiplexer.rooms().counts(), (0, 0));
    /// ```
    pub fn rooms(&self) -> Rooms {
        self.setup.rooms.clone()
    }

    /// Starts serving: returns the [`Run`] future, which does nothing until
    /// it is polled (spawn it, or await it).
    ///
    /// * `halves` yields each accepted connection as `(write sink, read
    ///   stream)`, for example from [`HalvesStream`](crate::HalvesStream);
    ///   an `Err` (a failed accept) is counted and serving goes on.
    /// * `control` stops the multiplexer: see [`ControlMessage`]. Its end
    ///   means [`ControlMessage::Shutdown`].
    ///
    /// # The `Unpin` requirement
    ///
    /// Every part must be `Unpin`, so that `Run` can move them freely
    /// between its slab and its channels without pinning projections. Types
    /// that are not `Unpin` can be boxed with `Box::pin`.
    ///
    /// # Examples
    ///
    /// See [`Multiplexer`].
    pub fn run<H, W, R, Ctl, V>(self, halves: H, control: Ctl) -> Run<H, Ctl, Out, Ch, Id, W, R, V>
    where
        H: Stream<Item = io::Result<(W, R)>> + Unpin,
        W: Sink<V> + Unpin,
        R: Stream + Unpin,
        Ctl: Stream<Item = ControlMessage> + Unpin,
        Out: Stream<Item = OutgoingPacket<V>> + Unpin,
        Ch: Sink<IncomingPacket<R::Item>> + Unpin,
        V: Clone,
    {
        Run::new(self.setup, halves, control)
    }
}
