//! Rooms: named sets of streams to send to, and [`Rooms`], the handle that
//! reads them from anywhere.
//!
//! # Implementation
//!
//! The table is shared between `Run`, which alone changes it, and the
//! [`Rooms`] handles, which read it: one lock, taken by `Run` once per join,
//! leave, departure and room send, and by a handle once per read. A room's
//! member list is reference counted: a send to a room takes the list with
//! one count increment (no copy, no allocation per member), and a change
//! copies it only while a send still holds the old one (a broadcast that
//! spans polls). Beside the list, place for place, a room keeps its
//! members' keys in `Run`'s registry (shared the same way), so that a send
//! reaches each member without looking its id up; the key is checked
//! against the id on use. Each room also maps its members to their places
//! in the list, so that leaving is O(1), and each stream knows its rooms,
//! so that departing costs O(its rooms).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll, Waker};

use crate::registry::IdHasher;
use crate::{RoomName, StreamId};

type Positions = HashMap<StreamId, usize, BuildHasherDefault<IdHasher>>;

/// One room: its members, in the order they joined (but for a member that
/// left, whose place the last one takes).
#[derive(Debug, Default)]
struct Room {
    members: Arc<Vec<StreamId>>,
    /// The members' keys in the multiplexer's registry, place for place:
    /// a message to the room reaches each member without looking its id
    /// up. A key is checked against the id on use, since a departed
    /// member's slot may have been taken since the message took them.
    keys: Arc<Vec<usize>>,
    positions: Positions,
}

/// A room's members as a message to it takes them: their ids and registry
/// keys, place for place, and the place of the one left out, if any.
pub(crate) type Recipients = (Arc<Vec<StreamId>>, Arc<Vec<usize>>, Option<usize>);

/// Every room of one multiplexer.
#[derive(Debug, Default)]
pub(crate) struct RoomTable {
    rooms: HashMap<RoomName, Room>,
    /// How many rooms each stream is in, by stream: what it leaves when it
    /// departs.
    memberships: HashMap<StreamId, Vec<RoomName>, BuildHasherDefault<IdHasher>>,
    /// Memberships in all (a stream in three rooms counts three).
    members: usize,
    /// Rooms that gained their first member or lost their last since the
    /// watcher last looked, if something watches (a backplane that
    /// subscribes to the rooms this node has members in). Bounded by the
    /// number of rooms.
    watch: Option<Watch>,
}

#[derive(Debug, Default)]
struct Watch {
    changed: HashSet<RoomName>,
    waker: Option<Waker>,
}

