//! The live streams: a slab of connections and the map from their public
//! [`StreamId`]s to slab keys.
//!
//! Slab keys are reused as soon as a slot is freed, so they are never handed
//! out as ids: a late packet for a departed stream must not reach the stream
//! that took its slot (SPEC §4.4).
//!
//! A stream closed gracefully stays here until its writer has flushed, which
//! a client that never reads never lets happen. Such streams do not count
//! against `max_streams`; they are kept oldest first so that a newcomer who
//! needs the room can take the place of the one that has had longest.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use slab::Slab;

use crate::stream::Connection;
use crate::{ChannelId, IdGen, StreamId};

/// The streams of one `Run`.
#[derive(Debug)]
pub(crate) struct Registry<W, R, V> {
    slab: Slab<Connection<W, R, V>>,
    keys: HashMap<StreamId, usize, BuildHasherDefault<IdHasher>>,
    /// Streams marked closing, oldest first. Entries for streams that have
    /// left since are skipped when met, and pruned once they outnumber the
    /// live ones, so this holds O(`closing`) entries.
    closing_order: VecDeque<(usize, StreamId)>,
    /// Streams in the slab that are closing.
    closing: usize,
}

impl<W, R, V> Registry<W, R, V> {
    pub(crate) fn new() -> Self {
        Self {
            slab: Slab::new(),
            keys: HashMap::default(),
            closing_order: VecDeque::new(),
            closing: 0,
        }
    }

    /// Streams held, including those still flushing before they close.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Streams the application can still address: what `max_streams` limits.
    pub(crate) fn open_len(&self) -> usize {
        self.slab.len() - self.closing
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

    pub(crate) fn insert(&mut self, connection: Connection<W, R, V>) -> usize {
        let id = connection.id;
        let key = self.slab.insert(connection);
        self.keys.insert(id, key);
        key
    }

    /// The key of the stream with this id, if it is open (not closing).
    pub(crate) fn open_key(&self, id: StreamId) -> Option<usize> {
        let key = *self.keys.get(&id)?;
        self.slab[key].is_open().then_some(key)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut Connection<W, R, V>> {
        self.slab.get_mut(key)
    }

    /// Records that the stream at `key` has just stopped being open (its
    /// reader was taken) and is flushing before it closes.
    pub(crate) fn mark_closing(&mut self, key: usize) {
        let Some(connection) = self.slab.get(key) else {
            return;
        };
        debug_assert!(!connection.is_open());
        self.closing += 1;
        self.closing_order.push_back((key, connection.id));
        if self.closing_order.len() > 2 * self.closing + 16 {
            let slab = &self.slab;
            self.closing_order
                .retain(|&(key, id)| Self::is_closing(slab, key, id));
        }
    }

    /// Removes a stream; its id becomes free.
    pub(crate) fn remove(&mut self, key: usize) -> Option<Connection<W, R, V>> {
        let connection = self.slab.try_remove(key)?;
        self.keys.remove(&connection.id);
        if !connection.is_open() {
            self.closing -= 1;
        }
        Some(connection)
    }

    /// Removes the stream that has been closing longest, abandoning what
    /// its writer had left to flush, if any stream is closing.
    pub(crate) fn remove_oldest_closing(&mut self) -> Option<Connection<W, R, V>> {
        while let Some((key, id)) = self.closing_order.pop_front() {
            if Self::is_closing(&self.slab, key, id) {
                return self.remove(key);
            }
        }
        None
    }

    /// Whether `key` still holds the closing stream `id` (and not a stream
    /// that took its slot since).
    fn is_closing(slab: &Slab<Connection<W, R, V>>, key: usize, id: StreamId) -> bool {
        slab.get(key).is_some_and(|c| c.id == id && !c.is_open())
    }

    /// Keys of the open streams in `channel` (a scan: used only when a
    /// channel closes or the multiplexer shuts down).
    pub(crate) fn open_keys(&self, channel: Option<ChannelId>) -> Vec<usize> {
        self.slab
            .iter()
            .filter(|(_, c)| c.is_open() && channel.is_none_or(|k| c.channel == k))
            .map(|(key, _)| key)
            .collect()
    }

    /// Drops every stream, closing the connections.
    pub(crate) fn clear(&mut self) {
        self.slab.clear();
        self.keys.clear();
        self.closing_order.clear();
        self.closing = 0;
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
