//! [`Run`]: the one hand-written future that does all of the multiplexer's
//! work.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use crate::config::Config;
use crate::{
    Clock, ControlMessage, IdGen, IncomingPacket, MultiplexerError, OutgoingPacket, Rooms, Stats,
};

mod lifecycle;
mod outgoing;
mod parts;
mod reading;
mod timers;
mod writing;

use lifecycle::Streams;
use outgoing::{Intake, Outgoing};
use parts::PartsOf;
use reading::{Reading, read_channels};
use writing::WriteQueue;

/// Connections accepted per poll.
const ACCEPTS_PER_POLL: usize = 64;

/// The future returned by [`Multiplexer::run`](crate::Multiplexer::run):
/// accepts connections, routes what they send to their channels, applies
/// outgoing packets, and writes to the connections, until it is told to
/// stop.
///
/// It spawns nothing: spawn it, or await it, on any executor. It is `Send`
/// when all its parts are.
///
/// # Performance notes
///
/// Each poll runs a short list of steps, each with a fixed budget, and wakes
/// itself if a budget ran out, so that one busy multiplexer cannot starve
/// the executor (guarantee 7 of the crate docs):
///
/// 1. read the control stream (one message);
/// 2. take the clock's ticks and close the streams whose time limits
///    passed, up to `EXPIRIES_PER_POLL` of them;
/// 3. accept up to `ACCEPTS_PER_POLL` connections;
/// 4. apply outgoing packets, up to `DELIVERIES_PER_POLL` values queued to
///    streams;
/// 5. for each channel whose sink has room: hand over waiting
///    announcements, then read up to `READS_PER_CHANNEL_POLL` frames from
///    the streams whose readers were woken, `READS_PER_TURN` at most from
///    one stream per turn;
/// 6. write to up to `WRITERS_PER_POLL` streams whose sinks were woken or
///    that have values queued. While step 4 keeps running out of budget
///    (the application sends faster than one poll applies), the sinks take
///    the values but their flush waits, for up to `MAX_DEFERRED_FLUSHES`
///    polls: frames then leave in a few large writes instead of one small
///    write per stream per poll.
///
/// Nothing is scanned: each reader and writer has its own waker, which
/// queues its stream for step 5 or 6, and the time limits are kept in a
/// timer wheel that hands back only the streams whose deadline is near, so
/// idle connections cost nothing per poll and nothing is allocated per
/// frame.
#[must_use = "futures do nothing unless polled"]
pub struct Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    V: Clone,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
    id_gen: Id,
    /// `None` once the listener ended or the multiplexer is shutting down.
    halves: Option<H>,
    /// `None` once the control stream ended.
    control: Option<Ctl>,
    outgoing: Outgoing<Out, V>,
    streams: Streams<PartsOf<W, R, V, Ch>>,
    writers: WriteQueue,
    default_channel: usize,
    /// Whether the last accept step stopped at `max_streams`.
    at_capacity: bool,
    phase: Phase,
}

/// What a multiplexer hands to the `Run` it starts.
#[derive(Debug)]
pub(crate) struct Setup<Out, Ch, Id> {
    pub(crate) config: Config,
    pub(crate) clock: Option<Clock>,
    pub(crate) id_gen: Id,
    pub(crate) outgoing: Out,
    pub(crate) channels: Vec<Ch>,
    pub(crate) stats: Stats,
    pub(crate) rooms: Rooms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Serving,
    /// Applying what was sent before the shutdown.
    Draining,
    /// Every stream was told to close; waiting for their flushes.
    Closing,
    Done,
}

/// What one poll's steps left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Some step has more to do at once: the poll wakes its own task.
    Continue,
    /// Every step waits for a waker.
    Wait,
}

