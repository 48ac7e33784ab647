//! The same real-TCP scenarios under every supported executor: smol,
//! async-std, tokio (multi-thread) and `futures::executor::ThreadPool`.
//! Each scenario is written once, as a function of a [`Runtime`] (the
//! executors and their adapters are in `tcp::runtime`), and instantiated per
//! executor by `scenarios!`.

#![cfg(all(feature = "smol", feature = "async-std", feature = "tokio"))]

mod tcp;

use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use stream_multiplexer::{DisconnectReason, IncomingPacket};
use tcp::client::Client;
use tcp::runtime::{AsyncStd, Runtime, Smol, ThreadPool, Tokio};
use tcp::server::{Packet, Server, ServerSetup, assert_announcement, payload};
use tcp::{SAFETY_TIMEOUT, within_safety_timeout};

/// The seed's example over real TCP: connect, send, move 0 → 1 → 2, shut
/// down.
fn seed_example(runtime: &dyn Runtime) {
    let mut server = Server::start(runtime, ServerSetup::default());
    let (mut client, id) = server.connect();
    for channel in 0..3 {
        if channel > 0 {
            server.change_channel(vec![id], channel);
            assert_announcement(&server.next(channel), IncomingPacket::StreamConnected(id));
        }
        client.send(b"a message");
        assert_eq!(payload(&server.next(channel), id), Bytes::from("a message"));
    }
    server.shutdown();
    assert_eq!(server.finished(), Ok(()));
    assert_eq!(client.recv(), None, "the connection was closed");
}

/// One message to 100 clients reaches each of them.
fn broadcast_reaches_every_client(runtime: &dyn Runtime) {
    let mut server = Server::start(runtime, ServerSetup::default());
    let (mut clients, ids): (Vec<Client>, Vec<_>) = (0..100).map(|_| server.connect()).unzip();
    for round in 0..3u8 {
        server.send(ids.iter().copied(), Bytes::from(vec![round; 32]));
    }
    for client in &mut clients {
        for round in 0..3u8 {
            assert_eq!(client.recv(), Some(vec![round; 32]));
        }
    }
}

/// A move in the middle of a 2,000-frame burst loses and duplicates
/// nothing.
fn move_mid_burst_keeps_every_frame_once(runtime: &dyn Runtime) {
    let mut server = Server::start(
        runtime,
        ServerSetup {
            channels: vec![1, 4096],
            ..ServerSetup::default()
        },
    );
    let (mut client, id) = server.connect();
    let frames: Vec<[u8; 4]> = (0..2_000u32).map(u32::to_be_bytes).collect();
    client.send_all(frames.iter().map(|f| &f[..]));

    let number = |packet: &Packet| {
        let bytes = payload(packet, id);
        u32::from_be_bytes(bytes[..].try_into().expect("4 bytes"))
    };
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(number(&server.next(0)));
    }
    server.change_channel(vec![id], 1);
    loop {
        match server.next(0) {
            IncomingPacket::StreamDisconnected(i, DisconnectReason::ChannelChange(1))
                if i == id =>
            {
                break;
            }
            packet => seen.push(number(&packet)),
        }
    }
    assert_announcement(&server.next(1), IncomingPacket::StreamConnected(id));
    while seen.len() < 2_000 {
        seen.push(number(&server.next(1)));
    }
    assert_eq!(seen, (0..2_000).collect::<Vec<_>>());
}

/// A stalled channel 0 does not slow channel 1.
fn stalled_channel_does_not_slow_another(runtime: &dyn Runtime) {
    let mut server = Server::start(
        runtime,
        ServerSetup {
            channels: vec![1, 32],
            ..ServerSetup::default()
        },
    );
    let (mut player, player_id) = server.connect();
    server.change_channel(vec![player_id], 1);
    assert_announcement(&server.next(1), IncomingPacket::StreamConnected(player_id));

    // A flood into channel 0, whose consumer never reads again.
    let mut flooder = Client::connect(server.address, server.framing);
    let junk = [0u8; 32];
    flooder.send_all(std::iter::repeat_n(&junk[..], 10_000));

    let frames: Vec<[u8; 4]> = (0..2_000u32).map(u32::to_be_bytes).collect();
    player.send_all(frames.iter().map(|f| &f[..]));
    for expected in 0..2_000u32 {
        let packet = server.next(1);
        assert_eq!(
            payload(&packet, player_id),
            Bytes::copy_from_slice(&expected.to_be_bytes())
        );
    }
    assert!(
        server.stats.snapshot().frames_in < 2_000 + 10_000,
        "channel 0 stayed stalled"
    );
}

