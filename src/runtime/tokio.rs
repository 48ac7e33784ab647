//! The tokio adapter: tokio listeners as streams of futures-io connections.
//!
//! Needs the `tokio` feature. Tokio's I/O traits are its own; the adapter
//! wraps each accepted [`tokio::net::TcpStream`] in a [`TcpStream`] that
//! implements the `futures::io` traits (through tokio-util's compat layer)
//! and splits into tokio's owned halves, with no lock between them.
//!
//! # Channels
//!
//! Any `Sink` works as a channel. To hand a tokio application's consumers
//! `tokio::sync::mpsc` receivers, wrap each sender in
//! [`tokio_util::sync::PollSender`], which is a `Sink`:
//!
//! ```
//! use tokio::sync::mpsc;
//! use tokio_util::sync::PollSender;
//! use stream_multiplexer::{IncomingPacket, Multiplexer, OutgoingPacket};
//!
//! let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(32);
//! let (_outgoing_tx, outgoing) = futures::channel::mpsc::channel::<OutgoingPacket<u8>>(32);
//! let multiplexer = Multiplexer::new(128, outgoing, vec![PollSender::new(lobby)]);
//! # let _ = multiplexer;
//! ```
//!
//! The outgoing and control streams can be `tokio::sync::mpsc` receivers
//! wrapped in `tokio_stream::wrappers::ReceiverStream`, or
//! `futures::channel::mpsc` receivers, which work on every runtime.
//!
//! # Run it unconstrained
//!
//! Await [`Run`](crate::Run) inside
//! [`tokio::task::unconstrained`](https://docs.rs/tokio/1/tokio/task/fn.unconstrained.html). Tokio
//! gives each task a budget of 128 I/O operations per poll, after which
//! every socket the task touches reports `Pending` whatever it holds; that
//! suits a task per connection, but `Run` serves all the connections from
//! one task and keeps budgets of its own: it does a bounded amount of work
//! per poll, then wakes itself to let other tasks run. Under tokio's
//! budget, with many clients connected, some are served only in later
//! polls and wait much longer than the rest: the tail latency suffers, not
//! the median. Unconstrained, only `Run`'s own budgets bound a poll.
//! BENCHMARKS.md has the measurements.
//!
//! ```no_run
//! # use futures::stream;
//! # use stream_multiplexer::{HalvesStream, IncomingPacket, Multiplexer, OutgoingPacket};
//! # use stream_multiplexer::runtime::tokio::incoming;
//! # async fn serve(listener: tokio::net::TcpListener) -> Result<(), stream_multiplexer::MultiplexerError> {
//! # let (lobby, _lobby_rx) = futures::channel::mpsc::channel::<IncomingPacket<std::io::Result<bytes::Bytes>>>(32);
//! # let (_outgoing_tx, outgoing) = futures::channel::mpsc::channel::<OutgoingPacket<bytes::Bytes>>(32);
//! let multiplexer = Multiplexer::new(128, outgoing, vec![lobby]);
//! let halves = HalvesStream::new(incoming(listener), 2);
//! tokio::task::unconstrained(multiplexer.run(halves, stream::pending())).await
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::FusedStream;
use socket2::SockRef;
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Interval, MissedTickBehavior, Sleep};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use super::backoff::Backoff;
use super::keepalive;
use crate::{Clock, IntoHalves};

/// Turns a tokio listener into an owned, `'static` stream of accepted
/// connections, for [`HalvesStream`](crate::HalvesStream).
///
/// Each connection has `TCP_NODELAY` set, so that a small frame is not held
/// back by Nagle's algorithm, and TCP keepalive on: after 60 s without
/// traffic the kernel probes the peer every 10 s and resets the connection
/// after 5 unanswered probes, so that a peer that vanished without a FIN is
/// found in about two minutes even with no time limits set (see the
/// [module docs](super#accepted-connections)). A connection on which
/// keepalive cannot be set is accepted all the same; for other values, set
/// them through `socket2::SockRef` on [`TcpStream::get_ref`].
///
/// A failed accept is yielded as an `Err`, for the multiplexer to count,
/// and the stream goes on; after resource exhaustion (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`) it waits 50 ms on tokio's timer before accepting
/// again, instead of spinning. The stream never ends. It must be polled
/// inside a tokio runtime with I/O and time enabled.
///
/// # Examples
///
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
/// use stream_multiplexer::runtime::tokio::incoming;
///
/// # fn main() -> std::io::Result<()> {
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// runtime.block_on(async {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     let address = listener.local_addr()?;
///     let mut connections = incoming(listener);
///
///     let mut client = tokio::net::TcpStream::connect(address).await?;
///     let mut server = connections.next().await.unwrap()?;
///     tokio::io::AsyncWriteExt::write_all(&mut client, b"ping").await?;
///     let mut received = [0; 4];
///     server.read_exact(&mut received).await?;
///     assert_eq!(&received, b"ping");
///     Ok(())
/// })
/// # }
/// ```
pub fn incoming(listener: TcpListener) -> Incoming {
    Incoming {
        listener,
        backoff: Backoff::new(|period| Box::pin(tokio::time::sleep(period))),
    }
}

