//! [`Streams`]: the one owner of every stream's life — admitted, moved,
//! leaving, closing, gone — and of the counters that follow it.
//!
//! Every change of a stream's state goes through here, so the registry's
//! count of open streams, the channel announcements and [`Stats`] agree by
//! construction: a stream departs once, whichever way it goes, and
//! `accepted == streams_open + departed`.

use std::sync::Arc;
use std::task::Context;

use crate::channel::Channel;
use crate::config::Config;
use crate::reader::Reader;
use crate::registry::{Registry, StreamEntry, StreamState};
use crate::run::parts::Parts;
use crate::run::timers::{Expiry, Timers};
use crate::stats::{Departure, Stats};
use crate::wake::{WakeHub, Wakeup};
use crate::writer::Writer;
use crate::{ChannelId, Clock, DisconnectReason, IdGen, RoomName, Rooms, StreamId};

/// How to end a stream's open life, or the rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Stop reading and tell its channel, but let the application still
    /// send to it (its reader ended, or it was idle too long): it becomes
    /// leaving. Without a clock to end that, it closes gracefully instead.
    Leave(DisconnectReason),
    /// Stop reading, tell its channel if it was open, flush what is queued,
    /// then close.
    Gracefully(DisconnectReason),
    /// Drop it now, telling its channel if it was open.
    Now(DisconnectReason),
}

/// The streams of one `Run`, their channels, and their time limits.
pub(crate) struct Streams<P: Parts> {
    pub(super) registry: Registry<P::Writer, P::Reader, P::Value>,
    pub(super) channels: Vec<Channel<P::Consumer, P::Frame>>,
    pub(super) stats: Stats,
    pub(super) hub: Arc<WakeHub>,
    pub(super) rooms: Rooms,
    timers: Option<Timers>,
    max_streams: usize,
    default_channel: ChannelId,
}

/// Expired streams looked at per poll, so that ten thousand clients
/// timing out in the same tick cannot hog one poll.
const EXPIRIES_PER_POLL: usize = 1024;

impl<P: Parts> Streams<P> {
    pub(crate) fn new(
        config: &Config,
        clock: Option<Clock>,
        consumers: Vec<P::Consumer>,
        stats: Stats,
        rooms: Rooms,
    ) -> Self {
        Self {
            registry: Registry::new(),
            hub: WakeHub::new(consumers.len()),
            channels: consumers.into_iter().map(Channel::new).collect(),
            stats,
            rooms,
            timers: clock.map(|clock| Timers::new(clock, config)),
            max_streams: config.max_streams,
            default_channel: config.default_channel,
        }
    }

    /// The current tick of the clock (0 without one).
    pub(super) fn now(&self) -> u64 {
        self.timers.as_ref().map_or(0, Timers::now)
    }

    /// Whether `max_streams` streams are open.
    pub(super) fn at_capacity(&self) -> bool {
        self.registry.open_len() >= self.max_streams
    }

    /// Registers a new connection in the default channel, or drops it if
    /// that channel has closed or no id is free.
    pub(super) fn admit(&mut self, writer: P::Writer, reader: P::Reader, id_gen: &mut impl IdGen) {
        let Some(id) = self.registry.free_id(id_gen) else {
            // The id generator keeps repeating live ids: the connection
            // never becomes a stream, and is dropped (closed).
            self.stats.accept_error();
            return;
        };
        let channel = self.default_channel;
        self.stats.admitted(channel);
        if !self.channels[channel].is_open() {
            self.stats.departed(Departure::ClosedWithChannel, channel);
            return;
        }
        let key = self.registry.next_key();
        let now = self.now();
        let mut entry = StreamEntry {
            id,
            channel,
            state: StreamState::Open(Reader::new(reader, Wakeup::reader(&self.hub, channel, key))),
            writer: Writer::new(writer, Wakeup::writer(&self.hub, key)),
            last_read: now,
            last_written: now,
            timer_at: 0,
            in_rooms: false,
        };
        if let Some(timers) = &mut self.timers {
            timers.schedule(key, &mut entry);
        }
        self.registry.insert(entry);
        // Streams that have left but still flush do not keep a newcomer
        // out: a client that never reads would hold its place forever. The
        // one that left longest gives up its flush instead, so that no more
        // than `max_streams` connections are ever held.
        if self.registry.len() > self.max_streams
            && let Some(oldest) = self.registry.oldest_left()
            && let Some(_evicted) = self.registry.remove(oldest)
        {
            #[cfg(feature = "tracing")]
            tracing::debug!(
                stream = _evicted.id,
                "flush abandoned: a newcomer needs the place under max_streams"
            );
        }
        self.channels[channel].announce_connected(id);
        #[cfg(feature = "tracing")]
        tracing::debug!(stream = id, channel, "stream connected");
    }

