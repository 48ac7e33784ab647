//! Guarantees 8 and 10 of the crate docs: failures and limits each have one clear outcome and
//! disturb nothing else.

mod common;

use std::io;

use common::{Frame, Harness, Setup, disconnects_of, messages_of};
use futures::channel::mpsc;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::{FutureExt, StreamExt, stream};
use stream_multiplexer::{
    ControlMessage, DisconnectReason, IdGen, IncomingPacket, Multiplexer, MultiplexerBuilder,
    MultiplexerError, OutgoingPacket, StreamId,
};

#[test]
fn a_failed_accept_is_counted_and_serving_goes_on() {
    let mut harness = Harness::new(Setup::default());
    harness
        .accept
        .unbounded_send(Err(io::Error::other("too many open files")))
        .expect("accept");
    let (client, id) = harness.connect_on(0);
    client.send(5);
    harness.settle();
    assert_eq!(messages_of(&harness.drain(0), id), vec![5]);
    assert_eq!(harness.stats.snapshot().accept_errors, 1);
    assert!(harness.finished().is_none(), "Run goes on");
}

#[test]
fn a_reader_that_ends_delivers_its_items_then_linkdead() {
    let mut harness = Harness::new(Setup::default());
    let (mut client, id) = harness.connect_on(0);
    client.send_all([1, 2, 3]);
    client.hang_up();
    harness.settle();
    assert_eq!(
        harness.drain(0),
        vec![
            IncomingPacket::Message(stream_multiplexer::IncomingMessage::new(id, 1)),
            IncomingPacket::Message(stream_multiplexer::IncomingMessage::new(id, 2)),
            IncomingPacket::Message(stream_multiplexer::IncomingMessage::new(id, 3)),
            IncomingPacket::StreamDisconnected(id, DisconnectReason::Linkdead),
        ]
    );
}

#[test]
fn a_reader_that_errors_delivers_the_error_then_linkdead() {
    type Item = Result<Frame, String>;
    let reader = stream::iter([Ok(1), Err("bad frame".to_string())]);
    let (writer, _client) = mpsc::channel::<Frame>(4);
    let halves = stream::iter([Ok((writer, reader))]).chain(stream::pending());
    let (channel, mut consumer) = mpsc::unbounded::<IncomingPacket<Item>>();
    let outgoing = stream::pending::<OutgoingPacket<Frame>>();
    let run = Multiplexer::new(4, outgoing, vec![channel])
        .run(halves, stream::pending::<ControlMessage>());
    let mut pool = LocalPool::new();
    pool.spawner().spawn_local(run.map(drop)).expect("spawn");
    pool.run_until_stalled();

    let mut packets = Vec::new();
    while let Ok(packet) = consumer.try_recv() {
        packets.push(packet);
    }
    assert_eq!(packets.len(), 4, "{packets:?}");
    assert_eq!(packets[1].value(), Some(&Ok(1)));
    assert_eq!(packets[2].value(), Some(&Err("bad frame".to_string())));
    assert_eq!(
        packets[3],
        IncomingPacket::StreamDisconnected(1, DisconnectReason::Linkdead)
    );
}

#[test]
fn a_write_error_closes_the_stream_with_linkdead() {
    let mut harness = Harness::new(Setup::default());
    let (client, id) = harness.connect_on(0);
    let (mut other, other_id) = harness.connect_on(0);
    // The client can no longer be written to.
    drop(client.from_server);
    harness.message([id, other_id], [1]);
    harness.settle();
    assert_eq!(
        disconnects_of(&harness.drain(0), id),
        vec![DisconnectReason::Linkdead]
    );
    assert_eq!(other.received(), (vec![1], false));
}

