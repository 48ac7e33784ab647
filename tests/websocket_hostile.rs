//! Hostile WebSocket clients over real loopback TCP (feature `websocket`):
//! handshakes trickled a byte at a time, fast and slowly; 1,000 half-open
//! handshakes; frames declared over the maximum message size, and frames
//! stalled at it; a fragmented message growing past it, and a flood of
//! empty fragments; invalid UTF-8; protocol violations such as an unmasked
//! frame; ping floods, from a client that reads its pongs and from one
//! that never does; and a client that never reads during a room flood,
//! dropped by its backlog or by the write timeout.
//!
//! One test is ignored: it pins a defect (a ping flood whose pongs cannot
//! be written grows the server's memory a pong per ping; see
//! RELIABILITY.md, *Open*). Run it with
//! `cargo test --all-features --test websocket_hostile -- --ignored`.
//!
//! Each test makes its attack on a multiplexer served in this process
//! (smol's executor, the crate's WebSocket acceptor) and checks three
//! things: the attacker gets what the protocol says (a close code, or the
//! end of its connection), a well-behaved WebSocket client of the same
//! multiplexer is served all along (its round trips keep working), and the
//! server's memory stays bounded. Memory is read from this process's own
//! `/proc/self/status`, as `tests/hostile.rs` does: a buffer grown for an
//! attacker shows in `VmRSS`, one merely reserved in `VmPeak`.
//!
//! The attackers write their bytes by hand on plain sockets, with the
//! small frame encoder at the end of this file (FIN and opcode, the mask
//! bit, 7-, 16- or 64-bit lengths, the masking key); the well-behaved
//! clients are async-tungstenite's. Nothing sleeps: every wait is on an
//! event (a packet on the lobby, a close frame, the end of a connection),
//! with [`SAFETY_TIMEOUT`] as a safety net only, and the acceptor's and the
//! multiplexer's clocks are ticked by hand, so that time passes exactly
//! when a test says. The tests run one at a time (`one_at_a_time`), since
//! each reads the memory of the whole process.

#![cfg(all(feature = "websocket", feature = "smol", target_os = "linux"))]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use stream_multiplexer::runtime::smol::{bind, incoming};
use stream_multiplexer::websocket::{Acceptor, WsMessage};
use stream_multiplexer::{
    Clock, ControlMessage, DisconnectReason, IncomingPacket, MultiplexerBuilder, MultiplexerError,
    OutgoingMessage, OutgoingPacket, Stats, StreamId,
};

/// A safety net, never a synchronisation: every wait ends on an event long
/// before this.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(60);

/// The period of the clocks the tests tick by hand; time limits are whole
/// periods.
const TICK: Duration = Duration::from_secs(1);

/// The maximum message size the attacks are made against: small, so that
/// going past it is cheap, and far below the 8 MiB default.
const MAX_MESSAGE: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// The attacks

/// A client that sends a valid upgrade request one byte at a time, with a
/// round trip of the well-behaved client between every two bytes, is
/// refused before it can finish, and before any deadline: tungstenite
/// counts the reads a request takes, and after 64 reads averaging under
/// 128 bytes it calls the request an attack (`Error::AttackAttempt`), which
/// the acceptor answers with `400 Bad Request` before closing. The request
/// is 148 bytes; it is refused at its 65th byte or so. Meanwhile the
/// well-behaved client is served between every two bytes, and a client
/// that connects mid-trickle is served at once. The trickler is one failed
/// accept, and never a stream.
#[test]
fn a_handshake_trickled_byte_by_byte_is_refused_as_an_attack_and_delays_nobody() {
    let _one = one_at_a_time();
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let request = upgrade_request();
        let mut trickler = StdTcpStream::connect(server.address).unwrap();
        trickler.set_nodelay(true).unwrap();
        trickler.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
        let mut late_comer = None;
        let mut refused_at = None;
        for (index, byte) in request.iter().enumerate() {
            if trickler.write_all(std::slice::from_ref(byte)).is_err() {
                // Refused, and closed, before the last byte's answer came.
                refused_at = Some(index);
                break;
            }
            round_trip(&mut server, &mut good, good_id, "between two bytes").await;
            if index == 32 {
                let (mut late, late_id) = connect_seen(&mut server).await;
                round_trip(&mut server, &mut late, late_id, "connected mid-trickle").await;
                late_comer = Some(late);
            }
            if !is_open_and_silent(&trickler) {
                refused_at = Some(index + 1);
                break;
            }
        }
        let refused_at = refused_at.expect("the trickled request was refused");
        let answer = read_to_end(&mut trickler);
        assert!(
            answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            (65..request.len()).contains(&refused_at),
            "refused after {refused_at} bytes"
        );
        eprintln!(
            "a request trickled byte by byte: refused with 400 after {refused_at} of its {} bytes",
            request.len()
        );

        round_trip(&mut server, &mut good, good_id, "after the refusal").await;
        let stats = server.stats.snapshot();
        assert_eq!(stats.accept_errors, 1, "the trickler is one failed accept");
        assert_eq!(stats.accepted, 2, "the good client and the late-comer");
        before.assert_growth_within("a request trickled byte by byte", 4, 64);
        drop((good, late_comer));
        server.shut_down().await;
    });
}

/// A client that trickles its upgrade request slowly, a byte at a time, 16
/// bytes per tick of the acceptor's clock (fewer reads in all than
/// tungstenite's attack check needs), is dropped at its handshake deadline
/// (three ticks), not a tick before, although it kept sending: the
/// deadline counts from its accept, not from its last byte. It is closed
/// with nothing said. Meanwhile the well-behaved client is served between
/// every two bytes, and a client that connects after each tick completes
/// its handshake and is served. The trickler is one failed accept, and
/// never a stream.
#[test]
fn a_handshake_trickled_slowly_is_dropped_at_its_deadline_and_delays_nobody() {
    const BYTES_PER_TICK: usize = 16;
    let _one = one_at_a_time();
    run(|| async {
        let acceptor = Acceptor::new().handshake_timeout(3 * TICK);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let request = upgrade_request();
        let mut trickler = StdTcpStream::connect(server.address).unwrap();
        trickler.set_nodelay(true).unwrap();
        trickler.set_read_timeout(Some(SAFETY_TIMEOUT)).unwrap();
        let mut bytes = request.chunks(1);
        let mut late_comers = Vec::new();
        for tick in 1..=3 {
            for byte in bytes.by_ref().take(BYTES_PER_TICK) {
                trickler.write_all(byte).unwrap();
                round_trip(&mut server, &mut good, good_id, "between two bytes").await;
            }
            assert!(
                is_open_and_silent(&trickler),
                "the trickler is dropped {} ticks before its deadline",
                4 - tick
            );
            server.tick(1);
            if tick < 3 {
                // A client connecting now is taken by a poll that counted
                // the tick, and served at once.
                let (mut late, late_id) = connect_seen(&mut server).await;
                round_trip(&mut server, &mut late, late_id, "connected mid-trickle").await;
                late_comers.push(late);
            }
        }
        let answer = read_to_end(&mut trickler);
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

        round_trip(&mut server, &mut good, good_id, "after the deadline").await;
        let stats = server.stats.snapshot();
        assert_eq!(stats.accept_errors, 1, "the trickler is one failed accept");
        assert_eq!(stats.accepted, 3, "the good client and the two late-comers");
        before.assert_growth_within("a slowly trickled handshake", 4, 64);
        drop((good, late_comers));
        server.shut_down().await;
    });
}

