//! [`BackplaneConfig`]: where Redis is, how to reach it, and the bounds and
//! times the backplane keeps; [`Connector`]: how a connection is made.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};

use super::connection::RedisIo;
use super::events::{BackplaneEvent, Events};
use crate::Clock;

/// Publications the queue holds by default while Redis is slow or away:
/// enough for a burst, or for a restart of Redis that takes a moment,
/// without letting an outage grow memory with the message rate.
const DEFAULT_PUBLISH_QUEUE: usize = 1024;

/// Messages from other nodes that wait by default for the multiplexer to
/// take them; when full, the backplane stops reading from Redis.
const DEFAULT_ARRIVAL_QUEUE: usize = 256;

/// The largest message (envelope or reply) by default: the multiplexer's
/// largest frame by default (8 MiB), with room for the envelope around it.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024 + 64 * 1024;

/// How long connecting, or a reply, may take by default before the
/// connection is given up for dead.
const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may be silent by default before a `PING` checks
/// that it is still there: a peer gone without a FIN is otherwise never
/// noticed by a connection that only listens.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// The first wait before connecting again after a failure, by default; it
/// doubles after each failure up to [`DEFAULT_RECONNECT_MAX`].
const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to connect, by default: a node
/// notices within this much that Redis is back.
const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The prefix of every room's channel by default: the room `lobby` is the
/// channel `stream_multiplexer:room:lobby`.
const DEFAULT_CHANNEL_PREFIX: &str = "stream_multiplexer:room:";

pub(crate) type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn RedisIo>>> + Send>>;

/// Makes connections to Redis: a function that opens one byte stream
/// (futures-io [`AsyncRead`] + [`AsyncWrite`]) each time it is called.
///
/// The backplane speaks the Redis protocol itself over whatever this
/// gives, so it runs on any runtime: [`smol`](Connector::smol),
/// [`async_std`](Connector::async_std) and [`tokio`](Connector::tokio)
/// connect over TCP with that runtime's own sockets (each behind the
/// feature of the same name), and [`new`](Connector::new) takes anything
/// else (TLS around a socket, a Unix socket, a test double).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::Connector;
///
/// // Any function that returns a future of a connection.
/// let connector = Connector::new(|| async {
///     async_net::TcpStream::connect("127.0.0.1:6379").await
/// });
/// # drop(connector);
/// ```
#[derive(Clone)]
pub struct Connector {
    connect: Arc<dyn Fn() -> ConnectFuture + Send + Sync>,
}