#[test]
fn a_closed_channel_closes_its_streams_and_the_others_go_on() {
    let mut harness = Harness::new(Setup {
        channels: vec![8, 8],
        ..Setup::default()
    });
    let (mut doomed, _) = harness.connect_on(0);
    let (mover, mover_id) = harness.connect_on(0);
    harness.send(OutgoingPacket::ChangeChannel(vec![mover_id], 1));
    harness.settle();
    assert_eq!(
        harness.drain(1),
        vec![IncomingPacket::StreamConnected(mover_id)]
    );

    harness.channels[0] = None;
    doomed.send(1);
    harness.settle();
    assert_eq!(
        doomed.received(),
        (vec![], true),
        "its connection was closed"
    );

    mover.send(2);
    harness.settle();
    assert_eq!(messages_of(&harness.drain(1), mover_id), vec![2]);
    assert!(harness.finished().is_none(), "Run goes on with channel 1");
    // A new connection for the closed default channel is closed at once.
    let mut late = harness.connect();
    harness.settle();
    assert_eq!(late.received(), (vec![], true));
    assert_eq!(harness.stats.snapshot().closed_with_channel, 2);

    // When every channel has closed, nothing can be delivered: Run ends.
    harness.channels[1] = None;
    mover.send(3);
    harness.settle();
    assert_eq!(
        harness.finished(),
        Some(Err(MultiplexerError::AllChannelsClosed))
    );
}

#[test]
fn at_max_streams_new_clients_wait_until_a_stream_leaves() {
    let mut harness = Harness::new(Setup {
        max_streams: 2,
        ..Setup::default()
    });
    let (mut first, first_id) = harness.connect_on(0);
    let (_second, _) = harness.connect_on(0);
    let third = harness.connect();
    harness.settle();
    assert!(harness.drain(0).is_empty(), "the third client waits");
    assert_eq!(harness.stats.snapshot().accepted, 2);

    first.hang_up();
    harness.settle();
    let packets = harness.drain(0);
    assert_eq!(
        packets,
        vec![
            IncomingPacket::StreamDisconnected(first_id, DisconnectReason::Linkdead),
            IncomingPacket::StreamConnected(3),
        ]
    );
    third.send(9);
    harness.settle();
    assert_eq!(messages_of(&harness.drain(0), 3), vec![9]);
}

