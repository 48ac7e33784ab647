//! `stream_multiplexer` 0.16.1 from crates.io, the published crate of this
//! lineage. Its API is runtime-agnostic (`futures` traits, `async-channel`,
//! a `FuturesUnordered` of readers per channel, a `Mutex` around each sink);
//! here it runs on tokio with tokio-util's codec, as its docs suggest, on a
//! current-thread runtime for `--threads 1` and a multi-thread one otherwise.
//!
//! Usage follows its docs: an accept loop calls `add_stream_pair`, one task
//! loops on `recv(0)`, and a broadcast is `send(ids, data).await` per round
//! (which waits until every target has taken the value).

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::stream::MapOk;
use stream_multiplexer_016::Multiplexer;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::ServerOpts;
use super::tokio_server::runtime;
use crate::control::{self, Counters};
use crate::proto::{BROADCAST_PAYLOAD, HEADER};

type Reader = MapOk<FramedRead<OwnedReadHalf, LengthDelimitedCodec>, fn(BytesMut) -> Bytes>;
type Writer = FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>;
type Mux = Multiplexer<Reader, Writer>;

const CHANNEL: usize = 0;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER)
        .new_codec()
}

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    let rt = runtime(opts.threads)?;
    let std_listener = control::bind(opts.backlog)?;
    let counters = Counters::new();
    let ids: Arc<Mutex<Vec<usize>>> = Arc::default();

    let mut mux: Mux = Multiplexer::new();
    mux.add_channel(CHANNEL)
        .map_err(|e| io::Error::other(e.to_string()))?;

    let handle = rt.handle().clone();
    let (bcast_mux, bcast_ids) = (mux.clone(), Arc::clone(&ids));
    control::serve(&std_listener, Arc::clone(&counters), move |rounds| {
        let targets = bcast_ids.lock().expect("ids lock").clone();
        let mux = bcast_mux.clone();
        handle.spawn(async move {
            let message = Bytes::from_static(&BROADCAST_PAYLOAD);
            for _ in 0..rounds {
                mux.send(targets.iter().copied(), message.clone()).await;
            }
        });
    })?;

    let echo = opts.echo;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        tokio::spawn(consume(
            mux.clone(),
            Arc::clone(&ids),
            Arc::clone(&counters),
            echo,
        ));
        let mut accepted = 0u64;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("v016 server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            stream.set_nodelay(true)?;
            let (r, w) = stream.into_split();
            let reader: Reader = FramedRead::new(r, codec()).map_ok(BytesMut::freeze as fn(_) -> _);
            let writer = FramedWrite::new(w, codec());
            match mux.add_stream_pair(writer, reader, CHANNEL) {
                Ok(id) => {
                    ids.lock().expect("ids lock").push(id);
                    accepted += 1;
                    counters.conns.store(accepted, Relaxed);
                }
                Err(e) => eprintln!("v016 server: add_stream_pair: {e}"),
            }
        }
    })
}

/// The channel-0 consumer: counts, and echoes when asked to.
async fn consume(mut mux: Mux, ids: Arc<Mutex<Vec<usize>>>, counters: Arc<Counters>, echo: bool) {
    let mut frames = 0u64;
    loop {
        match mux.recv(CHANNEL).await {
            Ok((id, Some(Ok(value)))) => {
                frames += 1;
                counters.frames.store(frames, Relaxed);
                if echo {
                    mux.send([id], value).await;
                }
            }
            Ok((id, _)) => {
                mux.remove_stream(id);
                ids.lock().expect("ids lock").retain(|&x| x != id);
            }
            Err(e) => {
                eprintln!("v016 server: recv: {e}");
                return;
            }
        }
    }
}
