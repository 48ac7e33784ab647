//! One stream's read side, as the multiplexer holds it.

use std::pin::Pin;
use std::task::Poll;

use futures::Stream;

use crate::wake::Wakeup;

/// The read half of a connection and the waker that queues it on its
/// channel's ready queue.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    stream: R,
    wakeup: Wakeup,
}

impl<R> Reader<R> {
    pub(crate) fn new(stream: R, wakeup: Wakeup) -> Self {
        Self { stream, wakeup }
    }

    /// Replaces the waker, when the stream moves to another channel: the
    /// new one queues it on the new channel (the old one may still fire;
    /// the old channel skips the key then).
    pub(crate) fn rewake(&mut self, wakeup: Wakeup) {
        self.wakeup = wakeup;
    }
}

impl<R: Stream + Unpin> Reader<R> {
    /// Starts a turn of polls, all with the reader's own waker. The queued
    /// flag is cleared once, here: a wake that arrives at any point of the
    /// turn queues the key again, as one arriving after a single poll
    /// would, so clearing it before every poll of the turn buys nothing.
    pub(crate) fn turn(&mut self) -> ReadTurn<'_, R> {
        let cx = self.wakeup.begin_poll();
        ReadTurn {
            stream: &mut self.stream,
            cx,
        }
    }
}

/// A turn of polls of one reader (see [`Reader::turn`]).
pub(crate) struct ReadTurn<'a, R> {
    stream: &'a mut R,
    cx: std::task::Context<'a>,
}

impl<R: Stream + Unpin> ReadTurn<'_, R> {
    /// Polls the reader once. Called once per frame read: always inlined
    /// into the read loop (left to itself, the compiler inlines it or not
    /// depending on what else the loop holds).
    #[inline(always)]
    pub(crate) fn poll_next(&mut self) -> Poll<Option<R::Item>> {
        Pin::new(&mut *self.stream).poll_next(&mut self.cx)
    }

    /// Queues the reader again, behind the others of its channel.
    pub(crate) fn wake(&self) {
        self.cx.waker().wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use futures::Stream;

    use super::Reader;
    use crate::wake::{WakeHub, Wakeup};

    /// Yields `ready` items, waking its waker while yielding the one at
    /// `wake_at`, then returns `Pending`.
    struct WakesMidTurn {
        ready: usize,
        wake_at: usize,
        polled: usize,
    }

    impl Stream for WakesMidTurn {
        type Item = usize;

        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<usize>> {
            let n = self.polled;
            self.polled += 1;
            if n == self.wake_at {
                cx.waker().wake_by_ref();
            }
            if n < self.ready {
                Poll::Ready(Some(n))
            } else {
                Poll::Pending
            }
        }
    }

    fn queued(hub: &WakeHub) -> Vec<usize> {
        let mut keys = Vec::new();
        hub.drain_readers(0, &mut keys);
        keys
    }

    #[test]
    fn a_wake_at_any_point_of_a_turn_queues_the_reader_again() {
        for wake_at in 0..4 {
            let hub = WakeHub::new(1);
            let stream = WakesMidTurn {
                ready: 3,
                wake_at,
                polled: 0,
            };
            let mut reader = Reader::new(stream, Wakeup::reader(&hub, 0, 7));
            assert_eq!(queued(&hub), [7], "a new reader starts out queued");

            let mut turn = reader.turn();
            for n in 0..3 {
                assert_eq!(turn.poll_next(), Poll::Ready(Some(n)));
            }
            assert_eq!(turn.poll_next(), Poll::Pending);
            assert_eq!(queued(&hub), [7], "woken while yielding item {wake_at}");

            // Queued once however many wakes: the next turn clears the flag.
            let turn = reader.turn();
            turn.wake();
            turn.wake();
            assert_eq!(queued(&hub), [7]);
        }
    }
}
