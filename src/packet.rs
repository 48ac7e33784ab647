//! The packets that flow through the multiplexer: [`IncomingPacket`]s to the
//! channels, [`OutgoingPacket`]s from the application.

use std::sync::Arc;

/// A room's name. Build one from a `&str` or a `String` with `.into()`.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::RoomName;
///
/// let room: RoomName = "general".into();
/// assert_eq!(&*room, "general");
/// ```
pub type RoomName = Arc<str>;

/// Identifies one connection for as long as it is open.
///
/// Ids come from an [`IdGen`](crate::IdGen); the multiplexer never gives a new
/// connection the id of one that is still alive (guarantee 4 in the [crate
/// docs](crate#guarantees)).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{IncomingPacket, OutgoingMessage, StreamId};
///
/// // The id announced by StreamConnected addresses that connection.
/// let connected = IncomingPacket::<()>::StreamConnected(7);
/// let id: StreamId = connected.id();
/// let reply = OutgoingMessage::new([id], ["welcome"]);
/// assert_eq!(reply.stream_ids().copied().collect::<Vec<_>>(), [7]);
/// ```
pub type StreamId = usize;

/// Identifies a channel: an index into the `Vec` of channel sinks given to
/// [`Multiplexer::new`](crate::Multiplexer::new).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{ChannelId, OutgoingPacket};
///
/// // With channels `vec![lobby, players]`, the players are channel 1.
/// const PLAYERS: ChannelId = 1;
/// let promote = OutgoingPacket::<()>::ChangeChannel(vec![7], PLAYERS);
/// assert!(matches!(promote, OutgoingPacket::ChangeChannel(_, 1)));
/// ```
pub type ChannelId = usize;

/// What a channel's consumer receives.
///
/// For every visit of a stream to a channel the consumer sees
/// [`StreamConnected`](IncomingPacket::StreamConnected), then the stream's
/// messages in the order they were read, then exactly one
/// [`StreamDisconnected`](IncomingPacket::StreamDisconnected) (guarantee 1
/// in the [crate docs](crate#guarantees)).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{IncomingMessage, IncomingPacket};
///
/// let packet = IncomingPacket::Message(IncomingMessage::new(7, "hello"));
/// assert_eq!(packet.id(), 7);
/// assert_eq!(packet.value(), Some(&"hello"));
///
/// let connected = IncomingPacket::<&str>::StreamConnected(7);
/// assert_eq!(connected.value(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingPacket<T> {
    /// The stream joined this channel (it connected, or it was moved here).
    StreamConnected(StreamId),
    /// The stream left this channel, for the reason given.
    StreamDisconnected(StreamId, DisconnectReason),
    /// The stream sent a value.
    Message(IncomingMessage<T>),
}

impl<T> IncomingPacket<T> {
    /// The id of the stream this packet is about.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{DisconnectReason, IncomingPacket};
    ///
    /// let packet = IncomingPacket::<()>::StreamDisconnected(3, DisconnectReason::Linkdead);
    /// assert_eq!(packet.id(), 3);
    /// ```
    pub fn id(&self) -> StreamId {
        match self {
            IncomingPacket::StreamConnected(id) | IncomingPacket::StreamDisconnected(id, _) => *id,
            IncomingPacket::Message(message) => message.stream_id,
        }
    }

    /// The value carried by a [`Message`](IncomingPacket::Message), `None` for
    /// announcements.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{IncomingMessage, IncomingPacket};
    ///
    /// let packet = IncomingPacket::Message(IncomingMessage::new(1, 42));
    /// assert_eq!(packet.value(), Some(&42));
    /// assert_eq!(IncomingPacket::<i32>::StreamConnected(1).value(), None);
    /// ```
    pub fn value(&self) -> Option<&T> {
        match self {
            IncomingPacket::Message(message) => Some(&message.value),
            _ => None,
        }
    }
}

