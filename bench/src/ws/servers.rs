//! The WebSocket servers under test, each run as a child process (`bench
//! ws server --impl KIND ...`) that speaks the [`control`](crate::control)
//! protocol, as the TCP servers do.
//!
//! - `ours-ws`: this crate as its docs show it. Connections from
//!   `runtime::smol::incoming` go through a `websocket::Acceptor` with its
//!   defaults (`ours-ws:BYTES`: with that read buffer size) (and first
//!   through `tls::accept` for `ours-wss`); one `Multiplexer` (policy
//!   Disconnect, a backlog of 32,768 values per stream, as the TCP `ours`)
//!   whose channel 0 is the crate's `batch::channel` (1,024); a consumer
//!   task counts binary messages and echoes them through the outgoing
//!   stream; a broadcast is one `OutgoingPacket::Message` of one shared
//!   binary message to every id per round. On a `smol::Executor` driven by
//!   `--threads` threads.
//! - `tt`: what a user of tokio-tungstenite writes instead, as its docs
//!   show: a task per connection that runs `accept_async` (tungstenite's
//!   default configuration) and reads the `split` stream into one bounded
//!   `tokio::sync::mpsc` (1,024) to one consumer; a writer task per
//!   connection drains its own bounded mpsc (128) into the `split` sink,
//!   flushing once per batch already queued. A broadcast sends to every
//!   connection's sender, waiting for room in each. Current-thread runtime
//!   for `--threads 1`, multi-thread with that many workers otherwise.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc as fmpsc;
use futures::{SinkExt, StreamExt, future};
use stream_multiplexer::batch::{self, BatchReceiver};
use stream_multiplexer::websocket::{self, WsMessage};
use stream_multiplexer::{
    IncomingPacket, MultiplexerBuilder, OutgoingMessage, OutgoingPacket, StreamId, runtime, tls,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::control::{self, Counters};
use crate::proto::BROADCAST_PAYLOAD;

/// How a server child is started.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Worker threads.
    pub threads: usize,
    /// Echo every message back to its sender instead of only counting it.
    pub echo: bool,
    /// Listen backlog asked of the kernel.
    pub backlog: i32,
    /// `ours-wss`: the certificate chain and key, PEM files.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// Capacity of the channel-0 consumer's queue, in both servers.
const CHANNEL_CAPACITY: usize = 1024;
/// `tt`: each connection's writer queue, in messages.
const WRITER_CAPACITY: usize = 128;
/// `ours-ws`: each stream's outgoing backlog, in values (policy
/// Disconnect): large enough that no broadcast run overflows it, as the TCP
/// `ours` server's.
const SENDER_BUFFER: usize = 32_768;
/// The period of the clocks `ours-ws` gives its acceptors (handshake
/// deadlines: the default 10 s).
const ACCEPT_CLOCK: Duration = Duration::from_secs(1);

/// The kinds `bench ws` knows. `ours-ws` and `ours-wss` also take a read
/// buffer size in bytes after a colon (`ours-ws:16384`): the acceptor's
/// `read_buffer_size`, instead of the crate's default.
pub const KINDS: [&str; 3] = ["ours-ws", "ours-wss", "tt"];

/// A server kind, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This crate; with TLS for `ours-wss`; with a read buffer size of
    /// its own, or the acceptor's default.
    Ours {
        tls: bool,
        read_buffer: Option<usize>,
    },
    /// The hand-written tokio-tungstenite server.
    Tt,
}

impl Kind {
    /// Parses `ours-ws`, `ours-wss`, `tt`, or `ours-ws[s]:BYTES`.
    pub fn parse(kind: &str) -> Result<Self, String> {
        let (base, read_buffer) = match kind.split_once(':') {
            Some((base, bytes)) => {
                let bytes = bytes
                    .parse()
                    .map_err(|_| format!("bad read buffer size in {kind:?}"))?;
                (base, Some(bytes))
            }
            None => (kind, None),
        };
        match (base, read_buffer) {
            ("ours-ws", _) => Ok(Self::Ours {
                tls: false,
                read_buffer,
            }),
            ("ours-wss", _) => Ok(Self::Ours {
                tls: true,
                read_buffer,
            }),
            ("tt", None) => Ok(Self::Tt),
            _ => Err(format!("unknown server {kind:?} (known: {KINDS:?})")),
        }
    }
}

