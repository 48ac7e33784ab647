//! Applying the application's outgoing packets — messages, moves and
//! closes — in the order they come.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::config::{BacklogPolicy, Config};
use crate::packet::Target;
use crate::run::lifecycle::{Close, Streams};
use crate::run::parts::Parts;
use crate::run::writing::WriteQueue;
use crate::{Delivery, DisconnectReason, OutgoingPacket, StreamId};

/// Values queued for streams per poll (a value sent to 1,000 ids counts
/// 1,000), so that one broadcast to every client cannot hog a poll.
const DELIVERIES_PER_POLL: usize = 16 * 1024;

/// The application's outgoing stream, and the message it is delivering.
#[derive(Debug)]
pub(crate) struct Outgoing<Out, V> {
    /// `None` once the stream ended, or once a graceful shutdown has applied
    /// what was sent before it.
    stream: Option<Out>,
    /// A message not yet queued to all its recipients: the poll's budget
    /// ran out, or a recipient was full under [`BacklogPolicy::Wait`].
    unfinished: Option<Unfinished<V>>,
    sender_buffer_size: usize,
    backlog_policy: BacklogPolicy,
}

/// An outgoing message and how far its delivery got.
#[derive(Debug)]
struct Unfinished<V> {
    recipients: Recipients,
    values: Vec<V>,
    delivery: Delivery,
    next: usize,
}

/// Whom a message in delivery goes to.
#[derive(Debug)]
enum Recipients {
    Ids(Vec<StreamId>),
    /// A room's members as they were when the message was taken: members
    /// who join later do not get it, members who leave meanwhile are
    /// skipped once gone.
    ///
    /// `skip` is the place among them of the member left out (`except`),
    /// if any: found once per message from the room's index of places, so
    /// that the delivery loop does not compare every member with it.
    /// `keys` are the members' registry keys, place for place.
    Room {
        members: Arc<Vec<StreamId>>,
        keys: Arc<Vec<usize>>,
        skip: Option<usize>,
    },
}

/// Why [`Outgoing::deliver_each`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every recipient has been served.
    Done,
    /// The poll's budget ran out.
    Budget,
    /// A recipient is full and the policy waits for room.
    Waiting,
}

/// Whether packets that come after a graceful shutdown began are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intake {
    /// Take whatever comes.
    Open,
    /// Apply what was sent before the shutdown, then take nothing more.
    Draining,
}

impl<Out, V> Outgoing<Out, V> {
    pub(crate) fn new(stream: Out, config: &Config) -> Self {
        Self {
            stream: Some(stream),
            unfinished: None,
            sender_buffer_size: config.sender_buffer_size,
            backlog_policy: config.backlog_policy,
        }
    }

    /// Whether everything the application sent (before a shutdown) has been
    /// applied.
    pub(crate) fn is_done(&self) -> bool {
        self.stream.is_none() && self.unfinished.is_none()
    }

    /// Whether a message waits for room in a backlog.
    pub(crate) fn is_waiting(&self) -> bool {
        self.unfinished.is_some()
    }

    /// Drops the stream and what is left of a message.
    pub(crate) fn clear(&mut self) {
        self.stream = None;
        self.unfinished = None;
    }
}

