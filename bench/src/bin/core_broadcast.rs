//! The core alone, broadcasting: C in-memory connections, R messages to all
//! of them, no sockets. What is left is the multiplexer's own work per
//! delivery (applying the message, queueing the value, pumping the writer),
//! which `valgrind --tool=callgrind` counts in instructions, the same on a
//! busy machine as on an idle one:
//!
//! ```text
//! cargo build --release -p bench --bin core_broadcast
//! valgrind --tool=callgrind target/release/core_broadcast 1000 0   MODE  # set-up only
//! valgrind --tool=callgrind target/release/core_broadcast 1000 200 MODE  # + 200,000 deliveries
//! ```
//!
//! (total with deliveries − total without) / deliveries = instructions per
//! delivery, where a delivery is one value applied to one recipient (C × R
//! of them; C − 1 per round for `room-except`). MODE is one of (default
//! `ids`):
//!
//! - `ids`: each round is `OutgoingMessage::new(ids.clone(), [value])`, a
//!   fresh list of the C ids (the clone is the application's, and counted);
//!   sinks take everything and do nothing with it (no codec).
//! - `room`: every stream joins one room first (`OutgoingPacket::Join`, in
//!   the set-up, so it cancels out); each round is
//!   `OutgoingMessage::to_room(room, [value])`.
//! - `room-except`: the same, `.except(` the first id `)`: C − 1 deliveries a
//!   round.
//! - `latest`: the room send, keyed: `.latest(round % 100)`, to sinks that
//!   are never ready, so every value waits in its backlog: the first 100
//!   rounds each queue a value per stream, every later round replaces the
//!   value of its key (counted as conflated). The cost of conflation alone
//!   is (total at R = 1000 − total at R = 200) / (C × 800).
//! - `framed`: `ids` with real sinks, `stream_multiplexer::framed::FramedWrite`
//!   over a writer that discards (`futures::io::sink()`) with
//!   `LengthDelimitedCodec::new(2)`: encoding and the write buffer counted.
//!
//! An optional fourth argument B sends the rounds B at a time, each batch
//! applied, written and flushed before the next is sent (default: all R at
//! once, which the multiplexer applies with its flushes deferred, so each
//! writer fills one buffer): `core_broadcast 1000 200 framed 20` is ten
//! bursts of 20 frames per connection, each flushed, as a server sending
//! steadily sees them.
//!
//! With `--features metrics` and `RECORDER=1`, a recorder that keeps every
//! count is installed first: the cost of publishing metrics.

