//! Hostile clients over real loopback TCP: a declared 1 GiB frame, a client
//! that sends a byte at a time and stalls mid-frame, half-open and vanished
//! connections, a client that never reads during a broadcast flood, 10,000
//! connects and disconnects, and more clients than `max_streams`.
//!
//! Each test runs its attack against a multiplexer served in this process
//! (the smol adapter, 4-byte length prefixes, blocking `std` clients) and
//! checks three things: the attacker gets the outcome SPEC §4 promises, a
//! well-behaved client keeps being served all along, and the server's
//! memory stays bounded. Memory is read from this process's own
//! `/proc/self/status`, since the server runs here: a buffer grown for an
//! attacker shows in `VmRSS`, and one merely reserved (never touched) in
//! `VmPeak`, the peak of virtual memory.
//!
//! Nothing sleeps: every wait is on an event (a packet on the consumer, a
//! client's read), with `tcp::SAFETY_TIMEOUT` as a safety net only. The
//! tests run one at a time (`one_at_a_time`), since each reads the memory of
//! the whole process.

#![cfg(all(feature = "smol", target_os = "linux"))]

mod tcp;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use stream_multiplexer::{DisconnectReason, IncomingMessage, IncomingPacket, StreamId};
use tcp::client::Client;
use tcp::framing::Framing;
use tcp::runtime::Smol;
use tcp::server::{LOBBY, Server, ServerSetup};
use tcp::{SAFETY_TIMEOUT, within_safety_timeout};

/// Width of the length field: 4 bytes, wide enough to declare 1 GiB.
const WIDTH: usize = 4;
/// The codec's default maximum frame length (SPEC §4.9).
const MAX_FRAME_LENGTH: u32 = 8 * 1024 * 1024;
/// What the clients speak.
const FRAMING: Framing = Framing::LengthDelimited { width: WIDTH };

// ---------------------------------------------------------------------------
// The attacks

/// SPEC §4.9, §4.8: a client declaring a 1 GiB frame (above the 8 MiB
/// maximum) is disconnected as soon as its length field arrives: its reader
/// yields an `InvalidData` error, then `Linkdead`, and its connection is
/// closed. Nothing of the declared size is reserved, let alone touched.
#[test]
fn declared_gibibyte_frame_disconnects_the_client_without_allocating() {
    const ATTACKERS: u64 = 32;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();
        server.round_trip(&mut good, good_id, "warm-up");
        let before = Memory::now();

        for attacker in 0..ATTACKERS {
            let mut evil = Client::connect(server.address, server.framing);
            let id = server.connected();
            // 1 GiB declared, then the first 4 KiB of it.
            let mut wire = (1u32 << 30).to_be_bytes().to_vec();
            wire.resize(WIDTH + 4096, 0xAB);
            evil.write(&wire);
            assert_eq!(server.error_from(id), io::ErrorKind::InvalidData);
            server.disconnected(id, DisconnectReason::Linkdead);
            assert_eq!(
                evil.drain(),
                (vec![], 0),
                "the attacker's connection is closed"
            );
            server.round_trip(
                &mut good,
                good_id,
                &format!("served after attack {attacker}"),
            );
        }

        // 32 GiB declared in all: a reservation of even one would show in
        // the peak.
        before.assert_growth_within("32 clients declaring 1 GiB", 16, 256);
        let stats = server.stats.snapshot();
        assert_eq!(stats.disconnects.linkdead, ATTACKERS);
        assert_eq!(stats.streams_open, 1);
        assert_eq!(stats.accepted, stats.streams_open + stats.departed());
        server.stop();
    });
}

