//! Time limits (guarantee 14 of the crate docs), driven by a clock the test
//! ticks by hand: idle and write timeouts, the flush that a half-closed
//! client still gets, and shutdowns that a client cannot hold open.

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{Harness, Limits, Setup, TICK, disconnects_of, messages_of};
use futures::Stream;
use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::io::AsyncRead;
use futures::task::LocalSpawnExt;
use stream_multiplexer::codec::LengthDelimitedCodec;
use stream_multiplexer::framed::FramedRead;
use stream_multiplexer::{
    Clock, ControlMessage, DisconnectReason, IncomingPacket, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket,
};

fn timed(idle: Option<u64>, write: Option<u64>) -> Setup {
    Setup {
        clock: Some(Limits { idle, write }),
        ..Setup::default()
    }
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout_and_not_before() {
    let mut harness = Harness::new(timed(Some(3), None));
    let (mut client, id) = harness.connect_on(0);
    harness.tick(2);
    assert!(
        harness.drain(0).is_empty(),
        "two ticks of three: still here"
    );

    harness.tick(1);
    assert_eq!(
        harness.drain(0),
        [IncomingPacket::StreamDisconnected(
            id,
            DisconnectReason::IdleTimeout
        )]
    );
    assert_eq!(harness.stats.snapshot().disconnects.idle_timeout, 1);

    // Announced as gone, it can still be told why, then closed.
    harness.message([id], [99]);
    harness.send(OutgoingPacket::Shutdown(vec![id]));
    harness.settle();
    assert_eq!(client.received(), (vec![99], true));
}

#[test]
fn every_complete_frame_restarts_the_idle_timeout() {
    let mut harness = Harness::new(timed(Some(3), None));
    let (client, id) = harness.connect_on(0);
    for frame in 0..10 {
        harness.tick(2);
        client.send(frame);
        harness.settle();
    }
    let packets = harness.drain(0);
    assert_eq!(messages_of(&packets, id), (0..10).collect::<Vec<_>>());
    assert!(disconnects_of(&packets, id).is_empty());
}

/// An `AsyncRead` fed by the test: each chunk sent is what one read returns.
struct Trickle(mpsc::UnboundedReceiver<Vec<u8>>);

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(chunk)) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(None) => Poll::Ready(Ok(0)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A slowloris sends a byte of a frame every tick, well under the maximum
/// frame length: bytes arrive, but no frame completes, and the idle timeout
/// closes it.
#[test]
fn a_slowloris_trickling_a_frame_under_the_maximum_is_closed_by_the_idle_timeout() {
    let (ticks, tick_rx) = mpsc::unbounded::<()>();
    let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<io::Result<Bytes>>>(8);
    let (_outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
    let multiplexer = MultiplexerBuilder::new(8)
        .clock(Clock::new(TICK, tick_rx))
        .idle_timeout(TICK * 5)
        .build(outgoing_rx, vec![lobby]);
    let (accept, accept_rx) = mpsc::unbounded();
    let (_control, control_rx) = mpsc::unbounded::<ControlMessage>();
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(async move {
            let _ = multiplexer.run(accept_rx, control_rx).await;
        })
        .unwrap();

    let (bytes, bytes_rx) = mpsc::unbounded::<Vec<u8>>();
    let reader = FramedRead::new(Trickle(bytes_rx), LengthDelimitedCodec::new(2));
    let (writer, _client) = mpsc::channel::<Bytes>(8);
    accept.unbounded_send(Ok((writer, reader))).unwrap();
    pool.run_until_stalled();
    let id = match lobby_rx.try_recv() {
        Ok(IncomingPacket::StreamConnected(id)) => id,
        other => panic!("expected StreamConnected, got {other:?}"),
    };

    // A 100-byte frame, announced, then one byte per tick.
    bytes.unbounded_send(vec![0, 100]).unwrap();
    for tick in 1..=5 {
        bytes.unbounded_send(vec![b'x']).unwrap();
        pool.run_until_stalled();
        ticks.unbounded_send(()).unwrap();
        pool.run_until_stalled();
        if tick < 5 {
            assert!(lobby_rx.try_recv().is_err(), "closed after {tick} ticks");
        }
    }
    match lobby_rx.try_recv() {
        Ok(IncomingPacket::StreamDisconnected(i, DisconnectReason::IdleTimeout)) => {
            assert_eq!(i, id);
        }
        other => panic!("expected an idle timeout, got {other:?}"),
    }
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_write_timeout() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..timed(None, Some(4))
    });
    let (mut stalled, stalled_id) = harness.connect_on(0);
    let (mut reader, reader_id) = harness.connect_on(0);
    // Fits the backlog: only time can tell the stalled client is gone.
    harness.message([stalled_id, reader_id], 0..5);
    harness.settle();
    let mut reader_got = Vec::new();
    for _ in 0..3 {
        harness.tick(1);
        reader_got.extend(reader.received().0);
    }
    assert!(harness.drain(0).is_empty(), "three ticks of four");

    harness.tick(1);
    reader_got.extend(reader.received().0);
    assert_eq!(
        harness.drain(0),
        [IncomingPacket::StreamDisconnected(
            stalled_id,
            DisconnectReason::WriteTimeout
        )]
    );
    assert!(stalled.received().1, "its connection was closed");
    assert_eq!(
        reader_got,
        (0..5).collect::<Vec<_>>(),
        "the reader lost nothing"
    );
    let snapshot = harness.stats.snapshot();
    assert_eq!(snapshot.disconnects.write_timeout, 1);
    assert_eq!(
        snapshot.accepted,
        snapshot.streams_open + snapshot.departed()
    );
}

