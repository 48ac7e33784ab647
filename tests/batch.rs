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

#[test]
fn batches_handed_to_an_empty_or_a_waiting_queue_keep_their_order_and_the_bound() {
    let (mut a, mut receiver) = batch::channel::<u32>(4);
    let mut b = a.clone();
    let (_wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut send = |sender: &mut batch::BatchSender<u32>, n: u32| {
        assert!(Pin::new(&mut *sender).poll_ready(&mut cx).is_ready(), "{n}");
        Pin::new(&mut *sender).start_send(n).expect("open");
    };
    // `a`'s batch goes to an empty queue, `b`'s behind it.
    send(&mut a, 0);
    send(&mut a, 1);
    block_on(a.flush()).expect("open");
    send(&mut b, 2);
    send(&mut b, 3);
    block_on(b.flush()).expect("open");
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut a).poll_ready(&mut cx).is_pending(), "4 wait");
    assert!(Pin::new(&mut b).poll_ready(&mut cx).is_pending(), "4 wait");

    // The receiver takes all four; while it holds three not yet yielded,
    // four more may wait in the channel, and no more.
    assert_eq!(block_on(receiver.next()), Some(0));
    for n in 4..8 {
        assert!(Pin::new(&mut a).poll_ready(&mut cx).is_ready(), "{n}");
        Pin::new(&mut a).start_send(n).expect("open");
    }
    assert!(Pin::new(&mut a).poll_ready(&mut cx).is_pending(), "8 sent");
    assert_eq!(
        block_on(receiver.by_ref().take(7).collect::<Vec<_>>()),
        [1, 2, 3, 4, 5, 6, 7]
    );

    // Many rounds of either kind (at most four packets each, the capacity),
    // so the `Vec`s trade places over and over; the receiver sometimes
    // leaves part of a round taken but not yielded.
    let mut next = 8;
    let mut expected = std::collections::VecDeque::new();
    for round in 0..200u32 {
        for sender in [&mut a, &mut b] {
            for _ in 0..(round % 2 + 1) {
                assert!(Pin::new(&mut *sender).poll_ready(&mut cx).is_ready());
                Pin::new(&mut *sender).start_send(next).expect("open");
                expected.push_back(next);
                next += 1;
            }
            block_on(sender.flush()).expect("open");
        }
        let take = if round % 3 == 0 { 1 } else { expected.len() };
        let got = block_on(receiver.by_ref().take(take).collect::<Vec<_>>());
        let want: Vec<u32> = expected.drain(..take).collect();
        assert_eq!(got, want, "round {round}");
        if !expected.is_empty() {
            // What the receiver holds is out of the channel's count: the
            // round's remainder is taken, so a full capacity fits again.
            let rest = block_on(receiver.by_ref().take(expected.len()).collect::<Vec<_>>());
            assert_eq!(
                rest,
                expected.drain(..).collect::<Vec<_>>(),
                "round {round}"
            );
        }
    }
    drop((a, b));
    assert_eq!(block_on(receiver.collect::<Vec<_>>()), Vec::<u32>::new());
}

#[test]
fn next_batch_takes_everything_waiting_in_order_after_what_next_left() {
    let (mut sender, mut receiver) = batch::channel::<u32>(4);
    let (wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut packets = Vec::new();
    assert!(
        receiver.poll_next_batch(&mut cx, &mut packets).is_pending(),
        "nothing sent yet"
    );

    for n in 0..4 {
        assert!(Pin::new(&mut sender).poll_ready(&mut cx).is_ready());
        Pin::new(&mut sender).start_send(n).expect("open");
    }
    assert!(
        Pin::new(&mut sender).poll_ready(&mut cx).is_pending(),
        "full"
    );
    let receiver_wakes = wakes.0.load(Ordering::SeqCst);
    assert_eq!(receiver_wakes, 1, "the hand-over woke the waiting receiver");

    // `next` takes all four and yields one; `next_batch` appends the rest.
    assert_eq!(block_on(receiver.next()), Some(0));
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        2,
        "taking the batch woke the sender"
    );
    packets.push(99);
    assert_eq!(block_on(receiver.next_batch(&mut packets)), 3);
    assert_eq!(packets, [99, 1, 2, 3]);

    // Into a non-empty Vec (appended) and into an empty one (swapped).
    for round in 0..3u32 {
        for n in 0..3 {
            block_on(sender.feed(round * 10 + n)).expect("open");
        }
        block_on(sender.flush()).expect("open");
        if round == 1 {
            packets.clear();
        }
        let before = packets.len();
        assert_eq!(block_on(receiver.next_batch(&mut packets)), 3);
        assert_eq!(
            packets[before..],
            [round * 10, round * 10 + 1, round * 10 + 2]
        );
        packets.clear();
    }

    // The end: what the last sender left, then 0 for good.
    block_on(sender.feed(7)).expect("open");
    drop(sender);
    assert_eq!(block_on(receiver.next_batch(&mut packets)), 1);
    assert_eq!(packets, [7]);
    assert_eq!(block_on(receiver.next_batch(&mut packets)), 0);
    assert_eq!(block_on(receiver.next_batch(&mut packets)), 0);
    assert_eq!(block_on(receiver.next()), None);
}
