//! Reading: the ready streams of each channel, into its sink, while the sink
//! has room.

use std::task::{Context, Poll};

use crate::channel::{Channel, Readiness};
use crate::reader::Reader;
use crate::registry::StreamState;
use crate::run::lifecycle::{Close, Streams};
use crate::run::parts::Parts;
use crate::{DisconnectReason, IncomingMessage, IncomingPacket, StreamId};

/// Frames read per channel per poll.
const READS_PER_CHANNEL_POLL: usize = 4 * 1024;

/// Frames read from one stream before the next ready stream of its channel
/// gets a turn: a chatty stream cannot starve a quiet one.
const READS_PER_TURN: usize = 64;

/// Whether the channels' readers are polled, or only their announcements
/// handed over (during a graceful shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    On,
    Off,
}

/// For every channel: hands its waiting announcements to its sink, then
/// reads from its ready streams while the sink has room. A channel whose
/// sink closed has its streams closed. Returns whether a budget ran out.
pub(crate) fn read_channels<P: Parts>(
    streams: &mut Streams<P>,
    reading: Reading,
    cx: &mut Context<'_>,
) -> bool {
    let mut more = false;
    for index in 0..streams.channels.len() {
        if !streams.channels[index].is_open() {
            continue;
        }
        more |= read_channel(streams, index, reading, cx);
        if !streams.channels[index].is_open() {
            streams.close_channel_streams(index);
        }
    }
    more
}

fn read_channel<P: Parts>(
    streams: &mut Streams<P>,
    index: usize,
    reading: Reading,
    cx: &mut Context<'_>,
) -> bool {
    streams
        .hub
        .drain_readers(index, &mut streams.channels[index].ready);
    let now = streams.now();
    let mut budget = READS_PER_CHANNEL_POLL;
    let mut budget_ran_out = false;
    loop {
        let channel = &mut streams.channels[index];
        // Announcements first, always: a stream's StreamConnected must
        // reach the sink before anything read from it.
        if channel.send_announcements(cx) != Readiness::Ready || reading == Reading::Off {
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
        let Some(entry) = streams.registry.get_mut(key).filter(|e| e.channel == index) else {
            continue;
        };
        let StreamState::Open(reader) = &mut entry.state else {
            continue;
        };
        let turn = read_turn(entry.id, key, reader, channel, &mut budget, cx);
        if turn.read > 0 {
            entry.last_read = now;
            streams.stats.frames_in(turn.read as u64);
        }
        if turn.ended {
            // The reader ended or failed after yielding its items: the
            // client may still read what is sent to it (a half-close).
            streams.close(key, Close::Leave(DisconnectReason::Linkdead));
        }
    }
    streams.channels[index].flush(cx);
    budget_ran_out
}

/// What one turn of reading from a stream did.
struct Turn {
    read: usize,
    /// The reader ended (after yielding its items).
    ended: bool,
}

/// Reads one turn from a ready stream into its channel, whose sink has room:
/// up to [`READS_PER_TURN`] frames, while the sink keeps having room.
fn read_turn<R, Ch>(
    id: StreamId,
    key: usize,
    reader: &mut Reader<R>,
    channel: &mut Channel<Ch, R::Item>,
    budget: &mut usize,
    cx: &mut Context<'_>,
) -> Turn
where
    R: futures::Stream + Unpin,
    Ch: futures::Sink<IncomingPacket<R::Item>> + Unpin,
{
    let mut read = 0;
    let mut reader = reader.turn();
    let ended = loop {
        if read == READS_PER_TURN || *budget == 0 {
            // Back of the queue: the channel's other streams go first.
            reader.wake();
            break false;
        }
        match reader.poll_next() {
            Poll::Ready(Some(item)) => {
                read += 1;
                *budget -= 1;
                let message = IncomingPacket::Message(IncomingMessage::new(id, item));
                if channel.send(message) == Readiness::Closed {
                    break false;
                }
                match channel.poll_ready(cx) {
                    Readiness::Ready => {}
                    Readiness::Busy => {
                        // It may have more buffered and no waker registered:
                        // it goes first once the sink has room.
                        channel.ready.push_front(key);
                        break false;
                    }
                    Readiness::Closed => break false,
                }
            }
            Poll::Ready(None) => break true,
            Poll::Pending => break false,
        }
    };
    Turn { read, ended }
}