#[cfg(feature = "ours")]
fn main() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;
    use futures::{Sink, stream};
    use stream_multiplexer::codec::LengthDelimitedCodec;
    use stream_multiplexer::framed::FramedWrite;
    use stream_multiplexer::{
        ControlMessage, IncomingPacket, Multiplexer, OutgoingMessage, OutgoingPacket,
        StatsSnapshot, StreamId,
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

    /// A connection's write half whose socket never has room (and never
    /// wakes anyone): values wait in the backlog.
    struct Stuck;
    impl Sink<Bytes> for Stuck {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), Self::Error> {
            std::hint::black_box(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Ids,
        Room,
        RoomExcept,
        Latest,
        Framed,
    }

    /// Keys of the `latest` mode's updates, sent in turn.
    const KEYS: usize = 100;

    /// Runs the multiplexer over C connections with sinks from `sink`,
    /// sends R rounds, and returns its statistics once all is applied.
    fn broadcast<W: Sink<Bytes> + Unpin + 'static>(
        clients: usize,
        rounds: usize,
        batch: usize,
        mode: Mode,
        sink: impl Fn() -> W + 'static,
    ) -> StatsSnapshot {
        let (channel0, mut connected) = mpsc::channel::<IncomingPacket<u32>>(clients * 2);
        let (outgoing, outgoing_rx) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
        let multiplexer = Multiplexer::new(4096, outgoing_rx, vec![channel0]);
        let stats = multiplexer.stats();
        let halves =
            stream::iter((0..clients).map(move |_| Ok((sink(), stream::pending::<u32>()))));
        let (control, control_rx) = mpsc::unbounded::<ControlMessage>();
        let mut pool = LocalPool::new();
        pool.spawner()
            .spawn_local(async move {
                let _ = multiplexer.run(halves, control_rx).await;
            })
            .expect("spawn");
        pool.run_until_stalled();
        let mut ids: Vec<StreamId> = Vec::new();
        while let Ok(packet) = connected.try_recv() {
            ids.push(packet.id());
        }
        assert_eq!(ids.len(), clients);
        let room = "everyone";
        if matches!(mode, Mode::Room | Mode::RoomExcept | Mode::Latest) {
            outgoing
                .unbounded_send(OutgoingPacket::Join(ids.clone(), room.into()))
                .expect("join");
            pool.run_until_stalled();
        }

        let value = Bytes::from_static(&[7; 32]);
        for round in 0..rounds {
            let message = match mode {
                Mode::Ids | Mode::Framed => OutgoingMessage::new(ids.clone(), [value.clone()]),
                Mode::Room => OutgoingMessage::to_room(room, [value.clone()]),
                Mode::RoomExcept => OutgoingMessage::to_room(room, [value.clone()]).except(ids[0]),
                Mode::Latest => {
                    OutgoingMessage::to_room(room, [value.clone()]).latest((round % KEYS) as u64)
                }
            };
            outgoing
                .unbounded_send(OutgoingPacket::Message(message))
                .expect("send");
            if (round + 1) % batch == 0 {
                pool.run_until_stalled();
            }
        }
        pool.run_until_stalled();
        let snapshot = stats.snapshot();
        control
            .unbounded_send(ControlMessage::Abort)
            .expect("abort");
        pool.run_until_stalled();
        snapshot
    }

    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(1000, |a| a.parse().expect("clients"));
    let rounds: usize = args.next().map_or(200, |a| a.parse().expect("rounds"));
    let mode = match args.next().as_deref() {
        None | Some("ids") => Mode::Ids,
        Some("room") => Mode::Room,
        Some("room-except") => Mode::RoomExcept,
        Some("latest") => Mode::Latest,
        Some("framed") => Mode::Framed,
        Some(other) => panic!("mode {other:?}: one of ids, room, room-except, latest, framed"),
    };
    let batch: usize = args
        .next()
        .map_or(rounds, |a| a.parse().expect("rounds per batch"))
        .max(1);
    #[cfg(feature = "metrics")]
    if std::env::var_os("RECORDER").is_some() {
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("a recorder");
    }

    let snapshot = match mode {
        Mode::Ids | Mode::Room | Mode::RoomExcept => {
            broadcast(clients, rounds, batch, mode, || Takes)
        }
        Mode::Latest => broadcast(clients, rounds, batch, mode, || Stuck),
        Mode::Framed => broadcast(clients, rounds, batch, mode, || {
            FramedWrite::new(futures::io::sink(), LengthDelimitedCodec::new(2))
        }),
    };
    let (clients, rounds) = (clients as u64, rounds as u64);
    match mode {
        Mode::Ids | Mode::Room | Mode::Framed => {
            assert_eq!(snapshot.frames_out, clients * rounds, "{snapshot:?}");
        }
        Mode::RoomExcept => {
            assert_eq!(snapshot.frames_out, (clients - 1) * rounds, "{snapshot:?}");
        }
        Mode::Latest => {
            // Nothing leaves; one value per key waits in every backlog, and
            // each round after the first turn of the keys replaced one.
            assert_eq!(snapshot.frames_out, 0, "{snapshot:?}");
            assert_eq!(
                snapshot.conflated,
                clients * rounds.saturating_sub(KEYS as u64),
                "{snapshot:?}"
            );
            assert_eq!(snapshot.disconnects.backlog_full, 0, "{snapshot:?}");
        }
    }
    if matches!(mode, Mode::Room | Mode::RoomExcept | Mode::Latest) {
        assert_eq!(snapshot.room_sends, rounds, "{snapshot:?}");
    }
    println!(
        "{} deliveries, {} conflated",
        snapshot.frames_out, snapshot.conflated
    );
}

#[cfg(not(feature = "ours"))]
fn main() {
    eprintln!("core_broadcast needs the `ours` feature");
}
