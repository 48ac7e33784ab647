//! Counters that show what the multiplexer did, readable from any thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{ChannelId, DisconnectReason};

/// Publishes to the registered metrics with `$m` bound to them (feature
/// `metrics`); nothing at all without the feature.
macro_rules! meter {
    ($stats:expr, |$m:ident| $publish:expr) => {
        #[cfg(feature = "metrics")]
        if let Some($m) = &$stats.counters.meters {
            $publish;
        }
    };
}

/// A cheap, cloneable, thread-safe handle on a multiplexer's counters.
///
/// Get one with [`Multiplexer::stats`](crate::Multiplexer::stats), before or
/// after calling `run`; every clone reads the same counters. Everything the
/// multiplexer does not deliver is counted here: nothing is silently ignored.
///
/// # Examples
///
/// ```
/// use futures::channel::mpsc;
/// use stream_multiplexer::{Multiplexer, OutgoingPacket};
///
/// let (channel0, _consumer) = mpsc::channel::<stream_multiplexer::IncomingPacket<()>>(8);
/// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<()>>(8);
/// let multiplexer = Multiplexer::new(16, outgoing, vec![channel0]);
///
/// let stats = multiplexer.stats();
/// let snapshot = stats.snapshot();
/// assert_eq!(snapshot.streams_open, 0);
/// assert_eq!(snapshot.accepted, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    streams_open: AtomicU64,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    linkdead: AtomicU64,
    channel_change: AtomicU64,
    shutdown: AtomicU64,
    backlog_full: AtomicU64,
    idle_timeout: AtomicU64,
    write_timeout: AtomicU64,
    dropped_unknown_id: AtomicU64,
    moves_rejected: AtomicU64,
    closed_with_channel: AtomicU64,
    aborted: AtomicU64,
    room_sends: AtomicU64,
    volatile_dropped: AtomicU64,
    conflated: AtomicU64,
    rooms: AtomicU64,
    room_members: AtomicU64,
    /// The same counts, published through the `metrics` facade.
    #[cfg(feature = "metrics")]
    meters: Option<crate::meters::Meters>,
}

/// The counters at one moment.
///
/// Invariant once the multiplexer is idle:
/// `accepted == streams_open + departed()`, where a departure is every
/// disconnect but a channel change (a move), a stream closed with its
/// channel, or one dropped by an abort.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::StatsSnapshot;
///
/// let snapshot = StatsSnapshot::default();
/// assert_eq!(snapshot.departed(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Streams currently open (accepted and not yet gone).
    pub streams_open: u64,
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Failed accepts: errors yielded by the halves stream, and connections
    /// turned away because the id generator gave no free id (they never
    /// became streams, so `accepted` does not count them).
    pub accept_errors: u64,
    /// Values read from streams and delivered to a channel.
    pub frames_in: u64,
    /// Values handed to streams' write sinks.
    pub frames_out: u64,
    /// Departures and moves, by reason: one per stream that left (and one
    /// per move). A stream moved after it left (see
    /// [`OutgoingPacket::ChangeChannel`](crate::OutgoingPacket::ChangeChannel))
    /// is announced to its new channel too, and not counted again.
    pub disconnects: DisconnectCounts,
    /// (packet, id) pairs dropped because the id belonged to no open stream.
    pub dropped_unknown_id: u64,
    /// `ChangeChannel` requests refused because the channel does not exist
    /// or has closed.
    pub moves_rejected: u64,
    /// Streams closed without an announcement because their channel's sink
    /// closed or failed (including connections that arrived for a default
    /// channel that had already closed).
    pub closed_with_channel: u64,
    /// Streams closed without an announcement by
    /// [`ControlMessage::Abort`](crate::ControlMessage::Abort).
    pub aborted: u64,
    /// Messages sent to a room (each counts once, whatever its members).
    pub room_sends: u64,
    /// (message, stream) pairs of
    /// [`Delivery::Volatile`](crate::Delivery::Volatile) messages not sent
    /// because the stream's backlog was full and its socket took no more.
    pub volatile_dropped: u64,
    /// Values of [`Delivery::Latest`](crate::Delivery::Latest) messages that
    /// replaced an older one waiting in a backlog.
    pub conflated: u64,
    /// Rooms that have members now.
    pub rooms: u64,
    /// Memberships of rooms now (a stream in three rooms counts three).
    pub room_members: u64,
}