/// Runs server `kind` until the harness says `quit`.
pub fn run(kind: &str, opts: &Opts) -> io::Result<()> {
    match Kind::parse(kind).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))? {
        Kind::Ours {
            tls: false,
            read_buffer,
        } => ours(opts, read_buffer, None),
        Kind::Ours {
            tls: true,
            read_buffer,
        } => {
            let Some((cert, key)) = &opts.cert else {
                return Err(io::Error::other("ours-wss needs --cert and --key"));
            };
            let (chain, key) = tls::load_pem(cert, key)?;
            ours(opts, read_buffer, Some(tls::server_config(chain, key)?))
        }
        Kind::Tt => tt(opts),
    }
}

type OursIncoming = IncomingPacket<io::Result<WsMessage>>;

/// `ours-ws`, or `ours-wss` with a TLS configuration.
fn ours(
    opts: &Opts,
    read_buffer: Option<usize>,
    tls_config: Option<Arc<tls::rustls::ServerConfig>>,
) -> io::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = runtime::smol::bind(address, u32::try_from(opts.backlog).unwrap_or(0))?;
    let counters = Counters::new();
    let ex: Arc<smol::Executor<'static>> = Arc::new(smol::Executor::new());
    let (channel0, channel0_rx) = batch::channel(CHANNEL_CAPACITY);
    let (outgoing, outgoing_rx) = fmpsc::channel(CHANNEL_CAPACITY);
    let multiplexer = MultiplexerBuilder::new(SENDER_BUFFER).build(outgoing_rx, vec![channel0]);
    let ids: Arc<Mutex<Vec<StreamId>>> = Arc::default();

    {
        let (ex, ids, outgoing) = (Arc::clone(&ex), Arc::clone(&ids), outgoing.clone());
        control::serve_port(
            listener.local_addr()?.port(),
            Arc::clone(&counters),
            control::Hooks::broadcast(move |rounds| {
                let targets = ids.lock().expect("ids lock").clone();
                ex.spawn(ours_broadcast(targets, rounds, outgoing.clone()))
                    .detach();
            }),
        )?;
    }

    let mut acceptor = websocket::Acceptor::new();
    if let Some(bytes) = read_buffer {
        acceptor = acceptor.read_buffer_size(bytes);
    }
    let incoming = runtime::smol::incoming(listener);
    // Never sent to: the server runs until the process exits.
    let (_control_tx, control_rx) = fmpsc::unbounded();
    match tls_config {
        None => {
            let halves = acceptor.accept(incoming, runtime::smol::clock(ACCEPT_CLOCK));
            spawn_run(&ex, multiplexer.run(halves, control_rx));
        }
        Some(config) => {
            let connections = tls::accept(incoming, config, runtime::smol::clock(ACCEPT_CLOCK));
            let halves = acceptor.accept(connections, runtime::smol::clock(ACCEPT_CLOCK));
            spawn_run(&ex, multiplexer.run(halves, control_rx));
        }
    }
    ex.spawn(ours_consume(
        channel0_rx,
        outgoing,
        ids,
        counters,
        opts.echo,
    ))
    .detach();
    for _ in 1..opts.threads.max(1) {
        let ex = Arc::clone(&ex);
        thread::Builder::new()
            .name("smol".into())
            .spawn(move || smol::block_on(ex.run(future::pending::<()>())))?;
    }
    smol::block_on(ex.run(future::pending::<()>()));
    Ok(())
}

/// Spawns the multiplexer's `Run` on the executor.
fn spawn_run<E: std::fmt::Display>(
    ex: &smol::Executor<'static>,
    run: impl Future<Output = Result<(), E>> + Send + 'static,
) {
    ex.spawn(async move {
        if let Err(e) = run.await {
            eprintln!("ours-ws server: run: {e}");
        }
    })
    .detach();
}