    /// Moves an open or leaving stream to another channel. For an open one,
    /// the old channel's
    /// `StreamDisconnected` follows every message already handed to it
    /// (frames go to the sink as soon as they are read), and the new
    /// channel's `StreamConnected` is queued before the reader is polled in
    /// its new channel (a channel hands over its announcements before it
    /// polls any reader), so no frame crosses the move.
    pub(super) fn change_channel(&mut self, id: StreamId, to: ChannelId) {
        let Some(key) = self.registry.addressable_key(id) else {
            self.stats.dropped_unknown_id();
            return;
        };
        if !self.channels.get(to).is_some_and(Channel::is_open) {
            self.stats.move_rejected();
            return;
        }
        let Some(entry) = self.registry.get_mut(key) else {
            return;
        };
        let from = entry.channel;
        if from == to {
            return;
        }
        entry.channel = to;
        match &mut entry.state {
            StreamState::Open(reader) => {
                reader.rewake(Wakeup::reader(&self.hub, to, key));
                self.channels[from].announce_disconnected(id, DisconnectReason::ChannelChange(to));
                self.stats.moved(from, to);
                self.channels[to].announce_connected(id);
                #[cfg(feature = "tracing")]
                tracing::debug!(stream = id, from, to, "stream moved");
            }
            StreamState::Leaving { reason, .. } => {
                // It left its old channel already. Its new one sees a visit
                // with no messages, so that whoever the application meant to
                // answer it there can (a client that sent its login and
                // half-closed still gets the welcome of the next channel).
                self.channels[to].announce_connected(id);
                self.channels[to].announce_disconnected(id, *reason);
            }
            StreamState::Closing => {}
        }
    }

    /// Ends a stream's open life, or the rest of it, as `close` says.
    pub(super) fn close(&mut self, key: usize, close: Close) {
        let Some(entry) = self.registry.get(key) else {
            return;
        };
        let (id, channel, was_open) = (entry.id, entry.channel, entry.is_open());
        let reason = match close {
            Close::Leave(reason) | Close::Gracefully(reason) | Close::Now(reason) => reason,
        };
        if was_open {
            #[cfg(feature = "tracing")]
            trace_departure(id, channel, reason);
            self.channels[channel].announce_disconnected(id, reason);
            self.leave_rooms(key);
            self.stats.departed(Departure::Announced(reason), channel);
        }
        let lingers = self.timers.as_ref().is_some_and(Timers::lingers);
        match close {
            Close::Leave(reason) if was_open && lingers => {
                let since = self.now();
                self.registry
                    .set_state(key, StreamState::Leaving { since, reason });
                self.schedule(key);
            }
            Close::Leave(_) | Close::Gracefully(_) => {
                let now = self.now();
                if let Some(entry) = self.registry.get_mut(key) {
                    if !entry.writer.is_busy() {
                        entry.last_written = now;
                    }
                    entry.writer.close();
                }
                self.registry.set_state(key, StreamState::Closing);
                self.schedule(key);
            }
            Close::Now(_) => {
                self.registry.remove(key);
            }
        }
    }

    /// A closing stream's writer finished: the stream is gone.
    pub(super) fn closed(&mut self, key: usize) {
        self.registry.remove(key);
    }

    /// A channel's sink closed or failed: its streams are closed, since
    /// nothing they send could be delivered. Other channels go on.
    pub(super) fn close_channel_streams(&mut self, channel: ChannelId) {
        for key in self
            .registry
            .keys_where(|e| e.is_open() && e.channel == channel)
        {
            self.leave_rooms(key);
            self.registry.remove(key);
            self.stats.departed(Departure::ClosedWithChannel, channel);
        }
        #[cfg(feature = "tracing")]
        tracing::warn!(channel, "channel sink closed: its streams were closed");
    }

    /// Puts the open stream `id` in `room`.
    pub(super) fn join(&mut self, id: StreamId, room: &RoomName) {
        let Some((key, entry)) = self.registry.open_mut(id) else {
            self.stats.dropped_unknown_id();
            return;
        };
        entry.in_rooms = true;
        let mut table = self.rooms.write();
        if table.join_at(id, key, room) {
            let (rooms, members) = table.counts();
            self.stats.rooms_now(rooms, members);
        }
    }

