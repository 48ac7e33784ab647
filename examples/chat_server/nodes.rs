//! More than one server: rooms shared with other chat servers through
//! Redis (`--redis redis://HOST:PORT`, with the crate's `redis` feature).
//!
//! ```text
//! redis-server --port 6379 --save ''
//! cargo run --example chat_server --features redis,websocket,metrics -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:7878
//! cargo run --example chat_server --features redis,websocket,metrics -- --redis redis://127.0.0.1:6379 --addr 127.0.0.1:7888
//! nc 127.0.0.1 7878                                    # and nc 127.0.0.1 7888
//! ```
//!
//! Each server is a *node* of the crate's backplane
//! ([`stream_multiplexer::backplane`]). Its replies reach its multiplexer
//! through a `Backplane`, which passes them on unchanged and publishes each
//! message to a room, once, on that room's Redis channel
//! (`chat_server:room:NAME`). A node subscribes to the channel of every
//! room it has members in, and hands what the other nodes publish there to
//! its own members.
//!
//! # What is shared, and what is each server's own
//!
//! Everything said to a room crosses: lines, `/me`, and the `* NAME joined
//! #ROOM` and `* NAME left #ROOM` notices. Everything that needs the list
//! of users stays on its server, because each multiplexer knows only its
//! own members and the backplane has no list of the others (this example
//! builds no directory of its own): names are unique per server only (two
//! servers may each have an `alice`), `/who` lists this server's members
//! of the room, `/msg` reaches users on this server only (another server's
//! is `* no such user on this server`), and the count of users online is
//! this server's. The replies say so ([`Scope`]).
//!
//! # The shutdown notice stays on its server
//!
//! `* server shutting down` goes to the room every connection is in (see
//! `main`'s `then_goodbye`), and must not reach the other servers' users,
//! whose server is not shutting down. So it is not sent through the
//! backplane: `then_goodbye` adds it to the stream the backplane gives,
//! after the backplane, where it goes straight to this multiplexer. That
//! room is followed like any other (each node subscribes to its channel
//! while it has connections), but nothing is ever published there.
//!
//! # At most once
//!
//! Redis pub/sub stores nothing. What a server says to a room while it has
//! lost Redis is published once it is back if it is still queued, and then
//! reaches only the servers that have subscribed again; what it says just
//! after a room's first local member joined reaches the others, but what
//! they say reaches it only once Redis has confirmed its subscription
//! (logged as `subscribed to room "NAME"`). The local members of a room
//! never wait for Redis: with Redis gone, each server chats on alone.

use std::future::Future;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use stream_multiplexer::Rooms;

use crate::Outgoing;

/// Whether this server is the whole chat, or one of several that share
/// their rooms: then what it says about users is about its own only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Alone,
    // Only with `--redis`, which needs the feature.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    OneOfMany,
}

impl Scope {
    /// What a reply about users says of where they are: nothing when this
    /// server is the whole chat.
    pub(crate) fn here(self) -> &'static str {
        match self {
            Self::Alone => "",
            Self::OneOfMany => " on this server",
        }
    }
}

/// The link to the other servers: nothing, or a backplane through Redis.
#[derive(Debug)]
pub(crate) struct Peers {
    #[cfg(feature = "redis")]
    backplane: Option<redis_link::Backplane>,
}

/// Links this server to the others, through the Redis at `redis`
/// (`host:port`, from [`redis_address`]) if given. Gives the stream to
/// build the multiplexer with (`replies`, with the room messages of the
/// other servers woven in), and the link, to run once the multiplexer is
/// built.
pub(crate) fn link(
    redis: Option<&str>,
    replies: impl Stream<Item = Outgoing> + Send + Unpin + 'static,
) -> (BoxStream<'static, Outgoing>, Peers) {
    #[cfg(feature = "redis")]
    if let Some(address) = redis {
        let (backplane, outgoing) = redis_link::backplane(address, replies);
        let peers = Peers {
            backplane: Some(backplane),
        };
        return (outgoing.boxed(), peers);
    }
    // Without the feature, `--redis` is refused before this is called.
    #[cfg(not(feature = "redis"))]
    debug_assert!(redis.is_none());
    let peers = Peers {
        #[cfg(feature = "redis")]
        backplane: None,
    };
    (replies.boxed(), peers)
}

impl Peers {
    pub(crate) fn scope(&self) -> Scope {
        #[cfg(feature = "redis")]
        if self.backplane.is_some() {
            return Scope::OneOfMany;
        }
        Scope::Alone
    }

    /// The future that talks to Redis for the multiplexer whose rooms are
    /// `rooms`, to spawn beside it. It resolves once the multiplexer is
    /// done and what it said to rooms is published (or cannot be); at once
    /// when this server is alone.
    pub(crate) fn run(self, rooms: Rooms) -> impl Future<Output = ()> + Send + 'static {
        #[cfg(feature = "redis")]
        let backplane = self.backplane.map(|backplane| backplane.run(rooms));
        #[cfg(not(feature = "redis"))]
        let _ = (self, rooms);
        async move {
            #[cfg(feature = "redis")]
            if let Some(backplane) = backplane {
                backplane.await;
            }
        }
    }
}

