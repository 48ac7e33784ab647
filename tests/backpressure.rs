//! Guarantees 5–7 of the crate docs: backpressure per channel, bounded backlogs per stream, and
//! bounded work per poll.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use common::{Frame, Harness, Setup, disconnects_of, messages_of};
use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::task::{ArcWake, LocalSpawnExt};
use futures::{FutureExt, Stream, StreamExt, sink, stream};
use stream_multiplexer::{
    BacklogPolicy, ControlMessage, DisconnectReason, IncomingPacket, Multiplexer, OutgoingPacket,
};

/// A reader that counts how often it is polled.
struct Counted<S> {
    inner: S,
    polls: Rc<Cell<usize>>,
}

impl<S: Stream + Unpin> Stream for Counted<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.polls.set(self.polls.get() + 1);
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[test]
fn stalled_channel_polls_none_of_its_readers_and_others_go_on() {
    let (stalled, mut stalled_rx) = mpsc::channel::<IncomingPacket<Frame>>(0);
    let (busy, mut busy_rx) = mpsc::channel::<IncomingPacket<Frame>>(1024);
    let (outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<Frame>>();
    let (_control, control_rx) = mpsc::unbounded::<ControlMessage>();
    let (accept, accept_rx) = mpsc::unbounded();
    let multiplexer = Multiplexer::new(8, outgoing_rx, vec![stalled, busy]);
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(multiplexer.run(accept_rx, control_rx).map(drop))
        .expect("spawn");

    let polls = Rc::new(Cell::new(0));
    let (flooder, reader) = mpsc::unbounded::<Frame>();
    let (writer, _flooder_rx) = mpsc::channel::<Frame>(8);
    accept
        .unbounded_send(Ok((
            writer,
            Counted {
                inner: reader,
                polls: Rc::clone(&polls),
            },
        )))
        .expect("accept");
    for frame in 0..100 {
        flooder.unbounded_send(frame).expect("send");
    }
    pool.run_until_stalled();
    let polls_when_stalled = polls.get();

    // Channel 0 is full: more frames arrive, but its reader is not polled.
    for frame in 100..200 {
        flooder.unbounded_send(frame).expect("send");
    }
    pool.run_until_stalled();
    assert_eq!(
        polls.get(),
        polls_when_stalled,
        "a reader of a stalled channel was polled"
    );

    // Meanwhile a stream moved to channel 1 gets all its traffic through.
    let (talker, reader) = mpsc::unbounded::<Frame>();
    let (writer, _talker_rx) = mpsc::channel::<Frame>(8);
    accept
        .unbounded_send(Ok((
            writer,
            Counted {
                inner: reader,
                polls: Rc::new(Cell::new(0)),
            },
        )))
        .expect("accept");
    pool.run_until_stalled();
    // Its StreamConnected waits behind the stalled channel's backlog; the
    // id is the next one.
    outgoing
        .unbounded_send(OutgoingPacket::ChangeChannel(vec![2], 1))
        .expect("outgoing");
    for frame in 0..500 {
        talker.unbounded_send(frame).expect("send");
    }
    pool.run_until_stalled();
    let mut delivered = Vec::new();
    while let Ok(packet) = busy_rx.try_recv() {
        delivered.push(packet);
    }
    assert_eq!(delivered.first(), Some(&IncomingPacket::StreamConnected(2)));
    assert_eq!(messages_of(&delivered, 2), (0..500).collect::<Vec<_>>());

    // Once channel 0 is read, everything comes through, in order, with the
    // announcements that waited for it.
    let mut stalled_packets = Vec::new();
    loop {
        pool.run_until_stalled();
        match stalled_rx.try_recv() {
            Ok(packet) => stalled_packets.push(packet),
            _ => break,
        }
    }
    assert_eq!(stalled_packets[0], IncomingPacket::StreamConnected(1));
    assert_eq!(
        messages_of(&stalled_packets, 1),
        (0..200).collect::<Vec<_>>()
    );
    assert!(stalled_packets.contains(&IncomingPacket::StreamConnected(2)));
    assert!(
        stalled_packets.contains(&IncomingPacket::StreamDisconnected(
            2,
            DisconnectReason::ChannelChange(1)
        ))
    );
}

#[test]
fn announcements_for_a_stalled_channel_wait_in_order_and_are_never_dropped() {
    let mut harness = Harness::new(Setup {
        channels: vec![0],
        ..Setup::default()
    });
    let mut clients: Vec<_> = (0..20).map(|_| harness.connect()).collect();
    harness.settle();
    for client in &mut clients[..10] {
        client.hang_up();
    }
    let packets = harness.drain_settled(0);
    let expected_connects: Vec<_> = (1..=20).map(IncomingPacket::StreamConnected).collect();
    let connects: Vec<_> = packets
        .iter()
        .filter(|p| matches!(p, IncomingPacket::StreamConnected(_)))
        .cloned()
        .collect();
    assert_eq!(connects, expected_connects);
    for id in 1..=10 {
        assert_eq!(
            disconnects_of(&packets, id),
            vec![DisconnectReason::Linkdead]
        );
    }
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_no_one_else_notices() {
    // Each client's "socket" holds 2 values; each stream's backlog 4 more.
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 4,
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut slow, slow_id) = harness.connect_on(0);
    let (mut fast, fast_id) = harness.connect_on(0);
    let mut fast_got = Vec::new();
    for value in 0..50 {
        harness.message([slow_id, fast_id], [value]);
        harness.settle();
        fast_got.extend(fast.received().0);
    }
    assert_eq!(
        fast_got,
        (0..50).collect::<Vec<_>>(),
        "the fast client got everything"
    );
    let (slow_got, slow_closed) = slow.received();
    assert!(slow_closed, "the slow client was disconnected");
    assert_eq!(slow_got, vec![0, 1], "after the values its socket held");
    assert_eq!(
        disconnects_of(&harness.drain(0), slow_id),
        vec![DisconnectReason::BacklogFull]
    );
    assert_eq!(harness.stats.snapshot().disconnects.backlog_full, 1);
}

#[test]
fn wait_policy_holds_outgoing_until_the_backlog_has_room_and_loses_nothing() {
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 4,
        client_buffer: 1,
        policy: BacklogPolicy::Wait,
        ..Setup::default()
    });
    let (mut slow, slow_id) = harness.connect_on(0);
    let (mut fast, fast_id) = harness.connect_on(0);
    for value in 0..50 {
        harness.message([slow_id, fast_id], [value]);
    }
    harness.settle();
    let (fast_early, _) = fast.received();
    assert!(fast_early.len() < 50, "outgoing waited for the slow client");

    let (mut slow_got, mut fast_got) = (Vec::new(), fast_early);
    for _ in 0..100 {
        slow_got.extend(slow.received().0);
        fast_got.extend(fast.received().0);
        harness.settle();
    }
    assert_eq!(slow_got, (0..50).collect::<Vec<_>>());
    assert_eq!(fast_got, (0..50).collect::<Vec<_>>());
    assert_eq!(harness.stats.snapshot().disconnects.backlog_full, 0);
}

