//! Handshakes run concurrently, a bounded number at once, each within a
//! deadline: what the TLS and WebSocket acceptors share.
//!
//! A server that completed one handshake after another would be held up by
//! the slowest client: one that opens a TCP connection and then sends its
//! `ClientHello` or its HTTP upgrade request a byte a minute would stop
//! every other client from being served. [`Handshakes`] runs them side by
//! side instead, in a `FuturesUnordered`, and bounds them twice:
//!
//! - **In number.** At most `max_in_flight` run at once. Past that, the
//!   stream of accepted connections is not polled, so further clients wait
//!   in the kernel's listen backlog instead of costing the server memory.
//! - **In time.** Each must finish within `timeout`, counted in the ticks of
//!   a [`Clock`] of the acceptor's own. One that does not is dropped (its
//!   connection closed) and yielded as an error of kind
//!   [`io::ErrorKind::TimedOut`].
//!
//! # Implementation
//!
//! Every handshake gets the same timeout, so deadlines fall in the order
//! the handshakes started. The stream remembers the earliest deadline not
//! yet passed; a tick before it costs nothing. A tick that reaches it walks
//! the running handshakes (at most `max_in_flight`), marks the expired ones
//! and wakes them, so that `FuturesUnordered` polls them and they end.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FusedStream, FuturesUnordered, Stream, StreamExt};
use futures::{Future, FutureExt};

use crate::Clock;

/// Default bound on handshakes in flight: enough for a burst of clients
/// connecting at once to be served side by side, few enough that their
/// buffers (a few KiB each while they last) stay small beside the server's.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Default time a handshake may take: a client on a slow mobile link
/// completes a TLS or WebSocket handshake in a few round trips, well within
/// it; a client that trickles its bytes is dropped after it.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The two bounds on an acceptor's handshakes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The most handshakes in flight at once (at least 1).
    pub(crate) max_in_flight: usize,
    /// The time each handshake may take.
    pub(crate) timeout: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How an acceptor turns one accepted connection into the future of its
/// handshake.
pub(crate) trait Handshake<C> {
    /// What a successful handshake gives.
    type Output;

    /// Starts the handshake of `connection`. The future owns the
    /// connection: dropping it closes the connection.
    fn start(&self, connection: C) -> BoxFuture<'static, io::Result<Self::Output>>;
}

/// A stream of the results of the handshakes of the connections of
/// `incoming`, run concurrently and bounded in number and time (see the
/// module docs). Errors of `incoming` (failed accepts) pass through.
pub(crate) struct Handshakes<S, H, T> {
    /// `None` once it has ended.
    incoming: Option<S>,
    handshake: H,
    running: FuturesUnordered<Timed<T>>,
    clock: Clock,
    /// Ticks counted so far.
    now: u64,
    /// The timeout, in ticks.
    timeout: u64,
    max_in_flight: usize,
    /// The earliest deadline among the running handshakes not yet expired,
    /// if any: no tick before it needs to look at them.
    next_deadline: Option<u64>,
}

impl<S, H, T> Handshakes<S, H, T> {
    pub(crate) fn new(incoming: S, handshake: H, clock: Clock, bounds: Bounds) -> Self {
        let timeout = clock.ticks_in(bounds.timeout);
        Self {
            incoming: Some(incoming),
            handshake,
            running: FuturesUnordered::new(),
            clock,
            now: 0,
            timeout,
            max_in_flight: bounds.max_in_flight.max(1),
            next_deadline: None,
        }
    }

    /// How many handshakes are in flight.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// Counts the ticks that came, and expires the handshakes whose
    /// deadline they reached.
    fn advance_clock(&mut self, cx: &mut Context<'_>) {
        let mut ticked = false;
        // A clock whose stream ended has stopped: no deadline passes.
        while let Poll::Ready(Some(())) = self.clock.ticks().poll_next(cx) {
            self.now += 1;
            ticked = true;
        }
        if ticked
            && self
                .next_deadline
                .is_some_and(|deadline| deadline <= self.now)
        {
            self.expire();
        }
    }

    /// Marks and wakes every running handshake whose deadline has passed,
    /// and finds the next deadline.
    fn expire(&mut self) {
        let now = self.now;
        let mut next = None;
        for timed in self.running.iter_mut() {
            if timed.expired {
                continue;
            }
            if timed.deadline <= now {
                timed.expired = true;
                // `FuturesUnordered` polls only what was woken.
                if let Some(waker) = timed.waker.take() {
                    waker.wake();
                }
            } else {
                next = Some(next.map_or(timed.deadline, |n: u64| n.min(timed.deadline)));
            }
        }
        self.next_deadline = next;
    }
}

impl<S, C, H> Handshakes<S, H, H::Output>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    H: Handshake<C>,
{
    /// Starts the handshakes of newly accepted connections while there is
    /// room. Returns a failed accept, to be yielded.
    fn start_handshakes(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        while self.running.len() < self.max_in_flight {
            // Ended: nothing more to start.
            let incoming = self.incoming.as_mut()?;
            match incoming.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(connection))) => {
                    let deadline = self.now.saturating_add(self.timeout);
                    // Deadlines only grow, so the earliest stays the earliest.
                    self.next_deadline.get_or_insert(deadline);
                    self.running.push(Timed {
                        handshake: self.handshake.start(connection),
                        deadline,
                        expired: false,
                        waker: None,
                    });
                }
                Poll::Ready(Some(Err(error))) => return Some(error),
                Poll::Ready(None) => self.incoming = None,
                Poll::Pending => return None,
            }
        }
        // Full: `incoming` is not polled, so new clients wait in the listen
        // backlog until a handshake ends and wakes this stream.
        None
    }
}

