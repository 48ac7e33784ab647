//! One channel: the consumer's sink, the announcements waiting for it, and
//! the keys of its streams whose readers are ready.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Sink;

use crate::{IncomingPacket, StreamId};

/// A channel's sink and what waits to go into it.
#[derive(Debug)]
pub(crate) struct Channel<Ch, T> {
    sink: Ch,
    /// `StreamConnected`/`StreamDisconnected` packets not yet accepted by the
    /// sink. They go out before any reader of the channel is polled again,
    /// which is what keeps a stream's messages after its `StreamConnected`
    /// (guarantees 1 and 2 of the crate docs).
    announcements: VecDeque<IncomingPacket<T>>,
    /// Slab keys of streams whose readers were woken, in wake order. Keys of
    /// streams that have since left or moved are skipped when popped.
    pub(crate) ready: VecDeque<usize>,
    unflushed: bool,
    open: bool,
}

/// Whether the sink can take a packet now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// The sink is full; it will wake the task.
    Busy,
    /// The sink closed or failed; the channel is now closed.
    Closed,
}

impl<Ch, T> Channel<Ch, T> {
    pub(crate) fn new(sink: Ch) -> Self {
        Self {
            sink,
            announcements: VecDeque::new(),
            ready: VecDeque::new(),
            unflushed: false,
            open: true,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Whether every announcement has been handed to the sink.
    pub(crate) fn is_caught_up(&self) -> bool {
        self.announcements.is_empty()
    }

    /// Queues a `StreamConnected` announcement.
    pub(crate) fn announce_connected(&mut self, id: StreamId) {
        if self.open {
            self.announcements
                .push_back(IncomingPacket::StreamConnected(id));
        }
    }

    /// Queues a `StreamDisconnected` announcement.
    pub(crate) fn announce_disconnected(&mut self, id: StreamId, reason: crate::DisconnectReason) {
        if self.open {
            self.announcements
                .push_back(IncomingPacket::StreamDisconnected(id, reason));
        }
    }
}

impl<Ch, T> Channel<Ch, T>
where
    Ch: Sink<IncomingPacket<T>> + Unpin,
{
    /// Polls the sink for room, closing the channel if it failed.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Readiness {
        if !self.open {
            return Readiness::Closed;
        }
        match Pin::new(&mut self.sink).poll_ready(cx) {
            Poll::Ready(Ok(())) => Readiness::Ready,
            Poll::Pending => Readiness::Busy,
            Poll::Ready(Err(_)) => self.fail(),
        }
    }

    /// Hands a packet to the sink; call only after [`Self::poll_ready`]
    /// returned [`Readiness::Ready`].
    pub(crate) fn send(&mut self, packet: IncomingPacket<T>) -> Readiness {
        match Pin::new(&mut self.sink).start_send(packet) {
            Ok(()) => {
                self.unflushed = true;
                Readiness::Ready
            }
            Err(_) => self.fail(),
        }
    }

    /// Hands queued announcements to the sink, in order, while it has room.
    pub(crate) fn send_announcements(&mut self, cx: &mut Context<'_>) -> Readiness {
        while !self.announcements.is_empty() {
            match self.poll_ready(cx) {
                Readiness::Ready => {}
                other => return other,
            }
            if let Some(packet) = self.announcements.pop_front()
                && self.send(packet) == Readiness::Closed
            {
                return Readiness::Closed;
            }
        }
        self.poll_ready(cx)
    }

    /// Flushes the sink if anything was sent since the last flush.
    pub(crate) fn flush(&mut self, cx: &mut Context<'_>) {
        if self.open && self.unflushed {
            match Pin::new(&mut self.sink).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Pending => {}
                Poll::Ready(Err(_)) => {
                    self.fail();
                }
            }
        }
    }

    /// Closes the sink (at shutdown). Ready once it is closed or failed.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.open {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.sink).poll_close(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.open = false;
                Poll::Ready(())
            }
        }
    }

    fn fail(&mut self) -> Readiness {
        self.open = false;
        self.announcements.clear();
        self.ready.clear();
        Readiness::Closed
    }
}
