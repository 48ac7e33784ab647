//! Channel 1, the rooms: named users, in the crate's rooms.

use std::collections::HashMap;

use stream_multiplexer::{DisconnectReason, OutgoingPacket, RoomName, Rooms, StreamId};

use crate::handover::{Arrivals, Handover, Meeting};
use crate::nicknames::{Nicknames, SharedNicknames};
use crate::task::{Consumer, Event, Gate, Outbox, Said};
use crate::text::{Command, MAX_NAME, fold, printable, quote, valid_name};
use crate::{FIRST_ROOM, NAME_RULES, Packet};

/// Names per `/who` line: 100 names of at most 24 bytes and their
/// separators fit well within one 4 KiB line.
const WHO_PER_LINE: usize = 100;

/// The rooms' task. Who is in which room is the multiplexer's business
/// (its [`Rooms`]): joining and leaving are `Join` and `Leave` packets,
/// and a line said in a room is one message to the room. The task keeps
/// only each user's name and the room it is in.
#[derive(Debug)]
pub(crate) struct Chat {
    nicknames: SharedNicknames,
    rooms: Rooms,
    gate: Gate,
    users: HashMap<StreamId, User>,
    /// Users by folded name, for `/msg`.
    by_name: HashMap<String, StreamId>,
    arrivals: Arrivals,
}

#[derive(Debug)]
struct User {
    nick: String,
    room: RoomName,
}

impl Consumer for Chat {
    fn packet(&mut self, packet: Packet, outbox: &mut Outbox) {
        let Some(packet) = self.arrivals.keep(packet) else {
            return;
        };
        let Some(event) = self.gate.admit(packet, outbox) else {
            return;
        };
        match event {
            Event::Arrived(id) => {
                if let Meeting::Met(handover, kept) = self.arrivals.stream_came(id) {
                    self.arrive(handover, kept, outbox);
                }
            }
            Event::Said(id, said) => self.command(id, said, outbox),
            Event::Refused(_) => {}
            Event::Left(id, reason) => self.depart(id, reason, outbox),
        }
    }

    fn handover(&mut self, handover: Handover, outbox: &mut Outbox) {
        let (meeting, expired) = self.arrivals.handover_came(handover);
        for nick in expired {
            Nicknames::lock(&self.nicknames).release(&nick);
        }
        if let Meeting::Met(handover, kept) = meeting {
            self.arrive(handover, kept, outbox);
        }
    }

    fn stalled(&self) -> bool {
        self.arrivals.is_full()
    }
}

impl Chat {
    pub(crate) fn new(nicknames: SharedNicknames, rooms: Rooms) -> Self {
        Self {
            nicknames,
            rooms,
            gate: Gate::default(),
            users: HashMap::new(),
            by_name: HashMap::new(),
            arrivals: Arrivals::default(),
        }
    }

    /// A stream moved here by the lobby, with its hand-over: the user is
    /// greeted and enters the first room, then what it sent on its way is
    /// applied, then what it sent since (see [`crate::handover`]).
    fn arrive(&mut self, handover: Handover, kept: Vec<Packet>, outbox: &mut Outbox) {
        let id = handover.id;
        match handover.nick {
            Some(nick) => {
                eprintln!("client {id} is {nick}");
                outbox.assume(id, handover.ending);
                outbox.tell(id, format!("* hello {nick}, you are in #{FIRST_ROOM}"));
                self.by_name.insert(fold(&nick), id);
                let room = RoomName::from(FIRST_ROOM);
                self.users.insert(
                    id,
                    User {
                        nick,
                        room: room.clone(),
                    },
                );
                self.enter(id, &room, outbox);
                for said in handover.lines {
                    self.command(id, said, outbox);
                }
            }
            // Refused on its way, and being closed.
            None => self.gate.refuse(id),
        }
        for packet in kept {
            self.packet(packet, outbox);
        }
    }

    fn depart(&mut self, id: StreamId, reason: DisconnectReason, outbox: &mut Outbox) {
        outbox.forget(id);
        outbox.farewell(id, reason);
        let Some(user) = self.users.remove(&id) else {
            return;
        };
        eprintln!("client {id} ({}) left ({reason:?})", user.nick);
        // The multiplexer took it out of its rooms as it announced this.
        outbox.tell_room(
            &user.room,
            id,
            format!("* {} left #{}", user.nick, user.room),
        );
        self.by_name.remove(&fold(&user.nick));
        Nicknames::lock(&self.nicknames).release(&user.nick);
    }

