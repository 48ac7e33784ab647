//! The batching channel: order, capacity, wake-ups, closing, and its use as
//! a multiplexer channel.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::executor::{LocalPool, block_on};
use futures::task::{ArcWake, LocalSpawnExt};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt, channel::mpsc, stream};
use stream_multiplexer::batch::{self, Closed};
use stream_multiplexer::{
    ControlMessage, DisconnectReason, IncomingMessage, IncomingPacket, Multiplexer, OutgoingPacket,
};

struct WakeCount(AtomicUsize);

impl ArcWake for WakeCount {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<WakeCount>, std::task::Waker) {
    let count = Arc::new(WakeCount(AtomicUsize::new(0)));
    let waker = futures::task::waker(Arc::clone(&count));
    (count, waker)
}

#[test]
fn a_full_channel_pushes_back_until_the_receiver_takes_a_batch() {
    let (mut sender, mut receiver) = batch::channel::<u32>(3);
    let (wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    for n in 0..3 {
        assert!(Pin::new(&mut sender).poll_ready(&mut cx).is_ready());
        Pin::new(&mut sender).start_send(n).expect("open");
    }
    assert!(
        Pin::new(&mut sender).poll_ready(&mut cx).is_pending(),
        "3 packets fill it"
    );
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

    // poll_ready handed the batch over when it ran out of room.
    assert_eq!(block_on(receiver.next()), Some(0));
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "taking the batch woke the sender"
    );
    assert!(Pin::new(&mut sender).poll_ready(&mut cx).is_ready());
    assert_eq!(
        block_on(receiver.by_ref().take(2).collect::<Vec<_>>()),
        [1, 2]
    );
}

#[test]
fn packets_arrive_in_order_only_once_flushed() {
    let (mut sender, mut receiver) = batch::channel::<u32>(100);
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    block_on(async {
        for n in 0..10 {
            sender.feed(n).await.expect("open");
        }
    });
    assert!(
        Pin::new(&mut receiver).poll_next(&mut cx).is_pending(),
        "not flushed yet"
    );
    block_on(sender.flush()).expect("open");
    let got: Vec<u32> = (0..10)
        .map(|_| match Pin::new(&mut receiver).poll_next(&mut cx) {
            Poll::Ready(Some(n)) => n,
            other => panic!("expected a packet, got {other:?}"),
        })
        .collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_flush_wakes_a_waiting_receiver_once() {
    let (mut sender, mut receiver) = batch::channel::<u32>(100);
    let (wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut receiver).poll_next(&mut cx).is_pending());
    block_on(async {
        for n in 0..50 {
            sender.feed(n).await.expect("open");
        }
        sender.flush().await.expect("open");
    });
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "one wake for a batch of 50"
    );
}

#[test]
fn sending_after_the_receiver_is_gone_fails() {
    let (mut sender, receiver) = batch::channel::<u32>(4);
    drop(receiver);
    assert_eq!(block_on(sender.send(1)), Err(Closed));
}

#[test]
fn the_receiver_ends_after_the_last_sender_and_gets_its_batch() {
    let (mut sender, receiver) = batch::channel::<u32>(4);
    let mut other = sender.clone();
    block_on(async {
        sender.feed(1).await.expect("open");
        other.feed(2).await.expect("open");
    });
    drop(sender);
    drop(other);
    assert_eq!(block_on(receiver.collect::<Vec<_>>()), [1, 2]);
}

#[test]
fn it_serves_as_a_multiplexer_channel() {
    let (channel, mut consumer) = batch::channel::<IncomingPacket<u32>>(2);
    let (_outgoing, outgoing) = mpsc::unbounded::<OutgoingPacket<u32>>();
    let (_control, control) = mpsc::unbounded::<ControlMessage>();
    let (writer, _client) = mpsc::channel::<u32>(4);
    let halves = stream::iter([Ok((writer, stream::iter(0..10u32)))]).chain(stream::pending());
    let run = Multiplexer::new(4, outgoing, vec![channel]).run(halves, control);
    let mut pool = LocalPool::new();
    pool.spawner().spawn_local(run.map(drop)).expect("spawn");

    // Capacity 2: the consumer takes what is there, the multiplexer refills.
    let mut packets = Vec::new();
    loop {
        pool.run_until_stalled();
        let (_, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut took = false;
        while let Poll::Ready(Some(packet)) = Pin::new(&mut consumer).poll_next(&mut cx) {
            packets.push(packet);
            took = true;
        }
        if !took {
            break;
        }
    }
    let mut expected = vec![IncomingPacket::StreamConnected(1)];
    expected.extend((0..10).map(|n| IncomingPacket::Message(IncomingMessage::new(1, n))));
    expected.push(IncomingPacket::StreamDisconnected(
        1,
        DisconnectReason::Linkdead,
    ));
    assert_eq!(packets, expected);
}
