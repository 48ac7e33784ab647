//! An echo server on every core: one multiplexer per core, all on one port.
//!
//! ```text
//! cargo run --example sharded_echo                 # 127.0.0.1:7880, one shard per core
//! cargo run --example sharded_echo -- 127.0.0.1:0 4 # any free port, four shards
//! ```
//!
//! Each shard is a thread with its own multiplexer and its own
//! `SO_REUSEPORT` listener on the same address, so the kernel spreads new
//! connections over the shards and no connection ever crosses a thread.
//! Their ids come from `ShardIds`, so no two shards hand out the same id;
//! one consumer hears every shard (their channel sinks are clones of one
//! sender), and answers through a `Router`, which sends each reply to the
//! shard that holds its stream. Frames are length-delimited with a 2-byte
//! prefix: `printf '\0\5hello' | nc -q 1 127.0.0.1 7880 | od -c`.

use std::error::Error;
use std::net::SocketAddr;
use std::thread;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use stream_multiplexer::runtime::smol::{bind_reuse_port, incoming};
use stream_multiplexer::shard::{Router, ShardIds};
use stream_multiplexer::{
    HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage, OutgoingPacket,
};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut address: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:7880").parse()?;
    let shards = match args.next() {
        Some(n) => n.parse()?,
        None => thread::available_parallelism().map_or(1, usize::from),
    };

    let (frames, mut frames_rx) = mpsc::channel::<IncomingPacket<std::io::Result<Bytes>>>(4096);
    let mut outputs = Vec::new();
    for shard in 0..shards {
        let listener = bind_reuse_port(address, 1024)?;
        address = listener.local_addr()?;
        let (output, outgoing) = mpsc::channel::<OutgoingPacket<Bytes>>(4096);
        outputs.push(output);
        let frames = frames.clone();
        thread::spawn(move || {
            let multiplexer = MultiplexerBuilder::new(128)
                .id_gen(ShardIds::new(shard, shards))
                .build(outgoing, vec![frames]);
            let halves = HalvesStream::new(incoming(listener), 2);
            // Runs until the process is stopped.
            let _ = smol::block_on(multiplexer.run(halves, stream::pending()));
        });
    }
    drop(frames);
    println!("listening on {address} with {shards} shards");

    let mut router = Router::new(outputs);
    smol::block_on(async {
        while let Some(packet) = frames_rx.next().await {
            if let IncomingPacket::Message(message) = packet
                && let Ok(frame) = message.value
            {
                let echo = OutgoingMessage::new([message.stream_id], [frame]);
                if router.send(OutgoingPacket::Message(echo)).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(())
}