/// 1,000 clients connect, each sends the start of an upgrade request and
/// then nothing (a half-open handshake). The acceptor takes at most
/// `IN_FLIGHT` of them at once (the server holds a descriptor for those
/// only; the others wait in the listen backlog); each batch is dropped at
/// its deadline, two ticks after it was taken, not a tick before, and the
/// next batch is taken at once. A well-behaved client connected before the
/// attack is served between every two ticks; one that connected after the
/// 1,000 gets in when the last batch has been dropped. Then slots free up
/// another way: a new batch fills them all, a client behind it waits, and
/// when one of the batch hangs up, that client gets in at once, before any
/// deadline. Every attacker is a failed accept; at the end the process
/// holds the descriptors it had before.
#[test]
fn a_thousand_half_open_handshakes_are_held_to_the_in_flight_limit_and_dropped_at_the_deadline() {
    const ATTACKERS: usize = 1_000;
    const IN_FLIGHT: usize = 100;
    let _one = one_at_a_time();
    if !enough_open_files(2 * ATTACKERS + 256) {
        return;
    }
    run(|| async {
        let acceptor = Acceptor::new()
            .max_handshakes(IN_FLIGHT)
            .handshake_timeout(2 * TICK);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let (before, fds_before) = (Memory::now(), open_fds());

        let address = server.address;
        let mut attackers: Vec<StdTcpStream> = (0..ATTACKERS)
            .map(|_| half_open_handshake(address))
            .collect();
        // Connected after all of them: it is behind them in the backlog.
        let first_newcomer = smol::spawn(connect(address));
        round_trip(&mut server, &mut good, good_id, "under attack").await;
        // The test's sockets (the attackers' and the newcomer's), and the
        // server's side of the handshakes in flight: `IN_FLIGHT`, never more.
        let height = fds_before + ATTACKERS + 1 + IN_FLIGHT;
        assert_eq!(fds_reach(height), height);

        let rounds = ATTACKERS / IN_FLIGHT;
        for round in 1..=rounds {
            time_passes(&mut server, &mut good, good_id).await;
            assert!(
                attackers[..IN_FLIGHT].iter().all(is_open_and_silent),
                "round {round}: dropped a tick before the deadline"
            );
            assert!(
                !first_newcomer.is_finished(),
                "round {round}: no slot was free"
            );
            let held = fds_before + attackers.len() + 1 + IN_FLIGHT;
            assert_eq!(
                open_fds(),
                held,
                "round {round}: a tick before the deadline"
            );

            server.tick(1);
            for mut attacker in attackers.drain(..IN_FLIGHT) {
                expect_end(&mut attacker);
            }
            if round == rounds {
                break;
            }
            round_trip(&mut server, &mut good, good_id, "after a deadline").await;
            let failed = round * IN_FLIGHT;
            assert_eq!(server.stats.snapshot().accept_errors, failed as u64);
            // The next batch was taken at once.
            let held = fds_before + attackers.len() + 1 + IN_FLIGHT;
            assert_eq!(fds_reach(held), held, "round {round}: the next batch");
        }
        // The last batch dropped: the newcomer's handshake was taken next,
        // and it is served.
        let mut newcomer = first_newcomer.await;
        let newcomer_id = server.connected().await;
        round_trip(&mut server, &mut newcomer, newcomer_id, "in after 1,000").await;
        round_trip(&mut server, &mut good, good_id, "after the last deadline").await;
        assert_eq!(server.stats.snapshot().accept_errors, ATTACKERS as u64);
        eprintln!(
            "1,000 half-open handshakes, {IN_FLIGHT} at a time: open file descriptors {fds_before} \
             before the attack, {height} at its height (the test's {} sockets and the server's \
             {IN_FLIGHT}), {} after it (the newcomer's two more)",
            ATTACKERS + 1,
            open_fds()
        );

        // Slots freed by a hang-up: a full batch, a client waiting behind
        // it, and one of the batch hangs up.
        let mut batch: Vec<StdTcpStream> = (0..IN_FLIGHT)
            .map(|_| half_open_handshake(address))
            .collect();
        let second_newcomer = smol::spawn(connect(address));
        // The newcomer's two; the batch's sockets and the waiting
        // newcomer's, and the server's side of the batch.
        let held = fds_before + 2 + IN_FLIGHT + 1 + IN_FLIGHT;
        assert_eq!(fds_reach(held), held);
        round_trip(&mut server, &mut good, good_id, "the slots are full").await;
        round_trip(&mut server, &mut good, good_id, "the slots are still full").await;
        assert!(!second_newcomer.is_finished(), "no slot was free");
        drop(batch.remove(0));
        let mut second = second_newcomer.await;
        let second_id = server.connected().await;
        round_trip(&mut server, &mut second, second_id, "in when a slot freed").await;
        time_passes(&mut server, &mut good, good_id).await;
        assert!(batch.iter().all(is_open_and_silent));
        server.tick(1);
        for attacker in &mut batch {
            expect_end(attacker);
        }
        round_trip(&mut server, &mut good, good_id, "after the last deadline").await;

        let stats = server.stats.snapshot();
        assert_eq!(stats.accept_errors, (ATTACKERS + IN_FLIGHT) as u64);
        assert_eq!(stats.accepted, 3, "the good client and the two newcomers");
        before.assert_growth_within("1,100 half-open handshakes", 16, 256);
        drop((batch, newcomer, second));
        server.departures(&[newcomer_id, second_id]).await;
        // Descriptors back to the start.
        assert_eq!(fds_fall_to(fds_before), fds_before);
        drop(good);
        server.shut_down().await;
    });
}

/// A frame declared over the maximum message size (64 KiB here) is refused
/// as soon as its header arrives: the attacker gets close code 1009
/// (message too big) and the end of its connection, and the server's
/// reader yields an `InvalidData` error, then `Linkdead`. 32 attackers
/// declare frames of 64 KiB + 1 byte, 1 GiB and 4 EiB in turn (in the
/// 64-bit length field: the 16-bit one tops out at 64 KiB - 1), each
/// followed by 4 KiB of payload: 40 EiB declared in all, and neither
/// resident memory nor the peak of virtual memory grows by more than a few
/// MiB.
/// tungstenite reserves a frame's declared length only once it is checked
/// against the limit (see `Acceptor::max_message_size`), so nothing of
/// these is reserved.
#[test]
fn frames_declared_over_the_maximum_get_close_1009_and_nothing_is_reserved() {
    const ATTACKERS: u64 = 32;
    let _one = one_at_a_time();
    run(|| async {
        let acceptor = Acceptor::new().max_message_size(MAX_MESSAGE);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let declared = [MAX_MESSAGE as u64 + 1, 1 << 30, 1 << 62];
        for attacker in 0..ATTACKERS {
            let mut evil = RawClient::connect(server.address);
            let id = server.connected().await;
            let length = declared[attacker as usize % declared.len()];
            let mut wire = header(FIN, BINARY, length, Some(MASK));
            wire.extend(std::iter::repeat_n(0xAB, 4096));
            evil.write(&wire);
            let error = server.message_from(id).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
            assert_eq!(server.disconnected(id).await, DisconnectReason::Linkdead);
            assert_eq!(evil.close_code(), CLOSE_TOO_BIG, "declared {length} bytes");
            evil.expect_end();
            round_trip(&mut server, &mut good, good_id, "after an attacker").await;
        }

        before.assert_growth_within("32 frames declared over 64 KiB", 4, 64);
        let stats = server.stats.snapshot();
        assert_eq!(stats.disconnects.linkdead, ATTACKERS);
        assert_eq!(stats.streams_open, 1);
        drop(good);
        server.shut_down().await;
    });
}

