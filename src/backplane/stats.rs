//! [`BackplaneStats`]: what a backplane published, received, rejected and
//! lost, readable from any thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A cheap, cloneable, thread-safe handle on a backplane's counters.
///
/// Get one with [`Backplane::stats`](super::Backplane::stats). Every room
/// message the application sends is *offered* for publishing, and then is,
/// at any moment, exactly one of: queued, in flight, published, failed or
/// dropped:
///
/// `offered == queued + in_flight + published + publish_failed + publish_dropped`
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::BackplaneStats;
///
/// let stats = BackplaneStats::default();
/// let snapshot = stats.snapshot();
/// assert_eq!(snapshot.offered, 0);
/// assert_eq!(snapshot.unaccounted(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct BackplaneStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    offered: AtomicU64,
    queued: AtomicU64,
    queue_peak: AtomicU64,
    in_flight: AtomicU64,
    published: AtomicU64,
    publish_failed: AtomicU64,
    publish_dropped: AtomicU64,
    received: AtomicU64,
    rejected: AtomicU64,
    subscriptions: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
}

/// The counters of a backplane at one moment.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::BackplaneStatsSnapshot;
///
/// let mut snapshot = BackplaneStatsSnapshot::default();
/// snapshot.offered = 10;
/// snapshot.published = 7;
/// snapshot.publish_dropped = 3;
/// assert_eq!(snapshot.unaccounted(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStatsSnapshot {
    /// Room messages the application sent, each offered once for
    /// publishing (they went to the local members at once, whatever
    /// became of their publication).
    pub offered: u64,
    /// Publications waiting in the queue now.
    pub queued: u64,
    /// The most publications the queue ever held: never more than its
    /// capacity.
    pub queue_peak: u64,
    /// Publications written to Redis whose reply has not come yet.
    pub in_flight: u64,
    /// Publications Redis confirmed.
    pub published: u64,
    /// Publications sent whose confirmation never came: the connection was
    /// lost first (Redis may or may not have passed them on; they are not
    /// sent again, which could deliver them twice), or Redis answered with
    /// an error.
    pub publish_failed: u64,
    /// Room messages never sent to Redis: the queue was full (Redis slow
    /// or away), their envelope exceeded the maximum message size, or the
    /// backplane was stopping with no connection to send them on.
    pub publish_dropped: u64,
    /// Messages from other nodes passed to this node's members.
    pub received: u64,
    /// Messages from Redis that were not: see
    /// [`Rejection`](super::Rejection) for why.
    pub rejected: u64,
    /// Rooms this node is subscribed to now, as Redis last confirmed: the
    /// rooms with local members, once the subscriber connection is up.
    pub subscriptions: u64,
    /// Connection attempts that failed (refused, timed out, or answered
    /// with an error), on either connection.
    pub connect_failures: u64,
    /// Established connections that were lost.
    pub disconnects: u64,
    /// Connections established again after one was lost or could not be
    /// made.
    pub reconnects: u64,
}

impl BackplaneStatsSnapshot {
    /// Room messages offered and not yet in any of the other counts;
    /// zero whenever the counters were read consistently (the snapshot
    /// reads each on its own, so one taken while messages move may be a
    /// few apart).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::backplane::BackplaneStatsSnapshot;
    ///
    /// let mut snapshot = BackplaneStatsSnapshot::default();
    /// snapshot.offered = 3;
    /// snapshot.queued = 1;
    /// snapshot.in_flight = 1;
    /// snapshot.publish_failed = 1;
    /// assert_eq!(snapshot.unaccounted(), 0);
    /// ```
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.offered)
            - i128::from(self.queued)
            - i128::from(self.in_flight)
            - i128::from(self.published)
            - i128::from(self.publish_failed)
            - i128::from(self.publish_dropped)
    }
}

impl BackplaneStats {
    /// Reads every counter. Each is read on its own (relaxed), so a
    /// snapshot taken while the backplane works may be a few events apart
    /// between counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::backplane::BackplaneStats;
    ///
    /// assert_eq!(BackplaneStats::default().snapshot().reconnects, 0);
    /// ```
    pub fn snapshot(&self) -> BackplaneStatsSnapshot {
        let c = &*self.counters;
        BackplaneStatsSnapshot {
            offered: c.offered.load(Relaxed),
            queued: c.queued.load(Relaxed),
            queue_peak: c.queue_peak.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            published: c.published.load(Relaxed),
            publish_failed: c.publish_failed.load(Relaxed),
            publish_dropped: c.publish_dropped.load(Relaxed),
            received: c.received.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            subscriptions: c.subscriptions.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
        }
    }

    /// A room message was offered: `queued` tells whether it found room in
    /// the queue, which now holds `depth`.
    pub(crate) fn offered(&self, queued: bool, depth: usize) {
        let c = &self.counters;
        c.offered.fetch_add(1, Relaxed);
        if queued {
            c.queued.store(depth as u64, Relaxed);
            c.queue_peak.fetch_max(depth as u64, Relaxed);
        } else {
            c.publish_dropped.fetch_add(1, Relaxed);
        }
    }

    /// A publication left the queue, which now holds `depth`.
    pub(crate) fn dequeued(&self, depth: usize) {
        self.counters.queued.store(depth as u64, Relaxed);
    }

    pub(crate) fn in_flight(&self, count: usize) {
        self.counters.in_flight.store(count as u64, Relaxed);
    }

    pub(crate) fn published(&self) {
        self.counters.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn publish_failed(&self, count: usize) {
        self.counters
            .publish_failed
            .fetch_add(count as u64, Relaxed);
    }

    pub(crate) fn publish_dropped(&self) {
        self.counters.publish_dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn received(&self) {
        self.counters.received.fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.counters.rejected.fetch_add(1, Relaxed);
    }

    pub(crate) fn subscriptions(&self, count: u64) {
        self.counters.subscriptions.store(count, Relaxed);
    }

    pub(crate) fn connect_failed(&self) {
        self.counters.connect_failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.counters.disconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.counters.reconnects.fetch_add(1, Relaxed);
    }
}
