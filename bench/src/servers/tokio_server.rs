//! The hand-written tokio peer: what a user would write instead of a
//! multiplexer. A reader task per connection (`FramedRead` with a 2-byte
//! `LengthDelimitedCodec`) feeds one bounded `tokio::sync::mpsc` for channel
//! 0; a writer task per connection drains its own bounded mpsc into a
//! `FramedWrite`, flushing once per batch of what is already queued.
//!
//! Runs on a current-thread runtime for `--threads 1` and on a multi-thread
//! runtime with that many workers otherwise.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::ServerOpts;
use crate::control::{self, Counters};
use crate::proto::{BROADCAST_PAYLOAD, HEADER};

enum Incoming {
    Message(usize, Bytes),
    Disconnected(usize),
}

/// Each connection's writer queue, by connection id.
type Writers = Arc<Mutex<HashMap<usize, mpsc::Sender<Bytes>>>>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER)
        .new_codec()
}

/// Builds the runtime `opts.threads` asks for.
pub(crate) fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    let rt = runtime(opts.threads)?;
    let std_listener = control::bind(opts.backlog)?;
    let counters = Counters::new();
    let writers: Writers = Arc::default();

    let handle = rt.handle().clone();
    let bcast_writers = Arc::clone(&writers);
    control::serve(&std_listener, Arc::clone(&counters), move |rounds| {
        handle.spawn(broadcast(Arc::clone(&bcast_writers), rounds));
    })?;

    let opts = opts.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (ch_tx, ch_rx) = mpsc::channel(opts.channel_capacity);
        tokio::spawn(consume(
            ch_rx,
            Arc::clone(&writers),
            Arc::clone(&counters),
            opts.echo,
        ));
        let mut next_id = 0usize;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("tokio server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            stream.set_nodelay(true)?;
            let (r, w) = stream.into_split();
            let id = next_id;
            next_id += 1;
            let (wtx, wrx) = mpsc::channel(opts.writer_capacity);
            writers.lock().expect("writers lock").insert(id, wtx);
            tokio::spawn(read_loop(id, FramedRead::new(r, codec()), ch_tx.clone()));
            tokio::spawn(write_loop(FramedWrite::new(w, codec()), wrx));
            counters.conns.store(next_id as u64, Relaxed);
        }
    })
}

async fn read_loop(
    id: usize,
    mut frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    tx: mpsc::Sender<Incoming>,
) {
    while let Some(Ok(frame)) = frames.next().await {
        if tx
            .send(Incoming::Message(id, frame.freeze()))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = tx.send(Incoming::Disconnected(id)).await;
}

async fn write_loop(
    mut sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(first) = rx.recv().await {
        if sink.feed(first).await.is_err() {
            return;
        }
        // Whatever is already queued goes out under one flush.
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return;
        }
    }
}

/// The channel-0 consumer: counts, and echoes when asked to.
async fn consume(
    mut rx: mpsc::Receiver<Incoming>,
    writers: Writers,
    counters: Arc<Counters>,
    echo: bool,
) {
    let mut frames = 0u64;
    while let Some(incoming) = rx.recv().await {
        match incoming {
            Incoming::Message(id, value) => {
                frames += 1;
                counters.frames.store(frames, Relaxed);
                if echo {
                    // Fast path under the lock; a full writer queue is awaited
                    // outside it (never with the lock held).
                    let full = {
                        let writers = writers.lock().expect("writers lock");
                        match writers.get(&id).map(|tx| tx.try_send(value)) {
                            Some(Err(mpsc::error::TrySendError::Full(value))) => {
                                Some((writers[&id].clone(), value))
                            }
                            _ => None,
                        }
                    };
                    if let Some((tx, value)) = full {
                        let _ = tx.send(value).await;
                    }
                }
            }
            Incoming::Disconnected(id) => {
                writers.lock().expect("writers lock").remove(&id);
            }
        }
    }
}

/// `rounds` rounds of one message to every connection, each send waiting for
/// room in that connection's queue (so a round waits for the slowest client).
async fn broadcast(writers: Writers, rounds: u32) {
    let targets: Vec<mpsc::Sender<Bytes>> = writers
        .lock()
        .expect("writers lock")
        .values()
        .cloned()
        .collect();
    let message = Bytes::from_static(&BROADCAST_PAYLOAD);
    for _ in 0..rounds {
        for tx in &targets {
            let _ = tx.send(message.clone()).await;
        }
    }
}
