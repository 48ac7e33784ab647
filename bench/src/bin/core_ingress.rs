//! The core alone, taking frames in: C in-memory connections, each sending
//! N frames in the benchmark's wire format (2-byte length, 32-byte payload,
//! `bench::proto`), framed by `HalvesStream` as the `ours` server frames its
//! sockets, read by one `Multiplexer` into channel 0 and counted by the
//! `ours` server's own consumer (`bench::servers::ours::consume`, channel
//! capacity 1,024), all on one `futures::executor::LocalPool`. No sockets:
//! what is left is the library's work per frame (reading into the buffer,
//! decoding, `Run`'s read loop, the consumer channel, the consumer), which
//! `valgrind --tool=callgrind` counts in instructions, the same on a busy
//! machine as on an idle one:
//!
//! ```text
//! cargo build --release -p bench --bin core_ingress
//! valgrind --tool=callgrind target/release/core_ingress 1000 200    # batch::channel
//! valgrind --tool=callgrind target/release/core_ingress 1000 1000
//! valgrind --tool=callgrind target/release/core_ingress 1000 200 --mpsc   # futures mpsc
//! valgrind --tool=callgrind target/release/core_ingress 1000 1000 --mpsc
//! ```
//!
//! (total(C, 1000) − total(C, 200)) / (C × 800) = instructions per frame:
//! set-up, connects, end of input and shutdown cancel out.
//! `callgrind_annotate --inclusive=no callgrind.out.PID` shows where they go.
//!
//! Each connection's read half hands out at most `--burst` bytes per read
//! (default 7,000: about 205 frames, what a `recv` returned on average in
//! the real benchmark at C = 1,000 with the default 8 KiB read chunk; not a
//! multiple of a frame, so reads end inside frames as a socket's do;
//! `--burst 0`: whatever a read asks for, like a `futures::io::Cursor`).
//! By default it never blocks: a client that keeps its socket full, as the
//! benchmark's do (its zero-filling per frame, one `memset` per read,
//! matches the real benchmark's then). `--block-every R` makes it would-block
//! once after every R reads, waking its task at once: a socket drained and
//! readable again, so the reader goes through `Pending` (and releases its
//! buffer when no partial frame is left). `--read-chunk K` sets
//! `HalvesStream`'s read chunk size (the crate's default otherwise).
//!
//! `--batches` consumes `batch::channel` with `BatchReceiver::next_batch`
//! (a `Vec` of packets per wait: `bench::servers::ours::consume_batches`,
//! the `ours-batches` server's consumer) instead of the `ours` server's
//! `StreamExt::next` loop, doing the same per packet.