/// What tungstenite does reserve: a frame declared at the maximum (64 KiB
/// here) is accepted, and the declared length is reserved when its header
/// arrives (the documented cost of `Acceptor::max_message_size`). 64
/// clients declare such a frame, send 1 KiB of it and stall: the server
/// holds at most the maximum for each (4 MiB in all) and the good client is
/// served. When they hang up, each reader yields an error (the connection
/// was reset without a closing handshake) and each leaves `Linkdead`.
#[test]
fn frames_stalled_at_the_maximum_hold_at_most_the_maximum_each() {
    const STALLED: usize = 64;
    let _one = one_at_a_time();
    run(|| async {
        let acceptor = Acceptor::new().max_message_size(MAX_MESSAGE);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let mut stalled = Vec::new();
        for _ in 0..STALLED {
            let mut client = RawClient::connect(server.address);
            let id = server.connected().await;
            let mut wire = header(FIN, BINARY, MAX_MESSAGE as u64, Some(MASK));
            wire.extend(std::iter::repeat_n(0x5A, 1024));
            client.write(&wire);
            stalled.push((client, id));
        }
        round_trip(&mut server, &mut good, good_id, "with 64 frames stalled").await;
        // 64 × 64 KiB = 4 MiB reserved at most, and 64 KiB sent.
        before.assert_growth_within("64 stalled frames of 64 KiB", 5, 64);

        let ids: Vec<StreamId> = stalled.iter().map(|&(_, id)| id).collect();
        drop(stalled);
        let errors = server.departures(&ids).await;
        assert_eq!(errors, STALLED, "every cut-short frame is reported");
        round_trip(&mut server, &mut good, good_id, "after they left").await;
        assert_eq!(server.stats.snapshot().streams_open, 1);
        drop(good);
        server.shut_down().await;
    });
}

/// A message fragmented into continuation frames is checked as each
/// fragment arrives: the fragment that takes it past the maximum (64 KiB)
/// gets close code 1009 and the end of the connection, although each frame
/// is small. The fragments are 16 KiB (a 16-bit length), 300 bytes
/// (16-bit) and 100 bytes (7-bit), text and binary; 12 attackers, one
/// after the other, each writing fragments until its connection is reset
/// (it would go on to 64 MiB): the kernel takes a few hundred KiB of each
/// before the reset, and resident memory grows by no more than a few MiB:
/// no more than the maximum is ever buffered for one message.
#[test]
fn a_fragmented_message_growing_past_the_maximum_gets_close_1009() {
    /// What an attacker would send if it were let: 64 MiB.
    const OFFERED: usize = 64 << 20;
    let _one = one_at_a_time();
    run(|| async {
        let acceptor = Acceptor::new().max_message_size(MAX_MESSAGE);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let (mut attacks, mut most_offered) = (0, 0);
        for fragment in [16 * 1024, 300, 100] {
            for opcode in [BINARY, TEXT] {
                for _ in 0..2 {
                    attacks += 1;
                    let mut evil = RawClient::connect(server.address);
                    let id = server.connected().await;
                    // ASCII, so that text fragments are valid UTF-8.
                    let payload = vec![b'f'; fragment];
                    // The attacker writes fragment after fragment on its
                    // own thread, until the server cuts it short.
                    let mut writer = evil.socket.try_clone().unwrap();
                    let writing = std::thread::spawn(move || {
                        let mut wire = frame(NOT_FIN, opcode, &payload);
                        let mut offered = 0;
                        while offered < OFFERED {
                            if writer.write_all(&wire).is_err() {
                                return offered;
                            }
                            offered += wire.len();
                            wire = frame(NOT_FIN, CONTINUATION, &payload);
                        }
                        offered
                    });
                    let error = server.message_from(id).await.unwrap_err();
                    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
                    assert_eq!(server.disconnected(id).await, DisconnectReason::Linkdead);
                    assert_eq!(evil.close_code(), CLOSE_TOO_BIG, "fragments of {fragment}");
                    evil.expect_end();
                    let offered = writing.join().unwrap();
                    assert!(offered < OFFERED, "the server took all of {OFFERED} bytes");
                    most_offered = most_offered.max(offered);
                    round_trip(&mut server, &mut good, good_id, "after an attacker").await;
                }
            }
        }

        eprintln!(
            "fragmented messages: the kernel took at most {most_offered} bytes of an attacker's \
             fragments before its connection was reset"
        );
        before.assert_growth_within("12 fragmented messages growing past 64 KiB", 4, 256);
        let stats = server.stats.snapshot();
        assert_eq!(stats.disconnects.linkdead, attacks);
        assert_eq!(stats.streams_open, 1);
        drop(good);
        server.shut_down().await;
    });
}

/// The size limit bounds the bytes of a fragmented message, not its
/// number of fragments: a client that sends fragments of zero bytes never
/// reaches it. 1 MiB of empty continuation frames (174,762 of them, 6
/// bytes each with their masking keys), then a last fragment "end": the
/// server reads them all, buffers nothing for them (resident memory grows
/// by a few MiB at most, the attacker's own 1 MiB of wire in this process
/// included), delivers the message ("end") whole, and serves
/// the good client all along. Such a client completes no message until
/// its last fragment: the idle timeout is what ends one that never sends
/// it.
#[test]
fn empty_fragments_cost_no_memory_and_delay_nobody() {
    const FLOOD: usize = 1 << 20;
    let _one = one_at_a_time();
    run(|| async {
        let acceptor = Acceptor::new().max_message_size(MAX_MESSAGE);
        let mut server = Server::start(acceptor).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let evil = RawClient::connect(server.address);
        let evil_id = server.connected().await;
        let empty = frame(NOT_FIN, CONTINUATION, b"");
        let fragments = FLOOD / empty.len();
        let mut wire = frame(NOT_FIN, TEXT, b"");
        wire.extend(empty.iter().copied().cycle().take(fragments * empty.len()));
        wire.extend(frame(FIN, CONTINUATION, b"end"));
        let mut writer = evil.socket.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&wire));
        let turns = serve_until(&mut server, &mut good, good_id, evil_id, "end").await;
        writing.join().unwrap().unwrap();
        eprintln!(
            "{fragments} empty fragments read and one message delivered; the good client served \
             {turns} times meanwhile"
        );
        before.assert_growth_within("1 MiB of empty fragments", 4, 256);
        round_trip(&mut server, &mut good, good_id, "after the fragments").await;
        drop(evil);
        server.departures(&[evil_id]).await;
        drop(good);
        server.shut_down().await;
    });
}

/// Invalid UTF-8 gets close code 1007 (invalid payload data) and the end of
/// the connection: in a text frame; cut short at the end of a text
/// message; in the first fragment of a fragmented text message, which fails
/// at once, without waiting for the rest of the message; and in the reason
/// of a close frame. The server's reader yields an `InvalidData` error, then
/// `Linkdead`; the good client is served after each.
#[test]
fn invalid_utf8_gets_close_1007() {
    let _one = one_at_a_time();
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let mut close_with_bad_reason = 1000u16.to_be_bytes().to_vec();
        close_with_bad_reason.extend([0xff, 0xfe]);
        let attacks: [(&str, Vec<u8>); 4] = [
            ("a text frame", frame(FIN, TEXT, &[b'o', b'k', 0xc3, 0x28])),
            (
                "a sequence cut short",
                frame(FIN, TEXT, &[b'o', b'k', 0xe2, 0x82]),
            ),
            (
                "a first fragment",
                frame(NOT_FIN, TEXT, &[0xed, 0xa0, 0x80]),
            ),
            ("a close reason", frame(FIN, CLOSE, &close_with_bad_reason)),
        ];
        for (what, wire) in attacks {
            refused_with(&mut server, &wire, CLOSE_INVALID_DATA, what).await;
            round_trip(&mut server, &mut good, good_id, "after an attacker").await;
        }

        before.assert_growth_within("invalid UTF-8", 4, 64);
        assert_eq!(server.stats.snapshot().streams_open, 1);
        drop(good);
        server.shut_down().await;
    });
}

