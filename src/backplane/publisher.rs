//! The publisher: this node's room messages, from the queue to Redis, one
//! `PUBLISH` each, many in flight at once.

use std::fmt;
use std::task::{Context, Poll};

use redis::Value;

use super::codec::RoomCodec;
use super::connection::is_pong;
use super::envelope;
use super::events::LinkError;
use super::link::{Env, Link};
use super::shared::Shared;

/// Publications written and not yet confirmed, at most: enough to keep the
/// connection busy across a round trip, few enough that a lost connection
/// leaves few of unknown fate.
const IN_FLIGHT: usize = 256;

/// Bytes packed and not yet written past which no more publications are
/// taken from the queue: what waits for a slow Redis waits in the bounded
/// queue, not in a buffer that grows.
const UNWRITTEN_LIMIT: usize = 256 * 1024;

/// Publications taken, and replies read, per poll at most.
const STEPS_PER_POLL: usize = 256;

/// The publisher connection and what is in flight on it.
pub(crate) struct Publisher {
    link: Link,
    prefix: String,
    node_id: u64,
    /// Publications written whose reply has not come.
    in_flight: usize,
    /// The last envelope and channel name, kept for their capacity.
    envelope: Vec<u8>,
    channel: Vec<u8>,
}

impl Publisher {
    pub(crate) fn new(link: Link, prefix: String, node_id: u64) -> Self {
        Self {
            link,
            prefix,
            node_id,
            in_flight: 0,
            envelope: Vec::new(),
            channel: Vec::new(),
        }
    }

    /// Whether the connection is up.
    pub(crate) fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Whether nothing is in flight or waits to be written.
    pub(crate) fn is_idle(&mut self) -> bool {
        self.in_flight == 0 && self.link.connection().is_none_or(|c| c.unwritten() == 0)
    }

    /// Connects, reads replies, publishes and writes as far as it can
    /// without waiting. Returns whether it stopped for its budget, with
    /// more to do.
    pub(crate) fn poll<V, K: RoomCodec<V>>(
        &mut self,
        cx: &mut Context<'_>,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) -> bool {
        if self.link.poll_open(cx, env).is_none() {
            return false;
        }
        match self.exchange(cx, env, shared, codec) {
            Ok(more) => more,
            Err(error) => {
                // Their fate is unknown: Redis may have passed them on. Not
                // sending them again keeps a message from arriving twice.
                env.stats.publish_failed(self.in_flight);
                self.in_flight = 0;
                env.stats.in_flight(0);
                self.link.fail(error, env);
                self.link.poll_open(cx, env);
                false
            }
        }
    }

    fn exchange<V, K: RoomCodec<V>>(
        &mut self,
        cx: &mut Context<'_>,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) -> Result<bool, LinkError> {
        let mut more = self.read_replies(cx, env)?;
        if self.link.is_up() {
            more |= self.take_publications(env, shared, codec);
        }
        let Some(connection) = self.link.connection() else {
            return Ok(false);
        };
        connection.check(env.now, env.timing.liveness)?;
        match connection.poll_write(cx) {
            Poll::Ready(Err(error)) => Err(error),
            _ => Ok(more),
        }
    }

    /// Reads what Redis answered. The socket is read even when nothing is
    /// awaited, so that a Redis that goes away is noticed at once (its
    /// FIN), not at the next publication.
    fn read_replies(&mut self, cx: &mut Context<'_>, env: Env<'_>) -> Result<bool, LinkError> {
        for _ in 0..STEPS_PER_POLL {
            let Some(connection) = self.link.connection() else {
                return Ok(false);
            };
            let value = match connection.poll_value(cx, env.now) {
                Poll::Ready(value) => value?,
                Poll::Pending => return Ok(false),
            };
            connection.replied();
            match value {
                value if is_pong(&value) => {
                    if !self.link.is_up() {
                        self.link.established(env);
                    }
                }
                _ if !self.link.is_up() => {
                    return Err(LinkError::Protocol("no answer to PING".into()));
                }
                Value::Int(_) if self.in_flight > 0 => {
                    self.in_flight -= 1;
                    env.stats.published();
                }
                Value::ServerError(_) if self.in_flight > 0 => {
                    self.in_flight -= 1;
                    env.stats.publish_failed(1);
                }
                _ => return Err(LinkError::Protocol("a reply of an unexpected type".into())),
            }
            env.stats.in_flight(self.in_flight);
        }
        Ok(true)
    }

    /// Packs queued publications, while the window and the write buffer
    /// have room.
    fn take_publications<V, K: RoomCodec<V>>(
        &mut self,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) -> bool {
        for _ in 0..STEPS_PER_POLL {
            let Some(connection) = self.link.connection() else {
                return false;
            };
            if self.in_flight >= IN_FLIGHT || connection.unwritten() >= UNWRITTEN_LIMIT {
                return false;
            }
            let Some(publication) = shared.next_publication() else {
                return false;
            };
            let encoded = envelope::encode(
                self.node_id,
                &publication,
                codec,
                env.timing.max_message_size,
                &mut self.envelope,
            );
            if encoded.is_err() {
                env.stats.publish_dropped();
                continue;
            }
            self.channel.clear();
            self.channel.extend_from_slice(self.prefix.as_bytes());
            self.channel.extend_from_slice(publication.room.as_bytes());
            let mut command = redis::cmd("PUBLISH");
            command.arg(&self.channel[..]).arg(&self.envelope[..]);
            connection.send(&command, 1, env.now);
            self.in_flight += 1;
            env.stats.in_flight(self.in_flight);
        }
        true
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("link", &self.link)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}