#[test]
fn a_client_that_reads_slowly_but_steadily_is_never_timed_out() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        sender_buffer_size: 64,
        ..timed(None, Some(2))
    });
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], 0..40);
    harness.settle();
    let mut got = Vec::new();
    for _ in 0..40 {
        // One value taken per tick: the socket takes bytes, slowly.
        if let Ok(value) = client.from_server.try_recv() {
            got.push(value);
        }
        harness.tick(1);
    }
    got.extend(client.received().0);
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert!(disconnects_of(&harness.drain(0), id).is_empty());
}

/// The ancestor of every limit on a flush: a client that never reads,
/// closed by `Shutdown`, used to keep its connection until an `Abort` or a
/// newcomer under `max_streams` took its place.
#[test]
fn a_never_reading_client_closed_by_shutdown_is_freed_after_the_write_timeout() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..timed(None, Some(3))
    });
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], 0..10);
    harness.send(OutgoingPacket::Shutdown(vec![id]));
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), id),
        [DisconnectReason::Shutdown]
    );
    harness.tick(2);
    let (mut got, closed) = client.received();
    assert!(!closed, "still flushing after two ticks of three");

    harness.tick(1);
    let (rest, closed) = client.received();
    got.extend(rest);
    assert!(closed, "the connection is given back");
    assert_eq!(got, [0, 1], "what its socket held");
    let snapshot = harness.stats.snapshot();
    assert_eq!(snapshot.disconnects.shutdown, 1);
    assert_eq!(snapshot.disconnects.write_timeout, 0, "announced once");
    assert_eq!(snapshot.streams_open, 0);
}

/// `printf 'hello\n' | nc -N`: the client sends its request and
/// half-closes. Its reply, sent after the request was read and after its
/// end was announced, still reaches it; the application's `Shutdown` then
/// closes the connection.
#[test]
fn a_half_closed_client_receives_its_replies() {
    let mut harness = Harness::new(timed(Some(100), Some(5)));
    let (mut client, id) = harness.connect_on(0);
    client.send(1);
    client.hang_up();
    harness.settle();
    assert_eq!(
        harness.drain(0),
        [
            IncomingPacket::Message(stream_multiplexer::IncomingMessage::new(id, 1)),
            IncomingPacket::StreamDisconnected(id, DisconnectReason::Linkdead),
        ]
    );

    harness.message([id], [10, 11]);
    harness.send(OutgoingPacket::Shutdown(vec![id]));
    harness.settle();
    assert_eq!(client.received(), (vec![10, 11], true));
    let snapshot = harness.stats.snapshot();
    assert_eq!(snapshot.disconnects.linkdead, 1);
    assert_eq!(snapshot.disconnects.shutdown, 0, "announced once");
    assert_eq!(snapshot.dropped_unknown_id, 0);
}

