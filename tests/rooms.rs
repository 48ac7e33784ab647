//! Rooms and delivery classes (guarantees 15 and 16 of the crate docs):
//! membership across moves and departures, sends to a room with and
//! without the sender, and how each delivery class treats a client whose
//! socket takes nothing more.

mod common;

use common::{Harness, Limits, Setup, disconnects_of};
use stream_multiplexer::{
    BacklogPolicy, DisconnectReason, OutgoingMessage, OutgoingPacket, Rooms, StreamId,
};

fn join(harness: &mut Harness, ids: &[StreamId], room: &str) {
    harness.send(OutgoingPacket::Join(ids.to_vec(), room.into()));
}

fn to_room(harness: &mut Harness, message: OutgoingMessage<u32>) {
    harness.send(OutgoingPacket::Message(message));
    harness.settle();
}

fn sorted(mut ids: Vec<StreamId>) -> Vec<StreamId> {
    ids.sort_unstable();
    ids
}

#[test]
fn a_send_to_a_room_reaches_each_member_once_and_nobody_else() {
    let mut harness = Harness::new(Setup::default());
    let rooms: Rooms = harness.rooms.clone();
    let (mut a, a_id) = harness.connect_on(0);
    let (mut b, b_id) = harness.connect_on(0);
    let (mut outsider, _) = harness.connect_on(0);
    join(&mut harness, &[a_id, b_id], "den");
    // Joining twice changes nothing.
    join(&mut harness, &[a_id], "den");
    to_room(&mut harness, OutgoingMessage::to_room("den", [1, 2]));

    assert_eq!(a.received(), (vec![1, 2], false));
    assert_eq!(b.received(), (vec![1, 2], false));
    assert_eq!(outsider.received(), (vec![], false));
    assert_eq!(sorted(rooms.members("den")), [a_id, b_id]);
    assert_eq!(rooms.len("den"), 2);
    let snapshot = harness.stats.snapshot();
    assert_eq!((snapshot.rooms, snapshot.room_members), (1, 2));
    assert_eq!(snapshot.room_sends, 1);
    assert_eq!(snapshot.dropped_unknown_id, 0);
}

#[test]
fn a_send_to_a_room_can_leave_the_sender_out() {
    let mut harness = Harness::new(Setup::default());
    let (mut sender, sender_id) = harness.connect_on(0);
    let (mut other, other_id) = harness.connect_on(0);
    join(&mut harness, &[sender_id, other_id], "den");
    to_room(
        &mut harness,
        OutgoingMessage::to_room("den", [7]).except(sender_id),
    );
    assert_eq!(sender.received(), (vec![], false));
    assert_eq!(other.received(), (vec![7], false));
}

/// A long message is delivered over several polls; the member left out
/// is left out wherever it stands (first, last, at the start or end of a
/// poll's share), and only it: everyone else gets every value, in order.
#[test]
fn a_send_leaving_one_out_over_several_polls_leaves_out_that_one_only() {
    // 5,000 values a recipient: a poll's budget covers three recipients.
    const VALUES: u32 = 5_000;
    let mut harness = Harness::new(Setup {
        sender_buffer_size: VALUES as usize,
        client_buffer: 2 * VALUES as usize,
        ..Setup::default()
    });
    let (mut clients, ids): (Vec<_>, Vec<_>) = (0..12).map(|_| harness.connect_on(0)).unzip();
    join(&mut harness, &ids, "den");
    let values: Vec<u32> = (0..VALUES).collect();
    for left_out in [Some(0), Some(2), Some(3), Some(6), Some(11), None] {
        let mut message = OutgoingMessage::to_room("den", values.clone());
        if let Some(place) = left_out {
            message = message.except(ids[place]);
        }
        to_room(&mut harness, message);
        for (place, client) in clients.iter_mut().enumerate() {
            let (received, closed) = client.received();
            assert!(!closed);
            if left_out == Some(place) {
                assert!(received.is_empty(), "member {place} was left out");
            } else {
                assert_eq!(received, values, "member {place}, {left_out:?} left out");
            }
        }
    }
    // Leaving out a stream that is not a member leaves out nobody.
    let (_outsider, outsider_id) = harness.connect_on(0);
    to_room(
        &mut harness,
        OutgoingMessage::to_room("den", [1]).except(outsider_id),
    );
    for client in &mut clients {
        assert_eq!(client.received(), (vec![1], false));
    }
}

