//! The subscriber: one subscription per room with local members, and the
//! room messages of other nodes handed to the multiplexer.

use std::collections::HashSet;
use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use redis::Value;

use super::codec::RoomCodec;
use super::connection::{Connection, is_pong};
use super::envelope::{self, Rejection};
use super::events::{BackplaneEvent, LinkError};
use super::link::{Env, Link};
use super::shared::Shared;
use crate::{OutgoingMessage, OutgoingPacket, RoomName};

/// Channels named in one `SUBSCRIBE` or `UNSUBSCRIBE` at most: a node with
/// many rooms subscribes again after a reconnect in commands of bounded
/// size, not in one the size of all its rooms.
const ROOMS_PER_COMMAND: usize = 256;

/// Values read from Redis per poll at most, so that a flood from other
/// nodes cannot keep the backplane's task from yielding.
const READS_PER_POLL: usize = 256;

/// The subscriber connection and the rooms it follows.
pub(crate) struct Subscriber<V> {
    link: Link,
    /// The rooms with local members, as the rooms watch last told: what
    /// the connection is subscribed to, or is subscribing to.
    rooms: HashSet<RoomName>,
    prefix: String,
    node_id: u64,
    /// A message from another node waiting for room in the arrival queue:
    /// nothing more is read until it is passed on.
    waiting: Option<OutgoingPacket<V>>,
}

impl<V> Subscriber<V> {
    pub(crate) fn new(link: Link, prefix: String, node_id: u64) -> Self {
        Self {
            link,
            rooms: HashSet::new(),
            prefix,
            node_id,
            waiting: None,
        }
    }

    /// Rooms gained their first local member (`true`) or lost their last
    /// (`false`): subscribe or unsubscribe, if the connection is up (if it
    /// is not, it subscribes to every room once it is).
    pub(crate) fn rooms_changed(&mut self, changes: Vec<(RoomName, bool)>, now: u64) {
        let mut joined = Vec::new();
        let mut left = Vec::new();
        for (room, has_members) in changes {
            if has_members {
                if self.rooms.insert(RoomName::clone(&room)) {
                    joined.push(room);
                }
            } else if self.rooms.remove(&room) {
                left.push(room);
            }
        }
        if !self.link.is_up() {
            return;
        }
        if let Some(connection) = self.link.connection() {
            send_rooms(connection, "SUBSCRIBE", &self.prefix, &joined, now);
            send_rooms(connection, "UNSUBSCRIBE", &self.prefix, &left, now);
        }
    }