impl<S, C, H> Stream for Handshakes<S, H, H::Output>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    H: Handshake<C> + Unpin,
{
    type Item = io::Result<H::Output>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.advance_clock(cx);
        if let Some(error) = this.start_handshakes(cx) {
            return Poll::Ready(Some(Err(error)));
        }
        match this.running.poll_next_unpin(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(Some(result)),
            Poll::Ready(None) if this.incoming.is_none() => Poll::Ready(None),
            // Nothing running, and `incoming` was polled and registered
            // this task.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl<S, C, H> FusedStream for Handshakes<S, H, H::Output>
where
    S: Stream<Item = io::Result<C>> + Unpin,
    H: Handshake<C> + Unpin,
{
    fn is_terminated(&self) -> bool {
        self.incoming.is_none() && self.running.is_empty()
    }
}

impl<S: fmt::Debug, H, T> fmt::Debug for Handshakes<S, H, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshakes")
            .field("incoming", &self.incoming)
            .field("in_flight", &self.running.len())
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout_ticks", &self.timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// One handshake and its deadline.
struct Timed<T> {
    handshake: BoxFuture<'static, io::Result<T>>,
    /// The tick at which it is dropped if still running.
    deadline: u64,
    /// Set by [`Handshakes::expire`].
    expired: bool,
    /// The waker of the last poll, for `expire` to wake it.
    waker: Option<Waker>,
}

impl<T> Future for Timed<T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake timed out",
            )));
        }
        let poll = this.handshake.poll_unpin(cx);
        if poll.is_pending() {
            match &mut this.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::channel::mpsc;
    use futures::executor::block_on;
    use futures::future;
    use futures::task::noop_waker_ref;

    /// A handshake that finishes when its connection says so: the
    /// connection is a receiver of its outcome.
    struct OnSignal;

    impl Handshake<futures::channel::oneshot::Receiver<u32>> for OnSignal {
        type Output = u32;

        fn start(
            &self,
            connection: futures::channel::oneshot::Receiver<u32>,
        ) -> BoxFuture<'static, io::Result<u32>> {
            Box::pin(connection.map(|r| r.map_err(|_| io::ErrorKind::BrokenPipe.into())))
        }
    }

    fn poll<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
        stream.poll_next_unpin(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn at_most_max_in_flight_are_taken_from_incoming() {
        let (mut senders, receivers): (Vec<_>, Vec<_>) = (0..5)
            .map(|_| futures::channel::oneshot::channel::<u32>())
            .unzip();
        let incoming = futures::stream::iter(receivers.into_iter().map(Ok))
            .chain(future::pending().into_stream().map(|()| unreachable!()));
        let (_ticks, tick_rx) = mpsc::unbounded::<()>();
        let clock = Clock::new(Duration::from_secs(1), tick_rx);
        let bounds = Bounds {
            max_in_flight: 2,
            timeout: Duration::from_secs(5),
        };
        let mut handshakes = Handshakes::new(Box::pin(incoming), OnSignal, clock, bounds);

        assert!(poll(&mut handshakes).is_pending());
        assert_eq!(handshakes.in_flight(), 2);

        // The second one finishes first: order is completion order.
        senders.remove(1).send(1).unwrap();
        assert!(matches!(poll(&mut handshakes), Poll::Ready(Some(Ok(1)))));
        assert!(poll(&mut handshakes).is_pending());
        assert_eq!(handshakes.in_flight(), 2, "one more was taken");
    }

    #[test]
    fn a_handshake_past_its_deadline_ends_in_timed_out_and_others_go_on() {
        let (first_tx, first) = futures::channel::oneshot::channel::<u32>();
        let (second_tx, second) = futures::channel::oneshot::channel::<u32>();
        let (mut connections, incoming) = mpsc::unbounded();
        let (ticks, tick_rx) = mpsc::unbounded::<()>();
        let clock = Clock::new(Duration::from_secs(1), tick_rx);
        let bounds = Bounds {
            max_in_flight: 8,
            timeout: Duration::from_secs(3),
        };
        let mut handshakes = Handshakes::new(incoming, OnSignal, clock, bounds);

        connections.start_send(Ok(first)).unwrap();
        assert!(poll(&mut handshakes).is_pending());
        ticks.unbounded_send(()).unwrap();
        ticks.unbounded_send(()).unwrap();
        connections.start_send(Ok(second)).unwrap();
        assert!(poll(&mut handshakes).is_pending());
        assert_eq!(handshakes.in_flight(), 2);

        // Tick 3: the first one's deadline.
        ticks.unbounded_send(()).unwrap();
        match poll(&mut handshakes) {
            Poll::Ready(Some(Err(error))) => assert_eq!(error.kind(), io::ErrorKind::TimedOut),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(handshakes.in_flight(), 1);
        drop(first_tx);

        // The second one still has two ticks, and finishes.
        second_tx.send(7).unwrap();
        assert!(matches!(poll(&mut handshakes), Poll::Ready(Some(Ok(7)))));

        drop(connections);
        assert!(block_on(handshakes.next()).is_none());
        assert!(handshakes.is_terminated());
    }

    #[test]
    fn a_failed_accept_passes_through() {
        let incoming =
            futures::stream::iter(vec![Err::<futures::channel::oneshot::Receiver<u32>, _>(
                io::Error::from(io::ErrorKind::ConnectionAborted),
            )]);
        let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
        let mut handshakes = Handshakes::new(incoming, OnSignal, clock, Bounds::default());
        match poll(&mut handshakes) {
            Poll::Ready(Some(Err(error))) => {
                assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
            }
            other => panic!("expected the accept error, got {other:?}"),
        }
        assert!(matches!(poll(&mut handshakes), Poll::Ready(None)));
    }
}
