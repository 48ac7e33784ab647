//! Channel 0, the lobby: new connections, until they pick a free name.

use std::collections::HashMap;

use futures::channel::mpsc;
use stream_multiplexer::{DisconnectReason, OutgoingPacket, StreamId};

use crate::handover::{Arrival, Handover, Keeping};
use crate::nicknames::{Nicknames, SharedNicknames};
use crate::task::{Consumer, Event, Gate, Outbox, Said};
use crate::text::{Command, valid_name};
use crate::{EVERYONE, NAME_RULES, Packet, ROOMS, WELCOME};

/// The lobby's task: it welcomes new connections, hands out names, and
/// hands the named over to the rooms (see [`crate::handover`]).
#[derive(Debug)]
pub(crate) struct Lobby {
    nicknames: SharedNicknames,
    gate: Gate,
    /// Streams that claimed a name, until their move is done.
    arriving: HashMap<StreamId, Arrival>,
    handovers: mpsc::UnboundedSender<Handover>,
}

impl Lobby {
    pub(crate) fn new(
        nicknames: SharedNicknames,
        handovers: mpsc::UnboundedSender<Handover>,
    ) -> Self {
        Self {
            nicknames,
            gate: Gate::default(),
            arriving: HashMap::new(),
            handovers,
        }
    }
}

impl Consumer for Lobby {
    fn packet(&mut self, packet: Packet, outbox: &mut Outbox) {
        let Some(event) = self.gate.admit(packet, outbox) else {
            return;
        };
        match event {
            Event::Arrived(id) => {
                tracing::info!(client = id, "connected");
                // Every connection is in this room, whatever its channel,
                // until it leaves: the one message that reaches them all
                // is the shutdown notice (see `main`'s `then_goodbye`).
                outbox.push(OutgoingPacket::Join(vec![id], EVERYONE.into()));
                outbox.tell(id, WELCOME);
            }
            Event::Said(id, said) => match self.arriving.get_mut(&id) {
                // Read before the move: for the rooms, in order.
                Some(arrival) => {
                    if arrival.keep(said) == Keeping::TooMuch {
                        tracing::warn!(
                            client = id,
                            "too much sent before the move to the rooms; disconnecting"
                        );
                        outbox.goodbye(id, "* error: too much sent at once");
                    }
                }
                None => self.command(id, said, outbox),
            },
            Event::Refused(id) => {
                if let Some(arrival) = self.arriving.get_mut(&id) {
                    arrival.refuse();
                }
            }
            Event::Left(id, DisconnectReason::ChannelChange(_)) => self.hand_over(id, outbox),
            Event::Left(id, reason)
                if can_still_be_moved(reason) && self.arriving.contains_key(&id) =>
            {
                // `/nick` then a half-close (or silence): the move on its
                // way still takes it, and this was its last lobby packet.
                self.hand_over(id, outbox);
            }
            Event::Left(id, reason) => {
                tracing::info!(client = id, ?reason, "left from the lobby");
                // It may have claimed a name and gone before its move.
                if let Some(arrival) = self.arriving.remove(&id) {
                    Nicknames::lock(&self.nicknames).release(&arrival.nick);
                }
                outbox.forget(id);
                outbox.farewell(id, reason);
            }
        }
    }
}

impl Lobby {
    fn command(&mut self, id: StreamId, said: Said, outbox: &mut Outbox) {
        outbox.answer_in(id, said.ending);
        match Command::parse(&said.text) {
            Command::Nick(name) if !valid_name(name) => outbox.tell(id, NAME_RULES),
            Command::Nick(name) if !Nicknames::lock(&self.nicknames).claim(name) => {
                outbox.tell(id, format!("* {name} is taken, try another"));
            }
            Command::Nick(name) => {
                self.arriving.insert(id, Arrival::new(name));
                outbox.push(OutgoingPacket::ChangeChannel(vec![id], ROOMS));
            }
            Command::Quit => outbox.goodbye(id, "* bye!"),
            _ => outbox.tell(id, "* choose a nickname first: /nick NAME"),
        }
    }

    /// Every lobby packet of `id` has been handled: what it sent on its
    /// way goes to the rooms, with its name.
    fn hand_over(&mut self, id: StreamId, outbox: &mut Outbox) {
        let ending = outbox.ending(id);
        outbox.forget(id);
        let handover = match self.arriving.remove(&id) {
            Some(arrival) => {
                if arrival.is_refused() {
                    Nicknames::lock(&self.nicknames).release(&arrival.nick);
                }
                arrival.into_handover(id, ending)
            }
            // Only the lobby moves streams, and only once they have a
            // name; were one moved without, the rooms would wait for its
            // hand-over forever: it gets one, and is closed.
            None => {
                outbox.push(OutgoingPacket::Shutdown(vec![id]));
                Handover {
                    id,
                    nick: None,
                    lines: Vec::new(),
                    ending,
                }
            }
        };
        // The rooms task ends only after the lobby's (both end with the
        // multiplexer); if it has, nobody is waiting for this.
        let _ = self.handovers.unbounded_send(handover);
    }
}

/// Whether a stream that left its channel for `reason` may still be moved:
/// its client half-closed (or its connection failed: then the move finds
/// it gone), or it was idle too long.
fn can_still_be_moved(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::Linkdead | DisconnectReason::IdleTimeout
    )
}
