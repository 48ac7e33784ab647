//! The core alone, broadcasting: C in-memory connections whose sinks take
//! everything, R messages to every id, no sockets and no codec. What is
//! left is the multiplexer's own work per delivery (applying the message,
//! queueing the value, pumping the writer), which `valgrind --tool=callgrind`
//! counts in instructions, the same on a busy machine as on an idle one:
//!
//! ```text
//! cargo build --release -p bench --bin core_broadcast
//! valgrind --tool=callgrind target/release/core_broadcast 1000 0     # set-up only
//! valgrind --tool=callgrind target/release/core_broadcast 1000 200   # + 200,000 deliveries
//! ```
//!
//! (total with deliveries − total without) / deliveries = instructions per
//! delivery. With `--features metrics` and `RECORDER=1`, a recorder that
//! keeps every count is installed first: the cost of publishing metrics.

#[cfg(feature = "ours")]
fn main() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use futures::{Sink, stream};
    use stream_multiplexer::{
        ControlMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
    };

    /// A connection's write half whose socket always has room.
    struct Takes;
    impl Sink<Bytes> for Takes {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), Self::Error> {
            std::hint::black_box(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(1000, |a| a.parse().expect("clients"));
    let rounds: usize = args.next().map_or(200, |a| a.parse().expect("rounds"));
    #[cfg(feature = "metrics")]
    if std::env::var_os("RECORDER").is_some() {
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("a recorder");
    }

    let (channel0, mut connected) = mpsc::channel::<IncomingPacket<u32>>(clients * 2);
    let (outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
    let multiplexer = Multiplexer::new(4096, outgoing_rx, vec![channel0]);
    let stats = multiplexer.stats();
    let halves = stream::iter((0..clients).map(|_| Ok((Takes, stream::pending::<u32>()))));
    let (control, control_rx) = mpsc::unbounded::<ControlMessage>();
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(async move {
            let _ = multiplexer.run(halves, control_rx).await;
        })
        .expect("spawn");
    pool.run_until_stalled();
    let mut ids = Vec::new();
    while let Ok(packet) = connected.try_recv() {
        ids.push(packet.id());
    }
    assert_eq!(ids.len(), clients);

    let value = Bytes::from_static(&[7; 32]);
    for _ in 0..rounds {
        let message = OutgoingMessage::new(ids.clone(), [value.clone()]);
        outgoing
            .unbounded_send(OutgoingPacket::Message(message))
            .expect("send");
    }
    pool.run_until_stalled();
    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot.frames_out,
        (clients * rounds) as u64,
        "{snapshot:?}"
    );
    control
        .unbounded_send(ControlMessage::Abort)
        .expect("abort");
    pool.run_until_stalled();
    println!("{} deliveries", snapshot.frames_out);
}

#[cfg(not(feature = "ours"))]
fn main() {
    eprintln!("core_broadcast needs the `ours` feature");
}
