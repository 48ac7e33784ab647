//! WebSocket connections as halves for the multiplexer (feature
//! `websocket`).
//!
//! [`accept`] turns a stream of accepted connections (TCP from any
//! [runtime adapter](crate::runtime), or TLS from [`tls`](crate::tls) for
//! `wss://`) into a stream of `(`[`WsWrite`]`, `[`WsRead`]`)` halves, which
//! [`Multiplexer::run`](crate::Multiplexer::run) takes as it takes framed
//! TCP halves. The values both ways are [`WsMessage`]s: text or binary,
//! each backed by shared bytes, so a message sent to many clients is not
//! copied for each.
//!
//! What the halves do with the protocol's control frames:
//!
//! - **Handshakes** run concurrently, at most 256 at once and each within
//!   10 s (both can be set on the [`Acceptor`]), timed by a
//!   [`Clock`](crate::Clock) of the acceptor's own: a client that opens a
//!   connection and trickles its upgrade request delays nobody and is
//!   dropped at its deadline. A request that is not a WebSocket upgrade is
//!   answered with an HTTP error and closed. See [`Accept`].
//! - **Pings** are answered with pongs by the reader, as it reads them,
//!   even while the server sends nothing.
//! - **Close**: a close frame from a client ends its reader (the
//!   multiplexer then sees it leave); [`OutgoingPacket::Shutdown`] closes
//!   the write half, which performs the close handshake (close frame, the
//!   client's reply, then the connection closed), bounded by the
//!   multiplexer's write timeout.
//! - **Limits**: a message, and each frame, is checked against the maximum
//!   size (8 MiB by default, [`Acceptor::max_message_size`]) before it is
//!   buffered; a client over it is sent close code 1009 and dropped.
//!   Invalid UTF-8 in a text message gets 1007, any other protocol
//!   violation 1002.
//!
//! [`OutgoingPacket::Shutdown`]: crate::OutgoingPacket::Shutdown
//!
//! # Memory
//!
//! An idle connection holds tungstenite's state, a read buffer of
//! [`read_buffer_size`](Acceptor::read_buffer_size) bytes (512 by
//! default; tungstenite's own default is 128 KiB, which is what makes
//! WebSocket servers costly per connection), and no write buffer: frames
//! are gathered only until the sink is flushed. A connection that is
//! sending reads its socket 8 KiB at a time into a buffer of its own, from
//! which tungstenite's small reads are served, and gives that buffer back
//! once the socket has nothing more. tungstenite keeps the
//! capacity its buffers grew to: after a client sent or was sent a large
//! message, its connection holds about that much until it closes.
//!
//! # Why async-tungstenite
//!
//! The protocol comes from a maintained crate, never written here. Of the
//! two runtime-agnostic ones over `futures-io`:
//!
//! - **async-tungstenite** (chosen) wraps tungstenite, the most used Rust
//!   WebSocket implementation, and is released in step with it. Used with
//!   no runtime feature, it works on any futures-io connection. Its
//!   stream is poll-based (`Stream` and `Sink`), so the halves need no
//!   boxed future per message. tungstenite validates UTF-8, answers pings
//!   and close frames itself, checks frame and message sizes before
//!   buffering, and lets every buffer size be set, which is what brings an
//!   idle connection down to a few hundred bytes of buffers.
//! - **soketto** allocates nothing up front either, but its API is `async
//!   fn`s borrowing the connection (each message would be a boxed future
//!   to poll from a `Stream`), its halves share a lock on every call, and
//!   it is released less often.
//!
//! # Examples
//!
//! A multiplexer serving WebSocket clients, and one client that sends a
//! text and a binary message, gets a reply, and is closed by the server.
//!
//! ```
//! use std::time::Duration;
//!
//! use futures::channel::mpsc;
//! use futures::{SinkExt, StreamExt};
//! use async_tungstenite::tungstenite::Message;
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::websocket::{self, WsMessage};
//! use stream_multiplexer::{
//!     ControlMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let (channel0, mut lobby) = mpsc::channel(32);
//!     let (mut outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<WsMessage>>(32);
//!     let multiplexer = Multiplexer::new(128, outgoing_rx, vec![channel0]);
//!
//!     let listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!     let address = listener.local_addr()?;
//!     let halves = websocket::accept(incoming(listener), clock(Duration::from_millis(500)));
//!     let (control, control_rx) = mpsc::unbounded();
//!     let server = smol::spawn(multiplexer.run(halves, control_rx));
//!
//!     // A client, with async-tungstenite's client over a smol TCP stream.
//!     let tcp = async_net::TcpStream::connect(address).await?;
//!     let (mut client, _response) =
//!         async_tungstenite::client_async(format!("ws://{address}/"), tcp).await?;
//!     let id = match lobby.next().await {
//!         Some(IncomingPacket::StreamConnected(id)) => id,
//!         other => panic!("expected a connection, got {other:?}"),
//!     };
//!
//!     client.send(Message::text("hello")).await?;
//!     client.send(Message::binary(vec![1, 2, 3])).await?;
//!     for expected in [WsMessage::from("hello"), WsMessage::from(vec![1, 2, 3])] {
//!         let packet = lobby.next().await.expect("a message");
//!         assert_eq!(packet.value().expect("a value").as_ref().ok(), Some(&expected));
//!     }
//!
//!     let welcome = OutgoingMessage::new([id], [WsMessage::from("welcome")]);
//!     outgoing.send(OutgoingPacket::Message(welcome)).await?;
//!     assert_eq!(client.next().await.transpose()?, Some(Message::text("welcome")));
//!
//!     // The server closes: the client sees the close frame; its next read
//!     // sends the reply, which completes the close handshake, and the
//!     // server then closes the connection.
//!     outgoing.send(OutgoingPacket::Shutdown(vec![id])).await?;
//!     assert!(matches!(client.next().await.transpose()?, Some(Message::Close(_))));
//!     assert!(client.next().await.is_none());
//!
//!     control.unbounded_send(ControlMessage::Shutdown)?;
//!     server.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # One multiplexer, several transports
//!
//! A multiplexer takes one stream of halves, whose writers take one value
//! type and whose readers yield one item type. Halves of different
//! transports are brought together with [`futures::future::Either`], which
//! is a sink and a stream when both sides are, with the same value and
//! item types; [`futures::stream::select`] merges the two streams of
//! halves. [`WsWrite`] takes anything that converts into a [`WsMessage`],
//! so a value type the other transport's writer takes will do: [`Bytes`]
//! beside a length-delimited [`FramedWrite`](crate::framed::FramedWrite)
//! (sent to WebSocket clients as binary), or [`Utf8Bytes`] beside a
//! [`LinesCodec<Utf8Bytes>`](crate::codec::LinesCodec) (sent as text, for
//! a chat with `nc` and browser users in the same room). The readers are
//! mapped to one item type.
//!
//! [`Bytes`]: bytes::Bytes
//!
//! ```
//! use std::io;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use futures::channel::mpsc;
//! use futures::future::Either;
//! use futures::{StreamExt, TryStreamExt};
//! use stream_multiplexer::runtime::smol::{clock, incoming};
//! use stream_multiplexer::websocket::{self, WsMessage};
//! use stream_multiplexer::{HalvesStream, IncomingPacket, Multiplexer, OutgoingPacket};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let tcp_listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!     let ws_listener = async_net::TcpListener::bind("127.0.0.1:0").await?;
//!
//!     // Length-delimited TCP clients: their frames become binary messages.
//!     let tcp = HalvesStream::new(incoming(tcp_listener), 2).map_ok(|(write, read)| {
//!         let read = read.map_ok(WsMessage::Binary as fn(Bytes) -> WsMessage);
//!         (Either::Left(write), Either::Left(read))
//!     });
//!     let ws = websocket::accept(incoming(ws_listener), clock(Duration::from_secs(1)))
//!         .map_ok(|(write, read)| (Either::Right(write), Either::Right(read)));
//!     let halves = futures::stream::select(tcp, ws);
//!
//!     // Values are `Bytes`, which both writers take.
//!     let (channel0, _lobby) = mpsc::channel::<IncomingPacket<io::Result<WsMessage>>>(32);
//!     let (_outgoing, outgoing_rx) = mpsc::channel::<OutgoingPacket<Bytes>>(32);
//!     let multiplexer = Multiplexer::new(128, outgoing_rx, vec![channel0]);
//!     let (_control, control_rx) = mpsc::unbounded();
//!     let _server = multiplexer.run(halves, control_rx);
//!     Ok(())
//! })
//! # }
//! ```

mod accept;
mod halves;
mod message;
mod read_burst;
mod write_buffer;

pub use accept::{Accept, Acceptor, accept};
pub use async_tungstenite::tungstenite::Utf8Bytes;
pub use halves::{WsRead, WsWrite};
pub use message::WsMessage;
