//! [`Run`]: the one hand-written future that does all of the multiplexer's
//! work.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use crate::channel::Channel;
use crate::multiplexer::{Config, Multiplexer};
use crate::registry::Registry;
use crate::stream::{Connection, Reader, Writer};
use crate::wake::{WakeHub, Wakeup};
use crate::{
    ControlMessage, DisconnectReason, IdGen, IncomingPacket, MultiplexerError, OutgoingPacket,
    Stats,
};

mod outgoing;
mod pump;

use outgoing::Unfinished;

/// Connections accepted per poll.
const ACCEPTS_PER_POLL: usize = 64;
/// Values queued for streams per poll (a value sent to 1,000 ids counts
/// 1,000), so that one broadcast to every client cannot hog a poll.
const DELIVERIES_PER_POLL: usize = 16 * 1024;
/// Frames read per channel per poll.
const READS_PER_CHANNEL_POLL: usize = 4 * 1024;
/// Frames read from one stream before the next ready stream of its channel
/// gets a turn: a chatty stream cannot starve a quiet one (SPEC §4.7).
const READS_PER_TURN: usize = 64;
/// Writers pumped per poll.
const WRITERS_PER_POLL: usize = 1024;
/// Consecutive polls that may leave the writers unflushed while the outgoing
/// stream still has packets waiting (see [`Run`]'s performance notes).
const MAX_DEFERRED_FLUSHES: usize = 64;

/// The future returned by [`Multiplexer::run`]: accepts connections, routes
/// what they send to their channels, applies outgoing packets, and writes to
/// the connections, until it is told to stop.
///
/// It spawns nothing: spawn it, or await it, on any executor. It is `Send`
/// when all its parts are.
///
/// # Performance notes
///
/// Each poll runs a short list of steps, each with a fixed budget, and wakes
/// itself if a budget ran out, so that one busy multiplexer cannot starve
/// the executor (SPEC §4.7):
///
/// 1. read the control stream (one message);
/// 2. accept up to 64 connections;
/// 3. apply outgoing packets, up to 16 Ki values queued to streams;
/// 4. for each channel whose sink has room: hand over waiting
///    announcements, then read up to 4 Ki frames from the streams whose
///    readers were woken, 64 at most from one stream per turn;
/// 5. write to up to 1,024 streams whose sinks were woken or that have
///    values queued. While step 3 keeps running out of budget (the
///    application sends faster than one poll applies), the sinks take the
///    values but their flush waits, for up to 64 polls: frames then leave
///    in a few large writes instead of one small write per stream per poll.
///
/// Nothing is scanned: each reader and writer has its own waker, which queues
/// its stream for step 4 or 5 (see the `wake` module), so idle connections
/// cost nothing per poll and nothing is allocated per frame.
#[must_use = "futures do nothing unless polled"]
pub struct Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    R: Stream,
{
    config: Config,
    id_gen: Id,
    stats: Stats,
    /// `None` once the listener ended or the multiplexer is shutting down.
    halves: Option<H>,
    /// `None` once the control stream ended.
    control: Option<Ctl>,
    /// `None` once the outgoing stream ended or the multiplexer is shutting
    /// down.
    outgoing: Option<Out>,
    channels: Vec<Channel<Ch, R::Item>>,
    streams: Registry<W, R, V>,
    hub: Arc<WakeHub>,
    /// Keys of writers to pump: drained from the hub (woken by their sinks)
    /// or pushed directly when values are queued to an idle writer.
    writers_ready: Vec<usize>,
    /// The writers being pumped in this poll (kept to reuse its allocation).
    writers_pumping: Vec<usize>,
    /// Writers whose sinks hold values that were not flushed yet.
    writers_unflushed: Vec<usize>,
    /// Polls in a row that deferred flushing.
    deferred_flushes: usize,
    /// A message not yet queued to all its recipients: the poll's budget
    /// ran out, or a recipient was full under [`BacklogPolicy::Wait`].
    unfinished: Option<Unfinished<V>>,
    /// Whether the last accept step stopped at `max_streams`.
    at_capacity: bool,
    /// Whether a graceful shutdown has closed every stream.
    streams_closed: bool,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Serving,
    ShuttingDown,
    Done,
}