/// `rounds` rounds of one shared binary message to every id in `targets`,
/// one packet per round.
async fn ours_broadcast(
    targets: Vec<StreamId>,
    rounds: u32,
    mut outgoing: fmpsc::Sender<OutgoingPacket<WsMessage>>,
) {
    let message = WsMessage::binary(Bytes::from_static(&BROADCAST_PAYLOAD));
    for _ in 0..rounds {
        let packet = OutgoingMessage::new(targets.iter().copied(), [message.clone()]);
        if outgoing
            .send(OutgoingPacket::Message(packet))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Channel 0's consumer: keeps `ids` current, counts binary messages, and
/// echoes each one to its sender if `echo`.
async fn ours_consume(
    mut channel0: BatchReceiver<OursIncoming>,
    mut outgoing: fmpsc::Sender<OutgoingPacket<WsMessage>>,
    ids: Arc<Mutex<Vec<StreamId>>>,
    counters: Arc<Counters>,
    echo: bool,
) {
    let (mut frames, mut conns) = (0u64, 0u64);
    while let Some(packet) = channel0.next().await {
        match packet {
            IncomingPacket::StreamConnected(id) => {
                ids.lock().expect("ids lock").push(id);
                conns += 1;
                counters.conns.store(conns, Relaxed);
            }
            IncomingPacket::Message(message) => {
                let Ok(value) = message.value else { continue };
                if !value.is_binary() {
                    continue;
                }
                frames += 1;
                counters.frames.store(frames, Relaxed);
                if echo {
                    let reply = OutgoingMessage::new([message.stream_id], [value]);
                    let _ = outgoing.send(OutgoingPacket::Message(reply)).await;
                }
            }
            IncomingPacket::StreamDisconnected(id, _) => {
                ids.lock().expect("ids lock").retain(|&x| x != id);
            }
        }
    }
}

enum TtIncoming {
    Message(usize, Bytes),
    Disconnected(usize),
}

/// `tt`: each connection's writer queue, by connection id.
type Writers = Arc<Mutex<HashMap<usize, mpsc::Sender<Message>>>>;

/// The hand-written tokio-tungstenite server.
fn tt(opts: &Opts) -> io::Result<()> {
    let rt = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    let std_listener = control::bind(opts.backlog)?;
    let counters = Counters::new();
    let writers: Writers = Arc::default();
    {
        let (handle, writers) = (rt.handle().clone(), Arc::clone(&writers));
        control::serve(&std_listener, Arc::clone(&counters), move |rounds| {
            handle.spawn(tt_broadcast(Arc::clone(&writers), rounds));
        })?;
    }
    let echo = opts.echo;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(tt_consume(
            rx,
            Arc::clone(&writers),
            Arc::clone(&counters),
            echo,
        ));
        let mut next_id = 0usize;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("tt server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            };
            let id = next_id;
            next_id += 1;
            tokio::spawn(tt_connection(
                id,
                stream,
                tx.clone(),
                Arc::clone(&writers),
                Arc::clone(&counters),
            ));
        }
    })
}

/// One connection: the handshake, then its writer task, then its reads.
async fn tt_connection(
    id: usize,
    stream: tokio::net::TcpStream,
    tx: mpsc::Sender<TtIncoming>,
    writers: Writers,
    counters: Arc<Counters>,
) {
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("tt server: handshake: {e}");
            return;
        }
    };
    let (mut sink, mut read) = ws.split();
    let (wtx, mut wrx) = mpsc::channel::<Message>(WRITER_CAPACITY);
    writers.lock().expect("writers lock").insert(id, wtx);
    // Several worker threads may take in connections at once.
    counters.conns.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        while let Some(first) = wrx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            // Whatever is already queued goes out under one flush.
            while let Ok(more) = wrx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = read.next().await {
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            // tungstenite answers pings itself; text is not part of the run.
            _ => continue,
        };
        if tx.send(TtIncoming::Message(id, bytes)).await.is_err() {
            return;
        }
    }
    let _ = tx.send(TtIncoming::Disconnected(id)).await;
}

/// `tt`'s consumer: counts, and echoes when asked to.
async fn tt_consume(
    mut rx: mpsc::Receiver<TtIncoming>,
    writers: Writers,
    counters: Arc<Counters>,
    echo: bool,
) {
    let mut frames = 0u64;
    while let Some(incoming) = rx.recv().await {
        match incoming {
            TtIncoming::Message(id, bytes) => {
                frames += 1;
                counters.frames.store(frames, Relaxed);
                if echo {
                    // A full writer queue is awaited outside the lock.
                    let full = {
                        let writers = writers.lock().expect("writers lock");
                        match writers
                            .get(&id)
                            .map(|tx| tx.try_send(Message::Binary(bytes)))
                        {
                            Some(Err(mpsc::error::TrySendError::Full(message))) => {
                                Some((writers[&id].clone(), message))
                            }
                            _ => None,
                        }
                    };
                    if let Some((tx, message)) = full {
                        let _ = tx.send(message).await;
                    }
                }
            }
            TtIncoming::Disconnected(id) => {
                writers.lock().expect("writers lock").remove(&id);
            }
        }
    }
}

/// `rounds` rounds of one message to every connection, each send waiting
/// for room in that connection's queue (a round waits for the slowest).
async fn tt_broadcast(writers: Writers, rounds: u32) {
    let targets: Vec<mpsc::Sender<Message>> = writers
        .lock()
        .expect("writers lock")
        .values()
        .cloned()
        .collect();
    let message = Message::Binary(Bytes::from_static(&BROADCAST_PAYLOAD));
    for _ in 0..rounds {
        for tx in &targets {
            let _ = tx.send(message.clone()).await;
        }
    }
}