impl Watch {
    fn changed(&mut self, room: &RoomName) {
        self.changed.insert(Arc::clone(room));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl RoomTable {
    /// Puts `id` in `room`. Returns whether it was not in it yet.
    #[cfg(test)]
    pub(crate) fn join(&mut self, id: StreamId, room: &RoomName) -> bool {
        self.join_at(id, id, room)
    }

    /// Puts `id`, at `key` in the registry, in `room`. Returns whether it
    /// was not in it yet.
    pub(crate) fn join_at(&mut self, id: StreamId, key: usize, room: &RoomName) -> bool {
        let entry = self.rooms.entry(Arc::clone(room)).or_default();
        if entry.positions.contains_key(&id) {
            return false;
        }
        if entry.members.is_empty()
            && let Some(watch) = &mut self.watch
        {
            watch.changed(room);
        }
        let members = Arc::make_mut(&mut entry.members);
        entry.positions.insert(id, members.len());
        members.push(id);
        Arc::make_mut(&mut entry.keys).push(key);
        self.memberships
            .entry(id)
            .or_default()
            .push(Arc::clone(room));
        self.members += 1;
        true
    }

    /// Takes `id` out of `room`. Returns whether it was in it.
    pub(crate) fn leave(&mut self, id: StreamId, room: &str) -> bool {
        if !self.remove_member(id, room) {
            return false;
        }
        if let Some(rooms) = self.memberships.get_mut(&id) {
            rooms.retain(|name| &**name != room);
            if rooms.is_empty() {
                self.memberships.remove(&id);
            }
        }
        true
    }

    /// Takes `id` out of every room it is in.
    pub(crate) fn leave_all(&mut self, id: StreamId) {
        let Some(rooms) = self.memberships.remove(&id) else {
            return;
        };
        for room in rooms {
            self.remove_member(id, &room);
        }
    }

    fn remove_member(&mut self, id: StreamId, name: &str) -> bool {
        let Some(room) = self.rooms.get_mut(name) else {
            return false;
        };
        let Some(position) = room.positions.remove(&id) else {
            return false;
        };
        Arc::make_mut(&mut room.keys).swap_remove(position);
        let members = Arc::make_mut(&mut room.members);
        members.swap_remove(position);
        if let Some(&moved) = members.get(position) {
            room.positions.insert(moved, position);
        }
        if members.is_empty()
            && let Some((room, _)) = self.rooms.remove_entry(name)
            && let Some(watch) = &mut self.watch
        {
            watch.changed(&room);
        }
        self.members -= 1;
        true
    }

    /// How many rooms have members, and how many memberships there are.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.members)
    }

    /// The members of `room`, shared: no copy.
    pub(crate) fn members(&self, room: &str) -> Option<Arc<Vec<StreamId>>> {
        self.rooms.get(room).map(|r| Arc::clone(&r.members))
    }

    /// The members of `room`, shared, with their registry keys, and the
    /// place among them of `except` if it is one: what a message to the
    /// room with `except` left out goes to, without comparing every member
    /// with it.
    pub(crate) fn members_and_place(
        &self,
        room: &str,
        except: Option<StreamId>,
    ) -> Option<Recipients> {
        let room = self.rooms.get(room)?;
        let place = except.and_then(|id| room.positions.get(&id).copied());
        Some((Arc::clone(&room.members), Arc::clone(&room.keys), place))
    }
}

/// A cheap, cloneable, thread-safe handle on a multiplexer's rooms: who is
/// in which room, read without a round trip through the multiplexer.
///
/// Get one with [`Multiplexer::rooms`](crate::Multiplexer::rooms), before or
/// after calling `run`. Streams join and leave rooms through
/// [`OutgoingPacket::Join`](crate::OutgoingPacket::Join) and
/// [`OutgoingPacket::Leave`](crate::OutgoingPacket::Leave), and leave all of
/// them when their departure is announced; the handle sees each change once
/// `Run` has applied it.
///
/// # Examples
///
/// ```
/// use futures::channel::mpsc;
/// use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
///
/// let (channel0, _consumer) = mpsc::channel::<IncomingPacket<()>>(8);
/// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<()>>(8);
/// let multiplexer = Multiplexer::new(16, outgoing, vec![channel0]);
///
/// let rooms = multiplexer.rooms();
/// assert_eq!(rooms.len("general"), 0);
/// assert!(rooms.members("general").is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Rooms {
    table: Arc<RwLock<RoomTable>>,
}

impl Rooms {
    /// The members of `room`, in the order they joined (a member that left
    /// gives its place to the last one); empty for a room nobody is in.
    ///
    /// # Examples
    ///
    /// See [`Rooms`]; [`OutgoingPacket::Join`](crate::OutgoingPacket::Join)
    /// has one with members.
    ///
    /// ```
    /// use stream_multiplexer::Rooms;
    ///
    /// assert!(Rooms::default().members("lobby").is_empty());
    /// ```
    pub fn members(&self, room: &str) -> Vec<StreamId> {
        self.read()
            .members(room)
            .map(|members| members.to_vec())
            .unwrap_or_default()
    }