/// SPEC §4.9, §4.7: a client that sends a frame one byte at a time and then
/// stalls in the middle of it holds up nobody: a well-behaved client is
/// served between every two bytes and all through the stall, and when the
/// slow frame is finally complete it arrives whole, and that client is
/// served like any other.
#[test]
fn byte_at_a_time_client_stalled_mid_frame_delays_nobody() {
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();
        let (mut slow, slow_id) = server.connect();
        let payload: Vec<u8> = (0..=255).collect();
        let wire = FRAMING.encode(&payload);
        let (first, last) = wire.split_at(WIDTH + 100);

        // Each byte leaves on its own (TCP_NODELAY), and a round trip of
        // the good client comes between each two.
        for (index, byte) in first.iter().enumerate() {
            slow.write(std::slice::from_ref(byte));
            server.round_trip(&mut good, good_id, &format!("between bytes {index}"));
        }
        // The stall: nothing of the slow frame reaches the consumer (a
        // round trip would meet it first), and the good client goes on.
        for turn in 0..100 {
            server.round_trip(&mut good, good_id, &format!("during the stall {turn}"));
        }
        for byte in last {
            slow.write(std::slice::from_ref(byte));
        }
        assert_eq!(server.message_from(slow_id), payload);
        server.round_trip(&mut slow, slow_id, "the slow client is served too");
        server.round_trip(&mut good, good_id, "and the good one still");
        assert_eq!(server.stats.snapshot().streams_open, 2);
        server.stop();
    });
}

/// SPEC §4.9: a stalled partial frame costs what was sent, not what was
/// declared. 200 clients each declare a frame of the maximum length (8 MiB,
/// accepted) and stall after its first KiB: the server's memory grows by a
/// few MiB at most (1.6 GiB declared), the good client is served, and when
/// they hang up each reader reports its frame cut short (`UnexpectedEof`),
/// then `Linkdead`.
#[test]
fn stalled_clients_declaring_the_maximum_frame_cost_what_they_sent() {
    const STALLED: usize = 200;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();
        server.round_trip(&mut good, good_id, "warm-up");
        let before = Memory::now();

        let mut stalled = Vec::new();
        for _ in 0..STALLED {
            let (mut client, id) = server.connect();
            let mut wire = MAX_FRAME_LENGTH.to_be_bytes().to_vec();
            wire.resize(WIDTH + 1024, 0x5A);
            client.write(&wire);
            stalled.push((client, id));
        }
        server.round_trip(&mut good, good_id, "with 200 maximal frames pending");
        before.assert_growth_within("200 stalled 8 MiB frames", 16, 256);

        let departing = stalled
            .iter()
            .map(|&(_, id)| (id, DisconnectReason::Linkdead))
            .collect();
        drop(stalled);
        let errors = server.departures(departing);
        assert_eq!(errors.len(), STALLED, "every cut-short frame is reported");
        assert!(
            errors
                .values()
                .all(|&kind| kind == io::ErrorKind::UnexpectedEof),
            "{errors:?}"
        );
        server.round_trip(&mut good, good_id, "after they left");
        let stats = server.stats.snapshot();
        assert_eq!(stats.streams_open, 1);
        assert_eq!(stats.accepted, stats.streams_open + stats.departed());
        server.stop();
    });
}

/// SPEC §4.8: a client that shuts down its write side (half-open) ends its
/// reader: what it sent arrives, then `Linkdead`, and the server closes its
/// side too. One that half-closes in the middle of a frame has the frame
/// reported cut short (`UnexpectedEof`) before `Linkdead`. The good client
/// is served throughout.
#[test]
fn half_closed_clients_are_linkdead_and_others_go_on() {
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();

        let (mut polite, id) = server.connect();
        polite.send(b"last words");
        polite.shutdown_write();
        assert_eq!(server.message_from(id), &b"last words"[..]);
        server.disconnected(id, DisconnectReason::Linkdead);
        assert_eq!(polite.drain(), (vec![], 0), "the server closed its side");
        server.round_trip(&mut good, good_id, "after a half-close");

        let (mut abrupt, id) = server.connect();
        abrupt.write(&FRAMING.encode(b"cut short")[..WIDTH + 3]);
        abrupt.shutdown_write();
        assert_eq!(server.error_from(id), io::ErrorKind::UnexpectedEof);
        server.disconnected(id, DisconnectReason::Linkdead);
        assert_eq!(abrupt.drain(), (vec![], 0), "the server closed its side");
        server.round_trip(&mut good, good_id, "after a half-close mid-frame");

        let stats = server.stats.snapshot();
        assert_eq!(stats.disconnects.linkdead, 2);
        assert_eq!(stats.streams_open, 1);
        server.stop();
    });
}

