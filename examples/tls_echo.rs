//! An echo server over TLS: every length-delimited frame a client sends
//! comes back to it, encrypted.
//!
//! ```text
//! cargo run --example tls_echo --features tls,smol -- CERT.pem KEY.pem [ADDR]   # default 127.0.0.1:7880
//! printf '\x00\x05hello' | timeout 1 openssl s_client -quiet -connect 127.0.0.1:7880 | xxd
//! 00000000: 0005 6865 6c6c 6f                        ..hello
//! ```
//!
//! `CERT.pem` holds the certificate chain (the server's certificate first),
//! `KEY.pem` its private key. For a try on localhost, make a self-signed
//! pair with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
//! -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost
//! -keyout key.pem -out cert.pem`.
//!
//! Frames carry a 2-byte big-endian length prefix, as in the other echo
//! examples; only the stream of connections differs: `tls::accept` runs the
//! TLS handshakes (concurrently, at most 256 at once, each within 10 s on
//! its own clock) before `HalvesStream` frames the connections.

use std::error::Error;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use stream_multiplexer::runtime::smol::{clock, incoming};
use stream_multiplexer::{
    HalvesStream, IncomingMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
    tls,
};

/// Frames queued for one client before it is disconnected as too slow.
const BACKLOG_PER_CLIENT: usize = 64;
/// Packets waiting between the multiplexer and the echo task, each way.
const QUEUE: usize = 1024;
/// How often the handshake clock ticks: a tenth of the handshake timeout.
const HANDSHAKE_CLOCK_PERIOD: Duration = Duration::from_secs(1);

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cert), Some(key)) = (args.next(), args.next()) else {
        return Err("usage: tls_echo CERT.pem KEY.pem [ADDR]".into());
    };
    let address = args.next().unwrap_or_else(|| "127.0.0.1:7880".to_owned());
    let (chain, key) = tls::load_pem(&cert, &key)
        .map_err(|error| format!("cannot load {cert} and {key}: {error}"))?;
    let config = tls::server_config(chain, key)?;
    smol::block_on(serve(&address, config))
}

async fn serve(
    address: &str,
    config: std::sync::Arc<tls::rustls::ServerConfig>,
) -> Result<(), Box<dyn Error>> {
    let listener = async_net::TcpListener::bind(address).await?;
    println!("listening on {}", listener.local_addr()?);

    let (channel, mut packets) = mpsc::channel(QUEUE);
    let (mut replies, outgoing) = mpsc::channel(QUEUE);
    smol::spawn(async move {
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
    })
    .detach();

    let multiplexer = Multiplexer::new(BACKLOG_PER_CLIENT, outgoing, vec![channel]);
    let stats = multiplexer.stats();
    // Failed handshakes (and timed-out ones) are counted as failed accepts.
    let connections = tls::accept(incoming(listener), config, clock(HANDSHAKE_CLOCK_PERIOD));
    let halves = HalvesStream::new(connections, 2);
    // The control stream never ends: the server runs until it is killed.
    let served = multiplexer.run(halves, stream::pending()).await;
    eprintln!("failed handshakes: {}", stats.snapshot().accept_errors);
    served?;
    Ok(())
}