/// An application that never closes a half-closed client: the connection
/// is closed by itself once the write timeout has passed since the end,
/// after what was sent meanwhile.
#[test]
fn a_half_closed_client_is_closed_after_the_write_timeout_if_the_application_does_not() {
    let mut harness = Harness::new(timed(None, Some(3)));
    let (mut client, id) = harness.connect_on(0);
    client.hang_up();
    harness.settle();
    harness.message([id], [7]);
    harness.settle();
    harness.tick(2);
    assert_eq!(client.received(), (vec![7], false));

    harness.tick(1);
    assert_eq!(client.received(), (vec![], true));
    // Too late: it has closed.
    harness.message([id], [8]);
    harness.settle();
    assert_eq!(harness.stats.snapshot().dropped_unknown_id, 1);
}

/// Without a clock, a client that half-closes still gets what was queued
/// for it before its end; nothing keeps the connection open after that.
#[test]
fn without_a_clock_a_half_closed_client_gets_what_was_queued_before_its_end() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], 0..6);
    harness.settle();
    client.hang_up();
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), id),
        [DisconnectReason::Linkdead]
    );
    let mut got = Vec::new();
    let closed = loop {
        let (frames, closed) = client.received();
        got.extend(frames);
        if closed {
            break true;
        }
        harness.settle();
        if got.len() > 6 {
            break false;
        }
    };
    assert!(closed);
    assert_eq!(got, (0..6).collect::<Vec<_>>());
}

#[test]
fn a_graceful_shutdown_is_bounded_by_the_write_timeout_with_a_never_reader_present() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..timed(None, Some(3))
    });
    let (mut never_reads, stalled_id) = harness.connect_on(0);
    let (mut reads, reader_id) = harness.connect_on(0);
    harness.message([stalled_id, reader_id], 0..8);
    harness.control(ControlMessage::Shutdown);
    harness.settle();
    let mut got = Vec::new();
    for _ in 0..100 {
        let (frames, closed) = reads.received();
        got.extend(frames);
        if closed {
            break;
        }
        harness.settle();
    }
    assert_eq!(got, (0..8).collect::<Vec<_>>(), "the reader got everything");
    harness.tick(2);
    assert!(
        harness.finished().is_none(),
        "still flushing the never-reader"
    );

    harness.tick(1);
    assert!(never_reads.received().1);
    assert_eq!(harness.finished(), Some(Ok(())));
}

#[test]
fn a_departed_stream_leaves_nothing_in_the_timer_wheel_to_act_on() {
    let mut harness = Harness::new(timed(Some(2), Some(2)));
    let (mut first, first_id) = harness.connect_on(0);
    harness.send(OutgoingPacket::Shutdown(vec![first_id]));
    harness.settle();
    assert!(first.received().1, "gone, its slab slot free");
    harness.drain(0);
    // A newcomer may take the departed stream's slab slot: the wheel's
    // entry for the old one must not time it out early.
    harness.tick(1);
    let (mut second, second_id) = harness.connect_on(0);
    harness.tick(1);
    second.send(5);
    harness.settle();
    harness.tick(1);
    let packets = harness.drain(0);
    assert_eq!(messages_of(&packets, second_id), [5]);
    assert!(disconnects_of(&packets, second_id).is_empty());
    harness.send(OutgoingPacket::Message(OutgoingMessage::new(
        [second_id],
        [1],
    )));
    harness.settle();
    assert_eq!(second.received(), (vec![1], false));
}

/// A client that sends its login and half-closes at once: the application
/// moves it on, and the next channel's consumer still gets to greet it.
#[test]
fn a_half_closed_client_moved_on_is_announced_to_its_new_channel_and_answered_there() {
    let mut harness = Harness::new(timed(None, Some(5)));
    let (mut client, id) = harness.connect_on(0);
    client.send(1);
    client.hang_up();
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), id),
        [DisconnectReason::Linkdead]
    );

    harness.send(OutgoingPacket::ChangeChannel(vec![id], 1));
    harness.settle();
    assert_eq!(
        harness.drain(1),
        [
            IncomingPacket::StreamConnected(id),
            IncomingPacket::StreamDisconnected(id, DisconnectReason::Linkdead),
        ]
    );
    assert!(
        harness.drain(0).is_empty(),
        "the old channel heard nothing more"
    );
    harness.message([id], [42]);
    harness.send(OutgoingPacket::Shutdown(vec![id]));
    harness.settle();
    assert_eq!(client.received(), (vec![42], true));
    let snapshot = harness.stats.snapshot();
    assert_eq!(snapshot.disconnects.linkdead, 1, "one departure");
    assert_eq!(
        snapshot.accepted,
        snapshot.streams_open + snapshot.departed()
    );
}