#[test]
fn rooms_do_not_care_about_channels_and_survive_moves() {
    let mut harness = Harness::new(Setup::default());
    let (mut a, a_id) = harness.connect_on(0);
    let (mut b, b_id) = harness.connect_on(0);
    join(&mut harness, &[a_id, b_id], "den");
    join(&mut harness, &[a_id], "hall");
    harness.send(OutgoingPacket::ChangeChannel(vec![a_id], 2));
    to_room(&mut harness, OutgoingMessage::to_room("den", [1]));
    to_room(&mut harness, OutgoingMessage::to_room("hall", [2]));
    assert_eq!(a.received(), (vec![1, 2], false));
    assert_eq!(b.received(), (vec![1], false));
    assert_eq!(harness.rooms.rooms_of(a_id).len(), 2);
}

#[test]
fn leaving_a_room_stops_its_messages() {
    let mut harness = Harness::new(Setup::default());
    let (mut a, a_id) = harness.connect_on(0);
    let (mut b, b_id) = harness.connect_on(0);
    join(&mut harness, &[a_id, b_id], "den");
    harness.send(OutgoingPacket::Leave(vec![a_id], "den".into()));
    to_room(&mut harness, OutgoingMessage::to_room("den", [3]));
    assert_eq!(a.received(), (vec![], false));
    assert_eq!(b.received(), (vec![3], false));
    assert_eq!(harness.rooms.members("den"), [b_id]);
}

/// A stream leaves every room as soon as its departure is announced: the
/// application never finds a stale member in a room, and nothing sent to a
/// room reaches a stream it has been told is gone — not even one that can
/// still be written to (a half-closed client with a clock).
#[test]
fn a_departing_stream_leaves_every_room_at_once() {
    let mut harness = Harness::new(Setup {
        clock: Some(Limits {
            idle: None,
            write: Some(10),
        }),
        ..Setup::default()
    });
    let (mut gone, gone_id) = harness.connect_on(0);
    let (mut hung_up, hung_up_id) = harness.connect_on(0);
    let (mut stays, stays_id) = harness.connect_on(0);
    for room in ["a", "b"] {
        join(&mut harness, &[gone_id, hung_up_id, stays_id], room);
    }
    harness.settle();
    assert_eq!(harness.stats.snapshot().room_members, 6);

    harness.send(OutgoingPacket::Shutdown(vec![gone_id]));
    hung_up.hang_up();
    harness.settle();
    let packets = harness.drain(0);
    assert_eq!(
        disconnects_of(&packets, hung_up_id),
        [DisconnectReason::Linkdead]
    );
    assert_eq!(harness.rooms.members("a"), [stays_id]);
    assert_eq!(harness.rooms.members("b"), [stays_id]);
    assert!(harness.rooms.rooms_of(gone_id).is_empty());

    to_room(&mut harness, OutgoingMessage::to_room("a", [5]));
    assert_eq!(gone.received(), (vec![], true));
    assert_eq!(
        hung_up.received(),
        (vec![], false),
        "still writable, no member"
    );
    assert_eq!(stays.received(), (vec![5], false));
    let snapshot = harness.stats.snapshot();
    assert_eq!((snapshot.rooms, snapshot.room_members), (2, 2));
    assert_eq!(snapshot.dropped_unknown_id, 0);
}

/// A message waiting for room at a slow member goes on, once there is
/// room, to the members it took, and only while they are there: not to a
/// newcomer who took the place of a member that departed meanwhile (at the
/// stream limit, the newcomer takes the departed member's place).
#[test]
fn a_waiting_room_message_does_not_reach_a_newcomer_in_a_departed_members_place() {
    let mut harness = Harness::new(Setup {
        sender_buffer_size: 1,
        client_buffer: 1,
        policy: BacklogPolicy::Wait,
        max_streams: 2,
        ..Setup::default()
    });
    let (mut slow, slow_id) = harness.connect_on(0);
    let (mut gone, gone_id) = harness.connect_on(0);
    join(&mut harness, &[slow_id, gone_id], "den");
    for value in 0..4 {
        to_room(&mut harness, OutgoingMessage::to_room("den", [value]));
    }
    // Each member holds three (two in its socket, one in its backlog): the
    // fourth waits for the slow one, before reaching the second member.
    assert_eq!(gone.received(), (vec![0, 1], false));
    gone.hang_up();
    harness.settle();
    let packets = harness.drain(0);
    assert_eq!(
        disconnects_of(&packets, gone_id),
        [DisconnectReason::Linkdead]
    );
    let (mut newcomer, newcomer_id) = harness.connect_on(0);
    assert_ne!(newcomer_id, gone_id);
    assert_eq!(slow.received(), (vec![0, 1], false));
    harness.settle();
    assert_eq!(slow.received(), (vec![2, 3], false));
    assert_eq!(newcomer.received(), (vec![], false));
    assert!(!gone.received().0.contains(&3));
}