/// A value read from one stream.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::IncomingMessage;
///
/// let message = IncomingMessage::new(5, vec![1u8, 2, 3]);
/// assert_eq!(message.stream_id, 5);
/// assert_eq!(message.value, [1, 2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage<T> {
    /// The stream the value was read from.
    pub stream_id: StreamId,
    /// The value, exactly as the stream's reader yielded it.
    pub value: T,
}

impl<T> IncomingMessage<T> {
    /// Wraps a value read from `stream_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::IncomingMessage;
    ///
    /// assert_eq!(IncomingMessage::new(2, 'x').value, 'x');
    /// ```
    pub fn new(stream_id: StreamId, value: T) -> Self {
        Self { stream_id, value }
    }
}

/// Why a stream left a channel.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::DisconnectReason;
///
/// let reason = DisconnectReason::ChannelChange(1);
/// assert_ne!(reason, DisconnectReason::Linkdead);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The connection ended or failed: its reader ended or errored, or a
    /// write to it failed.
    Linkdead,
    /// The stream was moved to the given channel; it is still connected.
    ChannelChange(ChannelId),
    /// The application closed it with [`OutgoingPacket::Shutdown`], or the
    /// multiplexer is shutting down.
    Shutdown,
    /// The client did not read fast enough: a value sent to it would have
    /// exceeded its outgoing backlog (the values its socket has not taken
    /// yet), so it was disconnected (guarantee 6 in the [crate
    /// docs](crate#guarantees)).
    BacklogFull,
    /// The stream completed no frame for the idle timeout (see
    /// [`MultiplexerBuilder::idle_timeout`](crate::MultiplexerBuilder::idle_timeout)):
    /// a silent client, or one that trickles a frame too slowly.
    IdleTimeout,
    /// The stream's socket took no bytes for the write timeout while values
    /// waited for it (see
    /// [`MultiplexerBuilder::write_timeout`](crate::MultiplexerBuilder::write_timeout)):
    /// a client that stopped reading.
    WriteTimeout,
}

/// What the application asks of the multiplexer.
///
/// Packets take effect in the order the outgoing stream yields them
/// (guarantee 3 in the [crate docs](crate#guarantees)).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{OutgoingMessage, OutgoingPacket};
///
/// let packet = OutgoingPacket::Message(OutgoingMessage::new([1, 2], ["bye"]));
/// assert_eq!(packet.stream_ids().copied().collect::<Vec<_>>(), [1, 2]);
/// assert_eq!(packet.values().map(|v| v.count()), Some(1));
///
/// let shutdown = OutgoingPacket::<&str>::Shutdown(vec![1]);
/// assert!(shutdown.values().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingPacket<V> {
    /// Send every value, in order, to every listed stream.
    Message(OutgoingMessage<V>),
    /// Move the listed streams to a channel.
    ///
    /// A stream that has left but can still be written to (its client
    /// half-closed, or it was idle too long: see guarantee 14 of the crate
    /// docs) moves too: its new channel sees `StreamConnected` and at once
    /// `StreamDisconnected` with the reason it left, so that the new
    /// channel's consumer can still answer it.
    ChangeChannel(Vec<StreamId>, ChannelId),
    /// Flush what is queued for the listed streams, then close them.
    Shutdown(Vec<StreamId>),
    /// Put the listed streams in a room (see [`Rooms`](crate::Rooms)): a
    /// [`Message`](OutgoingPacket::Message) to the room reaches them. A
    /// stream may be in any number of rooms, whatever its channel; it
    /// leaves all of them when its departure is announced. Ids that are not
    /// open streams are dropped and counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use futures::{StreamExt, executor::block_on, stream};
    /// use stream_multiplexer::{
    ///     ControlMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
    /// };
    ///
    /// # block_on(async {
    /// let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<&str>>(8);
    /// let (outgoing_tx, outgoing) = mpsc::unbounded::<OutgoingPacket<&str>>();
    /// let multiplexer = Multiplexer::new(16, outgoing, vec![lobby]);
    /// let rooms = multiplexer.rooms();
    ///
    /// let (write, mut client) = mpsc::channel::<&str>(8);
    /// let halves = stream::iter([Ok((write, stream::pending::<&str>()))]);
    /// let (control, control_rx) = mpsc::unbounded();
    /// let consumer = async {
    ///     let id = lobby_rx.next().await.unwrap().id();
    ///     outgoing_tx.unbounded_send(OutgoingPacket::Join(vec![id], "general".into())).unwrap();
    ///     let hello = OutgoingMessage::to_room("general", ["hello, room"]);
    ///     outgoing_tx.unbounded_send(OutgoingPacket::Message(hello)).unwrap();
    ///     assert_eq!(client.next().await, Some("hello, room"));
    ///     assert_eq!(rooms.members("general"), [id]);
    ///     control.unbounded_send(ControlMessage::Shutdown).unwrap();
    /// };
    /// let (result, ()) = futures::join!(multiplexer.run(halves, control_rx), consumer);
    /// assert!(result.is_ok());
    /// # });
    /// ```
    Join(Vec<StreamId>, RoomName),
    /// Take the listed streams out of a room. Ids not in it are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingPacket;
    ///
    /// let leave = OutgoingPacket::<()>::Leave(vec![7], "general".into());
    /// assert_eq!(leave.stream_ids().len(), 1);
    /// ```
    Leave(Vec<StreamId>, RoomName),
}

