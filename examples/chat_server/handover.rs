//! Handing a stream over from the lobby to the rooms, with the lines it
//! sent on its way, so that every command takes effect, in order.
//!
//! # Why the order is right
//!
//! A client may send `/nick a`, `/join den` and `hello` in one write. The
//! multiplexer may read all three into the lobby before the lobby has even
//! handled `/nick` and sent the move (`ChangeChannel`); only lines read
//! after the move go to the rooms. So:
//!
//! 1. **The lobby keeps the lines.** Once a stream has claimed a name, the
//!    lobby keeps (in its [`Arrival`]) every line of it that still comes
//!    to the lobby, and answers none of them.
//! 2. **It knows when it has them all.** The lobby's `StreamDisconnected(id,
//!    ChannelChange(_))` follows every message of that stream handed to the
//!    lobby (guarantees 1 and 2 of the crate docs): when the lobby handles
//!    it, the lines it keeps are all that were read before the move, and it
//!    sends them to the rooms task, as a [`Handover`], through a channel of
//!    their own. A stream that left the lobby while its move was on its way
//!    (a script that half-closes, or one idle too long) is still moved (a
//!    leaving stream can be moved, guarantee 14): its lobby departure is
//!    likewise the last of its lobby packets, and the lobby hands it over
//!    then.
//! 3. **The rooms wait for both halves.** The rooms channel gets the
//!    stream's `StreamConnected` before anything read from it after the
//!    move (guarantee 1). The two tasks run side by side, so the rooms task
//!    may get that `StreamConnected` or the hand-over first. It handles
//!    the stream only once it has both ([`Arrivals`]): a hand-over that
//!    comes first waits for its stream; a stream that comes first has its
//!    packets kept until its hand-over comes. Then it greets the user,
//!    applies the lines from the lobby, then the packets from the rooms:
//!    each line once, in the order the client sent them.
//! 4. **Replies keep their order too.** The rooms task writes nothing to a
//!    stream before its `StreamConnected`, which the multiplexer announces
//!    once it has applied the move; the lobby sent the move after its own
//!    replies to that client, on the same queue (guarantee 3). So a client
//!    reads the lobby's welcome before the rooms' hello.
//!
//! # Bounds
//!
//! What a client sends between `/nick` and the move is kept, up to
//! [`HANDOVER_BYTES`]; a client that sends more in that moment is flooding,
//! and is told so and disconnected. Packets of a stream waiting for its
//! hand-over are kept up to [`WAITING_PACKETS`]; then the rooms task reads
//! only hand-overs until that one comes. The lobby needs nothing from the
//! rooms task to get there (the multiplexer reads and answers each channel
//! on its own), so that wait ends, and no line is refused for it. A
//! hand-over whose stream never comes (it was closed before its move could
//! be applied: a connection reset in that moment) is dropped after
//! [`HANDOVER_EXPIRY`], and its name freed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use stream_multiplexer::StreamId;

use crate::codec::Ending;
use crate::task::Said;
use crate::{Packet, WRITE_TIMEOUT};

/// What a client may send between `/nick` and its arrival in the rooms, in
/// bytes of text: a script's commands, or a paste of a thousand lines of
/// up to 256 bytes sent with `/nick` in one write. It costs a stream on
/// its way no more than its outgoing backlog may (128 lines of 4 KiB).
pub(crate) const HANDOVER_BYTES: usize = 256 * 1024;
/// Packets of one stream kept while its hand-over has not come.
const WAITING_PACKETS: usize = 64;
/// How long a hand-over waits for its stream. A stream that has left can
/// still be moved for the write timeout after it left; twice that is
/// enough for the move to be applied, or for it never to be.
const HANDOVER_EXPIRY: Duration = WRITE_TIMEOUT.saturating_mul(2);

/// A stream moving from the lobby to the rooms, and what the rooms need to
/// take it over.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) id: StreamId,
    /// The name it claimed; `None` if the lobby refused it on its way (it
    /// is being closed, and is not to be greeted or heard).
    pub(crate) nick: Option<String>,
    /// What it sent after `/nick` that the lobby read, in order.
    pub(crate) lines: Vec<Said>,
    /// How its connection ends lines, as the lobby left it.
    pub(crate) ending: Ending,
}

