//! The async-std adapter: async-std listeners as streams of connections.
//!
//! Needs the `async-std` feature. async-std's [`TcpStream`] implements the
//! `futures::io` traits and is `Clone`, so
//! [`HalvesStream`](crate::HalvesStream) splits it without a lock.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use futures::future::BoxFuture;
use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use socket2::SockRef;

use super::backoff::Backoff;
use super::keepalive;
use crate::Clock;

/// The future of `async_std::task::sleep`, which has no name.
type Sleep = dyn Future<Output = ()> + Send;

/// Turns an async-std listener into an owned, `'static` stream of accepted
/// connections, for [`HalvesStream`](crate::HalvesStream).
///
/// Each connection has `TCP_NODELAY` set, so that a small frame is not held
/// back by Nagle's algorithm, and TCP keepalive on: after 60 s without
/// traffic the kernel probes the peer every 10 s and resets the connection
/// after 5 unanswered probes, so that a peer that vanished without a FIN is
/// found in about two minutes even with no time limits set (see the
/// [module docs](super#accepted-connections)). A connection on which
/// keepalive cannot be set is accepted all the same; for other values, set
/// them on the connection through `socket2::SockRef`.
///
/// A failed accept is yielded as an `Err`, for the multiplexer to count,
/// and the stream goes on; after resource exhaustion (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`) it waits 50 ms on async-std's timer before
/// accepting again, instead of spinning. The stream never ends.
///
/// async-std offers accepting only as a borrowing `async fn`, so each
/// accept is one boxed future holding a reference count on the listener:
/// one small allocation per connection.
///
/// # Examples
///
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
/// use stream_multiplexer::runtime::async_std::incoming;
///
/// async_std::task::block_on(async {
///     let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
///     let address = listener.local_addr()?;
///     let mut connections = incoming(listener);
///
///     let mut client = async_std::net::TcpStream::connect(address).await?;
///     let mut server = connections.next().await.unwrap()?;
///     client.write_all(b"ping").await?;
///     let mut received = [0; 4];
///     server.read_exact(&mut received).await?;
///     assert_eq!(&received, b"ping");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn incoming(listener: TcpListener) -> Incoming {
    Incoming {
        listener: Arc::new(listener),
        accept: None,
        backoff: Backoff::new(|period| Box::pin(async_std::task::sleep(period))),
    }
}

/// A [`Clock`] that ticks every `period` on async-std's timer, for the
/// multiplexer's time limits.
///
/// The multiplexer measures its time limits (how long a connection may stay
/// silent, how long a write may stall) by counting the ticks of this one
/// clock: one timer for the whole multiplexer, not one per connection. A
/// limit is noticed up to a period after it passes, and each tick wakes the
/// multiplexer once, so a period of about a tenth of the shortest limit is
/// a fair trade. A period of zero is taken as one nanosecond, as
/// [`Clock::new`] does.
///
/// The first tick comes a period after the multiplexer first polls the
/// clock. A tick that comes late (the executor was busy) delays the ones
/// after it instead of being made up in a burst, which would count the time
/// the server itself lost against every connection at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stream_multiplexer::runtime::async_std::clock;
///
/// let every_second = clock(Duration::from_secs(1));
/// assert_eq!(every_second.period(), Duration::from_secs(1));
///
/// let never_zero = clock(Duration::ZERO);
/// assert_eq!(never_zero.period(), Duration::from_nanos(1));
/// ```
pub fn clock(period: Duration) -> Clock {
    Clock::new(period, ticks(Clock::usable_period(period)))
}

/// One item every `period`, on async-std's timer: each tick is a sleep of
/// `period` that starts when the previous tick is taken, so the first comes
/// a period after the first poll and none is made up in a burst.
/// (`async_std::stream::interval` behaves the same but needs async-std's
/// `unstable` feature.)
fn ticks(period: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::repeat(()).then(move |()| async_std::task::sleep(period))
}

/// The stream returned by [`incoming`].
#[must_use = "streams do nothing unless polled"]
pub struct Incoming {
    listener: Arc<TcpListener>,
    /// The accept in progress.
    accept: Option<BoxFuture<'static, io::Result<TcpStream>>>,
    /// After a resource-exhaustion error, no accept until its wait is over.
    backoff: Backoff<Sleep>,
}

impl Incoming {
    /// The local address the listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// async_std::task::block_on(async {
    ///     let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let address = listener.local_addr()?;
    ///     let connections = stream_multiplexer::runtime::async_std::incoming(listener);
    ///     assert_eq!(connections.local_addr()?, address);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Stream for Incoming {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        ready!(this.backoff.poll_wait(cx));
        let accept = this.accept.get_or_insert_with(|| {
            let listener = Arc::clone(&this.listener);
            Box::pin(async move {
                let (stream, _peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                keepalive::enable(SockRef::from(&stream));
                Ok(stream)
            })
        });
        let accepted = ready!(accept.as_mut().poll(cx));
        this.accept = None;
        if let Err(error) = &accepted {
            this.backoff.after_error(error);
        }
        Poll::Ready(Some(accepted))
    }
}

impl FusedStream for Incoming {
    fn is_terminated(&self) -> bool {
        false
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .field("backing_off", &self.backoff.is_waiting())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock_scenarios;

    #[test]
    fn ticks_are_never_early() {
        async_std::task::block_on(clock_scenarios::ticks_are_never_early(
            ticks(clock_scenarios::PERIOD),
            async_std::task::sleep,
        ));
    }

    #[test]
    fn ticks_missed_while_busy_are_not_made_up_in_a_burst() {
        async_std::task::block_on(clock_scenarios::missed_ticks_are_not_made_up_in_a_burst(
            ticks(clock_scenarios::PERIOD),
            async_std::task::sleep,
        ));
    }

    #[test]
    fn a_zero_period_clock_still_ticks() {
        async_std::task::block_on(clock_scenarios::ticks_at_all(
            ticks(Clock::usable_period(Duration::ZERO)),
            async_std::task::sleep,
        ));
    }
}
