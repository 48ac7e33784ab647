//! An echo server on tokio: every frame a client sends comes back to it.
//!
//! ```text
//! cargo run --example echo_tokio --features tokio [-- ADDR]   # default 127.0.0.1:7879
//! printf '\x00\x05hello' | timeout 1 nc 127.0.0.1 7879 | xxd
//! 00000000: 0005 6865 6c6c 6f                        ..hello
//! ```
//!
//! (`timeout` rather than `nc -q`/`-N`: the multiplexer closes a connection
//! as soon as its reading side ends, with whatever had not been written to
//! it yet, so a client that half-closes at once gets no echo.)
//!
//! Frames carry a 2-byte big-endian length prefix. This shows the tokio
//! adapter: `runtime::tokio::incoming` turns a `tokio::net::TcpListener`
//! into the stream of connections that `HalvesStream` frames, the channel
//! is a `tokio::sync::mpsc` sender wrapped in `PollSender` (which makes it
//! a `Sink`), and the outgoing stream is a `tokio::sync::mpsc` receiver.

use std::error::Error;

use futures::stream;
use stream_multiplexer::runtime::tokio::incoming;
use stream_multiplexer::{
    HalvesStream, IncomingMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// Frames queued for one client before it is disconnected as too slow.
const BACKLOG_PER_CLIENT: usize = 64;
/// Packets waiting between the multiplexer and the echo task, each way.
const QUEUE: usize = 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7879".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);

    let (channel, mut packets) = mpsc::channel(QUEUE);
    let (replies, mut outgoing) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        while let Some(packet) = packets.recv().await {
            match packet {
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Ok(frame),
                }) => {
                    let echo = OutgoingMessage::new([stream_id], [frame]);
                    if replies.send(OutgoingPacket::Message(echo)).await.is_err() {
                        return;
                    }
                }
                // A frame over the codec's maximum (8 MiB by default); the
                // multiplexer closes the connection.
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Err(error),
                }) => eprintln!("client {stream_id}: {error}"),
                IncomingPacket::StreamConnected(id) => eprintln!("client {id} connected"),
                IncomingPacket::StreamDisconnected(id, reason) => {
                    eprintln!("client {id} left ({reason:?})");
                }
            }
        }
    });

    // tokio's receiver is not a `Stream`; `poll_fn` makes it one without
    // another dependency (tokio-stream's `ReceiverStream` would do too).
    let outgoing = stream::poll_fn(move |cx| outgoing.poll_recv(cx));
    let multiplexer =
        Multiplexer::new(BACKLOG_PER_CLIENT, outgoing, vec![PollSender::new(channel)]);
    let halves = HalvesStream::new(incoming(listener), 2);
    // The control stream never ends: the server runs until it is killed.
    // Unconstrained: `Run` serves every connection from this one task and
    // bounds its own work per poll; tokio's per-task budget of 128 I/O
    // operations would leave some clients waiting (runtime::tokio's docs).
    tokio::task::unconstrained(multiplexer.run(halves, stream::pending())).await?;
    Ok(())
}