impl<Out, V> Outgoing<Out, V>
where
    Out: Stream<Item = OutgoingPacket<V>> + Unpin,
    V: Clone,
{
    /// Applies outgoing packets in the order they come, up to
    /// [`DELIVERIES_PER_POLL`] values queued. Returns whether its budget ran
    /// out.
    pub(crate) fn apply<P: Parts<Value = V>>(
        &mut self,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
        intake: Intake,
        cx: &mut Context<'_>,
    ) -> bool {
        let mut budget = DELIVERIES_PER_POLL;
        loop {
            if let Some(unfinished) = self.unfinished.take() {
                self.deliver(unfinished, streams, writers, &mut budget);
                if self.unfinished.is_some() {
                    return budget == 0;
                }
            }
            if budget == 0 {
                return true;
            }
            let Some(stream) = self.stream.as_mut() else {
                return false;
            };
            match Pin::new(stream).poll_next(cx) {
                Poll::Ready(Some(OutgoingPacket::Message(message))) => {
                    let recipients = match message.target {
                        Target::Ids(ids) => Recipients::Ids(ids),
                        Target::Room { room, except } => {
                            streams.stats.room_send();
                            let Some((members, keys, skip)) =
                                streams.rooms.read().members_and_place(&room, except)
                            else {
                                continue;
                            };
                            Recipients::Room {
                                members,
                                keys,
                                skip,
                            }
                        }
                    };
                    let mut values = message.values;
                    if matches!(message.delivery, Delivery::Latest(_)) && values.len() > 1 {
                        // The newest value of a key is all it stands for.
                        values.drain(..values.len() - 1);
                    }
                    self.unfinished = Some(Unfinished {
                        recipients,
                        values,
                        delivery: message.delivery,
                        next: 0,
                    });
                }
                Poll::Ready(Some(OutgoingPacket::Join(ids, room))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        streams.join(id, &room);
                    }
                }
                Poll::Ready(Some(OutgoingPacket::Leave(ids, room))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        streams.leave(id, &room);
                    }
                }
                Poll::Ready(Some(OutgoingPacket::ChangeChannel(ids, channel))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        streams.change_channel(id, channel);
                    }
                }
                Poll::Ready(Some(OutgoingPacket::Shutdown(ids))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        match streams.registry.addressable_key(id) {
                            Some(key) => {
                                streams.close(key, Close::Gracefully(DisconnectReason::Shutdown))
                            }
                            None => streams.stats.dropped_unknown_id(),
                        }
                    }
                }
                Poll::Ready(None) => self.stream = None,
                Poll::Pending => {
                    if intake == Intake::Draining {
                        // What the application sent before the shutdown
                        // has been applied; nothing more is taken.
                        self.stream = None;
                    }
                    return false;
                }
            }
        }
    }

    /// Queues a message's values to its recipients, from where it stopped,
    /// until done, out of budget, or (under [`BacklogPolicy::Wait`]) at a
    /// recipient with no room; in the last two cases it is kept in
    /// `self.unfinished`.
    fn deliver<P: Parts<Value = V>>(
        &mut self,
        mut message: Unfinished<V>,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
        budget: &mut usize,
    ) {
        let stop = self.deliver_each(&mut message, streams, writers, budget);
        if stop != Stop::Done {
            self.unfinished = Some(message);
        }
    }

    /// The loop of [`Self::deliver`], over the recipients as plain ids:
    /// what tells a room from an id list, and whether one member is left
    /// out, is looked at once per message, not unpacked per recipient.
    /// A recipient short of room goes through [`Self::deliver_to_full`].
    fn deliver_each<P: Parts<Value = V>>(
        &self,
        message: &mut Unfinished<V>,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
        budget: &mut usize,
    ) -> Stop {
        let Unfinished {
            recipients,
            values,
            delivery,
            next,
        } = message;
        // `keys` is empty for an id list: ids are looked up.
        let (ids, keys, to_room, skip): (&[StreamId], &[usize], bool, Option<usize>) =
            match recipients {
                Recipients::Ids(ids) => (ids, &[], false, None),
                Recipients::Room {
                    members,
                    keys,
                    skip,
                } => (members, keys, true, *skip),
            };
        let (values, delivery, start) = (&values[..], *delivery, *next);
        let capacity = self.sender_buffer_size;
        let count = values.len().max(1);
        let (now, timed) = (streams.now(), streams.is_timed());
        let latest = match delivery {
            Delivery::Latest(latest) => Some(latest),
            _ => None,
        };
        // A single plain value may skip the backlog of an idle writer (see
        // `Writer::hand_over`); a keyed one is queued, where the next value
        // of its key can still replace it.
        let direct = match values {
            [value] if latest.is_none() => Some(value),
            _ => None,
        };
        let mut left = *budget;
        // Values handed straight to sinks, counted once at the end.
        let mut written = 0;
        // The recipients are the ids before the one left out and those
        // after it: two runs over plain ids, with nothing to compare per id.
        let end = ids.len();
        let runs = match skip {
            Some(skip) if start <= skip && skip < end => [start..skip, skip + 1..end],
            _ => [start..end, end..end],
        };
        let stop = 'runs: {
            for run in runs {
                let from = run.start;
                for (offset, &id) in ids.get(run).unwrap_or_default().iter().enumerate() {
                    if left < count && left < DELIVERIES_PER_POLL {
                        *next = from + offset;
                        left = 0;
                        break 'runs Stop::Budget;
                    }
                    let recipient = if to_room {
                        // A member that departed after the message took the
                        // room's members left the room then: it is not owed
                        // the message.
                        let key = keys.get(from + offset).copied().unwrap_or(usize::MAX);
                        streams.registry.open_at(key, id).map(|entry| (key, entry))
                    } else {
                        streams.registry.addressable_mut(id)
                    };
                    let Some((key, entry)) = recipient else {
                        if !to_room {
                            // Gone (or never there): dropped and counted.
                            streams.stats.dropped_unknown_id();
                        }
                        continue;
                    };
                    let queued = if let Some(value) = direct
                        && let Some(was_busy) = entry.writer.hand_over(value)
                    {
                        written += 1;
                        if !was_busy {
                            // Unflushed now: its turn flushes it (or leaves
                            // it for later, as the flush policy says).
                            writers.schedule(key);
                        }
                        if !was_busy || timed {
                            // The socket took it: progress, as if a pump had
                            // written it; an idle writer's limit starts now.
                            entry.last_written = now;
                        }
                        if !was_busy && timed {
                            streams.schedule(key);
                        }
                        Queued::Added
                    } else if let Some(latest) = latest
                        && let Some(value) = values.last()
                        && entry.writer.replace_latest(latest, value)
                    {
                        streams.stats.conflated();
                        Queued::Replaced
                    } else if entry.writer.backlog_len() + values.len() <= capacity {
                        let was_busy = entry.writer.is_busy();
                        if entry.writer.enqueue(values, latest) {
                            writers.schedule(key);
                        }
                        if !was_busy {
                            // Its write time limit starts now; a busy
                            // writer's runs from its last progress, whatever
                            // is added.
                            entry.last_written = now;
                            if timed {
                                streams.schedule(key);
                            }
                        }
                        Queued::Added
                    } else {
                        self.deliver_to_full(values, delivery, key, latest, streams, writers)
                    };
                    if queued == Queued::Waiting {
                        *next = from + offset;
                        break 'runs Stop::Waiting;
                    }
                    left = left.saturating_sub(count);
                }
            }
            *next = ids.len();
            Stop::Done
        };
        *budget = left;
        streams.stats.frames_out(written);
        stop
    }

    /// Delivers a message to a recipient whose backlog has no room for it:
    /// first its writer is pumped, to move what its socket takes out of
    /// the backlog (a backlog holds what the *socket* has not taken, so a
    /// burst to a client whose socket has room is written out rather than
    /// counted against it). Only when the socket takes no more is the
    /// recipient slow, and its delivery class, then the policy, decide.
    fn deliver_to_full<P: Parts<Value = V>>(
        &self,
        values: &[V],
        delivery: Delivery,
        key: usize,
        latest: Option<u64>,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
    ) -> Queued {
        let (capacity, needed) = (self.sender_buffer_size, values.len());
        let has_room = |streams: &Streams<P>| {
            streams
                .registry
                .get(key)
                .is_some_and(|e| e.writer.backlog_len() + needed <= capacity)
        };
        // Each pump moves some values or finds the sink full, so this ends.
        while writers.pump_now(streams, key) > 0 && !has_room(streams) {}
        let now = streams.now();
        let Some(entry) = streams.registry.get_mut(key) else {
            // The pump found the connection dead and closed it.
            return Queued::Dropped;
        };
        if entry.writer.backlog_len() + needed <= capacity {
            let was_busy = entry.writer.is_busy();
            if entry.writer.enqueue(values, latest) {
                writers.schedule(key);
            }
            if !was_busy {
                entry.last_written = now;
                streams.schedule(key);
            }
            return Queued::Added;
        }
        if delivery == Delivery::Volatile {
            streams.stats.volatile_dropped();
            return Queued::Dropped;
        }
        if self.backlog_policy == BacklogPolicy::Wait && needed <= capacity {
            return Queued::Waiting;
        }
        streams.close(key, Close::Now(DisconnectReason::BacklogFull));
        Queued::Dropped
    }
}

/// What delivering a message to one recipient did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// Queued in its backlog.
    Added,
    /// It replaced a value of the same key in its backlog.
    Replaced,
    /// Not queued: the recipient is gone, or was dropped as slow, or the
    /// message was volatile.
    Dropped,
    /// Not queued yet: the policy waits for room.
    Waiting,
}