    /// Connects, reads and writes as far as it can without waiting.
    /// Returns whether it stopped for its budget, with more to do.
    pub(crate) fn poll<K: RoomCodec<V>>(
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
                env.stats.subscriptions(0);
                self.link.fail(error, env);
                // A connection that was up is made again at once.
                self.link.poll_open(cx, env);
                false
            }
        }
    }

    /// Passes on what waits, reads, keeps the connection alive, writes.
    fn exchange<K: RoomCodec<V>>(
        &mut self,
        cx: &mut Context<'_>,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) -> Result<bool, LinkError> {
        if let Some(packet) = self.waiting.take() {
            self.waiting = shared.arrive(packet).err();
        }
        let mut budget = READS_PER_POLL;
        while self.waiting.is_none() {
            if budget == 0 {
                return self.finish_step(cx, env).map(|()| true);
            }
            let Some(connection) = self.link.connection() else {
                return Ok(false);
            };
            match connection.poll_value(cx, env.now) {
                Poll::Ready(value) => {
                    budget -= 1;
                    self.on_value(value?, env, shared, codec)?;
                }
                Poll::Pending => break,
            }
        }
        self.finish_step(cx, env).map(|()| false)
    }

    /// Checks that the connection is alive and writes what is packed.
    fn finish_step(&mut self, cx: &mut Context<'_>, env: Env<'_>) -> Result<(), LinkError> {
        let holding = self.waiting.is_some();
        let Some(connection) = self.link.connection() else {
            return Ok(());
        };
        if holding {
            // Not reading is this side's doing: Redis is not silent.
            connection.hold(env.now);
        }
        connection.check(env.now, env.timing.liveness)?;
        match connection.poll_write(cx) {
            Poll::Ready(Err(error)) => Err(error),
            _ => Ok(()),
        }
    }

    fn on_value<K: RoomCodec<V>>(
        &mut self,
        value: Value,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) -> Result<(), LinkError> {
        if is_pong(&value) {
            return self.on_pong(env);
        }
        if !self.link.is_up() {
            return Err(unexpected(&value));
        }
        let items = match value {
            Value::Array(items) => items,
            other => return Err(unexpected(&other)),
        };
        let mut items = items.into_iter();
        let (Some(Value::BulkString(kind)), Some(Value::BulkString(channel)), Some(third), None) =
            (items.next(), items.next(), items.next(), items.next())
        else {
            return Err(LinkError::Protocol("a push of an unknown shape".into()));
        };
        match (&kind[..], third) {
            (b"message", Value::BulkString(payload)) => {
                self.on_message(&channel, Bytes::from(payload), env, shared, codec);
            }
            (b"subscribe", Value::Int(count)) => {
                self.on_confirmation(&channel, count, env, BackplaneEvent::Subscribed);
            }
            (b"unsubscribe", Value::Int(count)) => {
                self.on_confirmation(&channel, count, env, BackplaneEvent::Unsubscribed);
            }
            _ => return Err(LinkError::Protocol("a push of an unknown kind".into())),
        }
        Ok(())
    }

    /// A `PING` was answered: the opening one makes the connection up and
    /// subscribes to every room with local members.
    fn on_pong(&mut self, env: Env<'_>) -> Result<(), LinkError> {
        if self.link.is_up() {
            if let Some(connection) = self.link.connection() {
                connection.replied();
            }
            return Ok(());
        }
        self.link.established(env);
        let rooms: Vec<RoomName> = self.rooms.iter().cloned().collect();
        if let Some(connection) = self.link.connection() {
            connection.replied();
            send_rooms(connection, "SUBSCRIBE", &self.prefix, &rooms, env.now);
        }
        Ok(())
    }

    /// Redis confirmed a subscribe or unsubscribe; `count` is how many
    /// channels the connection is subscribed to now.
    fn on_confirmation(
        &mut self,
        channel: &[u8],
        count: i64,
        env: Env<'_>,
        event: fn(RoomName) -> BackplaneEvent,
    ) {
        if let Some(connection) = self.link.connection() {
            connection.replied();
        }
        env.stats.subscriptions(u64::try_from(count).unwrap_or(0));
        if let Some(room) = self.room_of(channel) {
            env.events.emit(|| event(room));
        }
    }

    /// A message on a room's channel: pass it on unless it is this node's
    /// own or is not right.
    fn on_message<K: RoomCodec<V>>(
        &mut self,
        channel: &[u8],
        payload: Bytes,
        env: Env<'_>,
        shared: &Shared<V>,
        codec: &K,
    ) {
        match self.to_packet(channel, &payload, codec) {
            Ok(None) => {}
            Ok(Some(packet)) => {
                env.stats.received();
                self.waiting = shared.arrive(packet).err();
            }
            Err(rejection) => {
                env.stats.rejected();
                env.events.emit(|| BackplaneEvent::Rejected(rejection));
            }
        }
    }

    /// The packet that gives this node's members a message from another
    /// node; `None` for a message of this node's own, which its members
    /// had from it directly.
    fn to_packet<K: RoomCodec<V>>(
        &self,
        channel: &[u8],
        payload: &Bytes,
        codec: &K,
    ) -> Result<Option<OutgoingPacket<V>>, Rejection> {
        let envelope = envelope::decode(payload)?;
        if envelope.origin == self.node_id {
            return Ok(None);
        }
        if channel.strip_prefix(self.prefix.as_bytes()) != Some(envelope.room.as_bytes()) {
            return Err(Rejection::WrongRoom);
        }
        let values = envelope
            .values
            .into_iter()
            .map(|bytes| codec.decode(bytes))
            .collect::<Option<Vec<V>>>()
            .ok_or(Rejection::Value)?;
        let room = self
            .rooms
            .get(envelope.room)
            .cloned()
            .unwrap_or_else(|| envelope.room.into());
        // The envelope's `except` is not applied: it names a stream of the
        // sender's node, and the same id here is another connection.
        let mut message = OutgoingMessage::to_room(room, values);
        message.delivery = envelope.delivery;
        Ok(Some(OutgoingPacket::Message(message)))
    }

    /// The room whose channel is `channel`.
    fn room_of(&self, channel: &[u8]) -> Option<RoomName> {
        let name = std::str::from_utf8(channel.strip_prefix(self.prefix.as_bytes())?).ok()?;
        Some(self.rooms.get(name).cloned().unwrap_or_else(|| name.into()))
    }
}