impl Connector {
    /// A connector that calls `connect` for each connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::Cursor;
    /// use stream_multiplexer::backplane::Connector;
    ///
    /// // A "connection" that reads nothing and takes what it is written:
    /// // a test double.
    /// let connector = Connector::new(|| async { Ok(Cursor::new(Vec::new())) });
    /// # drop(connector);
    /// ```
    pub fn new<F, Fut, C>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<C>> + Send + 'static,
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self {
            connect: Arc::new(move || {
                let connecting = connect();
                Box::pin(async move {
                    let connection: Box<dyn RedisIo> = Box::new(connecting.await?);
                    Ok(connection)
                })
            }),
        }
    }

    /// Connects over TCP to `address` (`host:port`, resolved at each
    /// attempt) on smol's reactor, with `TCP_NODELAY` so that a small
    /// publication leaves at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::backplane::Connector;
    ///
    /// let connector = Connector::smol("redis.internal:6379");
    /// # drop(connector);
    /// ```
    #[cfg(feature = "smol")]
    pub fn smol(address: impl Into<String>) -> Self {
        let address: Arc<str> = address.into().into();
        Self::new(move || {
            let address = Arc::clone(&address);
            async move {
                let stream = async_net::TcpStream::connect(&*address).await?;
                stream.set_nodelay(true)?;
                Ok(stream)
            }
        })
    }

    /// Connects over TCP to `address` (`host:port`, resolved at each
    /// attempt) with async-std's sockets, with `TCP_NODELAY`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::backplane::Connector;
    ///
    /// let connector = Connector::async_std("redis.internal:6379");
    /// # drop(connector);
    /// ```
    #[cfg(feature = "async-std")]
    pub fn async_std(address: impl Into<String>) -> Self {
        let address: Arc<str> = address.into().into();
        Self::new(move || {
            let address = Arc::clone(&address);
            async move {
                let stream = async_std::net::TcpStream::connect(&*address).await?;
                stream.set_nodelay(true)?;
                Ok(stream)
            }
        })
    }

    /// Connects over TCP to `address` (`host:port`, resolved at each
    /// attempt) with tokio's sockets, through tokio-util's compat layer,
    /// with `TCP_NODELAY`. The backplane's future must then run inside a
    /// tokio runtime with I/O enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::backplane::Connector;
    ///
    /// let connector = Connector::tokio("redis.internal:6379");
    /// # drop(connector);
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio(address: impl Into<String>) -> Self {
        use tokio_util::compat::TokioAsyncReadCompatExt;

        let address: Arc<str> = address.into().into();
        Self::new(move || {
            let address = Arc::clone(&address);
            async move {
                let stream = tokio::net::TcpStream::connect(&*address).await?;
                stream.set_nodelay(true)?;
                Ok(stream.compat())
            }
        })
    }

    pub(crate) fn connect(&self) -> ConnectFuture {
        (self.connect)()
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

/// How a [`Backplane`](super::Backplane) reaches Redis, and the bounds and
/// times it keeps.
///
/// Every setter states its default. Durations are measured in ticks of the
/// [`Clock`], rounded up to whole ticks, so they are at most one clock
/// period late and never early; a period of a tenth of the shortest
/// duration is a fair choice.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stream_multiplexer::backplane::{BackplaneConfig, Connector};
/// use stream_multiplexer::runtime::smol::clock;
///
/// let config = BackplaneConfig::new(Connector::smol("127.0.0.1:6379"), clock(Duration::from_millis(100)))
///     .channel_prefix("chat:room:")
///     .publish_queue(4096)
///     .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(10));
/// # drop(config);
/// ```
pub struct BackplaneConfig {
    pub(crate) connector: Connector,
    pub(crate) clock: Clock,
    pub(crate) node_id: Option<u64>,
    pub(crate) channel_prefix: String,
    pub(crate) publish_queue: usize,
    pub(crate) arrival_queue: usize,
    pub(crate) max_message_size: usize,
    pub(crate) reply_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) events: Events,
}

impl BackplaneConfig {
    /// Connects with `connector`, and measures time (timeouts, backoff,
    /// pings) with `clock`: the backplane reads no timer of its own. Give it
    /// its own clock, not the multiplexer's (a clock has one reader).
    ///
    /// # Examples
    ///
    /// A clock driven by hand (each value sent is one tick) and a
    /// connector of the application's own:
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::Clock;
    /// use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    ///
    /// let (_ticks, tick_rx) = mpsc::unbounded::<()>();
    /// let clock = Clock::new(Duration::from_millis(50), tick_rx);
    /// // A "connection" that reads nothing and takes what it is written.
    /// let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// let config = BackplaneConfig::new(connector, clock);
    /// # drop(config);
    /// ```
    pub fn new(connector: Connector, clock: Clock) -> Self {
        Self {
            connector,
            clock,
            node_id: None,
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_owned(),
            publish_queue: DEFAULT_PUBLISH_QUEUE,
            arrival_queue: DEFAULT_ARRIVAL_QUEUE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            events: Events::default(),
        }
    }

    /// This node's id, which its envelopes carry so that it ignores its
    /// own when Redis sends them back. Default: a random one per backplane.
    /// Two nodes with one id would each ignore the other's messages.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.node_id(7);
    /// # drop(config);
    /// ```
    pub fn node_id(mut self, id: u64) -> Self {
        self.node_id = Some(id);
        self
    }