impl<V> OutgoingPacket<V> {
    /// The streams this packet addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingPacket;
    ///
    /// let packet = OutgoingPacket::<()>::ChangeChannel(vec![4, 5], 1);
    /// assert_eq!(packet.stream_ids().len(), 2);
    /// ```
    pub fn stream_ids(&self) -> PacketItems<'_, StreamId> {
        match self {
            OutgoingPacket::Message(message) => message.stream_ids(),
            OutgoingPacket::ChangeChannel(ids, _)
            | OutgoingPacket::Shutdown(ids)
            | OutgoingPacket::Join(ids, _)
            | OutgoingPacket::Leave(ids, _) => PacketItems(ids.iter()),
        }
    }

    /// The values a [`Message`](OutgoingPacket::Message) carries; `None` for
    /// the other packets.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{OutgoingMessage, OutgoingPacket};
    ///
    /// let packet = OutgoingPacket::Message(OutgoingMessage::new([9], [1, 2, 3]));
    /// assert_eq!(packet.values().unwrap().sum::<i32>(), 6);
    /// ```
    pub fn values(&self) -> Option<PacketItems<'_, V>> {
        match self {
            OutgoingPacket::Message(message) => Some(PacketItems(message.values.iter())),
            _ => None,
        }
    }
}

/// Values to send, the streams to send them to (a list of ids, or a room),
/// and how (its [`Delivery`]).
///
/// Each value is cloned once per recipient, so use a type whose clone is
/// cheap, such as [`bytes::Bytes`] (a reference count, no copy).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use stream_multiplexer::OutgoingMessage;
///
/// let everyone = vec![1, 2, 3];
/// let message = OutgoingMessage::new(everyone, [Bytes::from_static(b"tick")]);
/// assert_eq!(message.stream_ids().len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage<V> {
    pub(crate) target: Target,
    pub(crate) values: Vec<V>,
    pub(crate) delivery: Delivery,
}

/// Who an outgoing message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Ids(Vec<StreamId>),
    Room {
        room: RoomName,
        except: Option<StreamId>,
    },
}