/// SPEC §4.8, §4.5: clients that vanish disturb nobody. One resets its
/// connection (RST, not FIN): that is noticed, `Linkdead`. Ten go silent in
/// the middle of a frame without a FIN, as a peer that lost power would:
/// nothing tells the server they are gone, so they stay open, holding only
/// their partial frames, while the good client is served and gets every
/// broadcast sent to all of them. When their connections do end, each
/// departs `Linkdead`.
#[test]
fn vanished_clients_do_not_disturb_the_others() {
    const SILENT: usize = 10;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();
        server.round_trip(&mut good, good_id, "warm-up");

        // Closing a socket with unread data sends RST instead of FIN.
        let (reset, reset_id) = server.connect();
        server.send([reset_id], "never read");
        reset.wait_readable();
        drop(reset);
        server.departures(HashMap::from([(reset_id, DisconnectReason::Linkdead)]));
        server.round_trip(&mut good, good_id, "after a reset");

        let before = Memory::now();
        let silent: Vec<(Client, StreamId)> = (0..SILENT)
            .map(|_| {
                let (mut client, id) = server.connect();
                client.write(&FRAMING.encode(b"never finished")[..WIDTH + 5]);
                (client, id)
            })
            .collect();
        let everyone: Vec<StreamId> = silent.iter().map(|&(_, id)| id).chain([good_id]).collect();
        for round in 0..10 {
            server.send(everyone.iter().copied(), format!("broadcast {round}"));
        }
        for round in 0..10 {
            assert_eq!(good.recv(), Some(format!("broadcast {round}").into_bytes()));
        }
        server.round_trip(&mut good, good_id, "among the silent");
        before.assert_growth_within("10 silent clients", 8, 64);
        let stats = server.stats.snapshot();
        assert_eq!(stats.streams_open, 1 + SILENT as u64);
        assert_eq!(stats.disconnects.linkdead, 1);

        // Their connections end at last (with unread broadcasts, so by RST):
        // each departs, after the error of its reader if it had one.
        let departing = silent
            .iter()
            .map(|&(_, id)| (id, DisconnectReason::Linkdead))
            .collect();
        drop(silent);
        server.departures(departing);
        server.round_trip(&mut good, good_id, "after they left");
        let stats = server.stats.snapshot();
        assert_eq!(stats.streams_open, 1);
        assert_eq!(stats.accepted, stats.streams_open + stats.departed());
        server.stop();
    });
}