/// Packs `command` (`SUBSCRIBE` or `UNSUBSCRIBE`) for the channels of
/// `rooms`, in commands of at most [`ROOMS_PER_COMMAND`] channels; Redis
/// answers each channel on its own.
fn send_rooms(
    connection: &mut Connection,
    command: &str,
    prefix: &str,
    rooms: &[RoomName],
    now: u64,
) {
    for chunk in rooms.chunks(ROOMS_PER_COMMAND) {
        let mut packed = redis::cmd(command);
        for room in chunk {
            packed.arg([prefix.as_bytes(), room.as_bytes()].concat());
        }
        connection.send(&packed, chunk.len(), now);
    }
}

/// A value that Redis never sends there.
fn unexpected(value: &Value) -> LinkError {
    match value {
        Value::ServerError(error) => LinkError::Protocol(error.to_string()),
        // Not the value itself: it could be large.
        _ => LinkError::Protocol("a reply of an unexpected type".into()),
    }
}

impl<V> fmt::Debug for Subscriber<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("link", &self.link)
            .field("rooms", &self.rooms.len())
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Delivery;
    use crate::backplane::codec::RawCodec;
    use crate::backplane::connection::Liveness;
    use crate::backplane::envelope::{Publication, encode};
    use crate::backplane::events::LinkKind;
    use crate::backplane::link::Timing;
    use crate::packet::Target;

    const NODE: u64 = 1;

    fn subscriber<V>() -> Subscriber<V> {
        let timing = Timing {
            liveness: Liveness {
                ping_ticks: 1,
                reply_ticks: 1,
            },
            reconnect_min: 1,
            reconnect_max: 1,
            max_message_size: usize::MAX,
        };
        Subscriber::new(Link::new(LinkKind::Subscriber, &timing), "p:".into(), NODE)
    }

    fn payload(origin: u64, room: &str, delivery: Delivery) -> Bytes {
        let publication = Publication {
            room: room.into(),
            except: Some(7),
            delivery,
            values: vec![Bytes::from_static(b"v")],
        };
        let mut out = Vec::new();
        encode(origin, &publication, &RawCodec, usize::MAX, &mut out).unwrap();
        Bytes::from(out)
    }

    #[test]
    fn another_nodes_message_keeps_its_class_and_drops_its_except() {
        for delivery in [Delivery::Reliable, Delivery::Volatile, Delivery::Latest(5)] {
            let packet = subscriber::<Bytes>()
                .to_packet(b"p:room", &payload(2, "room", delivery), &RawCodec)
                .unwrap()
                .unwrap();
            let OutgoingPacket::Message(message) = packet else {
                panic!("a message");
            };
            assert_eq!(message.delivery(), delivery);
            assert_eq!(
                message.target,
                Target::Room {
                    room: "room".into(),
                    except: None
                },
                "the except id names a stream of the other node"
            );
            assert_eq!(message.values, [Bytes::from_static(b"v")]);
        }
    }

    #[test]
    fn this_nodes_own_message_is_ignored_and_a_wrong_room_rejected() {
        let subscriber = subscriber::<Bytes>();
        let own = payload(NODE, "room", Delivery::Reliable);
        assert_eq!(subscriber.to_packet(b"p:room", &own, &RawCodec), Ok(None));
        let elsewhere = payload(2, "other", Delivery::Reliable);
        assert_eq!(
            subscriber.to_packet(b"p:room", &elsewhere, &RawCodec),
            Err(Rejection::WrongRoom)
        );
        assert_eq!(
            subscriber.to_packet(b"room", &payload(2, "room", Delivery::Reliable), &RawCodec),
            Err(Rejection::WrongRoom),
            "a channel without the prefix"
        );
    }

    #[test]
    fn a_value_the_codec_refuses_rejects_the_message() {
        let subscriber = subscriber::<String>();
        let not_text = Publication {
            room: "room".into(),
            except: None,
            delivery: Delivery::Reliable,
            values: vec![Bytes::from_static(b"\xff")],
        };
        let mut out = Vec::new();
        encode(2, &not_text, &RawCodec, usize::MAX, &mut out).unwrap();
        assert_eq!(
            subscriber
                .to_packet(b"p:room", &Bytes::from(out), &RawCodec)
                .map(|packet| packet.is_some()),
            Err(Rejection::Value)
        );
    }
}