    /// What every room's channel name starts with; the room's name follows.
    /// Nodes of one application must agree; two applications on one Redis
    /// keep apart with two prefixes. Default: `"stream_multiplexer:room:"`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// // The room "lobby" is the channel "chat:lobby".
    /// let config = config.channel_prefix("chat:");
    /// # drop(config);
    /// ```
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// How many publications wait at most for Redis (slow, or away); room
    /// messages offered while it is full are dropped and counted in
    /// [`publish_dropped`](super::BackplaneStatsSnapshot::publish_dropped)
    /// (the local members still get them). At least 1. Default: 1024.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.publish_queue(16);
    /// # drop(config);
    /// ```
    pub fn publish_queue(mut self, capacity: usize) -> Self {
        self.publish_queue = capacity.max(1);
        self
    }

    /// How many messages from other nodes wait at most for the multiplexer
    /// to take them; while it is full, the backplane stops reading from
    /// Redis (TCP then holds Redis back, and Redis drops a subscriber that
    /// stays behind past its `client-output-buffer-limit`, which the
    /// backplane sees as a lost connection). At least 1. Default: 256.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.arrival_queue(1024);
    /// # drop(config);
    /// ```
    pub fn arrival_queue(mut self, capacity: usize) -> Self {
        self.arrival_queue = capacity.max(1);
        self
    }

    /// The largest envelope published, and the largest reply read: a room
    /// message whose envelope is larger is not published (counted as
    /// dropped), and a connection that receives a larger message is
    /// dropped and made again. Default: 8 MiB plus 64 KiB.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.max_message_size(64 * 1024);
    /// # drop(config);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long connecting, or a reply, may take before the connection is
    /// given up for dead. Default: 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.reply_timeout(std::time::Duration::from_secs(2));
    /// # drop(config);
    /// ```
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// How long a connection may be silent before a `PING` checks it; a
    /// connection lost without a word is then noticed within this plus the
    /// reply timeout. Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.ping_interval(std::time::Duration::from_secs(30));
    /// # drop(config);
    /// ```
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// The waits between attempts to connect: a lost connection is tried
    /// again at once, then after `min`, doubling after each failure up to
    /// `max`; a connection that is up again starts over. Default: 100 ms
    /// to 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// use std::time::Duration;
    ///
    /// let config = config.reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2));
    /// # drop(config);
    /// ```
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// Calls `on_event` with each [`BackplaneEvent`] (connections made and
    /// lost, rooms subscribed, messages rejected), from the backplane's
    /// future: it should return quickly (log, count, or send to a channel).
    /// Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stream_multiplexer::Clock;
    /// # use stream_multiplexer::backplane::{BackplaneConfig, Connector};
    /// # let connector = Connector::new(|| async { Ok(futures::io::Cursor::new(Vec::new())) });
    /// # let clock = Clock::new(std::time::Duration::from_secs(1), futures::stream::pending::<()>());
    /// # let config = BackplaneConfig::new(connector, clock);
    /// let config = config.on_event(|event| eprintln!("backplane: {event}"));
    /// # drop(config);
    /// ```
    pub fn on_event(mut self, on_event: impl Fn(&BackplaneEvent) + Send + Sync + 'static) -> Self {
        self.events = Events::new(Arc::new(on_event));
        self
    }
}

impl fmt::Debug for BackplaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackplaneConfig")
            .field("clock", &self.clock)
            .field("node_id", &self.node_id)
            .field("channel_prefix", &self.channel_prefix)
            .field("publish_queue", &self.publish_queue)
            .field("arrival_queue", &self.arrival_queue)
            .field("max_message_size", &self.max_message_size)
            .field("reply_timeout", &self.reply_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish_non_exhaustive()
    }
}