impl<H, Ctl, Out, Ch, Id, W, R, V> Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    V: Clone,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
    pub(crate) fn new(setup: Setup<Out, Ch, Id>, halves: H, control: Ctl) -> Self
    where
        Id: IdGen,
    {
        let Setup {
            config,
            clock,
            mut id_gen,
            outgoing,
            channels,
            stats,
            rooms,
        } = setup;
        id_gen.seed(config.id_seed);
        Self {
            id_gen,
            halves: Some(halves),
            control: Some(control),
            outgoing: Outgoing::new(outgoing, &config),
            streams: Streams::new(&config, clock, channels, stats, rooms),
            writers: WriteQueue::default(),
            default_channel: config.default_channel,
            at_capacity: false,
            phase: Phase::Starting,
        }
    }

    /// Checks the configuration once, at the first poll.
    fn start(&mut self) -> Result<(), MultiplexerError> {
        if self.streams.channels.is_empty() {
            return Err(MultiplexerError::NoChannels);
        }
        if self.default_channel >= self.streams.channels.len() {
            return Err(MultiplexerError::NoSuchChannel(self.default_channel));
        }
        self.phase = Phase::Serving;
        Ok(())
    }

    /// Ends the run, dropping every connection and channel sink so that
    /// clients and consumers see the end at once.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.streams.abort_all();
        self.halves = None;
        self.outgoing.clear();
        self.control = None;
    }
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
    /// Step 1: one control message, if any. The end of the control stream
    /// means `Shutdown`. Returns the message it acted on.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Option<ControlMessage> {
        let control = self.control.as_mut()?;
        let message = match Pin::new(control).poll_next(cx) {
            Poll::Ready(Some(message)) => message,
            Poll::Ready(None) => {
                self.control = None;
                ControlMessage::Shutdown
            }
            Poll::Pending => return None,
        };
        if message == ControlMessage::Shutdown && self.phase == Phase::Serving {
            // Stop accepting and reading; what the application sent before
            // is still applied, then every stream is closed gracefully.
            self.phase = Phase::Draining;
            self.halves = None;
        }
        Some(message)
    }

    /// Step 3: accept new connections, unless `max_streams` are open, in
    /// which case the halves stream is not polled and clients wait in the
    /// listen backlog. Returns whether its budget ran out.
    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        for _ in 0..ACCEPTS_PER_POLL {
            let Some(halves) = self.halves.as_mut() else {
                // Not accepting any more: no limit to wait on either.
                self.at_capacity = false;
                return false;
            };
            self.at_capacity = self.streams.at_capacity();
            if self.at_capacity {
                return false;
            }
            match Pin::new(halves).poll_next(cx) {
                Poll::Ready(Some(Ok((writer, reader)))) => {
                    self.streams.admit(writer, reader, &mut self.id_gen);
                }
                // A failed accept ends nothing; it is counted.
                Poll::Ready(Some(Err(_error))) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_error, "accept failed");
                    self.streams.stats.accept_error();
                }
                Poll::Ready(None) => self.halves = None,
                Poll::Pending => return false,
            }
        }
        true
    }

    /// Drives a graceful shutdown: once the outgoing packets sent before it
    /// are applied, every stream flushes and closes; once they have and every
    /// announcement is handed over, every channel sink is closed.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.phase == Phase::Draining {
            if !self.outgoing.is_done() {
                return Poll::Pending;
            }
            self.phase = Phase::Closing;
            self.streams.close_all_gracefully();
            // The writers were woken; the next poll flushes them.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !self.streams.registry.is_empty() {
            return Poll::Pending;
        }
        let channels = &mut self.streams.channels;
        if !channels.iter().all(|c| !c.is_open() || c.is_caught_up()) {
            return Poll::Pending;
        }
        let mut all_closed = true;
        for channel in channels {
            all_closed &= channel.poll_close(cx).is_ready();
        }
        if all_closed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Steps 2 to 6, once the control stream has had its say.
    fn serve(&mut self, cx: &mut Context<'_>) -> Next {
        let mut more = self.streams.expire(cx);
        more |= self.accept(cx);
        let intake = match self.phase {
            Phase::Serving => Intake::Open,
            _ => Intake::Draining,
        };
        let outgoing_busy = self
            .outgoing
            .apply(&mut self.streams, &mut self.writers, intake, cx);
        more |= outgoing_busy;
        // Channels before writers: every poll looks at every channel's sink
        // before anything else can announce into it, so a consumer that went
        // away is noticed first and its streams are closed with it.
        let reading = match self.phase {
            Phase::Serving => Reading::On,
            _ => Reading::Off,
        };
        more |= read_channels(&mut self.streams, reading, cx);
        let written = self.writers.pump(&mut self.streams, outgoing_busy);
        more |= written.more;
        // Room made by the writers lets a waiting message go on.
        more |= written.written > 0 && self.outgoing.is_waiting();
        // A stream that left makes room under `max_streams`.
        more |= self.at_capacity && !self.streams.at_capacity();
        if more { Next::Continue } else { Next::Wait }
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
            Phase::Serving | Phase::Draining | Phase::Closing => {}
        }
        this.streams.hub.register(cx);

        let mut next = Next::Wait;
        match this.poll_control(cx) {
            Some(ControlMessage::Abort) => {
                this.finish();
                return Poll::Ready(Ok(()));
            }
            // Another control message may be waiting (an Abort).
            Some(ControlMessage::Shutdown) => next = Next::Continue,
            None => {}
        }
        if this.serve(cx) == Next::Continue {
            next = Next::Continue;
        }

        if this.phase == Phase::Serving && this.streams.channels.iter().all(|c| !c.is_open()) {
            this.finish();
            return Poll::Ready(Err(MultiplexerError::AllChannelsClosed));
        }
        if matches!(this.phase, Phase::Draining | Phase::Closing)
            && this.poll_shutdown(cx).is_ready()
        {
            this.finish();
            return Poll::Ready(Ok(()));
        }
        if next == Next::Continue {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

// Nothing in `Run` is pinned structurally: the parts it polls are `Unpin` by
// its bounds, and everything else (ids, values, items) sits in collections
// it moves freely.
impl<H, Ctl, Out, Ch, Id, W, R, V> Unpin for Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    V: Clone,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
}

impl<H, Ctl, Out, Ch, Id, W, R, V> fmt::Debug for Run<H, Ctl, Out, Ch, Id, W, R, V>
where
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    V: Clone,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("phase", &self.phase)
            .field("streams", &self.streams.registry.len())
            .field("channels", &self.streams.channels.len())
            .field("stats", &self.streams.stats.snapshot())
            .finish_non_exhaustive()
    }
}
