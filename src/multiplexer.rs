//! [`Multiplexer`], the options it takes, and how it starts running.

use std::io;

use futures::{Sink, Stream};

use crate::run::Run;
use crate::{
    ChannelId, ControlMessage, IdGen, IncomingPacket, IncrementIdGen, OutgoingPacket, Stats,
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
    pub(crate) config: Config,
    pub(crate) id_gen: Id,
    pub(crate) outgoing: Out,
    pub(crate) channels: Vec<Ch>,
    pub(crate) stats: Stats,
}

/// What happens when a value is sent to a stream whose outgoing backlog is
/// full.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{BacklogPolicy, MultiplexerBuilder};
///
/// let builder = MultiplexerBuilder::new(128).backlog_policy(BacklogPolicy::Wait);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BacklogPolicy {
    /// Disconnect the slow stream with
    /// [`DisconnectReason::BacklogFull`](crate::DisconnectReason::BacklogFull).
    /// The outgoing stream is never held up by a slow client. The default.
    #[default]
    Disconnect,
    /// Stop taking outgoing packets until the stream's backlog has room:
    /// lossless, but one client that stops reading stops every send. Use it
    /// for trusted peers (or with a timeout and [`OutgoingPacket::Shutdown`]
    /// of your own). A message with more values than the backlog holds still
    /// disconnects, since it could never fit.
    Wait,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) sender_buffer_size: usize,
    pub(crate) default_channel: ChannelId,
    pub(crate) max_streams: usize,
    pub(crate) backlog_policy: BacklogPolicy,
    pub(crate) id_seed: usize,
}

/// Options beyond the seed's [`Multiplexer::new`].
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
#[derive(Debug, Clone)]
pub struct MultiplexerBuilder<Id = IncrementIdGen> {
    config: Config,
    id_gen: Id,
}

impl MultiplexerBuilder {
    /// Starts with the defaults: new streams join channel 0, no limit on
    /// streams, [`BacklogPolicy::Disconnect`], ids from [`IncrementIdGen`].
    ///
    /// `sender_buffer_size` is each stream's outgoing backlog, in values (at
    /// least 1; 0 is taken as 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::MultiplexerBuilder;
    ///
    /// let builder = MultiplexerBuilder::new(64);
    /// # let _ = builder;
    /// ```
    pub fn new(sender_buffer_size: usize) -> Self {
        Self {
            config: Config {
                sender_buffer_size: sender_buffer_size.max(1),
                default_channel: 0,
                max_streams: usize::MAX,
                backlog_policy: BacklogPolicy::default(),
                id_seed: 0,
            },
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
    /// ```
    /// use stream_multiplexer::MultiplexerBuilder;
    ///
    /// let builder = MultiplexerBuilder::new(64).default_channel(1);
    /// # let _ = builder;
    /// ```
    pub fn default_channel(mut self, channel: ChannelId) -> Self {
        self.config.default_channel = channel;
        self
    }

    /// The most streams open at once (default: no limit). At the limit,
    /// [`Run`] stops accepting, so new clients wait in the listen backlog,
    /// until a stream leaves. A stream closed by
    /// [`Shutdown`](OutgoingPacket::Shutdown) has left: it no longer counts,
    /// though it keeps flushing what was queued for it while there is room.
    /// When a newcomer would bring the connections held above the limit,
    /// the one that has been flushing longest is dropped, its flush
    /// abandoned: a client that never reads cannot hold its place, and no
    /// more than `max_streams` connections (file descriptors, buffers) are
    /// ever held.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::MultiplexerBuilder;
    ///
    /// let builder = MultiplexerBuilder::new(64).max_streams(50_000);
    /// # let _ = builder;
    /// ```
    pub fn max_streams(mut self, max_streams: usize) -> Self {
        self.config.max_streams = max_streams;
        self
    }

    /// What to do when a stream's outgoing backlog is full (default:
    /// [`BacklogPolicy::Disconnect`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{BacklogPolicy, MultiplexerBuilder};
    ///
    /// let builder = MultiplexerBuilder::new(64).backlog_policy(BacklogPolicy::Wait);
    /// # let _ = builder;
    /// ```
    pub fn backlog_policy(mut self, policy: BacklogPolicy) -> Self {
        self.config.backlog_policy = policy;
        self
    }

    /// The value passed to [`IdGen::seed`] before the first id is taken
    /// (default 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::MultiplexerBuilder;
    ///
    /// let builder = MultiplexerBuilder::new(64).id_seed(1_000);
    /// # let _ = builder;
    /// ```
    pub fn id_seed(mut self, seed: usize) -> Self {
        self.config.id_seed = seed;
        self
    }

    /// Uses another id generator.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{IncrementIdGen, MultiplexerBuilder};
    ///
    /// let builder = MultiplexerBuilder::new(64).id_gen(IncrementIdGen::default());
    /// # let _ = builder;
    /// ```
    pub fn id_gen<Other: IdGen>(self, id_gen: Other) -> MultiplexerBuilder<Other> {
        MultiplexerBuilder {
            config: self.config,
            id_gen,
        }
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
    /// let (channel0, _rx) = mpsc::channel::<IncomingPacket<u8>>(32);
    /// let (_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(32);
    /// let multiplexer = MultiplexerBuilder::new(128).build(outgoing, vec![channel0]);
    /// # let _ = multiplexer;
    /// ```
    pub fn build<Out, Ch>(self, outgoing: Out, channels: Vec<Ch>) -> Multiplexer<Out, Ch, Id> {
        Multiplexer {
            config: self.config,
            id_gen: self.id_gen,
            outgoing,
            channels,
            stats: Stats::default(),
        }
    }
}

impl<Out, Ch> Multiplexer<Out, Ch> {
    /// A multiplexer whose streams each queue at most `sender_buffer_size`
    /// outgoing values, with new streams joining channel 0 (the seed's
    /// constructor; see [`MultiplexerBuilder`] for the other options).
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
    /// # let _ = multiplexer;
    /// ```
    pub fn new(sender_buffer_size: usize, outgoing: Out, channels: Vec<Ch>) -> Self {
        MultiplexerBuilder::new(sender_buffer_size).build(outgoing, channels)
    }
}

impl<Out, Ch, Id: IdGen> Multiplexer<Out, Ch, Id> {
    /// Like [`new`](Multiplexer::new), with ids from `id_gen`.
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
    /// # let _ = multiplexer;
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
        self.stats.clone()
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
        Run::new(self, halves, control)
    }
}
