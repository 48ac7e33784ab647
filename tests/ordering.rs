//! Guarantees 1–4 of the crate docs: ordering and exactly-once, across channel moves, for
//! outgoing packets, and for ids.

mod common;

use common::{Frame, Harness, Setup, disconnects_of, messages_of};
use stream_multiplexer::{DisconnectReason, IncomingPacket, OutgoingPacket, StreamId};

/// Checks one channel visit: Connected first, then messages, then exactly
/// one Disconnected (if `closed`), and returns the messages.
fn visit(
    packets: &[IncomingPacket<Frame>],
    id: StreamId,
    closed: Option<DisconnectReason>,
) -> Vec<Frame> {
    let mine: Vec<_> = packets.iter().filter(|p| p.id() == id).collect();
    assert_eq!(
        mine.first(),
        Some(&&IncomingPacket::StreamConnected(id)),
        "visit of {id} must open with Connected"
    );
    let body = match closed {
        Some(reason) => {
            assert_eq!(
                mine.last(),
                Some(&&IncomingPacket::StreamDisconnected(id, reason)),
                "visit of {id} must close with one Disconnected"
            );
            &mine[1..mine.len() - 1]
        }
        None => &mine[1..],
    };
    body.iter()
        .map(|p| {
            *p.value()
                .unwrap_or_else(|| panic!("unexpected announcement {p:?} inside a visit"))
        })
        .collect()
}

#[test]
fn consumer_sees_connected_then_messages_in_order_then_one_disconnected() {
    // A small channel buffer, so the streams are read under backpressure.
    let mut harness = Harness::new(Setup {
        channels: vec![4],
        ..Setup::default()
    });
    let mut clients: Vec<_> = (0..3).map(|_| harness.connect()).collect();
    for round in 0..200 {
        for client in &clients {
            client.send(round);
        }
    }
    for client in &mut clients {
        client.hang_up();
    }
    let packets = harness.drain_settled(0);

    let ids: Vec<StreamId> = packets
        .iter()
        .filter_map(|p| match p {
            IncomingPacket::StreamConnected(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    for id in ids {
        let frames = visit(&packets, id, Some(DisconnectReason::Linkdead));
        assert_eq!(frames, (0..200).collect::<Vec<_>>());
    }
    assert_eq!(harness.stats.snapshot().frames_in, 600);
}

#[test]
fn move_mid_burst_loses_and_duplicates_nothing() {
    // Channel 0 holds 2 packets: the burst is mostly unread when the move
    // is applied, and the old channel is backpressured.
    let mut harness = Harness::new(Setup {
        channels: vec![2, 2],
        ..Setup::default()
    });
    let (client, id) = harness.connect_on(0);
    client.send_all(0..2_000);
    harness.settle();
    harness.send(OutgoingPacket::ChangeChannel(vec![id], 1));
    harness.settle();

    let mut old = Vec::new();
    let mut new = Vec::new();
    loop {
        harness.settle();
        let (a, b) = (harness.drain(0), harness.drain(1));
        if a.is_empty() && b.is_empty() {
            break;
        }
        old.extend(a);
        new.extend(b);
    }
    old.insert(0, IncomingPacket::StreamConnected(id));
    let before = visit(&old, id, Some(DisconnectReason::ChannelChange(1)));
    let after = visit(&new, id, None);
    assert!(!after.is_empty(), "the move happened mid-burst");
    let all: Vec<Frame> = before.into_iter().chain(after).collect();
    assert_eq!(all, (0..2_000).collect::<Vec<_>>());
}

#[test]
fn move_into_a_backpressured_channel_announces_before_messages() {
    let mut harness = Harness::new(Setup {
        channels: vec![64, 1],
        ..Setup::default()
    });
    // Fill channel 1 with another stream's traffic, and leave it unread.
    let (filler, filler_id) = harness.connect_on(0);
    harness.send(OutgoingPacket::ChangeChannel(vec![filler_id], 1));
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), filler_id),
        vec![DisconnectReason::ChannelChange(1)]
    );
    filler.send_all(0..10);
    harness.settle();

    let (mover, id) = harness.connect_on(0);
    mover.send_all(0..5);
    harness.settle();
    harness.send(OutgoingPacket::ChangeChannel(vec![id], 1));
    mover.send_all(5..10);
    let old = harness.drain_settled(0);
    let new = harness.drain_settled(1);

    let mut old_visit = vec![IncomingPacket::StreamConnected(id)];
    old_visit.extend(old);
    let before = visit(&old_visit, id, Some(DisconnectReason::ChannelChange(1)));
    let after = visit(&new, id, None);
    assert_eq!(before, (0..5).collect::<Vec<_>>());
    assert_eq!(after, (5..10).collect::<Vec<_>>());
    assert_eq!(messages_of(&new, filler_id), (0..10).collect::<Vec<_>>());
    let connected_at = new
        .iter()
        .position(|p| *p == IncomingPacket::StreamConnected(id));
    let first_message_at = new.iter().position(|p| p.id() == id && p.value().is_some());
    assert!(connected_at < first_message_at);
}

#[test]
fn move_to_the_current_channel_changes_nothing() {
    let mut harness = Harness::new(Setup::default());
    let (client, id) = harness.connect_on(0);
    harness.send(OutgoingPacket::ChangeChannel(vec![id], 0));
    client.send(1);
    let packets = harness.drain_settled(0);
    assert_eq!(
        packets,
        vec![IncomingPacket::Message(
            stream_multiplexer::IncomingMessage::new(id, 1)
        )]
    );
    let stats = harness.stats.snapshot();
    assert_eq!(stats.disconnects.channel_change, 0);
    assert_eq!(stats.moves_rejected, 0);
}