/// The lobby's record of a stream that claimed a name and is on its way.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) nick: String,
    lines: Vec<Said>,
    bytes: usize,
    refused: bool,
}

/// What became of a line kept for the rooms.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Keeping {
    Kept,
    /// Over [`HANDOVER_BYTES`]: the client is to be refused.
    TooMuch,
    /// The client was refused already.
    Dropped,
}

impl Arrival {
    pub(crate) fn new(nick: &str) -> Self {
        Self {
            nick: nick.to_owned(),
            lines: Vec::new(),
            bytes: 0,
            refused: false,
        }
    }

    pub(crate) fn keep(&mut self, said: Said) -> Keeping {
        if self.refused {
            return Keeping::Dropped;
        }
        self.bytes += said.text.len();
        if self.bytes > HANDOVER_BYTES {
            self.refuse();
            return Keeping::TooMuch;
        }
        self.lines.push(said);
        Keeping::Kept
    }

    /// It is being closed: nothing it sent is to be heard.
    pub(crate) fn refuse(&mut self) {
        self.refused = true;
        self.lines = Vec::new();
    }

    pub(crate) fn is_refused(&self) -> bool {
        self.refused
    }

    pub(crate) fn into_handover(self, id: StreamId, ending: Ending) -> Handover {
        Handover {
            id,
            nick: (!self.refused).then_some(self.nick),
            lines: self.lines,
            ending,
        }
    }
}

/// The rooms task's half: hand-overs and streams that have not met yet.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    /// Hand-overs whose stream has not come, with when they came.
    handovers: HashMap<StreamId, (Instant, Handover)>,
    /// The same, oldest first, to expire them.
    received: VecDeque<(Instant, StreamId)>,
    /// Streams that came before their hand-over, and their packets since.
    waiting: HashMap<StreamId, Vec<Packet>>,
    /// A stream whose kept packets reached [`WAITING_PACKETS`].
    full: Option<StreamId>,
}

/// Whether the rooms task can handle a stream now.
#[derive(Debug)]
pub(crate) enum Meeting {
    /// Both halves are here: the hand-over, and the packets of the stream
    /// that came while it waited for it.
    Met(Handover, Vec<Packet>),
    /// Kept until the other half comes.
    Waiting,
}

impl Arrivals {
    /// The stream `id` came (its `StreamConnected`).
    pub(crate) fn stream_came(&mut self, id: StreamId) -> Meeting {
        match self.handovers.remove(&id) {
            Some((_, handover)) => Meeting::Met(handover, Vec::new()),
            None => {
                self.waiting.insert(id, Vec::new());
                Meeting::Waiting
            }
        }
    }

    /// Keeps a packet of a stream waiting for its hand-over; gives it back
    /// if the stream is not waiting.
    pub(crate) fn keep(&mut self, packet: Packet) -> Option<Packet> {
        let id = packet.id();
        let Some(kept) = self.waiting.get_mut(&id) else {
            return Some(packet);
        };
        kept.push(packet);
        if kept.len() >= WAITING_PACKETS {
            self.full = Some(id);
        }
        None
    }

    /// A hand-over came. Gives back the names of expired hand-overs too, to
    /// be freed.
    pub(crate) fn handover_came(&mut self, handover: Handover) -> (Meeting, Vec<String>) {
        let now = Instant::now();
        let expired = self.expire(now);
        let id = handover.id;
        let Some(kept) = self.waiting.remove(&id) else {
            self.received.push_back((now, id));
            self.handovers.insert(id, (now, handover));
            return (Meeting::Waiting, expired);
        };
        if self.full == Some(id) {
            self.full = None;
        }
        (Meeting::Met(handover, kept), expired)
    }

    /// Whether a stream has kept all the packets it may: then only a
    /// hand-over can be taken.
    pub(crate) fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// Drops the hand-overs that waited too long; gives back their names.
    fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(&(at, id)) = self.received.front() {
            if now.duration_since(at) < HANDOVER_EXPIRY {
                break;
            }
            self.received.pop_front();
            // Unless its stream came, or a newer hand-over has the id.
            if self
                .handovers
                .get(&id)
                .is_some_and(|(since, _)| *since == at)
                && let Some((_, handover)) = self.handovers.remove(&id)
            {
                tracing::warn!(client = id, "never came to the rooms");
                names.extend(handover.nick);
            }
        }
        names
    }
}
