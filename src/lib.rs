//! This crate provides stream multiplexing with channels.
//!
//! A server holds many client connections at once. The multiplexer gives
//! each one a [`StreamId`] and puts it in a *channel* (channel 0 at first).
//! Everything read from the connections of channel *k* goes, in order, into
//! channel *k*'s consumer — any [`Sink`](futures::Sink) of
//! [`IncomingPacket`]s. The application answers through one stream of
//! [`OutgoingPacket`]s: send values to one or many connections, move
//! connections to another channel, or close them. A [`ControlMessage`]
//! stream stops the whole thing.
//!
//! Channels have their own backpressure that does not affect other
//! channels: a consumer that stops reading stalls only the connections of
//! its channel. A client that stops reading stalls nobody: its outgoing
//! backlog is bounded, and when it overflows that client is disconnected.
//! A typical use is a game or chat server where channel 0 is the lobby of
//! unauthenticated connections and channel 1 the players, so that a flood of
//! anonymous connections cannot slow down the players.
//!
//! It is built on the `futures` traits only and runs on any executor; the
//! [`runtime`] module has small adapters for the listeners of smol (default
//! feature `smol`), async-std (`async-std`) and tokio (`tokio`).
//!
//! # Quick start
//!
//! An echo server on smol, with the fastest consumer channel
//! ([`batch::channel`]: one lock and one wake-up per batch of packets, taken
//! whole with [`next_batch`](batch::BatchReceiver::next_batch)) and
//! the time limits that a public server needs (a [`Clock`]: idle clients are
//! closed after 5 minutes, clients that stop reading after 30 seconds).
//!
//! ```
//! use std::time::Duration;
//! use futures::{AsyncReadExt, AsyncWriteExt, SinkExt};
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::{
//!     ControlMessage, HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage,
//!     OutgoingPacket, batch,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let (channel0, mut packets) = batch::channel(1024);
//!     let (mut replies, outgoing) = batch::channel(1024);
//!     let multiplexer = MultiplexerBuilder::new(128)
//!         .clock(clock(Duration::from_secs(1)))
//!         .build(outgoing, vec![channel0]);
//!
//!     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!     let address = listener.local_addr()?;
//!     // Frames with a 2-byte big-endian length prefix.
//!     let halves = HalvesStream::new(incoming(listener), 2);
//!     let (control, control_rx) = futures::channel::mpsc::unbounded();
//!     let server = smol::spawn(multiplexer.run(halves, control_rx));
//!
//!     // The application: every frame goes back to its sender. It takes
//!     // whatever has arrived in one call, and hands the replies over
//!     // together with one flush (`send` would flush after each).
//!     smol::spawn(async move {
//!         let mut batch = Vec::new();
//!         while packets.next_batch(&mut batch).await > 0 {
//!             for packet in batch.drain(..) {
//!                 if let IncomingPacket::Message(message) = packet
//!                     && let Ok(frame) = message.value
//!                 {
//!                     let echo = OutgoingMessage::new([message.stream_id], [frame]);
//!                     let _ = replies.feed(OutgoingPacket::Message(echo)).await;
//!                 }
//!             }
//!             let _ = replies.flush().await;
//!         }
//!     })
//!     .detach();
//!
//!     let mut client = async_net::TcpStream::connect(address).await?;
//!     client.write_all(b"\x00\x05hello").await?;
//!     let mut echo = [0; 7];
//!     client.read_exact(&mut echo).await?;
//!     assert_eq!(&echo, b"\x00\x05hello");
//!
//!     control.unbounded_send(ControlMessage::Shutdown)?;
//!     server.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # The example of the crate this one descends from
//!
//! On smol, with `futures::channel::mpsc` channels: three channels, one
//! client moved from channel 0 to 1 to 2, then a shutdown.
//!
//! ```
//! use bytes::Bytes;
//! use futures::channel::mpsc;
//! use futures::{AsyncWriteExt, SinkExt, StreamExt};
//! use stream_multiplexer::runtime::smol::incoming;
//! use stream_multiplexer::{ControlMessage, HalvesStream, IncomingPacket, Multiplexer, OutgoingPacket};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//! // 3 channels of incoming streams, 0 is the channel that new streams join.
//! // Backpressure is per channel. Streams can be moved between channels by
//! // sending an OutgoingPacket::ChangeChannel message.
//! let (channel0_tx, mut channel0_rx) = mpsc::channel(32);
//! let (channel1_tx, mut channel1_rx) = mpsc::channel(32);
//! let (channel2_tx, mut channel2_rx) = mpsc::channel(32);
//!
//! // A Stream for outgoing messages.
//! let (mut outgoing_tx, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(32);
//!
//! // Construct the multiplexer, giving it the OutgoingPacket stream, and a vector of incoming
//! // streams. The backlog controls how much of an internal buffer each WriteHalf (TcpSocket in this example) can have.
//! let outgoing_streams_backlog = 128;
//! let multiplexer = Multiplexer::new(
//!     outgoing_streams_backlog,
//!     outgoing_rx,
//!     vec![channel0_tx, channel1_tx, channel2_tx],
//! );
//!
//! // Bind to a random port on localhost
//! let socket = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!
//! let local_addr = socket.local_addr()?;
//!
//! // Use the HalvesStream utility struct to map the stream of new sockets.
//! // It will use a length-delimited codec with 2 bytes as the packet size.
//! let halves = HalvesStream::new(incoming(socket), 2);
//!
//! // Control channel for shutting down the multiplexer
//! let (control_write, control_read) = mpsc::unbounded();
//! let mp_joinhandle = smol::spawn(multiplexer.run(halves, control_read));
//!
//! // Make a test connection:
//! let mut client = async_net::TcpStream::connect(local_addr).await?;
//!
//! // Listen for the channel join announcement
//! let message = channel0_rx.next().await.expect("Should have connected.");
//! matches::assert_matches!(message, IncomingPacket::StreamConnected(_));
//!
//! // Send 'a message'
//! client.write_all(b"\x00\x09a message").await?;
//! client.flush().await?;
//!
//! // Receive 'a message' on channel 0
//! let incoming_packet = channel0_rx.next().await.unwrap();
//! assert_eq!(
//!     incoming_packet
//!         .value()
//!         .expect("should have a value")
//!         .as_ref()
//!         .unwrap(),
//!     &Bytes::from("a message")
//! );
//!
//! // Move the client to channel 1
//! outgoing_tx
//!     .send(OutgoingPacket::ChangeChannel(vec![incoming_packet.id()], 1))
//!     .await?;
//!
//! // Listen for the channel join announcement
//! let message = channel1_rx.next().await.expect("Should have connected.");
//! matches::assert_matches!(message, IncomingPacket::StreamConnected(_));
//!
//! // Send 'a message' again, on channel 1 this time.
//! client.write_all(b"\x00\x09a message").await?;
//! client.flush().await?;
//!
//! // Receive 'a message' on channel 1
//! let incoming_packet = channel1_rx.next().await.unwrap();
//! assert_eq!(
//!     incoming_packet
//!         .value()
//!         .expect("should have a value")
//!         .as_ref()
//!         .unwrap(),
//!     &Bytes::from("a message")
//! );
//!
//! // Move the client to channel 2
//! outgoing_tx
//!     .send(OutgoingPacket::ChangeChannel(vec![incoming_packet.id()], 2))
//!     .await?;
//!
//! // Listen for the channel join announcement
//! let message = channel2_rx.next().await.expect("Should have connected.");
//! matches::assert_matches!(message, IncomingPacket::StreamConnected(_));
//!
//! // Send 'a message' again, on channel 2 this time.
//! client.write_all(b"\x00\x09a message").await?;
//! client.flush().await?;
//!
//! // Receive 'a message' on channel 2
//! let incoming_packet = channel2_rx.next().await.unwrap();
//! assert_eq!(
//!     incoming_packet
//!         .value()
//!         .expect("should have a value")
//!         .as_ref()
//!         .unwrap(),
//!     &Bytes::from("a message")
//! );
//!
//! // Tell multiplexer to shut down
//! control_write.unbounded_send(ControlMessage::Shutdown)?;
//!
//! mp_joinhandle.await.unwrap();
//! # Ok(())
//! # })
//! # }
//! ```
//!
//! # Channels
//!
//! A channel is any [`Sink`](futures::Sink) of [`IncomingPacket`]s:
//! `futures::channel::mpsc::Sender` (as above), tokio's `PollSender`, a
//! flume sink... The crate's own [`batch::channel`] is the fastest choice:
//! it hands packets to the consumer in batches, with one lock and one
//! wake-up per batch instead of an allocation and a wake-up per packet.
//!
//! # Across cores
//!
//! One [`Run`] does its I/O on one core. The [`shard`] module has the
//! recipe for N: one multiplexer per core on one port, ids that never
//! collide ([`shard::ShardIds`]), and a [`shard::Router`] that sends each
//! packet to the shard holding its streams (`examples/sharded_echo.rs`).
//!
//! # Guarantees
//!
//! Numbered, so that the rest of these docs can cite them ("guarantee 6").
//!
//! 1. **Order per visit.** For every visit of a stream to a channel, the
//!    consumer sees [`StreamConnected`], then the stream's messages in the
//!    order they were read, then exactly one [`StreamDisconnected`]: nothing
//!    before the first or after the last, nothing lost or repeated.
//! 2. **Channel moves.** [`ChangeChannel`] loses and duplicates nothing, even
//!    mid-burst or under backpressure: guarantee 1 holds in both channels. A
//!    move to the stream's own channel changes nothing; a move to a channel
//!    that does not exist leaves the stream where it is and is counted.
//! 3. **Outgoing packets in order.** Packets take effect in the order the
//!    outgoing stream yields them: [`Message`] then [`Shutdown`] delivers the
//!    message, then closes the connection (unless guarantee 10 evicts it).
//! 4. **Departed ids.** A packet for an id that is gone is dropped and
//!    counted. No new stream gets an id while an older stream holding it is
//!    alive, so a late packet never reaches another stream.
//! 5. **Backpressure per channel.** While channel *k*'s sink is not ready, no
//!    reader of channel *k* is polled, and other channels go on. Its
//!    announcements wait in order; none is ever dropped.
//! 6. **Slow clients.** Each stream's backlog holds `sender_buffer_size`
//!    values. Only a client whose socket refuses bytes *and* whose backlog is
//!    full is disconnected ([`BacklogFull`]); a burst to a client whose
//!    socket has room is written out. Under the default [`BacklogPolicy`], a
//!    slow client never blocks the outgoing stream.
//! 7. **Bounded work per poll.** One poll of [`Run`] does a bounded amount of
//!    work, then wakes itself and returns `Pending`. Within a channel, a
//!    chatty stream cannot starve a quiet one.
//! 8. **Failures stay local.** A failed accept is counted; serving goes on. A
//!    stream whose reader ends or errors delivers what it read, then leaves
//!    with [`Linkdead`], as does one whose write fails. A client that only
//!    half-closed still gets what was queued for it (and, with a clock, what
//!    is sent to it until the application closes it: see 14). A channel
//!    sink that closes or fails closes its streams (counted); other
//!    channels go on.
//! 9. **Codec bounds.** The [`codec`]s check a frame's length against their
//!    maximum before buffering it (for [`LengthDelimitedCodec`], 8 MiB by
//!    default). A frame too long for the length field is an encode error,
//!    never a silent truncation.
//! 10. **Stream limit.** At [`max_streams`], `Run` stops accepting until a
//!     stream leaves. A stream that has left its channel (closed by
//!     `Shutdown`, or half-closed by its client) no longer counts while it
//!     flushes; a newcomer over the limit evicts the one that left longest
//!     ago.
//! 11. **Shutdown and abort.** [`ControlMessage::Shutdown`] (or the end of
//!     the control stream) stops accepting and reading, flushes what is
//!     queued, closes every connection and resolves `Ok(())`.
//!     [`ControlMessage::Abort`] closes them and resolves at once, unflushed.
//! 12. **Everything is counted.** Nothing from the network ends `Run` or
//!     makes it panic. Whatever is not delivered is counted in the [`Stats`]
//!     of [`Multiplexer::stats`]: see [`StatsSnapshot`] for what.
//! 13. **Memory bounds.** Per stream: a backlog of `sender_buffer_size`
//!     values, a write buffer of 16 KiB (by default) plus at most one frame, a read buffer bounded by
//!     the codec's maximum frame; idle connections hold no buffers. The
//!     kernel's socket buffers are outside (see RELIABILITY.md in the repository).
//! 14. **Time limits (with a [`Clock`]).** With a clock given to the
//!     builder, a stream that completes no frame for the [idle timeout]
//!     leaves with [`IdleTimeout`]; one whose socket takes no bytes for the
//!     [write timeout] while values wait is dropped ([`WriteTimeout`]). The
//!     write timeout bounds every flush: after `Shutdown`, after the client
//!     half-closed, at graceful shutdown. A stream that left with
//!     `IdleTimeout` or `Linkdead` (a half-close) can still be sent a last
//!     word, moved and closed by the application until the write timeout
//!     has passed. Checking deadlines costs nothing per connection while no
//!     deadline is near. With no clock, nothing is timed.
//! 15. **Rooms.** A stream may be in any number of [rooms](Rooms), whatever
//!     its channel ([`Join`], [`Leave`]). A message to a room reaches each
//!     member once (optionally all but one, the sender), with one shared
//!     value and no list of ids; a member leaves every room as soon as its
//!     departure is announced, so no room holds a stale member.
//! 16. **Delivery classes.** Per message ([`Delivery`]): *reliable* (the
//!     default; guarantee 6), *volatile* (dropped and counted for a client
//!     whose backlog is full, never a disconnect), or *latest by key*
//!     (replaces a value of the same key still waiting in a backlog, in its
//!     place: a slow reader gets the newest, never a queue of stale ones).
//!
//! [`StreamConnected`]: IncomingPacket::StreamConnected
//! [`StreamDisconnected`]: IncomingPacket::StreamDisconnected
//! [`ChangeChannel`]: OutgoingPacket::ChangeChannel
//! [`Message`]: OutgoingPacket::Message
//! [`Shutdown`]: OutgoingPacket::Shutdown
//! [`BacklogFull`]: DisconnectReason::BacklogFull
//! [`Linkdead`]: DisconnectReason::Linkdead
//! [`Join`]: OutgoingPacket::Join
//! [`Leave`]: OutgoingPacket::Leave
//! [`LengthDelimitedCodec`]: codec::LengthDelimitedCodec
//! [`max_streams`]: MultiplexerBuilder::max_streams
//! [`IdleTimeout`]: DisconnectReason::IdleTimeout
//! [`WriteTimeout`]: DisconnectReason::WriteTimeout
//! [idle timeout]: MultiplexerBuilder::idle_timeout
//! [write timeout]: MultiplexerBuilder::write_timeout

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

#[cfg(feature = "redis")]
pub mod backplane;
pub mod batch;
mod channel;
mod clock;
pub mod codec;
mod config;
mod error;
pub mod framed;
mod halves;
#[cfg(any(feature = "websocket", feature = "tls"))]
mod handshakes;
mod id_gen;
#[cfg(feature = "metrics")]
mod meters;
mod multiplexer;
mod packet;
mod reader;
mod registry;
mod rooms;
mod run;
pub mod runtime;
pub mod shard;
mod stats;
mod timer_wheel;
#[cfg(feature = "tls")]
pub mod tls;
mod wake;
#[cfg(feature = "websocket")]
pub mod websocket;
mod writer;

pub use clock::Clock;
pub use config::BacklogPolicy;
pub use error::MultiplexerError;
pub use halves::{HalvesStream, HalvesStreamBuilder, IntoHalves, Locked};
pub use id_gen::{IdGen, IncrementIdGen};
pub use multiplexer::{Multiplexer, MultiplexerBuilder};
#[allow(deprecated)]
pub use packet::Iter;
pub use packet::{
    ChannelId, ControlMessage, Delivery, DisconnectReason, IncomingMessage, IncomingPacket,
    OutgoingMessage, OutgoingPacket, PacketItems, RoomName, StreamId,
};
pub use rooms::Rooms;
pub use run::Run;
pub use stats::{DisconnectCounts, Stats, StatsSnapshot};
