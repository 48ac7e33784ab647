//! The live streams: a slab of entries and the map from their public
//! [`StreamId`]s to slab keys.
//!
//! Slab keys are reused as soon as a slot is freed, so they are never handed
//! out as ids: a late packet for a departed stream must not reach the stream
//! that took its slot (guarantee 4 of the crate docs).
//!
//! A stream that has left its channel may stay here a while: *leaving*
//! (still addressable, for the application's last words) or *closing*
//! (flushing what was queued for it). A client that never reads would keep
//! such a stream here forever without a clock, so they do not count
//! against `max_streams`, and they are kept oldest first so that a newcomer
//! who needs the room can take the place of the one that has had longest.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use slab::Slab;

use crate::reader::Reader;
use crate::writer::Writer;
use crate::{ChannelId, DisconnectReason, IdGen, StreamId};

/// One stream as the multiplexer holds it.
#[derive(Debug)]
pub(crate) struct StreamEntry<W, R, V> {
    pub(crate) id: StreamId,
    pub(crate) channel: ChannelId,
    pub(crate) state: StreamState<R>,
    pub(crate) writer: Writer<W, V>,
    /// The tick at which it last completed a frame (or was admitted).
    pub(crate) last_read: u64,
    /// The tick at which its writer last handed values on or finished a
    /// flush, or became busy.
    pub(crate) last_written: u64,
    /// The tick of its entry in the timer wheel; 0 for none.
    pub(crate) timer_at: u64,
    /// Whether it joined a room since it was admitted: only then does its
    /// departure look at the rooms.
    pub(crate) in_rooms: bool,
}

/// Where a stream is in its life.
#[derive(Debug)]
pub(crate) enum StreamState<R> {
    /// Read and addressable.
    Open(Reader<R>),
    /// Its channel was told it left, for `reason` (its reader ended, or it
    /// was idle too long), but the application can still send it a last
    /// word, move it, and close it; with a clock, it closes by itself once
    /// the write timeout has passed since `since`.
    Leaving {
        since: u64,
        reason: DisconnectReason,
    },
    /// Flushing what was queued for it, then closing; no longer
    /// addressable.
    Closing,
}

impl<W, R, V> StreamEntry<W, R, V> {
    /// Whether it is read, and counts against `max_streams`.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, StreamState::Open(_))
    }

    /// Whether the application can still send to it.
    pub(crate) fn is_addressable(&self) -> bool {
        !matches!(self.state, StreamState::Closing)
    }
}

/// The streams of one `Run`.
#[derive(Debug)]
pub(crate) struct Registry<W, R, V> {
    slab: Slab<StreamEntry<W, R, V>>,
    keys: HashMap<StreamId, usize, BuildHasherDefault<IdHasher>>,
    /// Streams that left their open state, oldest first. Entries for streams
    /// that have gone since are skipped when met, and pruned once they
    /// outnumber the live ones, so this holds O(`not_open`) entries.
    left_order: VecDeque<(usize, StreamId)>,
    /// Streams in the slab that are not open.
    not_open: usize,
}

impl<W, R, V> Registry<W, R, V> {
    pub(crate) fn new() -> Self {
        Self {
            slab: Slab::new(),
            keys: HashMap::default(),
            left_order: VecDeque::new(),
            not_open: 0,
        }
    }

