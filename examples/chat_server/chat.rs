//! Channel 1, the rooms: named users, in the crate's rooms.

use std::collections::{HashMap, HashSet};

use stream_multiplexer::{DisconnectReason, OutgoingPacket, RoomName, Rooms, StreamId};

use crate::handover::{Arrivals, Handover, Meeting};
use crate::nicknames::{Nicknames, SharedNicknames};
use crate::nodes::Scope;
use crate::task::{Consumer, Event, Gate, Outbox, Said};
use crate::text::{Command, MAX_NAME, fold, printable, quote, valid_name};
use crate::{FIRST_ROOM, NAME_RULES, Packet};

/// Names per `/who` line: 100 names of at most 24 bytes and their
/// separators fit well within one 4 KiB line.
const WHO_PER_LINE: usize = 100;

/// The rooms' task. The rooms are the multiplexer's ([`Rooms`]): joining
/// and leaving are `Join` and `Leave` packets, a line said in a room is one
/// message to the room, and `/who` reads the room's members from there.
/// The task keeps only each user's name and room ([`Directory`]).
///
/// With other servers (`--redis`), rooms are shared but users are not:
/// what is said to a room reaches every server, while `/who`, `/msg` and
/// the count of users online know this server's users only, and say so
/// ([`Scope`]).
#[derive(Debug)]
pub(crate) struct Chat {
    nicknames: SharedNicknames,
    rooms: Rooms,
    scope: Scope,
    gate: Gate,
    users: Directory,
    arrivals: Arrivals,
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
    pub(crate) fn new(nicknames: SharedNicknames, rooms: Rooms, scope: Scope) -> Self {
        Self {
            nicknames,
            rooms,
            scope,
            gate: Gate::default(),
            users: Directory::default(),
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
                tracing::info!(client = id, nick, "named");
                outbox.assume(id, handover.ending);
                outbox.tell(id, format!("* hello {nick}, you are in #{FIRST_ROOM}"));
                let room = RoomName::from(FIRST_ROOM);
                self.users.add(id, nick, room.clone());
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
        let Some(user) = self.users.remove(id) else {
            return;
        };
        tracing::info!(client = id, nick = user.nick, ?reason, "left");
        // The multiplexer took it out of its rooms as it announced this.
        outbox.tell_room(
            &user.room,
            id,
            format!("* {} left #{}", user.nick, user.room),
        );
        Nicknames::lock(&self.nicknames).release(&user.nick);
    }

    fn command(&mut self, id: StreamId, said: Said, outbox: &mut Outbox) {
        let Some(user) = self.users.get(id) else {
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

    /// `/msg NAME TEXT`: to that user only, in whatever room.
    fn message(&self, id: StreamId, to: &str, text: &str, outbox: &mut Outbox) {
        if to.is_empty() || text.is_empty() {
            outbox.tell(id, "* usage: /msg NAME TEXT");
            return;
        }
        let Some(recipient) = valid_name(to).then(|| self.users.find(to)).flatten() else {
            let here = self.scope.here();
            outbox.tell(id, format!("* no such user{here}: {}", quote(to, MAX_NAME)));
            return;
        };
        let Some(sender) = self.users.get(id) else {
            return;
        };
        let line = format!("*{}* {}", sender.nick, printable(text));
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
        let Some(user) = self.users.get(id) else {
            return;
        };
        if user.room == room {
            outbox.tell(id, format!("* you are in #{room} already"));
            return;
        }
        let line = format!("* {} left #{}", user.nick, user.room);
        let Some(left) = self.users.move_to(id, room.clone()) else {
            return;
        };
        outbox.push(OutgoingPacket::Leave(vec![id], left.clone()));
        outbox.tell_room(&left, id, line);
        outbox.tell(id, format!("* you are in #{room}"));
        self.enter(id, &room, outbox);
    }

    /// Puts a user, already in `room` in the directory, in the
    /// multiplexer's room, tells the room, and tells the user how many are
    /// there now.
    fn enter(&mut self, id: StreamId, room: &RoomName, outbox: &mut Outbox) {
        let Some(user) = self.users.get(id) else {
            return;
        };
        outbox.push(OutgoingPacket::Join(vec![id], room.clone()));
        outbox.tell_room(room, id, format!("* {} joined #{room}", user.nick));
        // Counted here, not from `Rooms::len`: the multiplexer applies this
        // task's `Join`s and `Leave`s after the task has sent them, so its
        // count lags by every one still on its way — not only this user's:
        // of sixty users joining at once, most would be told a number
        // already passed.
        let here = self.scope.here();
        let online = match self.users.headcount(room) {
            1 => format!("* 1 user online{here}"),
            n => format!("* {n} users online{here}"),
        };
        outbox.tell(id, online);
    }

    /// `/who`: the names in the user's room, a hundred per line, as the
    /// multiplexer's room has them, in the order they joined.
    fn who(&self, id: StreamId, outbox: &mut Outbox) {
        let Some(user) = self.users.get(id) else {
            return;
        };
        let room = &user.room;
        // Members this task has moved out already (their `Leave` is on its
        // way) are left out.
        let mut members: Vec<StreamId> = self
            .rooms
            .members(room)
            .into_iter()
            .filter(|&member| self.users.get(member).is_some_and(|u| u.room == *room))
            .collect();
        // Users whose `Join` is on its way (this one, right after `/join`,
        // or any who joined in the same moment) come last.
        if members.len() < self.users.headcount(room) {
            let listed: HashSet<StreamId> = members.iter().copied().collect();
            let mut coming = self.users.in_room(room, |id| !listed.contains(&id));
            coming.sort_unstable();
            members.extend(coming);
        }
        let names: Vec<&str> = members
            .iter()
            .filter_map(|&member| self.users.get(member))
            .map(|user| user.nick.as_str())
            .collect();
        let here = self.scope.here();
        for chunk in names.chunks(WHO_PER_LINE) {
            outbox.tell(id, format!("* in #{room}{here}: {}", chunk.join(", ")));
        }
    }
}

/// The users, as this task has handled them: each one's name and room,
/// the users by folded name (for `/msg`), and how many are in each room.
/// The multiplexer's rooms catch up with this as they apply the task's
/// packets. Every change goes through these methods, so the three agree.
#[derive(Debug, Default)]
struct Directory {
    users: HashMap<StreamId, User>,
    by_name: HashMap<String, StreamId>,
    headcounts: HashMap<RoomName, usize>,
}

#[derive(Debug)]
struct User {
    nick: String,
    room: RoomName,
}

impl Directory {
    fn get(&self, id: StreamId) -> Option<&User> {
        self.users.get(&id)
    }

    /// The user named `name`, in any case.
    fn find(&self, name: &str) -> Option<StreamId> {
        self.by_name.get(&fold(name)).copied()
    }

    fn headcount(&self, room: &str) -> usize {
        self.headcounts.get(room).copied().unwrap_or(0)
    }

    /// The users in `room` that `wanted`, by scanning every user: only for
    /// what the multiplexer has not caught up with.
    fn in_room(&self, room: &str, wanted: impl Fn(StreamId) -> bool) -> Vec<StreamId> {
        self.users
            .iter()
            .filter(|&(&id, user)| &*user.room == room && wanted(id))
            .map(|(&id, _)| id)
            .collect()
    }

    fn add(&mut self, id: StreamId, nick: String, room: RoomName) {
        self.by_name.insert(fold(&nick), id);
        *self.headcounts.entry(room.clone()).or_default() += 1;
        self.users.insert(id, User { nick, room });
    }

    /// Moves a user to `room`; gives back the room it left.
    fn move_to(&mut self, id: StreamId, room: RoomName) -> Option<RoomName> {
        let user = self.users.get_mut(&id)?;
        *self.headcounts.entry(room.clone()).or_default() += 1;
        let left = std::mem::replace(&mut user.room, room);
        self.count_out(&left);
        Some(left)
    }

    fn remove(&mut self, id: StreamId) -> Option<User> {
        let user = self.users.remove(&id)?;
        self.by_name.remove(&fold(&user.nick));
        self.count_out(&user.room);
        Some(user)
    }

    fn count_out(&mut self, room: &RoomName) {
        if let Some(count) = self.headcounts.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                self.headcounts.remove(room);
            }
        }
    }
}
