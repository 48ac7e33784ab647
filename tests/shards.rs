//! Several multiplexers behind one port, each on a thread of its own: ids
//! never collide, and the application reaches any stream, or a room that
//! spans the shards, through a `Router` without knowing where a stream
//! lives. Real TCP, `SO_REUSEPORT` listeners.

#![cfg(all(feature = "smol", unix))]

mod tcp;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::executor::block_on;
use futures::{SinkExt, StreamExt, stream};
use stream_multiplexer::runtime::smol::{bind_reuse_port, incoming};
use stream_multiplexer::shard::{Router, ShardIds, shard_of};
use stream_multiplexer::{
    ControlMessage, HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket, StreamId,
};
use tcp::client::Client;
use tcp::framing::Framing;

const SHARDS: usize = 2;
const CLIENTS: usize = 40;
const FRAMING: Framing = Framing::LengthDelimited { width: 2 };

type Packet = IncomingPacket<io::Result<Bytes>>;

/// `SHARDS` multiplexers on one port.
struct Shards {
    address: SocketAddr,
    router: Router<mpsc::UnboundedSender<OutgoingPacket<Bytes>>>,
    controls: Vec<mpsc::UnboundedSender<ControlMessage>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `SHARDS` multiplexers on one port, one thread each, all feeding
/// the one `lobby` consumer.
fn start(lobby: mpsc::Sender<Packet>) -> Shards {
    let mut address: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut outputs, mut controls, mut threads) = (Vec::new(), Vec::new(), Vec::new());
    for shard in 0..SHARDS {
        let listener = bind_reuse_port(address, 1024).expect("bind");
        address = listener.local_addr().expect("address");
        let (output, outgoing) = mpsc::unbounded();
        let (control, control_rx) = mpsc::unbounded();
        outputs.push(output);
        controls.push(control);
        let lobby = lobby.clone();
        threads.push(std::thread::spawn(move || {
            let multiplexer = MultiplexerBuilder::new(64)
                .id_gen(ShardIds::new(shard, SHARDS))
                .build(outgoing, vec![lobby]);
            let halves = HalvesStream::new(incoming(listener), 2);
            smol::block_on(multiplexer.run(halves, control_rx)).expect("run");
        }));
    }
    Shards {
        address,
        router: Router::new(outputs),
        controls,
        threads,
    }
}

#[test]
fn the_router_reaches_every_stream_and_every_room_member_across_shards() {
    tcp::within_safety_timeout(|| {
        let (lobby, mut lobby_rx) = mpsc::channel::<Packet>(1024);
        let Shards {
            address,
            mut router,
            controls,
            threads,
        } = start(lobby);
        let mut clients: Vec<Client> = (0..CLIENTS)
            .map(|_| Client::connect(address, FRAMING))
            .collect();
        for (index, client) in clients.iter_mut().enumerate() {
            client.send(format!("{index}").as_bytes());
        }

        // Which id each client got, from its first frame.
        let mut ids: HashMap<usize, StreamId> = HashMap::new();
        block_on(async {
            while ids.len() < CLIENTS {
                if let Some(IncomingPacket::Message(message)) = lobby_rx.next().await {
                    let text = message.value.expect("a frame");
                    let index: usize = std::str::from_utf8(&text).unwrap().parse().unwrap();
                    ids.insert(index, message.stream_id);
                }
            }
        });
        let distinct: HashSet<StreamId> = ids.values().copied().collect();
        assert_eq!(distinct.len(), CLIENTS, "no id given twice across shards");

        block_on(async {
            // One message to each stream, through the router, by id alone.
            for (&index, &id) in &ids {
                let reply = OutgoingMessage::new([id], [Bytes::from(format!("you are {index}"))]);
                router.send(OutgoingPacket::Message(reply)).await.unwrap();
            }
            // Everyone in one room, wherever they live; a message to it.
            let everyone: Vec<StreamId> = ids.values().copied().collect();
            router
                .send(OutgoingPacket::Join(everyone, "all".into()))
                .await
                .unwrap();
            let hello = OutgoingMessage::to_room("all", [Bytes::from_static(b"hello all")]);
            router.send(OutgoingPacket::Message(hello)).await.unwrap();
        });
        for (index, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.recv(), Some(format!("you are {index}").into_bytes()));
            assert_eq!(client.recv(), Some(b"hello all".to_vec()), "client {index}");
        }
        let shards_used: HashSet<usize> = ids.values().map(|&id| shard_of(id, SHARDS)).collect();
        eprintln!("{CLIENTS} clients over shards {shards_used:?}");

        for control in controls {
            control.unbounded_send(ControlMessage::Shutdown).unwrap();
        }
        drop(clients);
        block_on(async { while lobby_rx.next().await.is_some() {} });
        for thread in threads {
            thread.join().expect("shard thread");
        }
    });
}

#[test]
fn a_packet_for_one_shard_reaches_no_other() {
    let (shard_0, mut shard_0_rx) = mpsc::unbounded::<OutgoingPacket<u8>>();
    let (shard_1, mut shard_1_rx) = mpsc::unbounded::<OutgoingPacket<u8>>();
    let mut router = Router::new(vec![shard_0, shard_1]);
    block_on(async {
        router
            .send(OutgoingPacket::Shutdown(vec![4, 6]))
            .await
            .unwrap();
        router
            .send(OutgoingPacket::ChangeChannel(vec![7], 1))
            .await
            .unwrap();
    });
    drop(router);
    let to_0: Vec<_> = block_on(stream::poll_fn(|cx| shard_0_rx.poll_next_unpin(cx)).collect());
    let to_1: Vec<_> = block_on(stream::poll_fn(|cx| shard_1_rx.poll_next_unpin(cx)).collect());
    assert_eq!(to_0, [OutgoingPacket::Shutdown(vec![4, 6])]);
    assert_eq!(to_1, [OutgoingPacket::ChangeChannel(vec![7], 1)]);
}
