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
    Room {
        members: Arc<Vec<StreamId>>,
        except: Option<StreamId>,
    },
}

impl Recipients {
    /// The `index`-th recipient, `Some(None)` for the one left out.
    #[inline]
    fn get(&self, index: usize) -> Option<Option<StreamId>> {
        match self {
            Recipients::Ids(ids) => ids.get(index).copied().map(Some),
            Recipients::Room { members, except } => members
                .get(index)
                .map(|&id| (Some(id) != *except).then_some(id)),
        }
    }
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
                            let Some(members) = streams.rooms.read().members(&room) else {
                                continue;
                            };
                            Recipients::Room { members, except }
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
    /// A recipient short of room goes through [`Self::deliver_to_full`].
    fn deliver<P: Parts<Value = V>>(
        &mut self,
        mut message: Unfinished<V>,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
        budget: &mut usize,
    ) {
        let capacity = self.sender_buffer_size;
        let count = message.values.len().max(1);
        let (now, timed) = (streams.now(), streams.is_timed());
        let latest = match message.delivery {
            Delivery::Latest(latest) => Some(latest),
            _ => None,
        };
        while let Some(recipient) = message.recipients.get(message.next) {
            if *budget < count && *budget < DELIVERIES_PER_POLL {
                self.unfinished = Some(message);
                *budget = 0;
                return;
            }
            let Some(id) = recipient else {
                message.next += 1;
                continue;
            };
            let to_room = matches!(message.recipients, Recipients::Room { .. });
            let Some((key, entry)) = streams
                .registry
                .addressable_mut(id)
                .filter(|(_, entry)| !to_room || entry.is_open())
            else {
                if !to_room {
                    // Gone (or never there): dropped and counted.
                    streams.stats.dropped_unknown_id();
                }
                // A member that departed after the message took the room's
                // members left the room then: it is not owed the message.
                message.next += 1;
                continue;
            };
            let queued = if let Some(latest) = latest
                && let Some(value) = message.values.last()
                && entry.writer.replace_latest(latest, value)
            {
                streams.stats.conflated();
                Queued::Replaced
            } else if entry.writer.backlog_len() + message.values.len() <= capacity {
                let was_busy = entry.writer.is_busy();
                if entry.writer.enqueue(&message.values, latest) {
                    writers.schedule(key);
                }
                if !was_busy {
                    // Its write time limit starts now; a busy writer's
                    // runs from its last progress, whatever is added.
                    entry.last_written = now;
                    if timed {
                        streams.schedule(key);
                    }
                }
                Queued::Added
            } else {
                self.deliver_to_full(&message, key, latest, streams, writers)
            };
            if queued == Queued::Waiting {
                self.unfinished = Some(message);
                return;
            }
            *budget = budget.saturating_sub(count);
            message.next += 1;
        }
    }

    /// Delivers a message to a recipient whose backlog has no room for it:
    /// first its writer is pumped, to move what its socket takes out of
    /// the backlog (a backlog holds what the *socket* has not taken, so a
    /// burst to a client whose socket has room is written out rather than
    /// counted against it). Only when the socket takes no more is the
    /// recipient slow, and its delivery class, then the policy, decide.
    fn deliver_to_full<P: Parts<Value = V>>(
        &self,
        message: &Unfinished<V>,
        key: usize,
        latest: Option<u64>,
        streams: &mut Streams<P>,
        writers: &mut WriteQueue,
    ) -> Queued {
        let (capacity, needed) = (self.sender_buffer_size, message.values.len());
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
            if entry.writer.enqueue(&message.values, latest) {
                writers.schedule(key);
            }
            if !was_busy {
                entry.last_written = now;
                streams.schedule(key);
            }
            return Queued::Added;
        }
        if message.delivery == Delivery::Volatile {
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
