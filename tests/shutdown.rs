//! Guarantee 11 of the crate docs: graceful shutdown flushes then closes; abort drops at once;
//! either way every connection is closed when `Run` resolves.

mod common;

use common::{Harness, Setup};
use stream_multiplexer::{ControlMessage, DisconnectReason, IncomingPacket};

#[test]
fn shutdown_flushes_queued_values_closes_everything_then_resolves_ok() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut a, a_id) = harness.connect_on(0);
    let (mut b, b_id) = harness.connect_on(0);
    // More than a client's socket holds: the rest waits in the backlogs.
    harness.message([a_id, b_id], 0..20);
    harness.control(ControlMessage::Shutdown);
    harness.settle();
    assert!(
        harness.finished().is_none(),
        "it waits for the queued values to be written"
    );
    assert!(
        harness.accept.unbounded_send(Ok(harness_halves())).is_err(),
        "it stopped accepting"
    );

    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut closed = (false, false);
    for _ in 0..50 {
        let (frames, a_closed) = a.received();
        got_a.extend(frames);
        let (frames, b_closed) = b.received();
        got_b.extend(frames);
        closed = (a_closed, b_closed);
        harness.settle();
    }
    assert_eq!(got_a, (0..20).collect::<Vec<_>>());
    assert_eq!(got_b, (0..20).collect::<Vec<_>>());
    assert_eq!(closed, (true, true), "every connection is closed");
    assert_eq!(harness.finished(), Some(Ok(())));

    let mut packets = harness.drain(0);
    packets.sort_by_key(IncomingPacket::id);
    assert_eq!(
        packets,
        vec![
            IncomingPacket::StreamDisconnected(a_id, DisconnectReason::Shutdown),
            IncomingPacket::StreamDisconnected(b_id, DisconnectReason::Shutdown),
        ]
    );
    let channel = harness.channels[0].as_mut().expect("channel 0");
    assert!(
        channel.try_recv().is_err_and(|e| e.is_closed()),
        "the channel sink was closed"
    );
}

fn harness_halves() -> common::Halves {
    let (_, reader) = futures::channel::mpsc::unbounded();
    let (writer, _) = futures::channel::mpsc::channel(1);
    (writer, reader)
}

#[test]
fn the_end_of_the_control_stream_means_shutdown() {
    let mut harness = Harness::new(Setup::default());
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], [1]);
    harness.control = None;
    harness.settle();
    assert_eq!(client.received(), (vec![1], true));
    assert_eq!(harness.finished(), Some(Ok(())));
}

#[test]
fn abort_resolves_at_once_dropping_what_is_queued() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], 0..20);
    harness.settle();
    harness.control(ControlMessage::Abort);
    harness.settle();
    assert_eq!(harness.finished(), Some(Ok(())));
    let (frames, closed) = client.received();
    assert_eq!(frames, vec![0, 1], "only what the socket already held");
    assert!(closed);
    let channel = harness.channels[0].as_mut().expect("channel 0");
    assert!(
        channel.try_recv().is_err_and(|e| e.is_closed()),
        "the channel sink was dropped"
    );
}

#[test]
fn abort_interrupts_a_shutdown_stuck_on_a_client_that_never_reads() {
    let mut harness = Harness::new(Setup {
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut client, id) = harness.connect_on(0);
    harness.message([id], 0..20);
    harness.control(ControlMessage::Shutdown);
    harness.settle();
    assert!(harness.finished().is_none());
    harness.control(ControlMessage::Abort);
    harness.settle();
    assert_eq!(harness.finished(), Some(Ok(())));
    assert!(client.received().1, "the connection is closed");
}