/// Protocol violations get close code 1002 (protocol error) and the end of
/// the connection, and the server's reader an `InvalidData` error, then
/// `Linkdead`: an unmasked client frame (RFC 6455 requires the server to
/// fail the connection), a reserved bit set, reserved data and control
/// opcodes, a ping longer than 125 bytes, a fragmented ping, a continuation
/// frame with nothing to continue, a new message in the middle of a
/// fragmented one, and a close frame whose payload is one byte. The good
/// client is served after each.
#[test]
fn protocol_violations_such_as_an_unmasked_frame_get_close_1002() {
    let _one = one_at_a_time();
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let mut unmasked = header(FIN, TEXT, 5, None);
        unmasked.extend(b"hello");
        let mut reserved_bit = frame(FIN, TEXT, b"hello");
        reserved_bit[0] |= RSV1;
        let mut new_message_mid_fragment = frame(NOT_FIN, TEXT, b"part one");
        new_message_mid_fragment.extend(frame(FIN, TEXT, b"another"));
        let attacks: [(&str, Vec<u8>); 9] = [
            ("an unmasked frame", unmasked),
            ("a reserved bit", reserved_bit),
            ("a reserved data opcode", frame(FIN, 0x3, b"?")),
            ("a reserved control opcode", frame(FIN, 0xB, b"?")),
            ("a ping of 126 bytes", frame(FIN, PING, &[b'p'; 126])),
            ("a fragmented ping", frame(NOT_FIN, PING, b"ping")),
            ("a lone continuation", frame(FIN, CONTINUATION, b"more")),
            ("a message mid-fragment", new_message_mid_fragment),
            ("a close payload of one byte", frame(FIN, CLOSE, &[0x03])),
        ];
        for (what, wire) in attacks {
            refused_with(&mut server, &wire, CLOSE_PROTOCOL_ERROR, what).await;
            round_trip(&mut server, &mut good, good_id, "after an attacker").await;
        }

        before.assert_growth_within("protocol violations", 4, 64);
        assert_eq!(server.stats.snapshot().streams_open, 1);
        drop(good);
        server.shut_down().await;
    });
}

/// A client that sends a flood of pings and reads the pongs is answered
/// and costs nothing that lasts: 100,000 pings of 125 bytes (12.5 MiB),
/// written while the good client is served, never more than 1,000 of them
/// unanswered (a pinger that reads more slowly than it sends is, for the
/// server, one that does not read: see the next test); the pinger reads
/// pongs as they come, each the payload of one of its pings, in order
/// (tungstenite may answer a burst with the pong of its last ping only, as
/// RFC 6455 allows), and the last pong answers the last ping. Resident
/// memory grows by a few MiB at most.
#[test]
fn a_ping_flood_from_a_client_that_reads_its_pongs_is_answered_and_bounded() {
    const PINGS: u32 = 100_000;
    /// The most pings the pinger has sent and not yet had answered.
    const UNANSWERED: u32 = 1_000;
    let _one = one_at_a_time();
    run(|| async {
        let mut server = Server::start(Acceptor::new()).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let mut pinger = RawClient::connect(server.address);
        let pinger_id = server.connected().await;
        let mut writer = pinger.socket.try_clone().unwrap();
        // The index of each pong read, from the reading thread to the
        // writing one.
        let (answered_tx, answered) = std_mpsc::channel::<u32>();
        let writing = std::thread::spawn(move || {
            let mut last_answered = None;
            for index in 0..PINGS {
                while index >= UNANSWERED
                    && last_answered.is_none_or(|answered| answered < index - UNANSWERED)
                {
                    last_answered = Some(answered.recv().expect("the pinger's reading thread"));
                }
                writer
                    .write_all(&frame(FIN, PING, &ping_payload(index)))
                    .unwrap();
            }
            writer.write_all(&frame(FIN, TEXT, b"pings sent")).unwrap();
        });
        let reading = std::thread::spawn(move || {
            let (mut pongs, mut last) = (0u32, None);
            while last != Some(PINGS - 1) {
                let received = pinger.next_frame().expect("a pong");
                assert_eq!(received.opcode, PONG);
                let index = ping_index(&received.payload);
                assert!(last.is_none_or(|last| index > last), "pongs in order");
                (pongs, last) = (pongs + 1, Some(index));
                // The writer is gone once it has sent everything.
                let _ = answered_tx.send(index);
            }
            (pinger, pongs)
        });
        let turns = serve_until(&mut server, &mut good, good_id, pinger_id, "pings sent").await;
        writing.join().unwrap();
        let (pinger, pongs) = reading.join().unwrap();
        eprintln!(
            "{PINGS} pings read and answered with {pongs} pongs; the good client served {turns} \
             times meanwhile"
        );
        before.assert_growth_within("a flood of 100,000 pings, pongs read", 4, 256);
        round_trip(&mut server, &mut good, good_id, "after the flood").await;
        drop(pinger);
        server.departures(&[pinger_id]).await;
        drop(good);
        server.shut_down().await;
    });
}

/// A client that floods pings and never reads the pongs: its socket fills
/// (a 4 KiB receive buffer, the server's send buffers 4 KiB too, so that
/// the kernel holds little), and from then on no pong can be written.
/// RFC 6455 lets the server answer only the latest ping of a burst; the
/// server's memory must not grow with the pongs it cannot send. 100,000
/// pings of 125 bytes (12.5 MiB) are offered, then a text message; the good
/// client is served all along; resident memory must grow by a few MiB at
/// most.
///
/// The flood ends one of two ways, both bounded: the server reads it all
/// (the text message is delivered), answering with fewer pongs than pings;
/// or the server stops reading the pinger while its pongs cannot be
/// written, and the pinger's writes stall (a flood not written within
/// [`STALL`] is taken as that: never reached while the server reads, as
/// it does today).
///
/// A finding: the server used to read it all and keep a pong for every
/// ping in tungstenite's write buffer, which has no limit (100,000 pings:
/// about 12.5 MiB); now it writes each pong before it reads on.
#[test]
fn a_ping_flood_from_a_client_that_never_reads_stays_bounded() {
    const PINGS: u32 = 100_000;
    const SOCKET_BUFFER: usize = 4 * 1024;
    let _one = one_at_a_time();
    run(|| async {
        let mut server = Server::start_with(
            Acceptor::new(),
            MultiplexerBuilder::new(64),
            Some(SOCKET_BUFFER),
        )
        .await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let pinger = RawClient::connect_with_receive_buffer(server.address, SOCKET_BUFFER);
        let pinger_id = server.connected().await;
        let (end, turns) =
            ping_flood(&mut server, &mut good, good_id, &pinger, pinger_id, PINGS).await;
        eprintln!(
            "{PINGS} pings offered, pongs never read: {end:?}; the good client served {turns} \
             times meanwhile"
        );
        round_trip(&mut server, &mut good, good_id, "after the flood").await;
        before.assert_growth_within("a flood of 100,000 pings, pongs never read", 4, 256);
        drop(pinger);
        server.departures(&[pinger_id]).await;
        drop(good);
        server.shut_down().await;
    });
}

