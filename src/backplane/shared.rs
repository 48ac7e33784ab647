//! The two bounded queues between the stream the multiplexer polls and the
//! future that talks to Redis, and how each side wakes the other.
//!
//! Publications go one way, messages from other nodes the other. Neither
//! side ever waits for the other: a full publication queue drops (and
//! counts) the publication, and a full queue of messages from other nodes
//! makes the Redis side stop reading its socket until there is room. Each
//! queue is a `VecDeque` behind its own lock, held for one push or pop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::task::AtomicWaker;

use super::envelope::Publication;
use super::stats::BackplaneStats;
use crate::OutgoingPacket;

/// What the outgoing stream and the Redis side share.
#[derive(Debug)]
pub(crate) struct Shared<V> {
    publications: Mutex<VecDeque<Publication<V>>>,
    publication_capacity: usize,
    arrivals: Mutex<VecDeque<OutgoingPacket<V>>>,
    arrival_capacity: usize,
    /// Wakes the Redis side: a publication was queued, room was made for
    /// arrivals, or the outgoing stream closed.
    pub(crate) redis_side: AtomicWaker,
    /// Wakes the task polling the outgoing stream: a message arrived.
    pub(crate) outgoing_side: AtomicWaker,
    /// The outgoing stream ended or was dropped: nothing more will be
    /// offered, and nothing that arrives will be taken.
    closed: AtomicBool,
    pub(crate) stats: BackplaneStats,
}

impl<V> Shared<V> {
    pub(crate) fn new(publication_capacity: usize, arrival_capacity: usize) -> Self {
        Self {
            publications: Mutex::new(VecDeque::new()),
            publication_capacity,
            arrivals: Mutex::new(VecDeque::new()),
            arrival_capacity,
            redis_side: AtomicWaker::new(),
            outgoing_side: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            stats: BackplaneStats::default(),
        }
    }

    /// Queues a publication, or drops it (counted) if the queue is full.
    pub(crate) fn offer(&self, publication: Publication<V>) {
        let mut queue = lock(&self.publications);
        let queued = queue.len() < self.publication_capacity;
        if queued {
            queue.push_back(publication);
        }
        self.stats.offered(queued, queue.len());
        drop(queue);
        if queued {
            self.redis_side.wake();
        }
    }

    /// The oldest queued publication.
    pub(crate) fn next_publication(&self) -> Option<Publication<V>> {
        let mut queue = lock(&self.publications);
        let publication = queue.pop_front();
        if publication.is_some() {
            self.stats.dequeued(queue.len());
        }
        publication
    }

    /// Whether no publication is queued.
    pub(crate) fn no_publications(&self) -> bool {
        lock(&self.publications).is_empty()
    }

    /// Drops every queued publication, counted: the backplane is stopping
    /// with no connection to publish them on.
    pub(crate) fn drop_publications(&self) {
        let mut queue = lock(&self.publications);
        for _ in queue.drain(..) {
            self.stats.publish_dropped();
        }
        self.stats.dequeued(0);
    }

    /// Hands a message from another node to the outgoing stream, or gives
    /// it back if the queue is full (the caller keeps it and stops reading
    /// until [`redis_side`](Self::redis_side) is woken).
    /// Once the outgoing stream has closed, the message is dropped: nobody
    /// would take it.
    pub(crate) fn arrive(&self, packet: OutgoingPacket<V>) -> Result<(), OutgoingPacket<V>> {
        if self.is_closed() {
            return Ok(());
        }
        let mut queue = lock(&self.arrivals);
        if queue.len() >= self.arrival_capacity {
            return Err(packet);
        }
        queue.push_back(packet);
        drop(queue);
        self.outgoing_side.wake();
        Ok(())
    }

    /// The oldest message from another node, waking the Redis side if that
    /// made room in a full queue.
    pub(crate) fn next_arrival(&self) -> Option<OutgoingPacket<V>> {
        let mut queue = lock(&self.arrivals);
        let was_full = queue.len() >= self.arrival_capacity;
        let packet = queue.pop_front();
        drop(queue);
        if was_full && packet.is_some() {
            self.redis_side.wake();
        }
        packet
    }

    /// The outgoing stream ended or was dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.arrivals).clear();
        self.redis_side.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one push or pop, which leaves the queue
    // whole: a lock poisoned by a panic elsewhere still guards a usable one.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, OutgoingMessage};

    fn publication(n: u8) -> Publication<u8> {
        Publication {
            room: "r".into(),
            except: None,
            delivery: Delivery::Reliable,
            values: vec![n],
        }
    }

    #[test]
    fn a_full_publication_queue_drops_and_counts_and_never_grows() {
        let shared = Shared::new(2, 1);
        for n in 0..5 {
            shared.offer(publication(n));
        }
        let stats = shared.stats.snapshot();
        assert_eq!(
            (stats.offered, stats.queued, stats.publish_dropped),
            (5, 2, 3)
        );
        assert_eq!(stats.queue_peak, 2);
        assert_eq!(shared.next_publication().map(|p| p.values), Some(vec![0]));
        assert_eq!(shared.stats.snapshot().queued, 1);
        shared.drop_publications();
        let stats = shared.stats.snapshot();
        assert_eq!((stats.queued, stats.publish_dropped), (0, 4));
        assert_eq!(stats.unaccounted(), 1, "the one taken is in no count yet");
    }

    #[test]
    fn a_full_arrival_queue_gives_the_message_back() {
        let shared = Shared::<u8>::new(1, 1);
        let packet = || OutgoingPacket::Message(OutgoingMessage::to_room("r", [1]));
        assert!(shared.arrive(packet()).is_ok());
        assert!(shared.arrive(packet()).is_err());
        assert!(shared.next_arrival().is_some());
        assert!(shared.arrive(packet()).is_ok());
        shared.close();
        assert!(shared.next_arrival().is_none(), "closing drops what waits");
    }
}
