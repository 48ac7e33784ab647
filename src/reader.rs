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

    /// Queues the reader again, behind the others of its channel.
    pub(crate) fn wake(&self) {
        self.wakeup.wake();
    }
}

impl<R: Stream + Unpin> Reader<R> {
    /// Polls the reader once, with its own waker. Called once per frame
    /// read: always inlined into the read loop (left to itself, the
    /// compiler inlines it or not depending on what else the loop holds).
    #[inline(always)]
    pub(crate) fn poll_next(&mut self) -> Poll<Option<R::Item>> {
        let mut cx = self.wakeup.begin_poll();
        Pin::new(&mut self.stream).poll_next(&mut cx)
    }
}
