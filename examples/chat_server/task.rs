//! What the lobby and the rooms tasks have in common: the loop that feeds a
//! channel's packets to its consumer and sends the replies, the [`Gate`]
//! that answers bad input, and the [`Outbox`] of replies.

use std::collections::HashSet;
use std::future::poll_fn;
use std::task::{Context, Poll};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};
use stream_multiplexer::codec::LineError;
use stream_multiplexer::{
    DisconnectReason, IncomingMessage, IncomingPacket, OutgoingMessage, OutgoingPacket, RoomName,
    StreamId,
};

use crate::codec::{Ending, Heard, Reply, Text};
use crate::handover::Handover;
use crate::{MAX_LINE, Outgoing, Packet};

/// Inputs a task handles before it lets the executor run other tasks.
/// futures' mpsc receiver never returns `Pending` while it holds packets,
/// so without this a flooded lobby would keep an executor thread to itself.
const INPUTS_PER_TURN: usize = 64;

/// One channel's consumer: it turns what comes into replies.
pub(crate) trait Consumer {
    /// A packet from the multiplexer.
    fn packet(&mut self, packet: Packet, outbox: &mut Outbox);

    /// A stream handed over by the lobby (the rooms task only).
    fn handover(&mut self, handover: Handover, outbox: &mut Outbox) {
        let _ = (handover, outbox);
    }

    /// Whether it can take no packet until a hand-over comes.
    fn stalled(&self) -> bool {
        false
    }
}

/// What a task reads.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// Its channel's packets.
    pub(crate) packets: mpsc::Receiver<Packet>,
    /// Streams handed over by the lobby (the rooms task only).
    pub(crate) handovers: Option<mpsc::UnboundedReceiver<Handover>>,
    /// Says when the server is shutting down.
    pub(crate) stop: Option<oneshot::Receiver<()>>,
}

#[derive(Debug)]
enum Input {
    Packet(Packet),
    Handover(Handover),
    Stop,
}

impl Inputs {
    /// The next input: a stop first, then hand-overs (so that streams
    /// waiting for theirs wait as little as possible), then packets, none
    /// while `stalled`.
    fn poll_next(&mut self, stalled: bool, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        if let Some(stop) = &mut self.stop
            && let Poll::Ready(said) = stop.poll_unpin(cx)
        {
            self.stop = None;
            // A sender dropped unused says nothing.
            if said.is_ok() {
                return Poll::Ready(Some(Input::Stop));
            }
        }
        if let Some(handovers) = &mut self.handovers {
            match handovers.poll_next_unpin(cx) {
                Poll::Ready(Some(handover)) => return Poll::Ready(Some(Input::Handover(handover))),
                // The lobby is gone: so is the multiplexer, and nothing
                // is worth waiting for.
                Poll::Ready(None) => self.handovers = None,
                Poll::Pending if stalled => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        self.packets
            .poll_next_unpin(cx)
            .map(|packet| packet.map(Input::Packet))
    }
}

/// Feeds a channel's inputs to `consumer` and sends its replies, until the
/// multiplexer goes away.
///
/// When told to stop, it sends no more: it drops its replies' sender, so
/// that the multiplexer's outgoing stream ends once both tasks have
/// stopped and it has taken everything they sent (see `main`'s
/// `then_goodbye`). It still reads its channel, and drops what comes, so
/// that the multiplexer can hand over its last announcements and finish.
pub(crate) async fn serve(
    mut consumer: impl Consumer,
    mut inputs: Inputs,
    replies: mpsc::Sender<Outgoing>,
) {
    let mut replies = Some(replies);
    let mut outbox = Outbox::default();
    let mut handled = 0_usize;
    loop {
        let input = poll_fn(|cx| inputs.poll_next(consumer.stalled(), cx)).await;
        let Some(input) = input else {
            return;
        };
        match input {
            Input::Stop => {
                replies = None;
                inputs.handovers = None;
            }
            _ if replies.is_none() => {}
            Input::Packet(packet) => consumer.packet(packet, &mut outbox),
            Input::Handover(handover) => consumer.handover(handover, &mut outbox),
        }
        if let Some(replies) = &mut replies {
            for reply in outbox.packets.drain(..) {
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
        }
        handled += 1;
        if handled.is_multiple_of(INPUTS_PER_TURN) {
            smol::future::yield_now().await;
        }
    }
}

/// A good line from a user.
#[derive(Debug)]
pub(crate) struct Said {
    pub(crate) text: String,
    /// How it ended (see [`Outbox::answer_in`]).
    pub(crate) ending: Option<Ending>,
}

/// What a consumer hears, once the [`Gate`] has dealt with bad input.
#[derive(Debug)]
pub(crate) enum Event {
    /// The stream came into this channel.
    Arrived(StreamId),
    Said(StreamId, Said),
    /// It sent a bad line and was told to go: nothing more is heard from
    /// it.
    Refused(StreamId),
    /// It left this channel.
    Left(StreamId, DisconnectReason),
}

/// Stands between the multiplexer and a channel's consumer and deals with
/// bad input, so that consumers see only good lines.
///
/// A bad line gets its client an error line and a disconnect: `Shutdown`,
/// which writes the error line before closing. The connection stays open
/// until the multiplexer takes that `Shutdown`, and lines read from it
/// meanwhile are dropped here: a client told to go is not heard any more.
/// A stream refused in the lobby as it moves to the rooms is refused there
/// too (its hand-over says so), so that nothing it sends after the bad
/// line is heard in either.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Streams told to go, until their departure is announced: at most one
    /// entry per open connection.
    rejected: HashSet<StreamId>,
}

impl Gate {
    /// The event to hand the consumer, if any, answering bad input itself.
    pub(crate) fn admit(&mut self, packet: Packet, outbox: &mut Outbox) -> Option<Event> {
        match packet {
            IncomingPacket::StreamConnected(id) => Some(Event::Arrived(id)),
            IncomingPacket::StreamDisconnected(id, reason) => {
                self.rejected.remove(&id);
                Some(Event::Left(id, reason))
            }
            IncomingPacket::Message(IncomingMessage { stream_id, .. })
                if self.rejected.contains(&stream_id) =>
            {
                None
            }
            IncomingPacket::Message(IncomingMessage { stream_id, value }) => match value {
                Ok(Heard {
                    line: Ok(text),
                    ending,
                }) => Some(Event::Said(stream_id, Said { text, ending })),
                Ok(Heard {
                    line: Err(bad_line),
                    ..
                }) => {
                    self.refuse(stream_id);
                    outbox.reject(stream_id, bad_line);
                    Some(Event::Refused(stream_id))
                }
                // The connection failed and its reader ended: the
                // multiplexer closes it and announces it next, and there is
                // nobody left to answer.
                Err(error) => {
                    tracing::info!(client = stream_id, %error, "connection failed");
                    None
                }
            },
        }
    }

    /// Hears nothing more from `id` until it leaves.
    pub(crate) fn refuse(&mut self, id: StreamId) {
        self.rejected.insert(id);
    }
}

/// The packets a consumer sends, in order, and how its clients end their
/// lines.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    packets: Vec<Outgoing>,
    /// This task's clients whose connection's encoder ends lines with
    /// `\r\n`; the others' end them with `\n`, as a new connection's does.
    crlf: HashSet<StreamId>,
}

impl Outbox {
    pub(crate) fn push(&mut self, packet: Outgoing) {
        self.packets.push(packet);
    }