    /// Streams held, including those leaving or closing.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Open streams: what `max_streams` limits.
    pub(crate) fn open_len(&self) -> usize {
        self.slab.len() - self.not_open
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Takes ids from `id_gen` until one is free. Gives up after as many
    /// tries as there are live streams plus one, which is enough for any
    /// generator that does not repeat itself within that span (such as
    /// [`IncrementIdGen`](crate::IncrementIdGen)), and keeps a generator that
    /// does from hanging the multiplexer.
    pub(crate) fn free_id(&self, id_gen: &mut impl IdGen) -> Option<StreamId> {
        (0..=self.slab.len())
            .map(|_| id_gen.next())
            .find(|id| !self.keys.contains_key(id))
    }

    /// The slab key the next [`insert`](Self::insert) will use.
    pub(crate) fn next_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Adds an open stream.
    pub(crate) fn insert(&mut self, entry: StreamEntry<W, R, V>) -> usize {
        debug_assert!(entry.is_open());
        let id = entry.id;
        let key = self.slab.insert(entry);
        self.keys.insert(id, key);
        key
    }

    /// The key of the stream with this id, if the application can still
    /// send to it.
    pub(crate) fn addressable_key(&self, id: StreamId) -> Option<usize> {
        let key = *self.keys.get(&id)?;
        self.slab[key].is_addressable().then_some(key)
    }

    /// The stream with this id and its key, if the application can still
    /// send to it: one lookup, for the delivery of every value.
    #[inline]
    pub(crate) fn addressable_mut(
        &mut self,
        id: StreamId,
    ) -> Option<(usize, &mut StreamEntry<W, R, V>)> {
        let key = *self.keys.get(&id)?;
        let entry = self.slab.get_mut(key)?;
        entry.is_addressable().then_some((key, entry))
    }

    /// The key and entry of the stream `id` if it is open (still in its
    /// channel): the recipients of a room's messages.
    #[inline]
    pub(crate) fn open_mut(&mut self, id: StreamId) -> Option<(usize, &mut StreamEntry<W, R, V>)> {
        let key = *self.keys.get(&id)?;
        let entry = self.slab.get_mut(key)?;
        entry.is_open().then_some((key, entry))
    }

    /// The entry at `key` if it is still the open stream `id`: a room's
    /// member, found by the key it joined with, without the look-up by id.
    /// The slot may hold another stream by now (its member departed and a
    /// newcomer took it), hence the check of the id.
    #[inline]
    pub(crate) fn open_at(
        &mut self,
        key: usize,
        id: StreamId,
    ) -> Option<&mut StreamEntry<W, R, V>> {
        self.slab
            .get_mut(key)
            .filter(|entry| entry.id == id && entry.is_open())
    }

    pub(crate) fn get(&self, key: usize) -> Option<&StreamEntry<W, R, V>> {
        self.slab.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut StreamEntry<W, R, V>> {
        self.slab.get_mut(key)
    }

    /// Moves a stream to `state`, keeping the count of open streams and the
    /// order in which they left. Returns the state it had.
    pub(crate) fn set_state(
        &mut self,
        key: usize,
        state: StreamState<R>,
    ) -> Option<StreamState<R>> {
        let entry = self.slab.get_mut(key)?;
        let was_open = entry.is_open();
        debug_assert!(
            was_open || !matches!(state, StreamState::Open(_)),
            "a stream that left never opens again"
        );
        let old = std::mem::replace(&mut entry.state, state);
        if was_open && !entry.is_open() {
            {
                self.not_open += 1;
                self.left_order.push_back((key, entry.id));
                if self.left_order.len() > 2 * self.not_open + 16 {
                    let slab = &self.slab;
                    self.left_order
                        .retain(|&(key, id)| Self::has_left(slab, key, id));
                }
            }
        }
        Some(old)
    }

    /// Removes a stream; its id becomes free.
    pub(crate) fn remove(&mut self, key: usize) -> Option<StreamEntry<W, R, V>> {
        let entry = self.slab.try_remove(key)?;
        self.keys.remove(&entry.id);
        if !entry.is_open() {
            self.not_open -= 1;
        }
        Some(entry)
    }

    /// The key of the stream that left its open state longest ago and is
    /// still here, if any.
    pub(crate) fn oldest_left(&mut self) -> Option<usize> {
        while let Some(&(key, id)) = self.left_order.front() {
            if Self::has_left(&self.slab, key, id) {
                return Some(key);
            }
            self.left_order.pop_front();
        }
        None
    }

    /// Whether `key` still holds the stream `id` (and not a stream that took
    /// its slot since), no longer open.
    fn has_left(slab: &Slab<StreamEntry<W, R, V>>, key: usize, id: StreamId) -> bool {
        slab.get(key).is_some_and(|e| e.id == id && !e.is_open())
    }

    /// Keys of the streams that match `filter` (a scan: used only when a
    /// channel closes or the multiplexer shuts down).
    pub(crate) fn keys_where(&self, filter: impl Fn(&StreamEntry<W, R, V>) -> bool) -> Vec<usize> {
        self.slab
            .iter()
            .filter(|(_, e)| filter(e))
            .map(|(key, _)| key)
            .collect()
    }

    /// Takes every stream out, for the caller to drop.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = StreamEntry<W, R, V>> + '_ {
        self.keys.clear();
        self.left_order.clear();
        self.not_open = 0;
        self.slab.drain()
    }
}

/// A hasher for ids: a multiply by the golden ratio spreads sequential ids
/// over the table at a fraction of SipHash's cost. Ids are chosen by the
/// server, not by clients, so hash flooding is not a concern.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, id: usize) {
        self.0 = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