/// SPEC §4.6: a client that never reads, during a broadcast flood, is
/// disconnected with `BacklogFull` once its backlog overflows (after the
/// kernel's socket buffers and the writer's buffer have filled), and the
/// server's memory stays bounded all along; four clients that read get every
/// broadcast, in order, none lost. The flood is paced by the clients that
/// read, never by the one that does not. What the slow client had received
/// before it was dropped is an in-order prefix of the flood.
#[test]
fn client_that_never_reads_a_flood_is_dropped_and_the_others_get_everything() {
    const READERS: usize = 4;
    const PAYLOAD: usize = 32 * 1024;
    const BACKLOG: usize = 64;
    /// Rounds a reader may fall behind before the flood waits for it: well
    /// within its backlog, so that only the client that never reads can
    /// overflow.
    const WINDOW: u32 = 16;
    /// Rounds sent after the slow client's departure was announced.
    const AFTER: u32 = 64;
    /// The safety net: 640 MiB sent without a `BacklogFull` fails the test
    /// (the memory check fails long before).
    const MAX_ROUNDS: u32 = 20_000;
    /// The round number that tells a reader the flood is over.
    const END: u32 = u32::MAX;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(
            &Smol,
            ServerSetup {
                sender_buffer_size: BACKLOG,
                ..setup()
            },
        );
        let (progress_tx, progress) = std_mpsc::channel::<usize>();
        let mut reader_ids = Vec::new();
        let mut readers = Vec::new();
        for index in 0..READERS {
            let (mut client, id) = server.connect();
            reader_ids.push(id);
            let progress = progress_tx.clone();
            readers.push(std::thread::spawn(move || {
                let mut expected = 0;
                loop {
                    let frame = client.recv().expect("a reading client was disconnected");
                    let round = round_of(&frame);
                    if round == END {
                        // The client goes back still connected.
                        return (expected, client);
                    }
                    assert_eq!(round, expected, "reader {index} lost or reordered a round");
                    assert_eq!(frame.len(), PAYLOAD);
                    expected += 1;
                    let _ = progress.send(index);
                }
            }));
        }
        drop(progress_tx);
        let (mut sink, sink_id) = server.connect();
        let everyone: Vec<StreamId> = reader_ids.iter().copied().chain([sink_id]).collect();
        let round_payload = |round: u32| {
            let mut payload = vec![0xF1; PAYLOAD];
            payload[..4].copy_from_slice(&round.to_be_bytes());
            Bytes::from(payload)
        };
        let before = Memory::now();

        let mut received = [0u32; READERS];
        let mut dropped_after = None;
        let mut rounds = 0u32;
        loop {
            while rounds - received.iter().min().copied().unwrap_or(0) >= WINDOW {
                let index = progress
                    .recv_timeout(SAFETY_TIMEOUT)
                    .expect("the reading clients stalled");
                received[index] += 1;
            }
            // Still addressed to the slow client after its departure: those
            // are dropped and counted (SPEC §4.4).
            server.send(everyone.iter().copied(), round_payload(rounds));
            rounds += 1;
            if rounds.is_multiple_of(64) {
                // Bounded all along: an unbounded backlog would hold 32 KiB
                // more per round.
                before.assert_growth_within("the flood so far", 64, 512);
            }
            if dropped_after.is_none()
                && let Ok(packet) = server.channels[LOBBY].try_recv()
            {
                match packet {
                    IncomingPacket::StreamDisconnected(id, DisconnectReason::BacklogFull)
                        if id == sink_id =>
                    {
                        dropped_after = Some(rounds);
                    }
                    other => panic!("expected the slow client's BacklogFull, got {other:?}"),
                }
            }
            if dropped_after.is_some_and(|at| rounds >= at + AFTER) {
                break;
            }
            assert!(
                rounds < MAX_ROUNDS,
                "the client that never reads was never dropped"
            );
        }
        server.send(reader_ids.iter().copied(), round_payload(END));
        let mut reading_clients = Vec::new();
        for reader in readers {
            let (received, client) = reader.join().expect("a reader failed");
            assert_eq!(received, rounds);
            reading_clients.push(client);
        }
        before.assert_growth_within(&format!("a flood of {rounds} rounds"), 64, 512);

        let (frames, _cut_short) = sink.drain();
        assert!(!frames.is_empty() && frames.len() < rounds as usize);
        for (expected, frame) in (0..).zip(&frames) {
            assert_eq!(
                round_of(frame),
                expected,
                "the slow client's prefix is in order"
            );
        }
        eprintln!(
            "slow client dropped after {} rounds sent ({} had reached its socket); {rounds} rounds in all",
            dropped_after.unwrap_or(0),
            frames.len()
        );
        let stats = server.stats.snapshot();
        assert_eq!(stats.disconnects.backlog_full, 1);
        assert!(stats.dropped_unknown_id >= u64::from(AFTER));
        assert_eq!(stats.streams_open, READERS as u64);
        assert_eq!(stats.accepted, stats.streams_open + stats.departed());
        server.stop();
    });
}