#[cfg(feature = "ours")]
fn main() {
    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::{Context, Poll};

    use bench::control::Counters;
    use bench::proto::{FRAME, INGRESS_PAYLOAD, frames};
    use bench::servers::ours::{Audience, ChannelZero, Incoming, Parts, halves};
    use bench::servers::{ConsumerChannel, ServerOpts};
    use futures::channel::mpsc;
    use futures::executor::LocalPool;
    use futures::io::{AsyncRead, AsyncWrite};
    use futures::task::LocalSpawnExt;
    use futures::{Sink, Stream, stream};
    use stream_multiplexer::batch::BatchReceiver;
    use stream_multiplexer::{ControlMessage, IntoHalves, batch};

    /// A connection's read half: `wire`, at most `burst` bytes per read
    /// (0: no limit), would-block once after every `block_every` reads (0:
    /// never).
    struct Feed {
        wire: std::rc::Rc<[u8]>,
        at: usize,
        burst: usize,
        block_every: usize,
        reads: usize,
    }
    impl AsyncRead for Feed {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.block_every > 0 {
                if self.reads == self.block_every {
                    self.reads = 0;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.reads += 1;
            }
            let limit = if self.burst == 0 {
                usize::MAX
            } else {
                self.burst
            };
            let n = buf.len().min(limit).min(self.wire.len() - self.at);
            buf[..n].copy_from_slice(&self.wire[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    /// A connection's write half whose socket always has room.
    struct Takes;
    impl AsyncWrite for Takes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Conn(Feed);
    impl IntoHalves for Conn {
        type Read = Feed;
        type Write = Takes;
        fn into_halves(self) -> (Feed, Takes) {
            (self.0, Takes)
        }
    }

    let mut positional = Vec::new();
    let mut opts = ServerOpts::default();
    let mut burst = 7_000;
    let mut block_every = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mpsc" => opts.consumer = ConsumerChannel::Mpsc,
            "--batches" => opts.consumer = ConsumerChannel::Batches,
            "--burst" => burst = args.next().and_then(|a| a.parse().ok()).expect("--burst BYTES"),
            "--block-every" => {
                block_every = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--block-every READS");
            }
            "--read-chunk" => {
                opts.read_chunk = Some(
                    args.next()
                        .and_then(|a| a.parse().ok())
                        .expect("--read-chunk BYTES"),
                );
            }
            _ => positional.push(arg.parse::<usize>().expect("core_ingress C N [--mpsc | --batches] [--burst BYTES] [--block-every READS] [--read-chunk BYTES]")),
        }
    }
    let clients = positional.first().copied().unwrap_or(1000);
    let per_client = positional.get(1).copied().unwrap_or(200);

    // One copy of the input, shared by every connection.
    let wire: std::rc::Rc<[u8]> = frames(&INGRESS_PAYLOAD, per_client).into();
    assert_eq!(wire.len(), FRAME * per_client);
    let conns = (0..clients).map(move |_| {
        Ok(Conn(Feed {
            wire: std::rc::Rc::clone(&wire),
            at: 0,
            burst,
            block_every,
            reads: 0,
        }))
    });

    fn run<Ch, Rx>(
        opts: &ServerOpts,
        (sink, channel0): (Ch, ChannelZero<Rx>),
        conns: impl Iterator<Item = io::Result<Conn>> + Unpin + 'static,
    ) -> u64
    where
        Ch: Sink<Incoming> + Unpin + 'static,
        Rx: Stream<Item = Incoming> + Unpin + 'static,
    {
        let parts = Parts::new(opts, sink, None);
        let counters = Counters::new();
        let (control, control_rx) = mpsc::unbounded::<ControlMessage>();
        let connections = halves(stream::iter(conns), opts);
        let run = parts.multiplexer.run(connections, control_rx);
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        spawner
            .spawn_local(async move {
                let _ = run.await;
            })
            .expect("spawn");
        spawner
            .spawn_local(channel0.consume(
                parts.outgoing,
                Audience::Ids(Default::default()),
                std::sync::Arc::clone(&counters),
                false,
            ))
            .expect("spawn");
        pool.run_until_stalled();
        let frames = counters.frames.load(Relaxed);
        control
            .unbounded_send(ControlMessage::Abort)
            .expect("abort");
        pool.run_until_stalled();
        frames
    }

    let frames = match opts.consumer {
        ConsumerChannel::Batch => {
            let (sink, receiver) = batch::channel(opts.channel_capacity);
            run(&opts, (sink, ChannelZero::Next(receiver)), conns)
        }
        ConsumerChannel::Batches => {
            let (sink, receiver) = batch::channel(opts.channel_capacity);
            run::<_, BatchReceiver<Incoming>>(&opts, (sink, ChannelZero::Batches(receiver)), conns)
        }
        ConsumerChannel::Mpsc => {
            let (sink, receiver) = mpsc::channel(opts.channel_capacity);
            run(&opts, (sink, ChannelZero::Next(receiver)), conns)
        }
    };
    assert_eq!(frames, (clients * per_client) as u64);
    println!("{frames} frames");
}

#[cfg(not(feature = "ours"))]
fn main() {
    eprintln!("core_ingress needs the `ours` feature");
}
