//! The smol adapter: async-net listeners as streams of connections.
//!
//! Needs the `smol` feature (on by default). The connections are
//! [`Connection`]s: TCP streams on smol's reactor that are `Clone`, so
//! [`HalvesStream`](crate::HalvesStream) splits them into halves without a
//! lock.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_io::{Async, Timer};
use async_net::TcpListener;
use futures::Stream;
use futures::stream::FusedStream;
use socket2::SockRef;

use super::backoff::Backoff;
use super::keepalive;
use crate::Clock;

mod connection;

pub use connection::Connection;

/// Turns a listener into an owned, `'static` stream of accepted
/// connections, for [`HalvesStream`](crate::HalvesStream).
///
/// Unlike [`TcpListener::incoming`], the stream owns the listener (nothing
/// is borrowed, so it can be handed to a spawned task) and allocates nothing
/// per accept beyond the connection itself. Each accepted connection has
/// `TCP_NODELAY` set: the multiplexer writes each batch of frames in one
/// write, and Nagle's algorithm would hold a small frame back for up to one
/// round trip (tens of milliseconds when it meets delayed ACKs) waiting for
/// more.
///
/// Each accepted connection also has TCP keepalive on: after 60 s without
/// traffic the kernel probes the peer every 10 s and resets the connection
/// after 5 unanswered probes, so that a peer that vanished without a FIN is
/// found in about two minutes even with no time limits set (see the
/// [module docs](super#accepted-connections)). A connection on which it
/// cannot be set is accepted all the same. For other values, set them on
/// the connection through `socket2::SockRef`.
///
/// A failed accept is yielded as an `Err`, for the multiplexer to count;
/// the stream goes on. When the failure is resource exhaustion (out of file
/// descriptors — `EMFILE`, `ENFILE` — or of memory — `ENOBUFS`, `ENOMEM`),
/// the stream waits 50 ms before accepting again instead of spinning on an
/// accept that would fail again at once. The stream never ends.
///
/// # Examples
///
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
/// use stream_multiplexer::runtime::smol::incoming;
///
/// smol::block_on(async {
///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
///     let address = listener.local_addr()?;
///     let mut connections = incoming(listener);
///
///     let mut client = async_net::TcpStream::connect(address).await?;
///     let mut server = connections.next().await.unwrap()?;
///     assert!(server.nodelay()?);
///
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
        listener: listener.into(),
        backoff: Backoff::new(|period| Box::pin(Timer::after(period))),
    }
}

/// Creates a listener bound to `address` with a listen backlog of
/// `backlog` connections.
///
/// The listen backlog holds the connections the kernel has completed but
/// the server has not accepted yet. `std` (and so `async-net`) asks for 128,
/// which overflows when thousands of clients connect at once: the kernel
/// then drops their handshakes and they retry after a second or more. The
/// kernel caps the value (`net.core.somaxconn` on Linux, 4096 by default
/// on recent kernels). The address is bound with `SO_REUSEADDR` on Unix, as
/// `std` does, so a restarted server can bind at once.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::runtime::smol::{bind, incoming};
///
/// let listener = bind("127.0.0.1:0".parse().unwrap(), 4096)?;
/// assert!(listener.local_addr()?.port() != 0);
/// let _connections = incoming(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn bind(address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    listen(address, backlog, Sharing::Alone)
}

/// Like [`bind`], with `SO_REUSEPORT` set: several listeners, one per
/// multiplexer (each on a core of its own), can bind the same address, and
/// the kernel spreads new connections over them. See
/// [`shard`](crate::shard) for the rest of the recipe. Unix only.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::runtime::smol::bind_reuse_port;
///
/// let first = bind_reuse_port("127.0.0.1:0".parse().unwrap(), 1024)?;
/// let address = first.local_addr()?;
/// let second = bind_reuse_port(address, 1024)?;
/// assert_eq!(second.local_addr()?, address);
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(unix)]
pub fn bind_reuse_port(address: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    listen(address, backlog, Sharing::ReusePort)
}

/// Whether a listener shares its port with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    Alone,
    #[cfg(unix)]
    ReusePort,
}

fn listen(address: SocketAddr, backlog: u32, sharing: Sharing) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if sharing == Sharing::ReusePort {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = sharing;
    socket.bind(&address.into())?;
    // The kernel caps the backlog anyway; saturate rather than wrap.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    let listener: StdTcpListener = socket.into();
    TcpListener::try_from(listener)
}

/// A [`Clock`] that ticks every `period` on smol's timer, for the
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
/// use stream_multiplexer::runtime::smol::clock;
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

/// One item every `period`, on async-io's timer.
///
/// The timer is made at the first poll, so that the first tick comes a
/// period after the multiplexer starts counting, not after the clock was
/// built. Each tick sets the next one a period after it fires: async-io's
/// own `Timer::interval` would instead fire every tick it missed at once.
fn ticks(period: Duration) -> impl Stream<Item = ()> + Send + 'static {
    let mut timer: Option<Timer> = None;
    futures::stream::poll_fn(move |cx| {
        let timer = timer.get_or_insert_with(|| Timer::after(period));
        ready!(Pin::new(&mut *timer).poll(cx));
        timer.set_after(period);
        Poll::Ready(Some(()))
    })
}

/// The stream returned by [`incoming`]: accepted connections, or the error
/// of a failed accept.
///
/// It never ends; [`FusedStream::is_terminated`] is always `false`.
#[must_use = "streams do nothing unless polled"]
pub struct Incoming {
    listener: Arc<Async<StdTcpListener>>,
    /// After a resource-exhaustion error, no accept until its wait is over.
    backoff: Backoff<Timer>,
}

impl Incoming {
    /// The local address the listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::runtime::smol::incoming;
    ///
    /// smol::block_on(async {
    ///     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let address = listener.local_addr()?;
    ///     assert_eq!(incoming(listener).local_addr()?, address);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Accepts one connection without blocking, as a non-blocking
    /// [`Connection`] with `TCP_NODELAY` and keepalive set.
    fn try_accept(&self) -> io::Result<Connection> {
        let (stream, _peer) = self.listener.get_ref().accept()?;
        stream.set_nodelay(true)?;
        keepalive::enable(SockRef::from(&stream));
        Ok(Connection::new(Async::new(stream)?))
    }
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        ready!(this.backoff.poll_wait(cx));
        loop {
            match this.try_accept() {
                Ok(stream) => return Poll::Ready(Some(Ok(stream))),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness may be stale (another task accepted the
                    // connection first): try again once it is reported.
                    ready!(this.listener.poll_readable(cx))?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    this.backoff.after_error(&error);
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock_scenarios;

    #[test]
    fn ticks_are_never_early() {
        smol::block_on(clock_scenarios::ticks_are_never_early(
            ticks(clock_scenarios::PERIOD),
            Timer::after,
        ));
    }

    #[test]
    fn ticks_missed_while_busy_are_not_made_up_in_a_burst() {
        smol::block_on(clock_scenarios::missed_ticks_are_not_made_up_in_a_burst(
            ticks(clock_scenarios::PERIOD),
            Timer::after,
        ));
    }

    #[test]
    fn a_zero_period_clock_still_ticks() {
        smol::block_on(clock_scenarios::ticks_at_all(
            ticks(Clock::usable_period(Duration::ZERO)),
            Timer::after,
        ));
    }
}