    /// How many streams are in `room`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::Rooms;
    ///
    /// assert_eq!(Rooms::default().len("lobby"), 0);
    /// ```
    pub fn len(&self, room: &str) -> usize {
        self.read().rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// The rooms that have members, in no particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::Rooms;
    ///
    /// assert!(Rooms::default().names().is_empty());
    /// ```
    pub fn names(&self) -> Vec<RoomName> {
        self.read().rooms.keys().cloned().collect()
    }

    /// The rooms `id` is in, in the order it joined them.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::Rooms;
    ///
    /// assert!(Rooms::default().rooms_of(7).is_empty());
    /// ```
    pub fn rooms_of(&self, id: StreamId) -> Vec<RoomName> {
        self.read()
            .memberships
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// How many rooms have members, and how many memberships there are in
    /// all (a stream in three rooms counts three).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::Rooms;
    ///
    /// assert_eq!(Rooms::default().counts(), (0, 0));
    /// ```
    pub fn counts(&self) -> (usize, usize) {
        self.read().counts()
    }

    /// The rooms that gained their first member or lost their last since
    /// the last call, each with whether it has members now; `Pending`
    /// (waking the task later) while none did. The first call starts the
    /// watch and reports every room that has members. One watcher only.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn poll_changes(&self, cx: &mut Context<'_>) -> Poll<Vec<(RoomName, bool)>> {
        let mut table = self.write();
        let table = &mut *table;
        let watch = table.watch.get_or_insert_with(|| Watch {
            changed: table.rooms.keys().cloned().collect(),
            waker: None,
        });
        if watch.changed.is_empty() {
            watch.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let changed: Vec<RoomName> = watch.changed.drain().collect();
        Poll::Ready(
            changed
                .into_iter()
                .map(|room| {
                    let present = table.rooms.contains_key(&room);
                    (room, present)
                })
                .collect(),
        )
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, RoomTable> {
        // `Run` changes the table in single steps that leave it whole, so
        // a poisoned lock (a panic elsewhere) still guards a usable table.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, RoomTable> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Rooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rooms, members) = self.counts();
        f.debug_struct("Rooms")
            .field("rooms", &rooms)
            .field("members", &members)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_of_the_member_left_out_is_its_index_among_the_members() {
        let mut table = RoomTable::default();
        let room: RoomName = "r".into();
        for id in [5, 6, 7, 8] {
            assert!(table.join(id, &room));
        }
        assert!(table.leave(6, "r"));
        let (members, keys, place) = table.members_and_place("r", Some(8)).unwrap();
        assert_eq!(*members, [5, 8, 7]);
        assert_eq!(*keys, [5, 8, 7], "each member's key in its place");
        assert_eq!(place, Some(1));
        assert_eq!(table.members_and_place("r", Some(6)).unwrap().2, None);
        assert_eq!(table.members_and_place("r", None).unwrap().2, None);
        assert!(table.members_and_place("s", Some(5)).is_none());
    }

    #[test]
    fn leaving_keeps_the_others_and_their_places_right() {
        let mut table = RoomTable::default();
        let room: RoomName = "r".into();
        for id in 1..=4 {
            assert!(table.join(id, &room));
        }
        assert!(!table.join(2, &room), "a member joins once");
        assert!(table.leave(2, "r"));
        assert!(!table.leave(2, "r"));
        assert_eq!(*table.members("r").unwrap(), [1, 4, 3]);
        assert!(table.leave(4, "r"));
        assert_eq!(*table.members("r").unwrap(), [1, 3]);
        assert_eq!(table.members, 2);
    }

    #[test]
    fn a_send_in_progress_keeps_its_list_while_the_room_changes() {
        let mut table = RoomTable::default();
        let room: RoomName = "r".into();
        table.join(1, &room);
        table.join(2, &room);
        let sending = table.members("r").unwrap();
        table.leave(1, "r");
        table.join(3, &room);
        assert_eq!(*sending, [1, 2]);
        assert_eq!(*table.members("r").unwrap(), [2, 3]);
    }

    #[test]
    fn departing_leaves_every_room_and_empty_rooms_go() {
        let mut table = RoomTable::default();
        for name in ["a", "b", "c"] {
            table.join(9, &name.into());
        }
        table.join(8, &"a".into());
        table.leave_all(9);
        assert!(table.members("b").is_none() && table.members("c").is_none());
        assert_eq!(*table.members("a").unwrap(), [8]);
        assert_eq!(table.members, 1);
        assert!(!table.memberships.contains_key(&9));
    }

    #[test]
    fn a_watcher_hears_of_rooms_that_gain_their_first_member_or_lose_their_last() {
        let rooms = Rooms::default();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        rooms.write().join(1, &"old".into());
        assert_eq!(
            rooms.poll_changes(&mut cx),
            Poll::Ready(vec![("old".into(), true)]),
            "the first look reports what exists"
        );
        assert_eq!(rooms.poll_changes(&mut cx), Poll::Pending);
        rooms.write().join(2, &"old".into());
        assert_eq!(
            rooms.poll_changes(&mut cx),
            Poll::Pending,
            "not its first member"
        );
        rooms.write().join(2, &"new".into());
        rooms.write().leave_all(1);
        rooms.write().leave_all(2);
        let Poll::Ready(mut changes) = rooms.poll_changes(&mut cx) else {
            panic!("changes were made");
        };
        changes.sort();
        assert_eq!(changes, [("new".into(), false), ("old".into(), false)]);
    }
}