/// The `host:port` to reach Redis at, from `--redis`'s
/// `redis://HOST[:PORT][/DB]` (port 6379 by default). The database number
/// is allowed and changes nothing: pub/sub is the same in every database.
/// No password and no TLS: the backplane speaks neither.
#[cfg(feature = "redis")]
pub(crate) fn redis_address(url: &str) -> Result<String, String> {
    const USAGE: &str = "--redis takes redis://HOST[:PORT]";
    if url.starts_with("rediss://") {
        return Err(format!("{USAGE}: TLS (rediss://) is not supported"));
    }
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(format!("{USAGE}, not {url:?}"));
    };
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(format!("{USAGE}: passwords are not supported"));
    }
    if authority.is_empty() || !database.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{USAGE}, not {url:?}"));
    }
    // `[::1]:6379` has a port; `[::1]` has not.
    let port_at = authority.rfind(']').unwrap_or(0);
    if authority[port_at..].contains(':') {
        Ok(authority.to_owned())
    } else {
        Ok(format!("{authority}:6379"))
    }
}

/// Without the feature there is no backplane: `--redis` is refused.
#[cfg(not(feature = "redis"))]
pub(crate) fn redis_address(_url: &str) -> Result<String, String> {
    Err("--redis needs a chat_server built with the redis feature: \
         cargo run --example chat_server --features redis,websocket,metrics -- --redis redis://HOST:PORT"
        .to_owned())
}

#[cfg(feature = "redis")]
mod redis_link {
    //! The backplane, configured for the chat.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures::Stream;
    use stream_multiplexer::backplane::{
        BackplaneConfig, BackplaneEvent, BackplaneOutgoing, Connector, LinkKind, RoomCodec,
    };
    use stream_multiplexer::runtime::smol::clock;

    use crate::codec::{Reply, Text};
    use crate::text::is_printable;
    use crate::{MAX_LINE, Outgoing};

    pub(super) type Backplane = stream_multiplexer::backplane::Backplane<Reply, RoomLines>;

    /// Every room's Redis channel starts with this, so that the chat keeps
    /// apart from other applications on the same Redis.
    const CHANNEL_PREFIX: &str = "chat_server:room:";
    /// The backplane's clock (its own: a clock has one reader): a tenth of
    /// its shortest wait, the first one before connecting again.
    const CLOCK_PERIOD: Duration = Duration::from_millis(100);
    /// The largest message from Redis: a room message is one line of at
    /// most 4 KiB in its envelope, and what else Redis sends is smaller.
    /// Anything larger is not the chat's, and costs no more than this to
    /// refuse.
    const MAX_MESSAGE: usize = 64 * 1024;

    pub(super) fn backplane<S>(
        address: &str,
        replies: S,
    ) -> (Backplane, BackplaneOutgoing<S, Reply>)
    where
        S: Stream<Item = Outgoing> + Unpin,
    {
        tracing::info!(redis = address, "sharing rooms through redis");
        let config = BackplaneConfig::new(Connector::smol(address), clock(CLOCK_PERIOD))
            .channel_prefix(CHANNEL_PREFIX)
            .max_message_size(MAX_MESSAGE)
            .on_event({
                let log = EventLog::default();
                move |event| log.log(event)
            });
        stream_multiplexer::backplane::Backplane::new(config, replies, RoomLines)
    }

    /// Logs the backplane's events: connections made and subscriptions
    /// confirmed at INFO, trouble at WARN.
    ///
    /// While Redis stays away, the backplane tries each connection again
    /// and again, with a wait that grows to 5 seconds: only the first
    /// failure is a warning, and the next ones, until the connection is
    /// made, are DEBUG.
    #[derive(Debug, Default)]
    struct EventLog {
        publisher_failing: AtomicBool,
        subscriber_failing: AtomicBool,
    }

    impl EventLog {
        fn log(&self, event: &BackplaneEvent) {
            match event {
                BackplaneEvent::Connected(link) => {
                    self.failing(*link).store(false, Ordering::Relaxed);
                    tracing::info!("redis: {event}");
                }
                BackplaneEvent::ConnectFailed(link, _)
                    if self.failing(*link).swap(true, Ordering::Relaxed) =>
                {
                    tracing::debug!("redis: {event}");
                }
                BackplaneEvent::ConnectFailed(..)
                | BackplaneEvent::Disconnected(..)
                | BackplaneEvent::Rejected(_) => tracing::warn!("redis: {event}"),
                _ => tracing::info!("redis: {event}"),
            }
        }

        fn failing(&self, link: LinkKind) -> &AtomicBool {
            match link {
                LinkKind::Publisher => &self.publisher_failing,
                LinkKind::Subscriber => &self.subscriber_failing,
            }
        }
    }

    /// The values of room messages between servers: lines, each as its
    /// UTF-8 text, which is all the chat says to a room.
    ///
    /// A line from Redis is taken only if this server could have sent it:
    /// at most 4 KiB, and printable ([`is_printable`]: no newline, no
    /// control or format character). Anyone who can reach Redis can publish
    /// on a room's channel; a longer line would fail every member's
    /// encoder, which disconnects them, and control characters could
    /// rewrite their screens. Such a message is rejected (and logged)
    /// instead.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct RoomLines;

    impl RoomCodec<Reply> for RoomLines {
        fn encode(&self, value: &Reply, out: &mut Vec<u8>) {
            match value {
                Reply::Line(text) => out.extend_from_slice(text.as_bytes()),
                // Sent to one connection at a time, never to a room, so
                // never published. Were it, it would go as a newline, which
                // no line holds: the other servers would reject it.
                Reply::EndLinesWith(_) => out.push(b'\n'),
            }
        }

        fn decode(&self, bytes: Bytes) -> Option<Reply> {
            let text = std::str::from_utf8(&bytes).ok()?;
            (text.len() <= MAX_LINE && is_printable(text)).then(|| Reply::Line(Text::from(text)))
        }
    }
}
