//! A bounded channel that hands packets over in batches: a fast consumer
//! sink for the multiplexer.
//!
//! Any `Sink` works as a channel of the multiplexer, but the usual channels
//! pay per packet: `futures::channel::mpsc` allocates a node and wakes the
//! receiver for each one. [`channel`] pays per batch instead. The sender
//! gathers packets in a local buffer; [`poll_flush`](futures::Sink::poll_flush)
//! — which the multiplexer calls once per channel per poll — moves the whole
//! batch under one lock and wakes the receiver once; the receiver takes
//! everything waiting in one swap and yields it without locking again, one
//! packet per [`next`](futures::StreamExt::next), or all of them at once
//! with [`BatchReceiver::next_batch`].
//!
//! # Performance notes
//!
//! Per packet: a push onto a `Vec` on the sending side and a step of a
//! `Vec`'s iterator on the receiving side. Per batch: one lock and one
//! wake-up on each side, and no copy when the receiver has taken everything
//! before: the batch's `Vec` itself is handed over, the receiver takes the
//! whole `Vec` and iterates it, and the sender starts its next batch in an
//! allocation the size of the last one (one allocation per batch, freed by
//! the receiver when it takes the next). At most
//! `capacity` packets wait in the channel (sent, counting those still in a
//! sender's batch, and not yet taken by the receiver); the receiver holds at
//! most `capacity` more that it took but has not yielded yet.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::stream::FusedStream;
use futures::{Sink, Stream};

/// Creates a bounded channel of `capacity` packets (at least 1) whose
/// sending half is a [`Sink`] and whose receiving half is a [`Stream`].
///
/// # Examples
///
/// ```
/// use futures::{SinkExt, StreamExt, executor::block_on};
/// use stream_multiplexer::batch;
///
/// block_on(async {
///     let (mut sender, mut receiver) = batch::channel(2);
///     sender.feed(1).await.unwrap();
///     sender.feed(2).await.unwrap();
///     // Nothing is visible before the batch is flushed.
///     sender.flush().await.unwrap();
///     assert_eq!(receiver.next().await, Some(1));
///     assert_eq!(receiver.next().await, Some(2));
///
///     // Once every sender is gone, the receiver ends.
///     drop(sender);
///     assert_eq!(receiver.next().await, None);
/// });
/// ```
pub fn channel<T>(capacity: usize) -> (BatchSender<T>, BatchReceiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        capacity,
        state: Mutex::new(State {
            queue: Vec::new(),
            senders: 1,
            receiver_alive: true,
            receiver_waker: None,
            sender_wakers: Vec::new(),
        }),
    });
    let sender = BatchSender {
        shared: Arc::clone(&shared),
        batch: Vec::new(),
        room: 0,
    };
    let receiver = BatchReceiver {
        shared,
        taken: Vec::new().into_iter(),
        ended: false,
    };
    (sender, receiver)
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Packets handed over and not yet taken, oldest first.
    queue: Vec<T>,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    sender_wakers: Vec<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> State<T> {
    /// Moves everything in `batch` to the back of the queue, leaving
    /// `batch` empty. When the queue is empty (the receiver took everything
    /// before), the two `Vec`s trade places instead of the packets being
    /// moved one by one, and `batch` gets the queue's spare allocation, if
    /// it has one.
    fn put(&mut self, batch: &mut Vec<T>) {
        if self.queue.is_empty() {
            std::mem::swap(&mut self.queue, batch);
        } else {
            self.queue.append(batch);
        }
    }
}

/// The error of sending into a channel whose receiver is gone.
///
/// # Examples
///
/// ```
/// use futures::{SinkExt, executor::block_on};
/// use stream_multiplexer::batch;
///
/// let (mut sender, receiver) = batch::channel::<u8>(4);
/// drop(receiver);
/// let error = block_on(sender.send(1)).unwrap_err();
/// assert_eq!(error.to_string(), "sending into a closed channel");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sending into a closed channel")]
pub struct Closed;