/// How a message treats a recipient whose backlog is full and whose socket
/// takes no more (guarantee 6 of the crate docs).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{Delivery, OutgoingMessage};
///
/// let chat = OutgoingMessage::new([1, 2], ["hello"]);
/// assert_eq!(chat.delivery(), Delivery::Reliable);
/// let typing = OutgoingMessage::new([1, 2], ["bob is typing"]).volatile();
/// assert_eq!(typing.delivery(), Delivery::Volatile);
/// let price = OutgoingMessage::new([1, 2], ["EURUSD 1.0842"]).latest(17);
/// assert_eq!(price.delivery(), Delivery::Latest(17));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Every value reaches the recipient, or the recipient is treated as
    /// slow: disconnected with
    /// [`BacklogFull`](DisconnectReason::BacklogFull), or waited for,
    /// as the [`BacklogPolicy`](crate::BacklogPolicy) says. The default.
    #[default]
    Reliable,
    /// Dropped for that recipient (and counted in
    /// [`StatsSnapshot::volatile_dropped`](crate::StatsSnapshot::volatile_dropped)),
    /// never a disconnect and never a wait: for what is worthless late,
    /// such as "is typing" notices.
    Volatile,
    /// Latest value by key: replaces a value with the same key that waits,
    /// not yet written, in the recipient's backlog (counted in
    /// [`StatsSnapshot::conflated`](crate::StatsSnapshot::conflated)), so a
    /// slow reader gets the newest position or price, never a queue of
    /// stale ones. The replacement keeps the old value's place, so values
    /// of different keys keep their order. With no such value waiting, it
    /// is queued like a reliable one. Of a message with several values,
    /// only the last, the newest, is sent.
    Latest(u64),
}

impl<V> OutgoingMessage<V> {
    /// Sends each of `values`, in order, to each of `ids`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// let message = OutgoingMessage::new(Some(1), vec!["a", "b"]);
    /// assert_eq!(message.values().copied().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn new(
        ids: impl IntoIterator<Item = StreamId>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self {
            target: Target::Ids(ids.into_iter().collect()),
            values: values.into_iter().collect(),
            delivery: Delivery::Reliable,
        }
    }

    /// Sends each of `values`, in order, to each member of `room` (see
    /// [`OutgoingPacket::Join`]): one shared value for all of them, with no
    /// list of ids to build. Nobody in the room: nothing is sent, and
    /// nothing is counted as dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// let message = OutgoingMessage::to_room("general", ["hi all"]);
    /// assert_eq!(message.room(), Some("general"));
    /// ```
    pub fn to_room(room: impl Into<RoomName>, values: impl IntoIterator<Item = V>) -> Self {
        Self {
            target: Target::Room {
                room: room.into(),
                except: None,
            },
            values: values.into_iter().collect(),
            delivery: Delivery::Reliable,
        }
    }

    /// Leaves one member of the room out, typically the sender of a chat
    /// line. No effect on a message to a list of ids.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// let line = OutgoingMessage::to_room("general", ["<bob> hi"]).except(7);
    /// assert_eq!(line.excepted(), Some(7));
    /// ```
    pub fn except(mut self, id: StreamId) -> Self {
        if let Target::Room { except, .. } = &mut self.target {
            *except = Some(id);
        }
        self
    }

    /// Makes the message [`Delivery::Volatile`].
    ///
    /// # Examples
    ///
    /// See [`Delivery`].
    ///
    /// ```
    /// use stream_multiplexer::{Delivery, OutgoingMessage};
    ///
    /// let message = OutgoingMessage::to_room("general", ["alice is typing"]).volatile();
    /// assert_eq!(message.delivery(), Delivery::Volatile);
    /// ```
    pub fn volatile(mut self) -> Self {
        self.delivery = Delivery::Volatile;
        self
    }

    /// Makes the message [`Delivery::Latest`] with `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{Delivery, OutgoingMessage};
    ///
    /// let player = 42;
    /// let position = OutgoingMessage::to_room("match-9", ["42 at 10,20"]).latest(player);
    /// assert_eq!(position.delivery(), Delivery::Latest(42));
    /// ```
    pub fn latest(mut self, key: u64) -> Self {
        self.delivery = Delivery::Latest(key);
        self
    }

    /// How the message is delivered.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{Delivery, OutgoingMessage};
    ///
    /// assert_eq!(OutgoingMessage::new([1], [()]).delivery(), Delivery::Reliable);
    /// ```
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The room the message goes to, if it goes to a room.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// assert_eq!(OutgoingMessage::new([1], [()]).room(), None);
    /// assert_eq!(OutgoingMessage::to_room("den", [()]).room(), Some("den"));
    /// ```
    pub fn room(&self) -> Option<&str> {
        match &self.target {
            Target::Room { room, .. } => Some(room),
            Target::Ids(_) => None,
        }
    }

    /// The member of the room left out, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// assert_eq!(OutgoingMessage::to_room("den", [()]).excepted(), None);
    /// ```
    pub fn excepted(&self) -> Option<StreamId> {
        match &self.target {
            Target::Room { except, .. } => *except,
            Target::Ids(_) => None,
        }
    }

    /// The streams the values go to: the list of ids, or nothing for a
    /// message to a room (its members are known when it is sent).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// let message = OutgoingMessage::new([3, 1], [()]);
    /// assert_eq!(message.stream_ids().copied().collect::<Vec<_>>(), [3, 1]);
    /// ```
    pub fn stream_ids(&self) -> PacketItems<'_, StreamId> {
        match &self.target {
            Target::Ids(ids) => PacketItems(ids.iter()),
            Target::Room { .. } => PacketItems([].iter()),
        }
    }

    /// The values, in the order they will be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::OutgoingMessage;
    ///
    /// let message = OutgoingMessage::new([3], ["x"]);
    /// assert_eq!(message.values().next(), Some(&"x"));
    /// ```
    pub fn values(&self) -> PacketItems<'_, V> {
        PacketItems(self.values.iter())
    }
}