    /// Sends one line to `id`. The server's own lines are short; lines
    /// with a user's text in them are checked before (see
    /// [`fits`](Self::fits)), since the codec refuses to write a longer
    /// one and the failed write would disconnect the client.
    pub(crate) fn tell(&mut self, id: StreamId, text: impl Into<Text>) {
        let message = OutgoingMessage::new([id], [line(text)]);
        self.push(OutgoingPacket::Message(message));
    }

    /// Sends one line to everyone in `room` but `sender`.
    pub(crate) fn tell_room(&mut self, room: &RoomName, sender: StreamId, text: impl Into<Text>) {
        let message = OutgoingMessage::to_room(room.clone(), [line(text)]).except(sender);
        self.push(OutgoingPacket::Message(message));
    }

    /// Whether `text` fits in a line; if not, `id` is told, and the text
    /// is not sent (rather than cut short).
    pub(crate) fn fits(&mut self, id: StreamId, text: &str) -> bool {
        let fits = text.len() <= MAX_LINE;
        if !fits {
            self.tell(id, "* error: line too long to send");
        }
        fits
    }

    /// Sends a last line, then closes the connection once it is written.
    pub(crate) fn goodbye(&mut self, id: StreamId, text: impl Into<Text>) {
        self.tell(id, text);
        self.push(OutgoingPacket::Shutdown(vec![id]));
    }

    /// A client left its channel: what it is owed now. A client whose
    /// reading side ended (a half-close) or that was idle too long can
    /// still be written to: it has had its replies (they were sent before
    /// this, in answer to the lines read before its end), so it is closed;
    /// an idle one is told why first. Other departures have closed the
    /// connection already, or moved it.
    pub(crate) fn farewell(&mut self, id: StreamId, reason: DisconnectReason) {
        match reason {
            DisconnectReason::IdleTimeout => self.goodbye(id, "* idle, bye"),
            DisconnectReason::Linkdead => self.push(OutgoingPacket::Shutdown(vec![id])),
            _ => {}
        }
    }

    /// A client sent a line over 4 KiB or one that is not UTF-8: it is
    /// told why, then disconnected.
    fn reject(&mut self, id: StreamId, error: LineError) {
        tracing::warn!(client = id, %error, "bad input; disconnecting");
        self.goodbye(id, format!("* error: {error}"));
    }

    /// Answers `id` in the line ending of the line it just sent: if that
    /// is not how its connection's encoder ends lines now, it is told to
    /// change, in order with the replies (a [`Reply::EndLinesWith`]).
    /// This task must be the only one writing to `id` (see
    /// [`assume`](Self::assume)).
    pub(crate) fn answer_in(&mut self, id: StreamId, ending: Option<Ending>) {
        let changed = match ending {
            Some(Ending::CrLf) => self.crlf.insert(id),
            Some(Ending::Lf) => self.crlf.remove(&id),
            None => false,
        };
        if let (true, Some(ending)) = (changed, ending) {
            let message = OutgoingMessage::new([id], [Reply::EndLinesWith(ending)]);
            self.push(OutgoingPacket::Message(message));
        }
    }

    /// How `id`'s connection ends lines, as far as this task has set it.
    pub(crate) fn ending(&self, id: StreamId) -> Ending {
        if self.crlf.contains(&id) {
            Ending::CrLf
        } else {
            Ending::Lf
        }
    }

    /// Takes over `id`, whose connection another task left ending lines
    /// with `ending`.
    pub(crate) fn assume(&mut self, id: StreamId, ending: Ending) {
        if ending == Ending::CrLf {
            self.crlf.insert(id);
        }
    }

    /// `id` is this task's no more.
    pub(crate) fn forget(&mut self, id: StreamId) {
        self.crlf.remove(&id);
    }
}

fn line(text: impl Into<Text>) -> Reply {
    let text = text.into();
    debug_assert!(text.len() <= MAX_LINE, "an unchecked line: {text:?}");
    Reply::Line(text)
}