/// A client that never reads is disconnected with `BacklogFull`, while
/// another receives everything.
fn a_client_that_never_reads_is_disconnected(runtime: &dyn Runtime) {
    let mut server = Server::start(
        runtime,
        ServerSetup {
            sender_buffer_size: 8,
            ..ServerSetup::default()
        },
    );
    let (_sleeper, sleeper_id) = server.connect();
    let (mut reader, reader_id) = server.connect();
    let (received, receipts) = std_mpsc::channel();
    let reading = std::thread::spawn(move || {
        while let Some(frame) = reader.recv() {
            if received.send(frame.len()).is_err() {
                break;
            }
        }
    });
    // 60 KB frames, one per round, paced by the reader, until the sleeper's
    // socket buffers and backlog overflow.
    let frame = Bytes::from(vec![7u8; 60_000]);
    let mut disconnected = false;
    for _round in 0..2_000 {
        server.send([sleeper_id, reader_id], frame.clone());
        assert_eq!(receipts.recv_timeout(SAFETY_TIMEOUT), Ok(60_000));
        if let Ok(packet) = server.channels[0].try_recv() {
            assert_announcement(
                &packet,
                IncomingPacket::StreamDisconnected(sleeper_id, DisconnectReason::BacklogFull),
            );
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "the sleeper was never disconnected");
    // The reader still gets what follows.
    server.send([reader_id], Bytes::from_static(b"still here"));
    assert_eq!(receipts.recv_timeout(SAFETY_TIMEOUT), Ok(10));
    drop(receipts);
    server.close(vec![reader_id]);
    reading.join().expect("reader thread");
}

/// `Shutdown` writes every queued frame before closing.
fn shutdown_flushes_queued_frames(runtime: &dyn Runtime) {
    let mut server = Server::start(
        runtime,
        ServerSetup {
            sender_buffer_size: 2_000,
            ..ServerSetup::default()
        },
    );
    let (mut client, id) = server.connect();
    for n in 0..1_000u32 {
        server.send([id], Bytes::copy_from_slice(&n.to_be_bytes()));
    }
    server.shutdown();
    for n in 0..1_000u32 {
        assert_eq!(client.recv(), Some(n.to_be_bytes().to_vec()));
    }
    assert_eq!(client.recv(), None);
    assert_eq!(server.finished(), Ok(()));
}

macro_rules! scenarios {
    ($($runtime:ident => $module:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn seed_example() {
                within_safety_timeout(|| super::seed_example(&$runtime));
            }

            #[test]
            fn broadcast_reaches_every_client() {
                within_safety_timeout(|| super::broadcast_reaches_every_client(&$runtime));
            }

            #[test]
            fn move_mid_burst_keeps_every_frame_once() {
                within_safety_timeout(|| super::move_mid_burst_keeps_every_frame_once(&$runtime));
            }

            #[test]
            fn stalled_channel_does_not_slow_another() {
                within_safety_timeout(|| super::stalled_channel_does_not_slow_another(&$runtime));
            }

            #[test]
            fn a_client_that_never_reads_is_disconnected() {
                within_safety_timeout(|| super::a_client_that_never_reads_is_disconnected(&$runtime));
            }

            #[test]
            fn shutdown_flushes_queued_frames() {
                within_safety_timeout(|| super::shutdown_flushes_queued_frames(&$runtime));
            }
        }
    )*};
}

scenarios! {
    Smol => smol_runtime,
    AsyncStd => async_std_runtime,
    Tokio => tokio_runtime_multi_thread,
    ThreadPool => thread_pool,
}