/// The sending half of a [`channel`]: a [`Sink`] that gathers packets and
/// hands them over when flushed. Cloning it makes another sender with a
/// batch of its own.
///
/// Packets sent but not flushed are handed over when the sender is dropped.
///
/// # Examples
///
/// ```
/// use futures::{SinkExt, StreamExt, executor::block_on};
/// use stream_multiplexer::batch;
///
/// block_on(async {
///     let (sender, mut receiver) = batch::channel(8);
///     let mut other = sender.clone();
///     other.send("from a clone").await.unwrap();
///     assert_eq!(receiver.next().await, Some("from a clone"));
/// });
/// ```
pub struct BatchSender<T> {
    shared: Arc<Shared<T>>,
    /// Packets sent since the last flush.
    batch: Vec<T>,
    /// Packets this sender may still add to its batch without looking at
    /// the shared queue again.
    room: usize,
}

impl<T> BatchSender<T> {
    /// Moves the batch into the shared queue and wakes the receiver.
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let handed = self.batch.len();
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_alive {
                state.put(&mut self.batch);
            } else {
                // No one will ever take them.
                self.batch.clear();
            }
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        // The queue's allocation went to the receiver with its packets:
        // start the next batch at the size of this one (at most the
        // channel's capacity), rather than growing it push by push.
        self.batch.reserve(handed);
    }
}

impl<T> BatchSender<T> {
    /// Out of room as far as this sender knows: hands the batch over and
    /// looks at the queue again. Out of line, so that the check before it,
    /// made for every packet, stays small enough to inline.
    #[inline(never)]
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        let this = self;
        this.hand_over();
        let mut state = this.shared.lock();
        if !state.receiver_alive {
            return Poll::Ready(Err(Closed));
        }
        this.room = this.shared.capacity.saturating_sub(state.queue.len());
        if this.room > 0 {
            return Poll::Ready(Ok(()));
        }
        if !state.sender_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.sender_wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T> Sink<T> for BatchSender<T> {
    type Error = Closed;

    #[inline]
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        let this = self.get_mut();
        if this.room > 0 {
            return Poll::Ready(Ok(()));
        }
        this.poll_room(cx)
    }

    #[inline]
    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Closed> {
        let this = self.get_mut();
        this.room = this.room.saturating_sub(1);
        this.batch.push(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        let this = self.get_mut();
        this.hand_over();
        // The receiver may have taken packets since: look again at the next
        // poll_ready rather than trust a stale count.
        this.room = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.poll_flush(cx)
    }
}

// Packets are only moved in and out of buffers, never pinned.
impl<T> Unpin for BatchSender<T> {}
impl<T> Unpin for BatchReceiver<T> {}

impl<T> Clone for BatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
            batch: Vec::new(),
            room: 0,
        }
    }
}

impl<T> Drop for BatchSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_alive {
                state.put(&mut self.batch);
            }
            state.senders -= 1;
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for BatchSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSender")
            .field("capacity", &self.shared.capacity)
            .field("batched", &self.batch.len())
            .finish_non_exhaustive()
    }
}

/// The receiving half of a [`channel`]: a [`Stream`] of the packets sent,
/// in order, ending once every sender is gone and everything was taken.
///
/// # Examples
///
/// ```
/// use futures::{SinkExt, StreamExt, executor::block_on};
/// use stream_multiplexer::batch;
///
/// block_on(async {
///     let (mut sender, receiver) = batch::channel(16);
///     for n in 0..3 {
///         sender.feed(n).await.unwrap();
///     }
///     drop(sender); // hands the batch over
///     assert_eq!(receiver.collect::<Vec<_>>().await, [0, 1, 2]);
/// });
/// ```
pub struct BatchReceiver<T> {
    shared: Arc<Shared<T>>,
    /// Packets taken from the queue in one swap, not yet yielded.
    taken: std::vec::IntoIter<T>,
    ended: bool,
}

impl<T> Stream for BatchReceiver<T> {
    type Item = T;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if let Some(item) = this.taken.next() {
            return Poll::Ready(Some(item));
        }
        this.poll_take(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.taken.len(), None)
    }
}