impl<H, Ctl, Out, Ch, Id, W, R, V> Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    H: Stream<Item = io::Result<(W, R)>> + Unpin,
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    Ctl: Stream<Item = ControlMessage> + Unpin,
    Out: Stream<Item = OutgoingPacket<V>> + Unpin,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
    Id: IdGen,
    V: Clone,
{
    pub(crate) fn new(multiplexer: Multiplexer<Out, Ch, Id>, halves: H, control: Ctl) -> Self {
        let Multiplexer {
            config,
            mut id_gen,
            outgoing,
            channels,
            stats,
        } = multiplexer;
        id_gen.seed(config.id_seed);
        // One ready queue per channel for readers, and one for writers.
        let hub = WakeHub::new(channels.len() + 1);
        Self {
            config,
            id_gen,
            stats,
            halves: Some(halves),
            control: Some(control),
            outgoing: Some(outgoing),
            channels: channels.into_iter().map(Channel::new).collect(),
            streams: Registry::new(),
            hub,
            writers_ready: Vec::new(),
            writers_pumping: Vec::new(),
            writers_unflushed: Vec::new(),
            deferred_flushes: 0,
            unfinished: None,
            at_capacity: false,
            streams_closed: false,
            phase: Phase::Starting,
        }
    }

    fn writers_queue(&self) -> usize {
        self.channels.len()
    }

    /// Checks the configuration once, at the first poll.
    fn start(&mut self) -> Result<(), MultiplexerError> {
        if self.channels.is_empty() {
            return Err(MultiplexerError::NoChannels);
        }
        if self.config.default_channel >= self.channels.len() {
            return Err(MultiplexerError::NoSuchChannel(self.config.default_channel));
        }
        self.phase = Phase::Serving;
        Ok(())
    }

    /// Step 1: one control message, if any. The end of the control stream
    /// means `Shutdown`.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Option<ControlMessage> {
        let control = self.control.as_mut()?;
        match Pin::new(control).poll_next(cx) {
            Poll::Ready(Some(message)) => Some(message),
            Poll::Ready(None) => {
                self.control = None;
                Some(ControlMessage::Shutdown)
            }
            Poll::Pending => None,
        }
    }

    /// Step 2: accept new connections, unless `max_streams` are open, in
    /// which case the halves stream is not polled and clients wait in the
    /// listen backlog (SPEC §4.10). Returns whether its budget ran out.
    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..ACCEPTS_PER_POLL {
            let Some(halves) = self.halves.as_mut() else {
                // Not accepting any more: no limit to wait on either.
                self.at_capacity = false;
                return false;
            };
            self.at_capacity = self.streams.open_len() >= self.config.max_streams;
            if self.at_capacity {
                return false;
            }
            match Pin::new(halves).poll_next(cx) {
                Poll::Ready(Some(Ok((writer, reader)))) => self.admit(writer, reader),
                // A failed accept ends nothing; it is counted (SPEC §4.8).
                Poll::Ready(Some(Err(_))) => self.stats.accept_error(),
                Poll::Ready(None) => self.halves = None,
                Poll::Pending => return false,
            }
        }
        true
    }

    /// Registers a new connection in the default channel.
    fn admit(&mut self, writer: W, reader: R) {
        let channel = self.config.default_channel;
        self.stats.stream_opened();
        if !self.channels[channel].is_open() {
            // Dropping the halves closes the connection.
            self.stats.closed_with_channel();
            self.stats.stream_closed();
            return;
        }
        let Some(id) = self.streams.free_id(&mut self.id_gen) else {
            // The id generator keeps repeating live ids.
            self.stats.accept_error();
            self.stats.stream_closed();
            self.stats.closed_with_channel();
            return;
        };
        let key = self.streams.next_key();
        let writers_queue = self.writers_queue();
        self.streams.insert(Connection {
            id,
            channel,
            reader: Some(Reader {
                stream: reader,
                wakeup: Wakeup::new(&self.hub, channel, key, true),
            }),
            writer: Writer::new(writer, Wakeup::new(&self.hub, writers_queue, key, false)),
        });
        // Streams still flushing after a graceful close do not keep a
        // newcomer out: a client that never reads would hold its place
        // forever. The one closing longest gives up its flush instead, so
        // that no more than `max_streams` connections are ever held.
        if self.streams.len() > self.config.max_streams {
            self.streams.remove_oldest_closing();
        }
        self.channels[channel].announce_connected(id);
    }

    /// `ControlMessage::Shutdown`: stop accepting and reading (SPEC §4.11).
    /// The outgoing packets already sent are still applied, then every
    /// stream is closed gracefully by [`Self::poll_shutdown`].
    fn begin_shutdown(&mut self) {
        self.phase = Phase::ShuttingDown;
        self.halves = None;
    }

    /// Drives a graceful shutdown: once the outgoing packets sent before it
    /// are applied, every writer flushes and closes; once they have and every
    /// announcement is handed over, every channel sink is closed.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.outgoing.is_some() || self.unfinished.is_some() {
            return Poll::Pending;
        }
        if !self.streams_closed {
            self.streams_closed = true;
            for key in self.streams.open_keys(None) {
                self.close_gracefully(key, DisconnectReason::Shutdown);
            }
            // The writers were woken; the next poll flushes them.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !self.streams.is_empty() {
            return Poll::Pending;
        }
        if !self
            .channels
            .iter()
            .all(|c| !c.is_open() || c.is_caught_up())
        {
            return Poll::Pending;
        }
        let mut all_closed = true;
        for channel in &mut self.channels {
            all_closed &= channel.poll_close(cx).is_ready();
        }
        if all_closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ends the run, dropping every connection and channel sink so that
    /// clients and consumers see the end at once. Streams still open (after
    /// an `Abort`) are counted as aborted: there is no one left to announce
    /// their departure to.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        for _ in self.streams.open_keys(None) {
            self.stats.aborted();
            self.stats.stream_closed();
        }
        self.streams.clear();
        self.channels.clear();
        self.halves = None;
        self.outgoing = None;
        self.control = None;
        self.unfinished = None;
    }
}