/// The ids or values of an outgoing packet: an iterator over references to
/// them, in order.
///
/// Returned by [`OutgoingPacket::stream_ids`], [`OutgoingPacket::values`],
/// [`OutgoingMessage::stream_ids`] and [`OutgoingMessage::values`]. It knows
/// its length and can be walked from either end.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{OutgoingMessage, OutgoingPacket, PacketItems};
///
/// let packet = OutgoingPacket::<()>::Shutdown(vec![1, 2, 3]);
/// let mut ids: PacketItems<'_, usize> = packet.stream_ids();
/// assert_eq!(ids.next(), Some(&1));
/// assert_eq!(ids.next_back(), Some(&3));
/// assert_eq!(ids.len(), 1);
///
/// let message = OutgoingMessage::new([7], ["a", "b"]);
/// assert_eq!(message.values().rev().collect::<Vec<_>>(), [&"b", &"a"]);
/// ```
#[derive(Debug, Clone)]
pub struct PacketItems<'a, T>(std::slice::Iter<'a, T>);

impl<'a, T> Iterator for PacketItems<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<T> ExactSizeIterator for PacketItems<'_, T> {}

impl<T> DoubleEndedIterator for PacketItems<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back()
    }
}

impl<T> std::iter::FusedIterator for PacketItems<'_, T> {}

/// The old name of [`PacketItems`], kept so that code written for earlier
/// versions still compiles.
///
/// # Examples
///
/// ```
/// #![allow(deprecated)]
/// use stream_multiplexer::{Iter, OutgoingPacket};
///
/// let packet = OutgoingPacket::<()>::Shutdown(vec![1]);
/// let ids: Iter<'_, usize> = packet.stream_ids();
/// assert_eq!(ids.len(), 1);
/// ```
#[deprecated(since = "0.17.0", note = "renamed to `PacketItems`")]
pub type Iter<'a, T> = PacketItems<'a, T>;

/// Stops the whole multiplexer; sent on the control stream given to
/// [`Multiplexer::run`](crate::Multiplexer::run).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::ControlMessage;
///
/// // Graceful: flush what is queued, close every connection, resolve Ok.
/// let graceful = ControlMessage::Shutdown;
/// // Immediate: drop what is queued and resolve at once.
/// let abrupt = ControlMessage::Abort;
/// assert_ne!(graceful, abrupt);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlMessage {
    /// Stop accepting and reading, flush every stream's queued values, close
    /// every connection, then resolve `Ok(())`. The end of the control
    /// stream means the same.
    Shutdown,
    /// Resolve at once, dropping whatever is queued; every connection is
    /// closed.
    Abort,
}