    fn command(&mut self, id: StreamId, said: Said, outbox: &mut Outbox) {
        let Some(user) = self.users.get(&id) else {
            return;
        };
        outbox.answer_in(id, said.ending);
        match Command::parse(&said.text) {
            Command::Say(text) if text.trim().is_empty() => {}
            Command::Say(text) => {
                let line = format!("<{}> {}", user.nick, printable(text));
                if outbox.fits(id, &line) {
                    outbox.tell_room(&user.room, id, line);
                }
            }
            Command::Me("") => outbox.tell(id, "* usage: /me ACTION"),
            Command::Me(action) => {
                let line = format!("* {} {}", user.nick, printable(action));
                if outbox.fits(id, &line) {
                    outbox.tell_room(&user.room, id, line);
                }
            }
            Command::Msg { to, text } => self.message(id, to, text, outbox),
            Command::Join(room) => self.join(id, room, outbox),
            Command::Who => self.who(id, outbox),
            Command::Quit => outbox.goodbye(id, format!("* bye, {}!", user.nick)),
            Command::Nick(_) => outbox.tell(id, format!("* you are {} already", user.nick)),
            Command::Unknown(verb) => outbox.tell(
                id,
                format!(
                    "* unknown command /{}; try /join ROOM, /who, /me ACTION, /msg NAME TEXT, /quit",
                    quote(verb, MAX_NAME)
                ),
            ),
        }
    }

    /// `/msg NAME TEXT`: to that user only.
    fn message(&mut self, id: StreamId, to: &str, text: &str, outbox: &mut Outbox) {
        if to.is_empty() || text.is_empty() {
            outbox.tell(id, "* usage: /msg NAME TEXT");
            return;
        }
        let recipient = valid_name(to)
            .then(|| self.by_name.get(&fold(to)))
            .flatten();
        let Some(&recipient) = recipient else {
            outbox.tell(id, format!("* no such user: {}", quote(to, MAX_NAME)));
            return;
        };
        let line = format!("*{}* {}", self.users[&id].nick, printable(text));
        if outbox.fits(id, &line) {
            outbox.tell(recipient, line);
        }
    }

    /// `/join ROOM`: leave this room, enter that one. Room names are
    /// compared, and shown, folded.
    fn join(&mut self, id: StreamId, room: &str, outbox: &mut Outbox) {
        if !valid_name(room) {
            outbox.tell(id, NAME_RULES);
            return;
        }
        let room = RoomName::from(fold(room));
        let Some(user) = self.users.get_mut(&id) else {
            return;
        };
        if user.room == room {
            outbox.tell(id, format!("* you are in #{room} already"));
            return;
        }
        let left = std::mem::replace(&mut user.room, room.clone());
        outbox.push(OutgoingPacket::Leave(vec![id], left.clone()));
        outbox.tell_room(&left, id, format!("* {} left #{left}", user.nick));
        outbox.tell(id, format!("* you are in #{room}"));
        self.enter(id, &room, outbox);
    }

    /// Puts a user, already recorded in `room`, in the multiplexer's room,
    /// tells the room, and tells the user how many are there.
    fn enter(&mut self, id: StreamId, room: &RoomName, outbox: &mut Outbox) {
        let nick = &self.users[&id].nick;
        outbox.push(OutgoingPacket::Join(vec![id], room.clone()));
        outbox.tell_room(room, id, format!("* {nick} joined #{room}"));
        // The multiplexer applies the `Join` after this task has sent it,
        // so the room's size may not count the user yet: it is counted
        // once, either way. (Others who join or leave at this very moment
        // may or may not be counted, as in any snapshot.)
        let here = self.rooms.len(room) + usize::from(!self.is_in(id, room));
        let online = match here {
            1 => "* 1 user online".to_owned(),
            n => format!("* {n} users online"),
        };
        outbox.tell(id, online);
    }

    /// `/who`: the names in the user's room, a hundred per line.
    fn who(&self, id: StreamId, outbox: &mut Outbox) {
        let room = &self.users[&id].room;
        let mut members = self.rooms.members(room);
        // Its own `Join` may not be applied yet.
        if !members.contains(&id) {
            members.push(id);
        }
        // Those this task has moved out already, whose `Leave` is on its
        // way, are not there any more.
        let names: Vec<&str> = members
            .iter()
            .filter_map(|member| self.users.get(member))
            .filter(|user| user.room == *room)
            .map(|user| user.nick.as_str())
            .collect();
        for chunk in names.chunks(WHO_PER_LINE) {
            outbox.tell(id, format!("* in #{room}: {}", chunk.join(", ")));
        }
    }

    /// Whether the multiplexer has `id` in `room` yet.
    fn is_in(&self, id: StreamId, room: &str) -> bool {
        self.rooms.rooms_of(id).iter().any(|name| &**name == room)
    }
}
