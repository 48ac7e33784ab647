//! Guarantee 12 of the crate docs: every outcome is delivered or counted, and the counters can be
//! read from anywhere.

mod common;

use std::io;

use common::{Harness, Setup};
use stream_multiplexer::{ControlMessage, OutgoingPacket, Stats, StatsSnapshot};

#[test]
fn the_stats_handle_is_cheap_to_clone_and_thread_safe() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Stats>();

    let harness = Harness::new(Setup::default());
    let stats = harness.stats.clone();
    let from_another_thread = std::thread::spawn(move || stats.snapshot())
        .join()
        .expect("thread");
    assert_eq!(from_another_thread, harness.stats.snapshot());
}

#[test]
fn every_outcome_is_counted() {
    let mut harness = Harness::new(Setup {
        channels: vec![64, 64],
        sender_buffer_size: 2,
        client_buffer: 1,
        ..Setup::default()
    });
    harness
        .accept
        .unbounded_send(Err(io::Error::other("accept failed")))
        .expect("accept");
    let (mut linkdead, _) = harness.connect_on(0);
    let (_slow, slow_id) = harness.connect_on(0);
    let (mover, mover_id) = harness.connect_on(0);
    let (_closed, closed_id) = harness.connect_on(0);
    mover.send_all([1, 2, 3]);
    linkdead.hang_up();
    harness.send(OutgoingPacket::ChangeChannel(vec![mover_id], 1));
    harness.send(OutgoingPacket::ChangeChannel(vec![mover_id], 9));
    harness.message([slow_id], 0..10);
    harness.message([mover_id], [7]);
    harness.message([12_345], [7]);
    harness.send(OutgoingPacket::Shutdown(vec![closed_id]));
    harness.settle();

    let snapshot = harness.stats.snapshot();
    let mut expected = StatsSnapshot::default();
    expected.streams_open = 1;
    expected.accepted = 4;
    expected.accept_errors = 1;
    expected.frames_in = 3;
    expected.frames_out = 1;
    expected.disconnects.linkdead = 1;
    expected.disconnects.channel_change = 1;
    expected.disconnects.shutdown = 1;
    expected.disconnects.backlog_full = 1;
    expected.dropped_unknown_id = 1;
    expected.moves_rejected = 1;
    assert_eq!(snapshot, expected);
    assert_eq!(
        snapshot.accepted,
        snapshot.streams_open + snapshot.departed()
    );

    harness.control(ControlMessage::Shutdown);
    harness.settle();
    let snapshot = harness.stats.snapshot();
    assert_eq!(snapshot.streams_open, 0);
    assert_eq!(snapshot.disconnects.shutdown, 2);
}