#[test]
fn a_message_larger_than_the_backlog_disconnects_even_when_waiting() {
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 4,
        policy: BacklogPolicy::Wait,
        ..Setup::default()
    });
    let (_client, id) = harness.connect_on(0);
    harness.message([id], 0..5);
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), id),
        vec![DisconnectReason::BacklogFull]
    );
}

struct WakeCount(AtomicUsize);

impl ArcWake for WakeCount {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn one_poll_does_bounded_work_then_wakes_itself() {
    // A client that never stops sending, into a channel that never fills.
    let endless = stream::repeat(7u32);
    let halves = stream::iter([Ok((sink::drain::<Frame>(), endless))]).chain(stream::pending());
    let outgoing = stream::pending::<OutgoingPacket<Frame>>();
    let multiplexer = Multiplexer::new(8, outgoing, vec![sink::drain::<IncomingPacket<Frame>>()]);
    let stats = multiplexer.stats();
    let mut run = multiplexer.run(halves, stream::pending::<ControlMessage>());

    let wakes = Arc::new(WakeCount(AtomicUsize::new(0)));
    let waker = futures::task::waker(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    for poll in 1..=3u64 {
        assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
        let read = stats.snapshot().frames_in;
        assert!(
            read > 0 && read <= poll * 100_000,
            "poll {poll} read {read} frames"
        );
        assert!(
            wakes.0.load(Ordering::SeqCst) >= poll as usize,
            "it woke itself to go on"
        );
    }
}

#[test]
fn a_chatty_stream_cannot_starve_a_quiet_one() {
    let chatty = stream::repeat(0u32).boxed();
    let quiet = stream::iter([1u32]).chain(stream::pending()).boxed();
    let halves = stream::iter([
        Ok((sink::drain::<Frame>(), chatty)),
        Ok((sink::drain(), quiet)),
    ])
    .chain(stream::pending());
    let (channel, mut consumer) = mpsc::unbounded::<IncomingPacket<Frame>>();
    let outgoing = stream::pending::<OutgoingPacket<Frame>>();
    let mut run = Multiplexer::new(8, outgoing, vec![channel])
        .run(halves, stream::pending::<ControlMessage>());

    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    let mut seen = 0;
    while let Ok(packet) = consumer.try_recv() {
        seen += 1;
        if packet.value() == Some(&1) {
            assert!(seen < 200, "the quiet stream waited behind {seen} packets");
            return;
        }
    }
    panic!("the quiet stream's frame was not read in the first poll ({seen} packets)");
}

/// A backlog holds what the client's socket has not taken yet: a burst
/// queued in one go to a client whose socket has room is written out, even
/// when it is many times the backlog, and nobody is disconnected.
#[test]
fn a_burst_larger_than_the_backlog_to_a_reading_client_is_written_out() {
    for burst in [9, 80] {
        let mut harness = Harness::new(Setup {
            sender_buffer_size: 8,
            client_buffer: 1024,
            ..Setup::default()
        });
        let (mut client, id) = harness.connect_on(0);
        for value in 0..burst {
            harness.message([id], [value]);
        }
        harness.settle();
        let (got, closed) = client.received();
        assert_eq!(got, (0..burst).collect::<Vec<_>>(), "burst of {burst}");
        assert!(!closed, "a burst of {burst} kicked a reading client");
        assert!(disconnects_of(&harness.drain(0), id).is_empty());
        assert_eq!(harness.stats.snapshot().disconnects.backlog_full, 0);
    }
}

/// The same burst to a client whose socket refuses more: once the socket
/// and the backlog are both full, the client is disconnected, and a reader
/// beside it gets the whole burst.
#[test]
fn a_burst_to_a_client_whose_socket_is_full_disconnects_only_that_client() {
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 8,
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut stalled, stalled_id) = harness.connect_on(0);
    let reader = harness.connect();
    let mut reader = reader;
    harness.settle();
    let reader_id = match harness.drain(0).as_slice() {
        [IncomingPacket::StreamConnected(id)] => *id,
        other => panic!("expected one StreamConnected, got {other:?}"),
    };
    let mut reader_got = Vec::new();
    for value in 0..80 {
        harness.message([stalled_id, reader_id], [value]);
        // The reader reads as the burst comes, the stalled client never.
        harness.settle();
        reader_got.extend(reader.received().0);
    }
    assert_eq!(reader_got, (0..80).collect::<Vec<_>>());
    let (_, closed) = stalled.received();
    assert!(closed);
    let packets = harness.drain(0);
    assert_eq!(
        disconnects_of(&packets, stalled_id),
        vec![DisconnectReason::BacklogFull]
    );
    assert!(disconnects_of(&packets, reader_id).is_empty());
}
