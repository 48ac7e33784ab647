//! [`BackplaneEvent`]: what a backplane reports as it happens, for logs,
//! health checks and tests.

use std::fmt;
use std::io;
use std::sync::Arc;

use super::envelope::Rejection;
use crate::RoomName;

/// Something that happened to a backplane, reported to the function given
/// to [`BackplaneConfig::on_event`](super::BackplaneConfig::on_event).
///
/// Events are rare (one per connection change, per room subscribed or
/// unsubscribed, per message rejected), never one per message passed on.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::{BackplaneEvent, LinkKind};
///
/// let event = BackplaneEvent::Connected(LinkKind::Subscriber);
/// assert_eq!(event.to_string(), "subscriber connection established");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// A connection to Redis is up (it answered a `PING`).
    Connected(LinkKind),
    /// An attempt to connect failed; the next one comes after a backoff.
    ConnectFailed(LinkKind, LinkError),
    /// An established connection was lost; it is retried at once, then
    /// with backoff.
    Disconnected(LinkKind, LinkError),
    /// Redis confirmed the subscription to a room's channel: from now on,
    /// messages that other nodes send to the room reach this node.
    Subscribed(RoomName),
    /// Redis confirmed that this node left a room's channel (its last local
    /// member left).
    Unsubscribed(RoomName),
    /// A message from Redis was not passed on.
    Rejected(Rejection),
}

impl fmt::Display for BackplaneEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected(link) => write!(f, "{link} connection established"),
            Self::ConnectFailed(link, error) => write!(f, "{link} connection failed: {error}"),
            Self::Disconnected(link, error) => write!(f, "{link} connection lost: {error}"),
            Self::Subscribed(room) => write!(f, "subscribed to room {room:?}"),
            Self::Unsubscribed(room) => write!(f, "unsubscribed from room {room:?}"),
            Self::Rejected(rejection) => write!(f, "rejected {rejection}"),
        }
    }
}

/// Which of a backplane's two connections to Redis.
///
/// A connection that subscribes to channels can do nothing else in the
/// Redis protocol (version 2), so a backplane holds two.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::LinkKind;
///
/// assert_eq!(LinkKind::Publisher.to_string(), "publisher");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// The connection that publishes this node's room messages.
    Publisher,
    /// The connection subscribed to the rooms with local members.
    Subscriber,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publisher => "publisher",
            Self::Subscriber => "subscriber",
        })
    }
}

/// Why a connection to Redis failed or was dropped.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::LinkError;
///
/// assert_eq!(LinkError::TimedOut.to_string(), "no reply within the reply timeout");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Connecting failed.
    #[error("could not connect: {0}")]
    Connect(#[source] io::Error),
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
    /// Redis closed the connection.
    #[error("closed by redis")]
    Closed,
    /// Connecting, or a reply, took longer than the reply timeout.
    #[error("no reply within the reply timeout")]
    TimedOut,
    /// Redis answered with an error where the connection needed a yes (for
    /// instance `-NOAUTH`, `-LOADING`), or sent what Redis never sends.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A reply larger than the maximum message size.
    #[error("a reply larger than the maximum message size")]
    TooLarge,
}

/// What [`BackplaneConfig::on_event`](super::BackplaneConfig::on_event) takes.
pub(crate) type OnEvent = dyn Fn(&BackplaneEvent) + Send + Sync;

/// The function events go to, if any.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<Arc<OnEvent>>);

impl Events {
    pub(crate) fn new(on_event: Arc<OnEvent>) -> Self {
        Self(Some(on_event))
    }

    /// Reports the event `make` makes, making it only if someone listens.
    pub(crate) fn emit(&self, make: impl FnOnce() -> BackplaneEvent) {
        if let Some(on_event) = &self.0 {
            on_event(&make());
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Events").field(&self.0.is_some()).finish()
    }
}