impl<T> BatchReceiver<T> {
    /// Waits for packets and appends every one waiting to `into`, in
    /// order, returning how many it appended; 0 once every sender is gone
    /// and everything was taken (the end of the stream).
    ///
    /// The batch counterpart of [`StreamExt::next`](futures::StreamExt::next):
    /// one wait, one lock and one wake-up of the senders for all the packets
    /// waiting, and the caller iterates them as it likes. When `into` is
    /// empty, its allocation and the channel's trade places instead of the
    /// packets being moved. What `into` holds is out of the channel's
    /// count: a consumer that keeps appending without draining it holds as
    /// many packets as it lets pile up. Mixing it with `next` is fine:
    /// packets taken by `next` and not yet yielded come first.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{SinkExt, executor::block_on};
    /// use stream_multiplexer::batch;
    ///
    /// block_on(async {
    ///     let (mut sender, mut receiver) = batch::channel(16);
    ///     for n in 0..3 {
    ///         sender.feed(n).await.unwrap();
    ///     }
    ///     sender.flush().await.unwrap();
    ///
    ///     let mut packets = Vec::new();
    ///     assert_eq!(receiver.next_batch(&mut packets).await, 3);
    ///     assert_eq!(packets, [0, 1, 2]);
    ///     packets.clear();
    ///
    ///     drop(sender);
    ///     assert_eq!(receiver.next_batch(&mut packets).await, 0); // ended
    ///     assert!(packets.is_empty());
    /// });
    /// ```
    pub async fn next_batch(&mut self, into: &mut Vec<T>) -> usize {
        futures::future::poll_fn(|cx| self.poll_next_batch(cx, into)).await
    }

    /// Polls for packets and appends every one waiting to `into`; the poll
    /// form of [`next_batch`](Self::next_batch). `Ready(0)` means the end
    /// of the stream; `Pending` registers the task to be woken when packets
    /// are handed over or the last sender is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// use futures::{SinkExt, executor::block_on, task::noop_waker};
    /// use stream_multiplexer::batch;
    ///
    /// let (mut sender, mut receiver) = batch::channel(4);
    /// let waker = noop_waker();
    /// let mut cx = Context::from_waker(&waker);
    /// let mut packets = Vec::new();
    /// assert!(receiver.poll_next_batch(&mut cx, &mut packets).is_pending());
    ///
    /// block_on(sender.send("hi")).unwrap();
    /// assert_eq!(receiver.poll_next_batch(&mut cx, &mut packets), Poll::Ready(1));
    /// assert_eq!(packets, ["hi"]);
    /// ```
    pub fn poll_next_batch(&mut self, cx: &mut Context<'_>, into: &mut Vec<T>) -> Poll<usize> {
        // What `next` took and has not yielded yet goes first.
        if self.taken.len() > 0 {
            let before = into.len();
            into.extend(&mut self.taken);
            return Poll::Ready(into.len() - before);
        }
        if self.ended {
            return Poll::Ready(0);
        }
        let (appended, wakers) = {
            let mut state = self.shared.lock();
            if state.queue.is_empty() {
                if state.senders == 0 {
                    self.ended = true;
                    return Poll::Ready(0);
                }
                state.receiver_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let appended = state.queue.len();
            if into.is_empty() {
                std::mem::swap(&mut state.queue, into);
            } else {
                into.append(&mut state.queue);
            }
            (appended, std::mem::take(&mut state.sender_wakers))
        };
        // The queue has room again.
        for waker in wakers {
            waker.wake();
        }
        Poll::Ready(appended)
    }
}

impl<T> BatchReceiver<T> {
    /// Everything taken was yielded: takes what is waiting, or registers to
    /// be woken. Out of line, so that yielding a packet already taken, done
    /// for every packet, stays small enough to inline.
    #[inline(never)]
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self;
        if this.ended {
            return Poll::Ready(None);
        }
        let wakers = {
            let mut state = this.shared.lock();
            if state.queue.is_empty() {
                if state.senders == 0 {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                state.receiver_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Take the whole queue, packets and allocation; the emptied
            // one is freed (the next sender to hand over allocates anew).
            this.taken = std::mem::take(&mut state.queue).into_iter();
            std::mem::take(&mut state.sender_wakers)
        };
        // The queue has room again.
        for waker in wakers {
            waker.wake();
        }
        Poll::Ready(this.taken.next())
    }
}

impl<T> FusedStream for BatchReceiver<T> {
    fn is_terminated(&self) -> bool {
        self.ended && self.taken.len() == 0
    }
}

impl<T> Drop for BatchReceiver<T> {
    fn drop(&mut self) {
        let wakers = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            state.queue.clear();
            std::mem::take(&mut state.sender_wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for BatchReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("capacity", &self.shared.capacity)
            .field("taken", &self.taken.len())
            .finish_non_exhaustive()
    }
}
