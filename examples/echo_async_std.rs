//! An echo server on async-std: every frame a client sends comes back to it.
//!
//! ```text
//! cargo run --example echo_async_std --features async-std [-- ADDR]   # default 127.0.0.1:7879
//! printf '\x00\x05hello' | timeout 1 nc 127.0.0.1 7879 | xxd
//! 00000000: 0005 6865 6c6c 6f                        ..hello
//! ```
//!
//! (`timeout` rather than `nc -q`/`-N`: the multiplexer closes a connection
//! as soon as its reading side ends, with whatever had not been written to
//! it yet, so a client that half-closes at once gets no echo.)
//!
//! Frames carry a 2-byte big-endian length prefix. This shows the
//! async-std adapter: `runtime::async_std::incoming` turns an
//! `async_std::net::TcpListener` into the stream of connections that
//! `HalvesStream` frames; the channel and the outgoing stream are
//! `futures::channel::mpsc`, which work on every runtime.

use std::error::Error;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use stream_multiplexer::runtime::async_std::incoming;
use stream_multiplexer::{
    HalvesStream, IncomingMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
};

/// Frames queued for one client before it is disconnected as too slow.
const BACKLOG_PER_CLIENT: usize = 64;
/// Packets waiting between the multiplexer and the echo task, each way.
const QUEUE: usize = 1024;

fn main() -> Result<(), Box<dyn Error>> {
    async_std::task::block_on(serve())
}

async fn serve() -> Result<(), Box<dyn Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7879".to_owned());
    let listener = async_std::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);

    let (channel, mut packets) = mpsc::channel(QUEUE);
    let (mut replies, outgoing) = mpsc::channel(QUEUE);
    async_std::task::spawn(async move {
        while let Some(packet) = packets.next().await {
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

    let multiplexer = Multiplexer::new(BACKLOG_PER_CLIENT, outgoing, vec![channel]);
    let halves = HalvesStream::new(incoming(listener), 2);
    // The control stream never ends: the server runs until it is killed.
    multiplexer.run(halves, stream::pending()).await?;
    Ok(())
}