/// What ends a ping flood whose pongs cannot be written, today: the idle
/// timeout, not the write timeout. Pings are control frames, not
/// messages, so a client that sends nothing else completes no frame and
/// leaves with `IdleTimeout` at the idle deadline (five ticks here). The
/// pongs are queued by the reader, inside tungstenite, not by the writer:
/// the writer has no value waiting and its backlog is empty, so neither
/// the write timeout (two ticks here) nor the backlog's bound is what ends
/// it (the test accepts either reason by the idle deadline, and says which
/// came). Until then, the flood costs, today, a pong per ping read (see
/// [`a_ping_flood_from_a_client_that_never_reads_stays_bounded`]).
///
/// The pinger sends 500 pings of 125 bytes and never reads: their 62 KiB of
/// pongs are more than its socket, the server's (4 KiB each) and the
/// writer's buffer take, and the 64 KiB of pings fit in the kernel's
/// buffers whether or not the server reads them, so the test does not
/// depend on that. The good client is served between every two ticks;
/// once the pinger has left, its connection is closed within twice the
/// write timeout (the time the application has for a last word, then the
/// time the close may take), and the server holds no descriptor for it.
#[test]
fn a_ping_flooder_that_never_reads_is_closed_by_the_idle_timeout() {
    const PINGS: u32 = 500;
    const IDLE: u32 = 5;
    const WRITE: u32 = 2;
    const SOCKET_BUFFER: usize = 4 * 1024;
    let _one = one_at_a_time();
    run(|| async {
        let (multiplexer_ticks, tick_rx) = mpsc::unbounded::<()>();
        let builder = MultiplexerBuilder::new(64)
            .clock(Clock::new(TICK, tick_rx))
            .idle_timeout(IDLE * TICK)
            .write_timeout(WRITE * TICK);
        let mut server = Server::start_with(Acceptor::new(), builder, Some(SOCKET_BUFFER)).await;
        let (mut good, good_id) = connect_seen(&mut server).await;
        round_trip(&mut server, &mut good, good_id, "warm-up").await;
        let before = Memory::now();

        let mut pinger = RawClient::connect_with_receive_buffer(server.address, SOCKET_BUFFER);
        let pinger_id = server.connected().await;
        let fds_with_pinger = open_fds();
        let flood: Vec<u8> = (0..PINGS)
            .flat_map(|index| frame(FIN, PING, &ping_payload(index)))
            .collect();
        pinger.write(&flood);
        round_trip(&mut server, &mut good, good_id, "after the pings").await;

        // Time passes: the good client completes frames, the pinger none.
        let mut left = None;
        let mut tick = 0;
        while left.is_none() && tick < IDLE {
            tick += 1;
            multiplexer_ticks.unbounded_send(()).unwrap();
            for _ in 0..2 {
                good.send(Message::text("tick")).await.unwrap();
                loop {
                    match server.next().await {
                        IncomingPacket::Message(message) if message.stream_id == good_id => break,
                        IncomingPacket::StreamDisconnected(id, reason)
                            if id == pinger_id && left.is_none() =>
                        {
                            left = Some(reason);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
        let reason = left.expect("the pinger left by the idle deadline");
        assert!(
            matches!(
                reason,
                DisconnectReason::IdleTimeout | DisconnectReason::WriteTimeout
            ),
            "{reason:?}"
        );
        eprintln!(
            "a ping flooder that never reads its pongs left with {reason:?} at tick {tick} \
             (idle timeout {IDLE} ticks, write timeout {WRITE})"
        );

        // The application says nothing to it: it is closed.
        let mut closed_after = None;
        for after in 1..=2 * WRITE {
            multiplexer_ticks.unbounded_send(()).unwrap();
            round_trip(&mut server, &mut good, good_id, "after it left").await;
            round_trip(&mut server, &mut good, good_id, "after it left, again").await;
            if open_fds() < fds_with_pinger {
                closed_after = Some(after);
                break;
            }
        }
        let closed_after = closed_after.expect("the pinger's connection was closed");
        eprintln!("its connection was closed {closed_after} ticks after it left");
        assert_eq!(open_fds(), fds_with_pinger - 1, "the server's side, closed");
        before.assert_growth_within("500 pings, pongs never read", 4, 256);
        let stats = server.stats.snapshot();
        assert_eq!(stats.streams_open, 1);
        drop(pinger);
        drop(good);
        server.shut_down().await;
    });
}

/// A room flood: 32 KiB binary messages to a room of four reading clients
/// and one that never reads (with a 4 KiB receive buffer). The one that
/// never reads is disconnected with `BacklogFull` once its backlog of 64
/// overflows (after its socket and the writer's buffer have filled); the
/// four readers get every message of the flood, in order, none lost; the
/// server's memory stays bounded all along. The flood is paced by the
/// readers, never by the one that does not read. What that one received
/// before it was dropped is an in-order prefix of the flood, and then its
/// connection ends.
#[test]
fn a_client_that_never_reads_a_room_flood_is_dropped_when_its_backlog_overflows() {
    room_flood(FloodEnding::BacklogFull);
}

/// The same room flood, with a clock and a write timeout of three ticks
/// (a tick every 16 rounds) and a backlog of 4,096, which the flood never
/// fills: the one that never reads is dropped with `WriteTimeout` once its
/// socket has taken nothing for three ticks; the readers get everything.
#[test]
fn a_client_that_never_reads_a_room_flood_is_dropped_at_the_write_timeout() {
    room_flood(FloodEnding::WriteTimeout);
}

/// How the client that never reads a room flood is made to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FloodEnding {
    /// Its backlog of 64 overflows; no clock.
    BacklogFull,
    /// Its socket takes nothing for the write timeout; a backlog the flood
    /// never fills.
    WriteTimeout,
}

/// The room flood, ended as `ending` says (see the two tests above).
fn room_flood(ending: FloodEnding) {
    const READERS: usize = 4;
    const PAYLOAD: usize = 32 * 1024;
    const RECEIVE_BUFFER: usize = 4 * 1024;
    /// Rounds a reader may fall behind before the flood waits for it.
    const WINDOW: u32 = 16;
    /// Rounds between two ticks of the multiplexer's clock (`WriteTimeout`).
    const ROUNDS_PER_TICK: u32 = 16;
    const WRITE_TIMEOUT: u32 = 3;
    /// Rounds sent after the non-reader's departure was announced.
    const AFTER: u32 = 64;
    /// The safety net: this many rounds without the non-reader's
    /// departure fail.
    const MAX_ROUNDS: u32 = 20_000;
    /// The round number that tells a reader the flood is over.
    const END: u32 = u32::MAX;
    let _one = one_at_a_time();
    run(move || async move {
        let (multiplexer_ticks, tick_rx) = mpsc::unbounded::<()>();
        let (builder, expected_reason) = match ending {
            FloodEnding::BacklogFull => {
                (MultiplexerBuilder::new(64), DisconnectReason::BacklogFull)
            }
            FloodEnding::WriteTimeout => (
                MultiplexerBuilder::new(4096)
                    .clock(Clock::new(TICK, tick_rx))
                    .write_timeout(WRITE_TIMEOUT * TICK),
                DisconnectReason::WriteTimeout,
            ),
        };
        let mut server = Server::start_with(Acceptor::new(), builder, None).await;
        let (progress_tx, progress) = std_mpsc::channel::<usize>();
        let mut reader_ids = Vec::new();
        let mut readers = Vec::new();
        for index in 0..READERS {
            let (mut client, id) = connect_seen(&mut server).await;
            reader_ids.push(id);
            let progress = progress_tx.clone();
            readers.push(smol::spawn(async move {
                let mut expected = 0;
                loop {
                    let payload = match client.next().await {
                        Some(Ok(Message::Binary(payload))) => payload,
                        other => panic!("reader {index}: expected a flood message, got {other:?}"),
                    };
                    let round = round_of(&payload);
                    if round == END {
                        return (expected, client);
                    }
                    assert_eq!(round, expected, "reader {index} lost or reordered a round");
                    assert_eq!(payload.len(), PAYLOAD);
                    expected += 1;
                    let _ = progress.send(index);
                }
            }));
        }
        drop(progress_tx);
        let sink = RawClient::connect_with_receive_buffer(server.address, RECEIVE_BUFFER);
        let sink_id = server.connected().await;
        let everyone: Vec<StreamId> = reader_ids.iter().copied().chain([sink_id]).collect();
        server
            .send(OutgoingPacket::Join(everyone, "flood".into()))
            .await;
        let round_payload = |round: u32| {
            let mut payload = vec![0xF1; PAYLOAD];
            payload[..4].copy_from_slice(&round.to_be_bytes());
            WsMessage::binary(payload)
        };
        let before = Memory::now();

        let mut received = [0u32; READERS];
        let mut dropped_after = None;
        let mut rounds = 0u32;
        loop {
            while rounds - received.iter().min().copied().unwrap_or(0) >= WINDOW {
                // The readers run on the executor's thread, not this one.
                let index = progress
                    .recv_timeout(SAFETY_TIMEOUT)
                    .expect("the reading clients stalled");
                received[index] += 1;
            }
            let message = OutgoingMessage::to_room("flood", [round_payload(rounds)]);
            server.send(OutgoingPacket::Message(message)).await;
            rounds += 1;
            if ending == FloodEnding::WriteTimeout && rounds.is_multiple_of(ROUNDS_PER_TICK) {
                multiplexer_ticks.unbounded_send(()).unwrap();
            }
            if rounds.is_multiple_of(64) {
                before.assert_growth_within("the room flood so far", 16, 256);
            }
            if dropped_after.is_none()
                && let Ok(packet) = server.lobby.try_recv()
            {
                match packet {
                    IncomingPacket::StreamDisconnected(id, reason)
                        if id == sink_id && reason == expected_reason =>
                    {
                        dropped_after = Some(rounds);
                    }
                    other => panic!("expected the non-reader's {expected_reason:?}, got {other:?}"),
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
        let end = OutgoingMessage::to_room("flood", [round_payload(END)]);
        server.send(OutgoingPacket::Message(end)).await;
        let mut reading_clients = Vec::new();
        for reader in readers {
            let (received, client) = reader.await;
            assert_eq!(received, rounds);
            reading_clients.push(client);
        }
        before.assert_growth_within(&format!("a room flood of {rounds} rounds"), 16, 256);

        // Possibly none: what the kernel still held for it when the server
        // closed its socket is delivered, unless the kernel resets the
        // orphaned connection first, as it does under TCP memory pressure
        // ("TCP: out of memory -- consider tuning tcp_mem", seen here with
        // other work on the machine).
        let frames = smol::unblock(move || sink.drain()).await;
        assert!(
            frames.len() < rounds as usize,
            "{} of {rounds} rounds reached the non-reader",
            frames.len()
        );
        for (expected, payload) in (0..).zip(&frames) {
            assert_eq!(
                round_of(payload),
                expected,
                "the non-reader's prefix is in order"
            );
        }
        eprintln!(
            "room flood: the non-reader left with {expected_reason:?} after {} rounds sent ({} \
             had reached its socket); {rounds} rounds in all",
            dropped_after.unwrap_or(0),
            frames.len()
        );
        let stats = server.stats.snapshot();
        let disconnects = stats.disconnects;
        assert_eq!(
            (disconnects.backlog_full, disconnects.write_timeout),
            match ending {
                FloodEnding::BacklogFull => (1, 0),
                FloodEnding::WriteTimeout => (0, 1),
            }
        );
        assert_eq!(stats.streams_open, READERS as u64);
        drop(reading_clients);
        server.shut_down().await;
    });
}

// ---------------------------------------------------------------------------
// The server side: a multiplexer with one channel (the lobby), served on
// smol's executor with the crate's WebSocket acceptor, and the application
// driving it from the test's own thread.

/// Connections the listen backlog holds: more than the 1,000 half-open
/// handshakes waiting at once, so that none is refused.
const LISTEN_BACKLOG: u32 = 2048;

/// Runs `scenario` on its own thread, on smol, and fails if it does not
/// finish within the safety timeout.
fn run<F>(scenario: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()>,
{
    let (done, finished) = std_mpsc::channel();
    let worker = std::thread::spawn(move || {
        smol::block_on(scenario());
        let _ = done.send(());
    });
    match finished.recv_timeout(SAFETY_TIMEOUT) {
        Ok(()) => worker.join().expect("the scenario's thread"),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            // The scenario panicked: report its panic.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario did not finish within {SAFETY_TIMEOUT:?}")
        }
    }
}

type Incoming = IncomingPacket<io::Result<WsMessage>>;

/// A multiplexer serving WebSocket clients on loopback, in this process.
struct Server {
    address: SocketAddr,
    lobby: mpsc::Receiver<Incoming>,
    outgoing: mpsc::Sender<OutgoingPacket<WsMessage>>,
    control: mpsc::UnboundedSender<ControlMessage>,
    /// Each value is one tick of the acceptor's clock.
    ticks: mpsc::UnboundedSender<()>,
    stats: Stats,
    task: smol::Task<Result<(), MultiplexerError>>,
}

impl Server {
    async fn start(acceptor: Acceptor) -> Self {
        Self::start_with(acceptor, MultiplexerBuilder::new(64), None).await
    }

    /// A server whose multiplexer is built by `builder`; with
    /// `send_buffer`, every accepted socket gets a send buffer
    /// (`SO_SNDBUF`) of that many bytes, so that the kernel holds little
    /// for a client that does not read.
    async fn start_with(
        acceptor: Acceptor,
        builder: MultiplexerBuilder,
        send_buffer: Option<usize>,
    ) -> Self {
        let (channel0, lobby) = mpsc::channel(64);
        let (outgoing, outgoing_rx) = mpsc::channel(64);
        let multiplexer = builder.build(outgoing_rx, vec![channel0]);
        let stats = multiplexer.stats();
        let listener = bind(([127, 0, 0, 1], 0).into(), LISTEN_BACKLOG).expect("bind");
        let address = listener.local_addr().expect("local address");
        let connections = incoming(listener).map(move |accepted| {
            accepted.inspect(|connection| {
                if let Some(bytes) = send_buffer {
                    socket2::SockRef::from(connection)
                        .set_send_buffer_size(bytes)
                        .expect("set SO_SNDBUF on an accepted socket");
                }
            })
        });
        let (ticks, tick_rx) = mpsc::unbounded();
        let halves = acceptor.accept(connections, Clock::new(TICK, tick_rx));
        let (control, control_rx) = mpsc::unbounded();
        let task = smol::spawn(multiplexer.run(halves, control_rx));
        Self {
            address,
            lobby,
            outgoing,
            control,
            ticks,
            stats,
            task,
        }
    }

    /// The next packet of channel 0.
    async fn next(&mut self) -> Incoming {
        self.lobby.next().await.expect("the lobby is open")
    }

    /// The id of the next stream to connect.
    async fn connected(&mut self) -> StreamId {
        match self.next().await {
            IncomingPacket::StreamConnected(id) => id,
            other => panic!("expected a connection, got {other:?}"),
        }
    }

    /// The next message, which must come from `id`.
    async fn message_from(&mut self, id: StreamId) -> io::Result<WsMessage> {
        match self.next().await {
            IncomingPacket::Message(message) if message.stream_id == id => message.value,
            other => panic!("expected a message from {id}, got {other:?}"),
        }
    }

    /// Why `id` left: it must be the next packet.
    async fn disconnected(&mut self, id: StreamId) -> DisconnectReason {
        match self.next().await {
            IncomingPacket::StreamDisconnected(left, reason) if left == id => reason,
            other => panic!("expected {id} to leave, got {other:?}"),
        }
    }

    /// Waits until every one of `ids` has left `Linkdead`, in any order,
    /// each after the error of its reader if it had one; returns how many
    /// had one. Nothing else may come meanwhile.
    async fn departures(&mut self, ids: &[StreamId]) -> usize {
        let mut waiting: Vec<StreamId> = ids.to_vec();
        let mut errors = 0;
        while !waiting.is_empty() {
            match self.next().await {
                IncomingPacket::Message(message)
                    if waiting.contains(&message.stream_id) && message.value.is_err() =>
                {
                    errors += 1;
                }
                IncomingPacket::StreamDisconnected(id, DisconnectReason::Linkdead)
                    if waiting.contains(&id) =>
                {
                    waiting.retain(|&waiting| waiting != id);
                }
                other => panic!("expected one of {waiting:?} to leave, got {other:?}"),
            }
        }
        errors
    }

    async fn send(&mut self, packet: OutgoingPacket<WsMessage>) {
        self.outgoing
            .send(packet)
            .await
            .expect("the multiplexer runs");
    }

    /// `ticks` ticks of the acceptor's clock pass.
    fn tick(&self, ticks: usize) {
        for _ in 0..ticks {
            self.ticks.unbounded_send(()).expect("the acceptor's clock");
        }
    }

    /// Shuts the multiplexer down gracefully, reading what the lobby still
    /// gets meanwhile.
    async fn shut_down(self) {
        let drain = smol::spawn(self.lobby.for_each(|_| async {}));
        self.control
            .unbounded_send(ControlMessage::Shutdown)
            .expect("the multiplexer runs");
        self.task.await.expect("a clean shutdown");
        drain.await;
    }
}

// ---------------------------------------------------------------------------
// The well-behaved clients: async-tungstenite's, over smol TCP streams.

type Client = WebSocketStream<TcpStream>;

async fn connect(address: SocketAddr) -> Client {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let (client, _response) = async_tungstenite::client_async(format!("ws://{address}/"), tcp)
        .await
        .expect("the WebSocket handshake");
    client
}

/// A client that has connected and that the server has seen connect.
async fn connect_seen(server: &mut Server) -> (Client, StreamId) {
    let client = connect(server.address).await;
    let id = server.connected().await;
    (client, id)
}

/// A raw client sends `wire` and is refused: the server's reader yields an
/// `InvalidData` error, then the stream leaves as `Linkdead`, and the
/// client gets a close frame with `code`, then the end of the connection.
async fn refused_with(server: &mut Server, wire: &[u8], code: u16, what: &str) {
    let mut evil = RawClient::connect(server.address);
    let id = server.connected().await;
    evil.write(wire);
    let error = server.message_from(id).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}: {error}");
    assert_eq!(server.disconnected(id).await, DisconnectReason::Linkdead);
    assert_eq!(evil.close_code(), code, "{what}");
    evil.expect_end();
}

/// Sends a message and waits until the server delivered it, to show that
/// the client is served. Anything else reaching the lobby first fails it.
async fn round_trip(server: &mut Server, client: &mut Client, id: StreamId, text: &'static str) {
    client.send(Message::text(text)).await.expect("send");
    let received = server.message_from(id).await.expect("a message");
    assert_eq!(received, WsMessage::from(text));
}

/// One tick of the acceptor's clock passes, and the good client is served
/// twice after it: the acceptor counts the ticks that have come whenever
/// the multiplexer polls it, which it does before it reads, so by the
/// second round trip the tick has been counted (and nothing it made pass
/// reached the lobby, or the round trips would have failed).
async fn time_passes(server: &mut Server, good: &mut Client, good_id: StreamId) {
    server.tick(1);
    round_trip(server, good, good_id, "after a tick").await;
    round_trip(server, good, good_id, "after a tick, again").await;
}

/// Serves the good client, one round trip after another, until `from`'s
/// message `expected` arrives; returns how many round trips were made
/// meanwhile. Frames from two streams have no order between them, so the
/// good client's last message may come after `expected`: it is taken too.
async fn serve_until(
    server: &mut Server,
    good: &mut Client,
    good_id: StreamId,
    from: StreamId,
    expected: &'static str,
) -> usize {
    let mut turns = 0;
    loop {
        good.send(Message::text("meanwhile")).await.expect("send");
        match server.next().await {
            IncomingPacket::Message(message) if message.stream_id == good_id => turns += 1,
            IncomingPacket::Message(message) if message.stream_id == from => {
                assert_eq!(message.value.expect("a message"), WsMessage::from(expected));
                break;
            }
            other => panic!("expected a message from {good_id} or {from}, got {other:?}"),
        }
    }
    let last = server.message_from(good_id).await.expect("a message");
    assert_eq!(last, WsMessage::from("meanwhile"));
    turns
}

/// How a ping flood ended: both are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FloodEnd {
    /// The server read every ping (the message after them was delivered).
    AllRead,
    /// The server stopped reading the pinger: its flood was not written
    /// within [`STALL`].
    Stalled,
}

/// How long a pinger may take to write its whole flood before the test
/// takes it that the server has stopped reading it (or reads it only a
/// little at a time), as a server that pushes back on a client whose pongs
/// cannot be written would. A safety net of the kind [`SAFETY_TIMEOUT`] is,
/// not a synchronisation: while the server reads the pinger, as it does
/// today, 100,000 pings take a second or two, even on a loaded machine.
const STALL: Duration = Duration::from_secs(20);

/// Writes all of `bytes` to `socket` (which has a write timeout), unless
/// `deadline` passes first.
fn write_all_by(socket: &mut StdTcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => return Err(error),
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

/// `pinger` sends `pings` pings of 125 bytes, then the text "pings sent",
/// on a thread of its own, never reading; meanwhile the good client is
/// served, one round trip after another, until the text arrives or the
/// pinger's writes stall. Returns how it ended and how many round trips
/// were made.
async fn ping_flood(
    server: &mut Server,
    good: &mut Client,
    good_id: StreamId,
    pinger: &RawClient,
    pinger_id: StreamId,
    pings: u32,
) -> (FloodEnd, usize) {
    let mut writer = pinger.socket.try_clone().expect("a second handle");
    // Blocked writes give up now and then, to look at the deadline.
    writer
        .set_write_timeout(Some(STALL / 16))
        .expect("write timeout");
    let stalled = Arc::new(AtomicBool::new(false));
    let writing = std::thread::spawn({
        let stalled = Arc::clone(&stalled);
        move || {
            let deadline = Instant::now() + STALL;
            let flood = (0..pings)
                .map(|index| frame(FIN, PING, &ping_payload(index)))
                .chain([frame(FIN, TEXT, b"pings sent")])
                .try_for_each(|wire| write_all_by(&mut writer, &wire, deadline));
            stalled.store(flood.is_err(), Ordering::SeqCst);
        }
    });
    let mut turns = 0;
    let end = loop {
        if stalled.load(Ordering::SeqCst) {
            break FloodEnd::Stalled;
        }
        good.send(Message::text("meanwhile")).await.expect("send");
        match server.next().await {
            IncomingPacket::Message(message) if message.stream_id == good_id => turns += 1,
            IncomingPacket::Message(message) if message.stream_id == pinger_id => {
                assert_eq!(
                    message.value.expect("a message"),
                    WsMessage::from("pings sent")
                );
                let last = server.message_from(good_id).await.expect("a message");
                assert_eq!(last, WsMessage::from("meanwhile"));
                break FloodEnd::AllRead;
            }
            other => panic!("expected a message from {good_id} or {pinger_id}, got {other:?}"),
        }
    };
    writing.join().expect("the pinger's thread");
    (end, turns)
}

// ---------------------------------------------------------------------------
// The attackers: plain blocking sockets, speaking the protocol by hand.

/// A frame's FIN bit: the last frame of its message.
const FIN: bool = true;
/// A frame that more of its message follows.
const NOT_FIN: bool = false;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
/// The first reserved bit of a frame's first byte.
const RSV1: u8 = 0x40;
/// The masking key of every masked frame the attackers send.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

/// A frame's header: FIN and opcode; the mask bit and the payload length
/// in 7 bits (up to 125), or 126 and 16 bits (up to 64 KiB - 1), or 127
/// and 64 bits; then the masking key, if masked.
///
/// ```text
///  0                   1                   2                   3
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |F|R|R|R| opcode|M| length (7)  | length (16 or 64 bits) ...    |
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |  ... masking key (32 bits), if M                              |
/// +---------------------------------------------------------------+
/// ```
fn header(fin: bool, opcode: u8, length: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match (u8::try_from(length), u16::try_from(length)) {
        (Ok(short), _) if short <= 125 => header.push(masked | short),
        (_, Ok(medium)) => {
            header.push(masked | 126);
            header.extend(medium.to_be_bytes());
        }
        _ => {
            header.push(masked | 127);
            header.extend(length.to_be_bytes());
        }
    }
    if let Some(key) = mask {
        header.extend(key);
    }
    header
}

/// A whole frame as a client must send it: masked.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let length = u64::try_from(payload.len()).expect("a payload length");
    let mut frame = header(fin, opcode, length, Some(MASK));
    frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// A valid upgrade request.
fn upgrade_request() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec()
}

/// Connects, sends the first half of an upgrade request, and nothing more.
fn half_open_handshake(address: SocketAddr) -> StdTcpStream {
    let mut socket = StdTcpStream::connect(address).expect("connect");
    socket
        .set_read_timeout(Some(SAFETY_TIMEOUT))
        .expect("read timeout");
    let request = upgrade_request();
    socket
        .write_all(&request[..request.len() / 2])
        .expect("write");
    socket
}

/// Whether the server has neither closed nor written to `socket`: a read
/// would block. (A peek: nothing is taken from the socket.)
fn is_open_and_silent(socket: &StdTcpStream) -> bool {
    socket.set_nonblocking(true).expect("non-blocking");
    let read = socket.peek(&mut [0u8; 1]);
    socket.set_nonblocking(false).expect("blocking");
    matches!(read, Err(error) if error.kind() == io::ErrorKind::WouldBlock)
}

/// Waits for the end of the connection (`socket` has a read timeout): the
/// server closed it, with a FIN or, if it left bytes unread, a reset.
#[track_caller]
fn expect_end(socket: &mut StdTcpStream) {
    match socket.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the end of the connection, got {other:?}"),
    }
}

/// What the server sent on `socket` (which has a read timeout) until it
/// closed the connection, with a FIN or, if it left bytes unread, a reset.
#[track_caller]
fn read_to_end(socket: &mut StdTcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    match socket.read_to_end(&mut received) {
        Ok(_) => {}
        // What came before the reset was read.
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("expected the end of the connection, got {error}"),
    }
    received
}

/// A frame the server sent.
#[derive(Debug)]
struct Received {
    opcode: u8,
    payload: Vec<u8>,
}

/// A client that completed the upgrade by hand, on a blocking socket.
struct RawClient {
    socket: StdTcpStream,
}

impl RawClient {
    fn connect(address: SocketAddr) -> Self {
        Self::upgrade(StdTcpStream::connect(address).expect("connect"))
    }

    /// Connects with a receive buffer (`SO_RCVBUF`) of `bytes` set before
    /// the TCP handshake, so that the window the server is offered fits
    /// it (set after, the window would be the default's).
    fn connect_with_receive_buffer(address: SocketAddr, bytes: usize) -> Self {
        use socket2::{Domain, Protocol, Socket, Type};

        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket.connect(&address.into()).expect("connect");
        Self::upgrade(socket.into())
    }

    /// Sends the upgrade request and reads the `101` response.
    fn upgrade(mut socket: StdTcpStream) -> Self {
        socket
            .set_read_timeout(Some(SAFETY_TIMEOUT))
            .expect("read timeout");
        socket.set_nodelay(true).expect("nodelay");
        socket.write_all(&upgrade_request()).expect("the request");
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            socket.read_exact(&mut byte).expect("the response");
            response.push(byte[0]);
        }
        assert!(
            response.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        Self { socket }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).expect("write");
    }

    /// The next frame the server sends: never masked, never fragmented.
    fn next_frame(&mut self) -> io::Result<Received> {
        let mut head = [0u8; 2];
        self.socket.read_exact(&mut head)?;
        assert_eq!(head[0] & 0xF0, 0x80, "FIN and no reserved bit: {head:?}");
        assert_eq!(head[1] & 0x80, 0, "a server's frame is not masked");
        let length = match head[1] & 0x7F {
            126 => {
                let mut length = [0u8; 2];
                self.socket.read_exact(&mut length)?;
                u64::from(u16::from_be_bytes(length))
            }
            127 => {
                let mut length = [0u8; 8];
                self.socket.read_exact(&mut length)?;
                u64::from_be_bytes(length)
            }
            short => u64::from(short),
        };
        let mut payload = vec![0u8; usize::try_from(length).expect("a frame length")];
        self.socket.read_exact(&mut payload)?;
        Ok(Received {
            opcode: head[0] & 0x0F,
            payload,
        })
    }

    /// The code of the close frame the server sends next, which must be the
    /// next frame.
    #[track_caller]
    fn close_code(&mut self) -> u16 {
        let received = self.next_frame().expect("a close frame");
        assert_eq!(
            received.opcode, CLOSE,
            "expected a close frame, got {received:?}"
        );
        assert!(received.payload.len() >= 2, "a close frame with a code");
        u16::from_be_bytes([received.payload[0], received.payload[1]])
    }

    #[track_caller]
    fn expect_end(&mut self) {
        expect_end(&mut self.socket);
    }

    /// Reads the binary messages that reached this client until its
    /// connection ends (with a FIN or a reset, possibly in the middle of a
    /// frame).
    fn drain(mut self) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        loop {
            match self.next_frame() {
                Ok(received) if received.opcode == BINARY => payloads.push(received.payload),
                Ok(other) => panic!("expected a binary message, got {other:?}"),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return payloads;
                }
                Err(error) => panic!("expected the end of the connection, got {error}"),
            }
        }
    }
}

/// A ping's payload: 125 bytes (the most a control frame may carry), its
/// index first.
fn ping_payload(index: u32) -> Vec<u8> {
    let mut payload = vec![b'p'; 125];
    payload[..4].copy_from_slice(&index.to_be_bytes());
    payload
}

/// The index a ping's (or its pong's) payload starts with.
fn ping_index(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().expect("a ping index"))
}