#[test]
fn a_closed_client_that_never_reads_gives_its_place_to_a_newcomer() {
    // Each client's "socket" holds 2 values.
    let mut harness = Harness::new(Setup {
        max_streams: 2,
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut deaf, deaf_id) = harness.connect_on(0);
    let (mut other, other_id) = harness.connect_on(0);
    harness.message([deaf_id], 0..5);
    harness.send(OutgoingPacket::Shutdown(vec![deaf_id]));
    harness.settle();
    assert_eq!(
        deaf.received(),
        (vec![0, 1], false),
        "still flushing while it has room to"
    );
    assert_eq!(
        disconnects_of(&harness.drain(0), deaf_id),
        vec![DisconnectReason::Shutdown]
    );

    let newcomer = harness.connect();
    harness.settle();
    assert_eq!(
        harness.drain(0),
        vec![IncomingPacket::StreamConnected(3)],
        "the closed stream does not keep the newcomer out"
    );
    assert_eq!(
        deaf.received(),
        (vec![], true),
        "its flush was abandoned to keep to max_streams connections"
    );
    newcomer.send(7);
    harness.message([other_id], [8]);
    harness.settle();
    assert_eq!(messages_of(&harness.drain(0), 3), vec![7]);
    assert_eq!(other.received(), (vec![8], false));
    let stats = harness.stats.snapshot();
    assert_eq!((stats.accepted, stats.streams_open), (3, 2));
}

#[test]
fn a_closing_stream_below_max_streams_finishes_its_flush() {
    let mut harness = Harness::new(Setup {
        max_streams: 3,
        client_buffer: 1,
        ..Setup::default()
    });
    let (mut slow, slow_id) = harness.connect_on(0);
    let (_other, _) = harness.connect_on(0);
    harness.message([slow_id], 0..5);
    harness.send(OutgoingPacket::Shutdown(vec![slow_id]));
    harness.settle();
    let _newcomer = harness.connect();
    harness.settle();
    assert_eq!(harness.drain(0).len(), 2, "a departure and an arrival");
    // The client reads two values at a time; each read makes room for two.
    let mut got = Vec::new();
    let mut closed = false;
    for _ in 0..5 {
        let (frames, ended) = slow.received();
        got.extend(frames);
        closed = ended;
        harness.settle();
    }
    assert_eq!(
        got,
        (0..5).collect::<Vec<_>>(),
        "room enough: nothing abandoned"
    );
    assert!(closed, "and closed once flushed");
}

#[test]
fn a_config_naming_no_channel_is_an_error_not_a_panic() {
    let (_tx, outgoing) = mpsc::unbounded::<OutgoingPacket<Frame>>();
    let channels: Vec<mpsc::Sender<IncomingPacket<Frame>>> = Vec::new();
    let halves = stream::pending::<io::Result<common::Halves>>();
    let run =
        Multiplexer::new(4, outgoing, channels).run(halves, stream::pending::<ControlMessage>());
    assert_eq!(
        futures::executor::block_on(run),
        Err(MultiplexerError::NoChannels)
    );

    let (channel, _rx) = mpsc::channel::<IncomingPacket<Frame>>(1);
    let (_tx, outgoing) = mpsc::unbounded::<OutgoingPacket<Frame>>();
    let halves = stream::pending::<io::Result<common::Halves>>();
    let run = stream_multiplexer::MultiplexerBuilder::new(4)
        .default_channel(3)
        .build(outgoing, vec![channel])
        .run(halves, stream::pending::<ControlMessage>());
    assert_eq!(
        futures::executor::block_on(run),
        Err(MultiplexerError::NoSuchChannel(3))
    );
}

/// An id generator that keeps handing out an id that is taken: the newcomer
/// never becomes a stream. It is counted as a failed accept, not as an
/// accepted stream that left, and the stream holding the id goes on.
#[test]
fn a_connection_for_which_no_id_is_free_is_a_failed_accept_not_a_stream() {
    #[derive(Default)]
    struct AlwaysSeven;
    impl IdGen for AlwaysSeven {
        fn next(&mut self) -> StreamId {
            7
        }
        fn id(&self) -> StreamId {
            7
        }
    }

    let (lobby, mut lobby_rx) = mpsc::channel::<IncomingPacket<u32>>(8);
    let (_outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<u32>>();
    let multiplexer = MultiplexerBuilder::new(8)
        .id_gen(AlwaysSeven)
        .build(outgoing_rx, vec![lobby]);
    let stats = multiplexer.stats();
    let (accept, accept_rx) = mpsc::unbounded();
    let (_control, control_rx) = mpsc::unbounded::<ControlMessage>();
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(async move {
            let _ = multiplexer.run(accept_rx, control_rx).await;
        })
        .unwrap();

    let (first_write, mut first_client) = mpsc::channel::<u32>(8);
    let (_first_to_server, first_read) = mpsc::unbounded::<u32>();
    accept
        .unbounded_send(Ok((first_write, first_read)))
        .unwrap();
    let (second_write, mut second_client) = mpsc::channel::<u32>(8);
    let (_second_to_server, second_read) = mpsc::unbounded::<u32>();
    accept
        .unbounded_send(Ok((second_write, second_read)))
        .unwrap();
    pool.run_until_stalled();

    assert_eq!(
        lobby_rx.try_recv().ok(),
        Some(IncomingPacket::StreamConnected(7))
    );
    assert!(lobby_rx.try_recv().is_err(), "one stream only");
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.accepted, 1);
    assert_eq!(snapshot.accept_errors, 1);
    assert_eq!(snapshot.streams_open, 1);
    assert_eq!(snapshot.closed_with_channel, 0);
    assert_eq!(
        snapshot.accepted,
        snapshot.streams_open + snapshot.departed()
    );
    assert!(
        matches!(second_client.try_recv(), Err(e) if e.is_closed()),
        "the newcomer's connection was closed"
    );
    assert!(
        matches!(first_client.try_recv(), Err(e) if !e.is_closed()),
        "the first stream goes on"
    );
}