/// SPEC §4.12, §4.4: 10,000 connections come and go, 100 at a time. Each
/// sends a frame saying which client it is; then half hang up (`Linkdead`)
/// and the server closes the other half (`Shutdown`), which see the end of
/// their connection. A well-behaved client is served after every batch. The
/// stats balance (accepted = open + departed); when the last client leaves
/// no stream is open; memory and file descriptors after 10,000 are what they
/// were after the first 1,000.
#[test]
fn ten_thousand_connects_and_disconnects_leave_nothing_behind() {
    const CLIENTS: usize = 10_000;
    const BATCH: usize = 100;
    const WARM_UP: usize = 1_000;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(&Smol, setup());
        let (mut good, good_id) = server.connect();
        let mut baseline = None;

        for batch in 0..CLIENTS / BATCH {
            if batch * BATCH == WARM_UP {
                baseline = Some((Memory::now(), open_fds()));
            }
            let mut clients: Vec<Client> = (0..BATCH)
                .map(|_| Client::connect(server.address, server.framing))
                .collect();
            for (index, client) in (0u32..).zip(&mut clients) {
                client.send(&index.to_be_bytes());
            }
            let ids = server.announced_by_index(BATCH);
            server.close(ids.iter().skip(1).step_by(2).copied().collect());
            let mut departing = HashMap::new();
            for (index, (mut client, id)) in clients.into_iter().zip(ids).enumerate() {
                if index % 2 == 0 {
                    departing.insert(id, DisconnectReason::Linkdead);
                } else {
                    assert_eq!(client.drain(), (vec![], 0), "closed by the server");
                    departing.insert(id, DisconnectReason::Shutdown);
                }
            }
            let errors = server.departures(departing);
            assert!(errors.is_empty(), "{errors:?}");
            server.round_trip(&mut good, good_id, &format!("after batch {batch}"));
        }

        let stats = server.stats.snapshot();
        assert_eq!(stats.accepted, CLIENTS as u64 + 1);
        assert_eq!(stats.disconnects.linkdead, CLIENTS as u64 / 2);
        assert_eq!(stats.disconnects.shutdown, CLIENTS as u64 / 2);
        assert_eq!(stats.streams_open, 1);
        assert_eq!(stats.accepted, stats.streams_open + stats.departed());
        let (memory, fds) = baseline.expect("a baseline after the warm-up");
        memory.assert_growth_within("9,000 connections after the warm-up", 4, 64);
        let fds_now = open_fds();
        eprintln!("open file descriptors: {fds} after the warm-up, {fds_now} at the end");
        // Streams closed by the server may still be closing: one batch of
        // slack at most, where a leak would be thousands.
        assert!(
            fds_now <= fds + BATCH,
            "{fds} -> {fds_now} file descriptors"
        );

        drop(good);
        server.disconnected(good_id, DisconnectReason::Linkdead);
        let stats = server.stats.snapshot();
        assert_eq!(stats.streams_open, 0);
        assert_eq!(stats.accepted, stats.departed());
        server.stop();
    });
}

