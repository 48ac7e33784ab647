//! Steps 4 and 5 of [`Run`]'s poll: reading the ready streams of each
//! channel into its sink, and writing the ready streams' queued values.

use std::io;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use super::{Phase, READS_PER_CHANNEL_POLL, READS_PER_TURN, Run, WRITERS_PER_POLL};
use crate::channel::{Channel, Readiness};
use crate::stream::{Reader, WriteOutcome};
use crate::{
    ControlMessage, DisconnectReason, IdGen, IncomingMessage, IncomingPacket, OutgoingPacket,
    StreamId,
};

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
    /// Step 4: for every channel, hand waiting announcements to its sink,
    /// then read from its ready streams while the sink has room (SPEC §4.5).
    /// Returns whether a budget ran out.
    pub(super) fn pump_channels(&mut self, cx: &mut Context<'_>) -> bool {
        let mut more = false;
        let read = self.phase == Phase::Serving;
        for index in 0..self.channels.len() {
            if !self.channels[index].is_open() {
                continue;
            }
            more |= self.pump_channel(index, read, cx);
            if !self.channels[index].is_open() {
                self.close_channel_streams(index);
            }
        }
        more
    }

    fn pump_channel(&mut self, index: usize, read: bool, cx: &mut Context<'_>) -> bool {
        self.hub.drain_into(index, &mut self.channels[index].ready);
        let mut budget = READS_PER_CHANNEL_POLL;
        let mut budget_ran_out = false;
        loop {
            let channel = &mut self.channels[index];
            // Announcements first, always: a stream's StreamConnected must
            // reach the sink before anything read from it.
            if channel.send_announcements(cx) != Readiness::Ready {
                break;
            }
            if !read {
                break;
            }
            if budget == 0 {
                budget_ran_out = !channel.ready.is_empty();
                break;
            }
            let Some(key) = channel.ready.pop_front() else {
                break;
            };
            // The key may be stale: the stream left, moved, or is closing.
            let Some(connection) = self.streams.get_mut(key).filter(|c| c.channel == index) else {
                continue;
            };
            let id = connection.id;
            let Some(reader) = connection.reader.as_mut() else {
                continue;
            };
            let (read, ended) = read_turn(id, key, reader, channel, &mut budget, cx);
            self.stats.frames_in(read as u64);
            if ended {
                // The reader ended or failed after yielding its items.
                self.close_now(key, DisconnectReason::Linkdead);
            }
        }
        self.channels[index].flush(cx);
        budget_ran_out
    }

    /// A channel's sink closed or failed: its streams are closed, since
    /// nothing they send could be delivered (SPEC §4.8). Other channels go
    /// on.
    fn close_channel_streams(&mut self, channel: usize) {
        for key in self.streams.open_keys(Some(channel)) {
            if self.streams.remove(key).is_some() {
                self.stats.closed_with_channel();
                self.stats.stream_closed();
            }
        }
    }

    /// Step 5: write queued values to the streams whose writers are ready.
    /// Returns whether its budget ran out, how many values were written,
    /// and whether a failed writer announced a departure.
    ///
    /// With `flush` false the writers hand their values to their sinks but
    /// do not flush them; they are kept to be flushed by a later poll.
    pub(super) fn pump_writers(&mut self, flush: bool) -> (bool, usize, bool) {
        let queue = self.writers_queue();
        self.hub.drain_into(queue, &mut self.writers_ready);
        if flush {
            self.writers_ready.append(&mut self.writers_unflushed);
        }
        let take = self.writers_ready.len().min(WRITERS_PER_POLL);
        let mut total = 0;
        let mut pumping = std::mem::take(&mut self.writers_pumping);
        pumping.extend(self.writers_ready.drain(..take));
        let mut departed = false;
        for &key in &pumping {
            let Some(connection) = self.streams.get_mut(key) else {
                continue;
            };
            let (written, outcome) = connection.writer.pump(flush);
            total += written;
            self.stats.frames_out(written as u64);
            match outcome {
                WriteOutcome::Waiting | WriteOutcome::Yielded => {}
                WriteOutcome::Unflushed => self.writers_unflushed.push(key),
                WriteOutcome::Closed => {
                    self.streams.remove(key);
                }
                WriteOutcome::Failed => {
                    self.close_now(key, DisconnectReason::Linkdead);
                    departed = true;
                }
            }
        }
        pumping.clear();
        self.writers_pumping = pumping;
        (!self.writers_ready.is_empty(), total, departed)
    }
}

/// Reads one turn from a ready stream into its channel, whose sink has room:
/// up to [`READS_PER_TURN`] frames, while the sink keeps having room. Returns
/// how many frames were read and whether the reader ended.
fn read_turn<R, Ch>(
    id: StreamId,
    key: usize,
    reader: &mut Reader<R>,
    channel: &mut Channel<Ch, R::Item>,
    budget: &mut usize,
    cx: &mut Context<'_>,
) -> (usize, bool)
where
    R: Stream + Unpin,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
    let mut read = 0;
    loop {
        if read == READS_PER_TURN || *budget == 0 {
            // Back of the queue: the channel's other streams go first.
            reader.wakeup.wake();
            return (read, false);
        }
        match reader.poll_next() {
            Poll::Ready(Some(item)) => {
                read += 1;
                *budget -= 1;
                let message = IncomingPacket::Message(IncomingMessage::new(id, item));
                if channel.send(message) == Readiness::Closed {
                    return (read, false);
                }
                match channel.poll_ready(cx) {
                    Readiness::Ready => {}
                    Readiness::Busy => {
                        // It may have more buffered and no waker registered:
                        // it goes first once the sink has room.
                        channel.ready.push_front(key);
                        return (read, false);
                    }
                    Readiness::Closed => return (read, false),
                }
            }
            Poll::Ready(None) => return (read, true),
            Poll::Pending => return (read, false),
        }
    }
}
