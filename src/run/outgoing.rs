//! Step 3 of [`Run`]'s poll: applying the application's outgoing packets —
//! messages, moves and closes — in the order they come.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use super::{DELIVERIES_PER_POLL, Phase, Run};
use crate::channel::Channel;
use crate::multiplexer::BacklogPolicy;
use crate::wake::Wakeup;
use crate::{ControlMessage, DisconnectReason, IdGen, IncomingPacket, OutgoingPacket, StreamId};

/// An outgoing message and how far its delivery got.
pub(super) struct Unfinished<V> {
    ids: Vec<StreamId>,
    values: Vec<V>,
    next: usize,
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
    /// Step 3: apply outgoing packets in the order they come (SPEC §4.3).
    /// Returns whether its budget ran out.
    pub(super) fn apply_outgoing(&mut self, cx: &mut Context<'_>) -> bool {
        let mut budget = DELIVERIES_PER_POLL;
        loop {
            if let Some(unfinished) = self.unfinished.take() {
                self.deliver(unfinished, &mut budget);
                if self.unfinished.is_some() {
                    return budget == 0;
                }
            }
            if budget == 0 {
                return true;
            }
            let Some(outgoing) = self.outgoing.as_mut() else {
                return false;
            };
            match Pin::new(outgoing).poll_next(cx) {
                Poll::Ready(Some(OutgoingPacket::Message(message))) => {
                    self.unfinished = Some(Unfinished {
                        ids: message.ids,
                        values: message.values,
                        next: 0,
                    });
                }
                Poll::Ready(Some(OutgoingPacket::ChangeChannel(ids, channel))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        self.change_channel(id, channel);
                    }
                }
                Poll::Ready(Some(OutgoingPacket::Shutdown(ids))) => {
                    budget = budget.saturating_sub(ids.len());
                    for id in ids {
                        match self.streams.open_key(id) {
                            Some(key) => self.close_gracefully(key, DisconnectReason::Shutdown),
                            None => self.stats.dropped_unknown_id(),
                        }
                    }
                }
                Poll::Ready(None) => self.outgoing = None,
                Poll::Pending => {
                    if self.phase == Phase::ShuttingDown {
                        // What the application sent before the shutdown
                        // has been applied; nothing more is taken.
                        self.outgoing = None;
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
    fn deliver(&mut self, mut message: Unfinished<V>, budget: &mut usize) {
        let capacity = self.config.sender_buffer_size;
        let count = message.values.len().max(1);
        while let Some(&id) = message.ids.get(message.next) {
            if *budget < count && *budget < DELIVERIES_PER_POLL {
                self.unfinished = Some(message);
                *budget = 0;
                return;
            }
            let Some(key) = self.streams.open_key(id) else {
                // Gone (or never there): dropped and counted (SPEC §4.4).
                self.stats.dropped_unknown_id();
                message.next += 1;
                continue;
            };
            let Some(connection) = self.streams.get_mut(key) else {
                message.next += 1;
                continue;
            };
            let room = capacity.saturating_sub(connection.writer.backlog_len());
            if message.values.len() > room {
                let wait = self.config.backlog_policy == BacklogPolicy::Wait
                    && message.values.len() <= capacity;
                if wait {
                    self.unfinished = Some(message);
                    return;
                }
                self.close_now(key, DisconnectReason::BacklogFull);
            } else if connection.writer.enqueue(&message.values) {
                self.writers_ready.push(key);
            }
            *budget = budget.saturating_sub(count);
            message.next += 1;
        }
    }

    /// Moves a stream to another channel (SPEC §4.2). The old channel's
    /// `StreamDisconnected` follows every message already handed to it
    /// (frames go to the sink as soon as they are read), and the new
    /// channel's `StreamConnected` is queued before the reader is polled in
    /// its new channel (a channel hands over its announcements before it
    /// polls any reader), so no frame crosses the move.
    fn change_channel(&mut self, id: StreamId, to: usize) {
        let Some(key) = self.streams.open_key(id) else {
            self.stats.dropped_unknown_id();
            return;
        };
        if !self.channels.get(to).is_some_and(Channel::is_open) {
            self.stats.move_rejected();
            return;
        }
        let Some(connection) = self.streams.get_mut(key) else {
            return;
        };
        let from = connection.channel;
        if from == to {
            return;
        }
        let Some(reader) = connection.reader.as_mut() else {
            return;
        };
        connection.channel = to;
        // A waker that queues the reader on its new channel; the old one may
        // still fire, and the old channel skips the key then.
        reader.wakeup = Wakeup::new(&self.hub, to, key, true);
        let reason = DisconnectReason::ChannelChange(to);
        self.channels[from].announce_disconnected(id, reason);
        self.stats.disconnected(reason);
        self.channels[to].announce_connected(id);
    }

    /// Stops reading a stream and announces its departure, then lets its
    /// writer flush what is queued and close (`Message` then `Shutdown`
    /// delivers the message, SPEC §4.3). The id stays taken until the writer
    /// has closed, but the stream no longer counts against `max_streams`.
    pub(super) fn close_gracefully(&mut self, key: usize, reason: DisconnectReason) {
        let Some(connection) = self.streams.get_mut(key) else {
            return;
        };
        if connection.reader.take().is_none() {
            return;
        }
        connection.writer.close();
        let (id, channel) = (connection.id, connection.channel);
        self.streams.mark_closing(key);
        self.announce_departure(id, channel, reason);
    }

    /// Drops a stream at once, closing its connection, and announces its
    /// departure if it had not been announced yet.
    pub(super) fn close_now(&mut self, key: usize, reason: DisconnectReason) {
        if let Some(connection) = self.streams.remove(key)
            && connection.is_open()
        {
            self.announce_departure(connection.id, connection.channel, reason);
        }
    }

    fn announce_departure(&mut self, id: StreamId, channel: usize, reason: DisconnectReason) {
        self.channels[channel].announce_disconnected(id, reason);
        self.stats.disconnected(reason);
        self.stats.stream_closed();
    }
}