impl<H, Ctl, Out, Ch, Id, W, R, V> Future for Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    H: Stream<Item = io::Result<(W, R)>> + Unpin,
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    Ctl: Stream<Item = ControlMessage> + Unpin,
    Out: Stream<Item = OutgoingPacket<V>> + Unpin,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
    Id: IdGen,
    V: Clone,
{
    type Output = Result<(), MultiplexerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.phase {
            Phase::Done => return Poll::Ready(Ok(())),
            Phase::Starting => {
                if let Err(error) = this.start() {
                    this.finish();
                    return Poll::Ready(Err(error));
                }
            }
            Phase::Serving | Phase::ShuttingDown => {}
        }
        this.hub.register(cx);

        let mut more = false;
        match this.poll_control(cx) {
            Some(ControlMessage::Abort) => {
                this.finish();
                return Poll::Ready(Ok(()));
            }
            Some(ControlMessage::Shutdown) => {
                if this.phase == Phase::Serving {
                    this.begin_shutdown();
                }
                // Another control message may be waiting (an Abort).
                more = true;
            }
            None => {}
        }
        more |= this.accept(cx);
        let outgoing_busy = this.apply_outgoing(cx);
        more |= outgoing_busy;
        // While the application sends faster than one poll applies, the
        // writers' flushes wait a few polls, so that many frames leave in
        // one write instead of one write per stream per poll. The sinks
        // still take the values (and write out whatever passes their
        // high-water mark); only the flush of the rest waits.
        let flush = !outgoing_busy || this.deferred_flushes >= MAX_DEFERRED_FLUSHES;
        this.deferred_flushes = if flush { 0 } else { this.deferred_flushes + 1 };
        // Channels before writers: every poll looks at every channel's sink
        // before anything else can announce into it, so a consumer that went
        // away is noticed first and its streams are closed with it.
        more |= this.pump_channels(cx);
        let (writers_left, written, departed) = this.pump_writers(flush);
        // A failed writer's departure waits in its channel for the next poll.
        more |= writers_left || departed;
        // Room made by the writers lets a waiting message go on.
        more |= written > 0 && this.unfinished.is_some();
        // A stream that left makes room under `max_streams`.
        more |= this.at_capacity && this.streams.open_len() < this.config.max_streams;

        if this.phase == Phase::Serving && this.channels.iter().all(|c| !c.is_open()) {
            this.finish();
            return Poll::Ready(Err(MultiplexerError::AllChannelsClosed));
        }
        if this.phase == Phase::ShuttingDown && this.poll_shutdown(cx).is_ready() {
            this.finish();
            return Poll::Ready(Ok(()));
        }
        if more {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

// Nothing in `Run` is pinned structurally: the parts it polls are `Unpin` by
// its bounds, and everything else (ids, values, items) sits in collections
// it moves freely.
impl<H, Ctl, Out, Ch, Id, W, R, V> Unpin for Run<H, Ctl, Out, Ch, Id, W, R, V> where R: Stream {}

impl<H, Ctl, Out, Ch, Id, W, R, V> fmt::Debug for Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    R: Stream,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("phase", &self.phase)
            .field("streams", &self.streams.len())
            .field("channels", &self.channels.len())
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}