impl StatsSnapshot {
    /// Streams that have left for good: every disconnect except channel
    /// changes, plus those closed with their channel or by an abort.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::StatsSnapshot;
    ///
    /// let mut snapshot = StatsSnapshot::default();
    /// snapshot.disconnects.linkdead = 2;
    /// snapshot.disconnects.channel_change = 5;
    /// assert_eq!(snapshot.departed(), 2);
    /// ```
    pub fn departed(&self) -> u64 {
        let d = &self.disconnects;
        d.linkdead
            + d.shutdown
            + d.backlog_full
            + d.idle_timeout
            + d.write_timeout
            + self.closed_with_channel
            + self.aborted
    }
}

/// How many `StreamDisconnected` announcements were made for each
/// [`DisconnectReason`].
///
/// # Examples
///
/// ```
/// use stream_multiplexer::DisconnectCounts;
///
/// let counts = DisconnectCounts::default();
/// assert_eq!(counts.backlog_full, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DisconnectCounts {
    /// [`DisconnectReason::Linkdead`].
    pub linkdead: u64,
    /// [`DisconnectReason::ChannelChange`].
    pub channel_change: u64,
    /// [`DisconnectReason::Shutdown`].
    pub shutdown: u64,
    /// [`DisconnectReason::BacklogFull`].
    pub backlog_full: u64,
    /// [`DisconnectReason::IdleTimeout`].
    pub idle_timeout: u64,
    /// [`DisconnectReason::WriteTimeout`].
    pub write_timeout: u64,
}