#[test]
fn move_to_a_missing_channel_is_rejected_and_counted() {
    let mut harness = Harness::new(Setup {
        channels: vec![8, 8],
        ..Setup::default()
    });
    let (client, id) = harness.connect_on(0);
    harness.send(OutgoingPacket::ChangeChannel(vec![id], 7));
    client.send(1);
    let packets = harness.drain_settled(0);
    assert_eq!(
        messages_of(&packets, id),
        vec![1],
        "the stream stays where it was"
    );
    assert!(disconnects_of(&packets, id).is_empty());
    assert_eq!(harness.stats.snapshot().moves_rejected, 1);
}

#[test]
fn outgoing_messages_arrive_in_the_order_they_were_sent() {
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 1_000,
        ..Setup::default()
    });
    let (mut client, id) = harness.connect_on(0);
    for value in 0..500 {
        harness.message([id], [value]);
    }
    harness.settle();
    let (frames, closed) = client.received();
    assert_eq!(frames, (0..500).collect::<Vec<_>>());
    assert!(!closed);
}

#[test]
fn message_then_shutdown_delivers_the_message_then_closes() {
    let mut harness = Harness::new(Setup::default());
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], [41, 42]);
    harness.send(OutgoingPacket::Shutdown(vec![id]));
    harness.settle();
    let (frames, closed) = client.received();
    assert_eq!(frames, vec![41, 42]);
    assert!(closed, "the connection is closed after the flush");
    assert_eq!(
        harness.drain(0),
        vec![IncomingPacket::StreamDisconnected(
            id,
            DisconnectReason::Shutdown
        )]
    );
}

#[test]
fn packet_for_a_departed_id_is_dropped_counted_and_reaches_nobody() {
    let mut harness = Harness::new(Setup::default());
    let (mut gone, gone_id) = harness.connect_on(0);
    gone.hang_up();
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), gone_id),
        vec![DisconnectReason::Linkdead]
    );
    // A new stream may take the departed one's slab slot.
    let (mut newcomer, new_id) = harness.connect_on(0);
    assert_ne!(new_id, gone_id);

    harness.message([gone_id], [9]);
    harness.send(OutgoingPacket::Shutdown(vec![gone_id]));
    harness.send(OutgoingPacket::ChangeChannel(vec![gone_id], 1));
    harness.settle();
    assert_eq!(newcomer.received(), (vec![], false));
    assert_eq!(harness.stats.snapshot().dropped_unknown_id, 3);
}

/// Hands out 1, 2, 1, 2, ...
#[derive(Default)]
struct TwoIds(bool);

impl stream_multiplexer::IdGen for TwoIds {
    fn next(&mut self) -> StreamId {
        self.0 = !self.0;
        self.id()
    }
    fn id(&self) -> StreamId {
        if self.0 { 1 } else { 2 }
    }
}

#[test]
fn an_id_is_never_given_to_a_new_stream_while_its_holder_is_alive() {
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use stream_multiplexer::MultiplexerBuilder;

    let (channel, mut consumer) = mpsc::channel::<IncomingPacket<Frame>>(16);
    let (_outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<Frame>>();
    let (_control, control_rx) = mpsc::unbounded();
    let (accept, accept_rx) = mpsc::unbounded::<std::io::Result<common::Halves>>();
    let multiplexer = MultiplexerBuilder::new(8)
        .id_gen(TwoIds::default())
        .build(outgoing_rx, vec![channel]);
    let stats = multiplexer.stats();
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(async move {
            let _ = multiplexer.run(accept_rx, control_rx).await;
        })
        .expect("spawn");

    let connect = || {
        let (to_server, reader) = mpsc::unbounded::<Frame>();
        let (writer, from_server) = mpsc::channel::<Frame>(8);
        accept.unbounded_send(Ok((writer, reader))).expect("accept");
        (to_server, from_server)
    };
    let first = connect();
    let _second = connect();
    let mut third = connect();
    pool.run_until_stalled();

    let mut ids = Vec::new();
    while let Ok(packet) = consumer.try_recv() {
        ids.push(packet.id());
    }
    assert_eq!(ids, vec![1, 2], "the third stream got no live id");
    assert!(
        third.1.try_recv().is_err_and(|e| e.is_closed()),
        "and was closed"
    );
    assert_eq!(stats.snapshot().accept_errors, 1);

    drop(first);
    pool.run_until_stalled();
    third = connect();
    pool.run_until_stalled();
    let mut packets = Vec::new();
    while let Ok(packet) = consumer.try_recv() {
        packets.push(packet);
    }
    assert_eq!(
        packets,
        vec![
            IncomingPacket::StreamDisconnected(1, DisconnectReason::Linkdead),
            IncomingPacket::StreamConnected(1),
        ],
        "id 1 is given out again only once its holder has gone"
    );
    drop(third);
}

#[test]
fn increment_ids_wrap_around_at_usize_max() {
    use stream_multiplexer::{IdGen, IncrementIdGen};
    let mut ids = IncrementIdGen::default();
    ids.seed(usize::MAX - 1);
    assert_eq!(ids.next(), usize::MAX);
    assert_eq!(ids.next(), 0);
    assert_eq!(ids.next(), 1);
}