/// SPEC §4.10: with `max_streams` open the server accepts no more: the
/// clients beyond it wait in the listen backlog, what they send waiting in
/// their sockets, while the admitted ones are served. Each way of leaving
/// (hanging up, being closed by the server, a reader error) lets one waiting
/// client in, whose frame then arrives after its `StreamConnected`.
#[test]
fn clients_beyond_max_streams_wait_in_the_backlog_until_others_leave() {
    const MAX: usize = 4;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(
            &Smol,
            ServerSetup {
                max_streams: MAX,
                ..setup()
            },
        );
        let mut admitted: Vec<(Client, StreamId)> = (0..MAX).map(|_| server.connect()).collect();
        let mut waiting: Vec<Option<Client>> = (0..3u8)
            .map(|index| {
                let mut client = Client::connect(server.address, server.framing);
                client.send(&[index]);
                Some(client)
            })
            .collect();
        // Had the server accepted a waiting client, its StreamConnected
        // would reach the consumer before these frames: each poll of `Run`
        // accepts before it reads, and a channel announces before it reads.
        for (tag, (client, id)) in admitted.iter_mut().enumerate() {
            server.round_trip(client, *id, &format!("admitted {tag}, others waiting"));
        }
        assert_eq!(server.stats.snapshot().accepted, MAX as u64);

        // Hanging up lets one in.
        let (client, id) = admitted.remove(0);
        drop(client);
        server.disconnected(id, DisconnectReason::Linkdead);
        admitted.push(server.admit_waiting(&mut waiting));

        // So does being closed by the server.
        let (mut client, id) = admitted.remove(0);
        server.close(vec![id]);
        server.disconnected(id, DisconnectReason::Shutdown);
        assert_eq!(client.drain(), (vec![], 0));
        admitted.push(server.admit_waiting(&mut waiting));

        // And a reader error.
        let (mut client, id) = admitted.remove(0);
        client.write(&u32::MAX.to_be_bytes());
        assert_eq!(server.error_from(id), io::ErrorKind::InvalidData);
        server.disconnected(id, DisconnectReason::Linkdead);
        admitted.push(server.admit_waiting(&mut waiting));
        assert!(
            waiting.iter().all(Option::is_none),
            "every waiting client got in"
        );

        for (tag, (client, id)) in admitted.iter_mut().enumerate() {
            server.round_trip(client, *id, &format!("admitted {tag} at the end"));
        }
        let stats = server.stats.snapshot();
        assert_eq!(stats.accepted, MAX as u64 + 3);
        assert_eq!(stats.streams_open, MAX as u64);
        server.stop();
    });
}

/// SPEC §4.10 with §1 ("a client that stops reading stalls nobody"): a
/// client that never reads, closed by the server with `Shutdown` while more
/// is queued for it than its socket takes, has been announced gone, and its
/// place under `max_streams` must go to the next client waiting.
///
/// Finding (fixed): it did not. A stream closed gracefully counted against
/// `max_streams` until its writer had flushed and closed, and the writer of
/// a client that never reads never does; so the place was held for as long
/// as that client stayed connected and silent, and `max_streams` such
/// clients, kicked one after the other, locked everyone out. Now a closed
/// stream does not count, and the newcomer takes the place of the stream
/// flushing longest (in-memory: `failures::a_closed_client_that_never_reads_
/// gives_its_place_to_a_newcomer`).
#[test]
fn closed_client_that_never_reads_gives_its_place_under_max_streams_back() {
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(
            &Smol,
            ServerSetup {
                max_streams: 2,
                ..setup()
            },
        );
        let (mut good, good_id) = server.connect();
        let (deaf, deaf_id) = server.connect();
        // 16 MiB queued: more than the kernel's socket buffers hold for a
        // client that does not read, so the flush cannot finish.
        for _ in 0..16 {
            server.send([deaf_id], vec![0xDE; 1 << 20]);
        }
        server.close(vec![deaf_id]);
        server.disconnected(deaf_id, DisconnectReason::Shutdown);
        assert_eq!(server.stats.snapshot().streams_open, 1);

        let mut newcomer = Client::connect(server.address, server.framing);
        newcomer.send(b"let me in");
        // Had the newcomer been admitted, its StreamConnected would reach
        // the consumer before this frame, sent after it connected: each
        // poll of `Run` accepts before it reads.
        good.send(b"sent after the newcomer connected");
        match server.next(LOBBY) {
            IncomingPacket::StreamConnected(id) => {
                // Frames of different streams have no order between them
                // (SPEC §4.1 orders each stream's own): either may be first.
                server.messages_in_any_order(&[
                    (id, b"let me in"),
                    (good_id, b"sent after the newcomer connected"),
                ]);
                server.round_trip(&mut newcomer, id, "admitted");
            }
            other => panic!(
                "the newcomer waits although the deaf client left: got {other:?}, {:?}",
                server.stats.snapshot()
            ),
        }
        // The server dropped its connection to make room; the client goes too.
        drop(deaf);
        server.round_trip(&mut good, good_id, "after");
        server.stop();
    });
}