impl Stats {
    /// The counters of a multiplexer with `channels` channels (with the
    /// `metrics` feature, registered with the installed recorder).
    pub(crate) fn new(channels: usize) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = channels;
        Self {
            counters: Arc::new(Counters {
                #[cfg(feature = "metrics")]
                meters: Some(crate::meters::Meters::register(channels)),
                ..Counters::default()
            }),
        }
    }

    /// Reads every counter. Each is read on its own (relaxed), so a snapshot
    /// taken while the multiplexer runs may be a few events apart between
    /// counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::Stats;
    ///
    /// let stats = Stats::default();
    /// assert_eq!(stats.snapshot().frames_in, 0);
    /// ```
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &*self.counters;
        StatsSnapshot {
            streams_open: c.streams_open.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            accept_errors: c.accept_errors.load(Relaxed),
            frames_in: c.frames_in.load(Relaxed),
            frames_out: c.frames_out.load(Relaxed),
            disconnects: DisconnectCounts {
                linkdead: c.linkdead.load(Relaxed),
                channel_change: c.channel_change.load(Relaxed),
                shutdown: c.shutdown.load(Relaxed),
                backlog_full: c.backlog_full.load(Relaxed),
                idle_timeout: c.idle_timeout.load(Relaxed),
                write_timeout: c.write_timeout.load(Relaxed),
            },
            dropped_unknown_id: c.dropped_unknown_id.load(Relaxed),
            moves_rejected: c.moves_rejected.load(Relaxed),
            closed_with_channel: c.closed_with_channel.load(Relaxed),
            aborted: c.aborted.load(Relaxed),
            room_sends: c.room_sends.load(Relaxed),
            volatile_dropped: c.volatile_dropped.load(Relaxed),
            conflated: c.conflated.load(Relaxed),
            rooms: c.rooms.load(Relaxed),
            room_members: c.room_members.load(Relaxed),
        }
    }

    /// A connection became a stream, in `channel`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn admitted(&self, channel: ChannelId) {
        self.counters.accepted.fetch_add(1, Relaxed);
        self.counters.streams_open.fetch_add(1, Relaxed);
        meter!(self, |m| {
            m.accepted.increment(1);
            if let Some(g) = m.streams_open(channel) {
                g.increment(1.0);
            }
        });
    }

    /// A stream left `channel` for good. Every admitted stream departs once,
    /// which keeps `accepted == streams_open + departed()`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn departed(&self, departure: Departure, channel: ChannelId) {
        let c = &self.counters;
        c.streams_open.fetch_sub(1, Relaxed);
        let counter = match departure {
            Departure::Announced(reason) => self.disconnect_counter(reason),
            Departure::ClosedWithChannel => &c.closed_with_channel,
            Departure::Aborted => &c.aborted,
        };
        counter.fetch_add(1, Relaxed);
        meter!(self, |m| {
            if let Some(g) = m.streams_open(channel) {
                g.decrement(1.0);
            }
            match departure {
                Departure::Announced(reason) => m.disconnect(reason).increment(1),
                Departure::ClosedWithChannel => m.closed_with_channel.increment(1),
                Departure::Aborted => m.aborted.increment(1),
            }
        });
    }

    /// A stream moved from one channel to another (announced to the old
    /// one).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn moved(&self, from: ChannelId, to: ChannelId) {
        let reason = DisconnectReason::ChannelChange(to);
        self.disconnect_counter(reason).fetch_add(1, Relaxed);
        meter!(self, |m| {
            m.disconnect(reason).increment(1);
            if let Some(g) = m.streams_open(from) {
                g.decrement(1.0);
            }
            if let Some(g) = m.streams_open(to) {
                g.increment(1.0);
            }
        });
    }

    pub(crate) fn accept_error(&self) {
        self.counters.accept_errors.fetch_add(1, Relaxed);
        meter!(self, |m| m.accept_errors.increment(1));
    }

    pub(crate) fn frames_in(&self, count: u64) {
        if count > 0 {
            self.counters.frames_in.fetch_add(count, Relaxed);
            meter!(self, |m| m.frames_in.increment(count));
        }
    }

    pub(crate) fn frames_out(&self, count: u64) {
        if count > 0 {
            self.counters.frames_out.fetch_add(count, Relaxed);
            meter!(self, |m| m.frames_out.increment(count));
        }
    }

    pub(crate) fn dropped_unknown_id(&self) {
        self.counters.dropped_unknown_id.fetch_add(1, Relaxed);
        meter!(self, |m| m.dropped_unknown_id.increment(1));
    }

    pub(crate) fn move_rejected(&self) {
        self.counters.moves_rejected.fetch_add(1, Relaxed);
        meter!(self, |m| m.moves_rejected.increment(1));
    }

    pub(crate) fn room_send(&self) {
        self.counters.room_sends.fetch_add(1, Relaxed);
        meter!(self, |m| m.room_sends.increment(1));
    }

    pub(crate) fn volatile_dropped(&self) {
        self.counters.volatile_dropped.fetch_add(1, Relaxed);
        meter!(self, |m| m.volatile_dropped.increment(1));
    }

    pub(crate) fn conflated(&self) {
        self.counters.conflated.fetch_add(1, Relaxed);
        meter!(self, |m| m.conflated.increment(1));
    }

    /// The rooms changed: how many there are now, and their memberships.
    pub(crate) fn rooms_now(&self, rooms: usize, members: usize) {
        self.counters.rooms.store(rooms as u64, Relaxed);
        self.counters.room_members.store(members as u64, Relaxed);
        meter!(self, |m| {
            m.rooms.set(rooms as f64);
            m.room_members.set(members as f64);
        });
    }

    /// A sample of a writer's backlog depth, for the histogram.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn backlog_sample(&self, depth: usize) {
        meter!(self, |m| m.backlog_depth.record(depth as f64));
    }

    /// Whether backlog samples go anywhere (so that the caller can skip
    /// taking them).
    pub(crate) fn samples_backlogs(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.counters.meters.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    fn disconnect_counter(&self, reason: DisconnectReason) -> &AtomicU64 {
        let c = &self.counters;
        match reason {
            DisconnectReason::Linkdead => &c.linkdead,
            DisconnectReason::ChannelChange(_) => &c.channel_change,
            DisconnectReason::Shutdown => &c.shutdown,
            DisconnectReason::BacklogFull => &c.backlog_full,
            DisconnectReason::IdleTimeout => &c.idle_timeout,
            DisconnectReason::WriteTimeout => &c.write_timeout,
        }
    }
}

/// How a stream left, for [`Stats::departed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// Its channel was told, with this reason.
    Announced(DisconnectReason),
    /// Its channel's sink had closed: there was no one to tell.
    ClosedWithChannel,
    /// The multiplexer was aborted.
    Aborted,
}