/// A [`Clock`] that ticks every `period` on tokio's timer, for the
/// multiplexer's time limits.
///
/// The multiplexer measures its time limits (how long a connection may stay
/// silent, how long a write may stall) by counting the ticks of this one
/// clock: one timer for the whole multiplexer, not one per connection. A
/// limit is noticed up to a period after it passes, and each tick wakes the
/// multiplexer once, so a period of about a tenth of the shortest limit is
/// a fair trade; tokio's timer counts whole milliseconds, so a shorter
/// period ticks no faster. A period of zero is taken as one nanosecond, as
/// [`Clock::new`] does.
///
/// The clock may be built anywhere, but must be polled inside a tokio
/// runtime with time enabled, as the multiplexer does when it runs there.
/// The first tick comes a period after the multiplexer first polls the
/// clock. A tick that comes late (the executor was busy) delays the ones
/// after it instead of being made up in a burst
/// ([`MissedTickBehavior::Delay`]), which would count the time the server
/// itself lost against every connection at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stream_multiplexer::runtime::tokio::clock;
///
/// // No runtime is needed to build it.
/// let every_second = clock(Duration::from_secs(1));
/// assert_eq!(every_second.period(), Duration::from_secs(1));
///
/// let never_zero = clock(Duration::ZERO);
/// assert_eq!(never_zero.period(), Duration::from_nanos(1));
/// ```
pub fn clock(period: Duration) -> Clock {
    Clock::new(period, ticks(Clock::usable_period(period)))
}

/// One item every `period`, on tokio's timer.
///
/// The interval is made at the first poll: making one outside a runtime
/// panics, and a clock is often built before the runtime starts. It is
/// reset at once because a tokio interval's first tick is immediate, which
/// would count a period that has not passed.
fn ticks(period: Duration) -> impl Stream<Item = ()> + Send + 'static {
    let mut interval: Option<Interval> = None;
    futures::stream::poll_fn(move |cx| {
        let interval = interval.get_or_insert_with(|| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval.reset();
            interval
        });
        interval.poll_tick(cx).map(|_| Some(()))
    })
}

/// The stream returned by [`incoming`].
#[must_use = "streams do nothing unless polled"]
pub struct Incoming {
    listener: TcpListener,
    /// After a resource-exhaustion error, no accept until its wait is over.
    backoff: Backoff<Sleep>,
}

impl Incoming {
    /// The local address the listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// runtime.block_on(async {
    ///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let address = listener.local_addr()?;
    ///     let connections = stream_multiplexer::runtime::tokio::incoming(listener);
    ///     assert_eq!(connections.local_addr()?, address);
    ///     Ok(())
    /// })
    /// # }
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
        let accepted = ready!(this.listener.poll_accept(cx)).and_then(|(stream, _peer)| {
            stream.set_nodelay(true)?;
            keepalive::enable(SockRef::from(&stream));
            Ok(TcpStream {
                inner: stream.compat(),
            })
        });
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
            .finish()
    }
}

/// An accepted tokio connection, as a `futures::io` reader and writer.
///
/// [`IntoHalves`] splits it into tokio's owned halves, so the multiplexer's
/// reads and writes take no lock.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::IntoHalves;
/// use stream_multiplexer::runtime::tokio::TcpStream;
///
/// fn split(connection: TcpStream) {
///     let (_read, _write) = connection.into_halves();
/// }
/// ```
#[derive(Debug)]
pub struct TcpStream {
    inner: Compat<tokio::net::TcpStream>,
}

impl TcpStream {
    /// The tokio stream inside.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::runtime::tokio::TcpStream;
    ///
    /// fn peer(connection: &TcpStream) -> std::io::Result<std::net::SocketAddr> {
    ///     connection.get_ref().peer_addr()
    /// }
    /// ```
    pub fn get_ref(&self) -> &tokio::net::TcpStream {
        self.inner.get_ref()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl IntoHalves for TcpStream {
    type Read = Compat<OwnedReadHalf>;
    type Write = Compat<OwnedWriteHalf>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let (read, write) = self.inner.into_inner().into_split();
        (read.compat(), write.compat_write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock_scenarios;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    }

    #[test]
    fn ticks_are_never_early() {
        runtime().block_on(clock_scenarios::ticks_are_never_early(
            ticks(clock_scenarios::PERIOD),
            tokio::time::sleep,
        ));
    }

    #[test]
    fn ticks_missed_while_busy_are_not_made_up_in_a_burst() {
        runtime().block_on(clock_scenarios::missed_ticks_are_not_made_up_in_a_burst(
            ticks(clock_scenarios::PERIOD),
            tokio::time::sleep,
        ));
    }

    /// tokio's interval panics on a period of zero.
    #[test]
    fn a_zero_period_clock_still_ticks() {
        runtime().block_on(clock_scenarios::ticks_at_all(
            ticks(Clock::usable_period(Duration::ZERO)),
            tokio::time::sleep,
        ));
    }

    /// The interval needs a runtime, but only once the clock is polled.
    #[test]
    fn a_clock_built_outside_a_runtime_ticks_inside_one() {
        let ticks = ticks(clock_scenarios::PERIOD);
        runtime().block_on(clock_scenarios::ticks_at_all(ticks, tokio::time::sleep));
    }
}
