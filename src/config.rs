//! The multiplexer's options: what the builder sets and `Run` reads.
//!
//! A leaf: it depends on no other module of the crate but the id types, so
//! that both the builder and the `Run` future can use it without importing
//! each other.

use std::time::Duration;

use crate::ChannelId;

/// What happens when a value is sent to a stream whose outgoing backlog is
/// full and whose socket takes no more bytes.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{BacklogPolicy, MultiplexerBuilder};
///
/// let lossless = MultiplexerBuilder::new(128).backlog_policy(BacklogPolicy::Wait);
/// assert_eq!(BacklogPolicy::default(), BacklogPolicy::Disconnect);
/// # drop(lossless);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BacklogPolicy {
    /// Disconnect the slow stream with
    /// [`DisconnectReason::BacklogFull`](crate::DisconnectReason::BacklogFull).
    /// The outgoing stream is never held up by a slow client. The default.
    #[default]
    Disconnect,
    /// Stop taking outgoing packets until the stream's backlog has room:
    /// lossless, but one client that stops reading stops every send. Use it
    /// for trusted peers, or with a
    /// [`write_timeout`](crate::MultiplexerBuilder::write_timeout) that ends
    /// the wait. A message with more values than the backlog holds still
    /// disconnects, since it could never fit.
    Wait,
}

/// The idle timeout once a clock is given, unless set otherwise: long
/// enough for a person reading a chat room without typing, short enough
/// that silent connections do not pile up on a public server.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The write timeout once a clock is given, unless set otherwise: a client
/// on a slow but live link takes some bytes in far less; one that takes
/// nothing for this long has stopped reading.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every option of one multiplexer.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Each stream's outgoing backlog, in values (at least 1).
    pub(crate) sender_buffer_size: usize,
    pub(crate) default_channel: ChannelId,
    pub(crate) max_streams: usize,
    pub(crate) backlog_policy: BacklogPolicy,
    pub(crate) id_seed: usize,
    /// `None`: no idle limit. Only enforced with a clock.
    pub(crate) idle_timeout: Option<Duration>,
    /// `None`: no write limit. Only enforced with a clock.
    pub(crate) write_timeout: Option<Duration>,
}

impl Config {
    pub(crate) fn new(sender_buffer_size: usize) -> Self {
        Self {
            sender_buffer_size: sender_buffer_size.max(1),
            default_channel: 0,
            max_streams: usize::MAX,
            backlog_policy: BacklogPolicy::default(),
            id_seed: 0,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
        }
    }
}