/// The round number a flood message starts with.
fn round_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().expect("a round number"))
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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Waits until this process holds exactly `target` open file descriptors
/// and returns how many it holds. Nothing tells the test when the server
/// has accepted or closed a socket, so the count is read again and again,
/// never sleeping, with the safety timeout as the net.
#[track_caller]
fn fds_reach(target: usize) -> usize {
    fds_until(target, |fds| fds == target)
}

/// Waits until this process holds at most `target` open file descriptors,
/// and returns how many it holds.
#[track_caller]
fn fds_fall_to(target: usize) -> usize {
    fds_until(target, |fds| fds <= target)
}

#[track_caller]
fn fds_until(target: usize, reached: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + SAFETY_TIMEOUT;
    loop {
        let fds = open_fds();
        if reached(fds) {
            return fds;
        }
        assert!(
            Instant::now() < deadline,
            "{fds} open file descriptors, where {target} were expected"
        );
        std::thread::yield_now();
    }
}

/// Whether this process may hold `needed` open file descriptors (its soft
/// limit, `ulimit -n`); if not, the test is skipped, saying why.
fn enough_open_files(needed: usize) -> bool {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|line| line.split_whitespace().next())
        .map(|soft| soft.parse().unwrap_or(u64::MAX));
    match soft {
        Some(soft) if soft >= needed as u64 => true,
        soft => {
            eprintln!(
                "skipped: needs {needed} open files, the soft limit is {soft:?} (`ulimit -n`)"
            );
            false
        }
    }
}