#[test]
fn joining_with_an_id_that_is_gone_is_counted_and_changes_nothing() {
    let mut harness = Harness::new(Setup::default());
    join(&mut harness, &[99], "den");
    harness.settle();
    assert_eq!(harness.stats.snapshot().dropped_unknown_id, 1);
    assert_eq!(harness.rooms.counts(), (0, 0));
    // A send to a room nobody is in reaches nobody, and drops nothing.
    to_room(&mut harness, OutgoingMessage::to_room("den", [1]));
    assert_eq!(harness.stats.snapshot().dropped_unknown_id, 1);
}

/// A client whose socket holds 2 values and backlog 4: everything past
/// that finds it full.
fn stalled() -> Setup {
    Setup {
        sender_buffer_size: 4,
        client_buffer: 1,
        ..Setup::default()
    }
}

#[test]
fn a_volatile_message_to_a_full_client_is_dropped_and_counted_never_a_disconnect() {
    let mut harness = Harness::new(stalled());
    let (mut slow, slow_id) = harness.connect_on(0);
    let (mut fast, fast_id) = harness.connect_on(0);
    join(&mut harness, &[slow_id, fast_id], "den");
    let mut fast_got = Vec::new();
    for value in 0..20 {
        to_room(
            &mut harness,
            OutgoingMessage::to_room("den", [value]).volatile(),
        );
        fast_got.extend(fast.received().0);
    }
    assert_eq!(fast_got, (0..20).collect::<Vec<_>>());
    let mut slow_got = Vec::new();
    for _ in 0..10 {
        slow_got.extend(slow.received().0);
        harness.settle();
    }
    assert_eq!(slow_got, (0..6).collect::<Vec<_>>(), "socket and backlog");
    assert!(disconnects_of(&harness.drain(0), slow_id).is_empty());
    assert_eq!(harness.stats.snapshot().volatile_dropped, 14);
}

/// Positions of two players sent far faster than a client reads: its
/// backlog never holds more than the newest position of each, in the order
/// the players first appeared, and it is never disconnected.
#[test]
fn the_latest_value_of_a_key_replaces_the_one_waiting_and_keys_keep_their_order() {
    let mut harness = Harness::new(stalled());
    let (mut slow, slow_id) = harness.connect_on(0);
    // Fill its socket (2 values) so that what follows waits.
    harness.message([slow_id], [1000, 1001]);
    harness.settle();
    for round in 0..50 {
        harness.send(OutgoingPacket::Message(
            OutgoingMessage::new([slow_id], [100 + round]).latest(1),
        ));
        harness.send(OutgoingPacket::Message(
            OutgoingMessage::new([slow_id], [200 + round]).latest(2),
        ));
    }
    harness.settle();
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(slow.received().0);
        harness.settle();
    }
    assert_eq!(got, [1000, 1001, 149, 249]);
    assert!(disconnects_of(&harness.drain(0), slow_id).is_empty());
    assert_eq!(harness.stats.snapshot().conflated, 98);
}

#[test]
fn a_reliable_message_to_a_full_client_still_disconnects_it() {
    let mut harness = Harness::new(stalled());
    let (mut slow, slow_id) = harness.connect_on(0);
    join(&mut harness, &[slow_id], "den");
    for value in 0..7 {
        to_room(&mut harness, OutgoingMessage::to_room("den", [value]));
    }
    assert_eq!(
        disconnects_of(&harness.drain(0), slow_id),
        [DisconnectReason::BacklogFull]
    );
    assert!(slow.received().1);
    assert_eq!(harness.rooms.counts(), (0, 0), "and it left the room");
}