/// SPEC §4.10 at scale: 256 clients connect at once to a server that takes
/// 32 at a time. Each is answered, hangs up, and lets the next one in; all
/// are served, and never more than 32 streams are open.
#[test]
fn hundreds_of_clients_beyond_max_streams_are_all_served_in_turn() {
    const MAX: usize = 32;
    const CLIENTS: usize = 256;
    let _one = one_at_a_time();
    within_safety_timeout(|| {
        let mut server = Server::start(
            &Smol,
            ServerSetup {
                max_streams: MAX,
                ..setup()
            },
        );
        let clients: Vec<Client> = (0..CLIENTS as u32)
            .map(|index| {
                let mut client = Client::connect(server.address, server.framing);
                client.send(&index.to_be_bytes());
                client
            })
            .collect();
        // The clients read their answers in the order they connected, which
        // is the order the kernel's accept queue hands them over.
        let clients = std::thread::spawn(move || {
            for (index, mut client) in (0u32..).zip(clients) {
                assert_eq!(client.recv(), Some(index.to_be_bytes().to_vec()));
            }
        });

        let (mut open, mut served) = (HashSet::new(), 0);
        while served < CLIENTS {
            match server.next(LOBBY) {
                IncomingPacket::StreamConnected(id) => {
                    assert!(open.insert(id));
                    assert!(open.len() <= MAX, "{} streams open", open.len());
                    assert!(server.stats.snapshot().streams_open <= MAX as u64);
                }
                IncomingPacket::Message(IncomingMessage {
                    stream_id,
                    value: Ok(frame),
                }) => {
                    assert!(open.contains(&stream_id));
                    server.send([stream_id], frame);
                }
                IncomingPacket::StreamDisconnected(id, DisconnectReason::Linkdead) => {
                    assert!(open.remove(&id));
                    served += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        clients.join().expect("a client failed");
        let stats = server.stats.snapshot();
        assert_eq!(stats.accepted, CLIENTS as u64);
        assert_eq!(stats.streams_open, 0);
        assert_eq!(stats.accepted, stats.departed());
        server.stop();
    });
}

// ---------------------------------------------------------------------------
// The server side: a multiplexer with one channel (the lobby), served on
// smol's executor, and the application driving it from the test thread;
// the clients: blocking sockets, 4-byte length prefixes (`tcp`).

/// The server every attack is made on, before a test's own changes.
fn setup() -> ServerSetup {
    ServerSetup {
        channels: vec![256],
        sender_buffer_size: 64,
        max_streams: usize::MAX,
        width: WIDTH,
    }
}

/// The round number at the start of a flood frame.
fn round_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[..4].try_into().expect("a round number"))
}

// ---------------------------------------------------------------------------
// This process's memory and file descriptors.

/// The tests read the memory of the whole process: one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A field of `/proc/self/status` given in kB (`VmRSS`, `VmPeak`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

impl Memory {
    fn now() -> Self {
        Self {
            rss_kib: status_kib("VmRSS"),
            peak_kib: status_kib("VmPeak"),
        }
    }

    /// Fails if resident memory grew by more than `rss_mib` since `self`,
    /// or the peak of virtual memory (which counts what was reserved,
    /// touched or not) by more than `peak_mib`.
    #[track_caller]
    fn assert_growth_within(&self, what: &str, rss_mib: u64, peak_mib: u64) {
        let now = Self::now();
        let rss = now.rss_kib.saturating_sub(self.rss_kib);
        let peak = now.peak_kib.saturating_sub(self.peak_kib);
        eprintln!(
            "{what}: VmRSS {} -> {} KiB (+{rss}), VmPeak +{peak} KiB",
            self.rss_kib, now.rss_kib
        );
        assert!(
            rss <= rss_mib * 1024,
            "{what}: resident memory grew by {rss} KiB (bound {rss_mib} MiB)"
        );
        assert!(
            peak <= peak_mib * 1024,
            "{what}: peak virtual memory grew by {peak} KiB (bound {peak_mib} MiB)"
        );
    }
}