    /// Takes the stream `id` out of `room`.
    pub(super) fn leave(&mut self, id: StreamId, room: &str) {
        if self.registry.addressable_key(id).is_none() {
            self.stats.dropped_unknown_id();
            return;
        }
        let mut table = self.rooms.write();
        if table.leave(id, room) {
            let (rooms, members) = table.counts();
            self.stats.rooms_now(rooms, members);
        }
    }

    /// Takes a departing stream out of every room it is in.
    fn leave_rooms(&mut self, key: usize) {
        let Some(entry) = self.registry.get_mut(key).filter(|e| e.in_rooms) else {
            return;
        };
        entry.in_rooms = false;
        let mut table = self.rooms.write();
        table.leave_all(entry.id);
        let (rooms, members) = table.counts();
        self.stats.rooms_now(rooms, members);
    }

    /// Closes every stream the application could still address, gracefully
    /// (a graceful shutdown of the whole multiplexer).
    pub(super) fn close_all_gracefully(&mut self) {
        for key in self.registry.keys_where(StreamEntry::is_addressable) {
            self.close(key, Close::Gracefully(DisconnectReason::Shutdown));
        }
    }

    /// Drops every stream at once, closing the connections. Open ones are
    /// counted as aborted: there is no one left to announce them to.
    pub(super) fn abort_all(&mut self) {
        let mut table = self.rooms.write();
        for entry in self.registry.drain() {
            if entry.in_rooms {
                table.leave_all(entry.id);
            }
            if entry.is_open() {
                self.stats.departed(Departure::Aborted, entry.channel);
            }
        }
        let (rooms, members) = table.counts();
        self.stats.rooms_now(rooms, members);
        drop(table);
        self.channels.clear();
    }

    /// Whether a clock was given: time limits apply.
    pub(super) fn is_timed(&self) -> bool {
        self.timers.is_some()
    }

    /// Records that the writer at `key` handed values on or finished a
    /// flush: its socket is taking bytes.
    pub(super) fn wrote(&mut self, key: usize) {
        if self.timers.is_none() {
            return;
        }
        let now = self.now();
        if let Some(entry) = self.registry.get_mut(key) {
            entry.last_written = now;
        }
    }

    /// Makes sure the timer wheel looks at the stream at `key` by its
    /// nearest deadline (call it when a deadline may have come closer).
    pub(super) fn schedule(&mut self, key: usize) {
        if let (Some(timers), Some(entry)) = (&mut self.timers, self.registry.get_mut(key)) {
            timers.schedule(key, entry);
        }
    }

    /// Takes the clock's ticks and closes the streams whose limits passed,
    /// up to [`EXPIRIES_PER_POLL`] of them. Returns whether some are left
    /// for the next poll.
    pub(super) fn expire(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timers) = &mut self.timers else {
            return false;
        };
        timers.poll_ticks(cx);
        for _ in 0..EXPIRIES_PER_POLL {
            let Some((at, (key, id))) = self.timers.as_mut().and_then(Timers::next_due) else {
                break;
            };
            let Some(entry) = self.registry.get_mut(key).filter(|e| e.id == id) else {
                continue;
            };
            let Some(timers) = &mut self.timers else {
                break;
            };
            match timers.check(at, key, entry) {
                None => {}
                Some(Expiry::Write) => self.close(key, Close::Now(DisconnectReason::WriteTimeout)),
                Some(Expiry::Idle) => self.close(key, Close::Leave(DisconnectReason::IdleTimeout)),
                Some(Expiry::Linger) => {
                    self.close(key, Close::Gracefully(DisconnectReason::Linkdead));
                }
            }
        }
        let Some(timers) = &mut self.timers else {
            return false;
        };
        // Takes the ticks that came meanwhile, or registers for the next.
        timers.poll_ticks(cx);
        timers.has_due()
    }
}

/// A departure as a `tracing` event: the ones the multiplexer decides
/// (a slow or silent client) at INFO, the others at DEBUG.
#[cfg(feature = "tracing")]
fn trace_departure(id: StreamId, channel: ChannelId, reason: DisconnectReason) {
    match reason {
        DisconnectReason::BacklogFull
        | DisconnectReason::IdleTimeout
        | DisconnectReason::WriteTimeout => {
            tracing::info!(stream = id, channel, ?reason, "stream disconnected");
        }
        _ => tracing::debug!(stream = id, channel, ?reason, "stream disconnected"),
    }
}
