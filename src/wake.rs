//! Per-stream wakers: each records *which* stream became ready, so `Run`
//! polls only the streams that have something to do and never scans idle
//! ones.
//!
//! # Implementation
//!
//! A [`WakeHub`] holds one ready queue per channel (for readers) and one for
//! writers, plus the waker of the task running `Run`. A [`Wakeup`] is the
//! waker given to one stream's reader or writer: waking it pushes the stream's
//! slab key onto its queue (once, thanks to a flag) and wakes the task. This
//! is the design of `FuturesUnordered`, without `unsafe` and without an
//! allocation per item: a `Wakeup` is allocated once per stream (and once per
//! channel move), not per frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

use futures::task::AtomicWaker;

/// Which ready queue of the hub a [`Wakeup`] feeds: one per channel, then
/// the writers' queue.
type QueueIndex = usize;

/// The ready queues of one `Run`, and the waker of the task polling it.
#[derive(Debug)]
pub(crate) struct WakeHub {
    task: AtomicWaker,
    /// `channels` queues of readers, then one of writers.
    queues: Box<[Mutex<Vec<usize>>]>,
}

impl WakeHub {
    /// A hub for the readers of `channels` channels and for the writers.
    pub(crate) fn new(channels: usize) -> Arc<Self> {
        Arc::new(Self {
            task: AtomicWaker::new(),
            queues: (0..=channels).map(|_| Mutex::new(Vec::new())).collect(),
        })
    }

    fn writers_queue(&self) -> QueueIndex {
        self.queues.len() - 1
    }

    /// Appends the keys of the readers of `channel` woken since the last
    /// call, in wake order.
    pub(crate) fn drain_readers(&self, channel: usize, into: &mut impl Extend<usize>) {
        self.drain_into(channel, into);
    }

    /// Appends the keys of the writers woken since the last call, in wake
    /// order.
    pub(crate) fn drain_writers(&self, into: &mut impl Extend<usize>) {
        self.drain_into(self.writers_queue(), into);
    }

    /// Remembers the task to wake when any stream becomes ready.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.task.register(cx.waker());
    }

    fn drain_into(&self, queue: QueueIndex, into: &mut impl Extend<usize>) {
        let mut woken = self.queues[queue]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        into.extend(woken.drain(..));
    }

    fn push(&self, queue: QueueIndex, key: usize) {
        self.queues[queue]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key);
        self.task.wake();
    }
}

/// The waker of one stream's reader or writer.
#[derive(Debug)]
pub(crate) struct Wakeup {
    flag: Arc<KeyWaker>,
    waker: Waker,
}

#[derive(Debug)]
struct KeyWaker {
    hub: Arc<WakeHub>,
    queue: QueueIndex,
    key: usize,
    /// Set while the key sits in a ready queue, so a burst of wakes queues it
    /// once.
    queued: AtomicBool,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.hub.push(self.queue, self.key);
        }
    }
}

impl Wakeup {
    /// The waker of the reader at `key`, queueing it on `channel`. It starts
    /// out woken, so that the reader is polled once and registers its
    /// interest.
    pub(crate) fn reader(hub: &Arc<WakeHub>, channel: usize, key: usize) -> Self {
        let wakeup = Self::new(hub, channel, key);
        wakeup.wake();
        wakeup
    }

    /// The waker of the writer at `key`. It starts out idle: a writer is
    /// queued when values are queued to it.
    pub(crate) fn writer(hub: &Arc<WakeHub>, key: usize) -> Self {
        Self::new(hub, hub.writers_queue(), key)
    }

    fn new(hub: &Arc<WakeHub>, queue: QueueIndex, key: usize) -> Self {
        let flag = Arc::new(KeyWaker {
            hub: Arc::clone(hub),
            queue,
            key,
            queued: AtomicBool::new(false),
        });
        let waker = Waker::from(Arc::clone(&flag));
        Self { flag, waker }
    }

    /// Queues the key again (no-op if it is already queued).
    pub(crate) fn wake(&self) {
        self.waker.wake_by_ref();
    }

    /// The context to poll with outside the writer's own turn (a value
    /// handed to an idle writer's sink as it is queued): the queued flag is
    /// left as it is, so a writer already queued for a turn is not queued
    /// twice, and one that is not is queued by a wake.
    pub(crate) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    /// Clears the queued flag and returns the context to poll with: a wake
    /// that arrives during or after this poll queues the key again.
    pub(crate) fn begin_poll(&self) -> Context<'_> {
        self.flag.queued.store(false, Ordering::Release);
        Context::from_waker(&self.waker)
    }
}
