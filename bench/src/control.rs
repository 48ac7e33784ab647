//! The control protocol between the harness and a server child process.
//!
//! A server binds its listener, prints `PORT <n>` on stdout, then answers
//! one line on stdout for each line the harness writes on its stdin:
//!
//! ```text
//! count        -> <frames that reached the channel-0 consumer so far>
//! conns        -> <connections the server has taken in so far>
//! broadcast R  -> ok            (R rounds of BROADCAST_PAYLOAD to every id start)
//! quit         -> (the process exits)
//! ```
//!
//! Counting is done by the server's own consumer into [`Counters`]; the
//! harness reads the server's memory from `/proc/<pid>/status` itself.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use socket2::{Domain, Protocol, Socket, Type};

/// What a server publishes for the harness. Each counter has one writer (the
/// server's consumer or acceptor), so plain stores are enough.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames that reached the channel-0 consumer.
    pub frames: AtomicU64,
    /// Connections taken in (accepted, or announced to the consumer).
    pub conns: AtomicU64,
}

impl Counters {
    /// New shared counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// The listen backlog `std` (and so `async-net`) always asks for.
pub const STD_BACKLOG: i32 = 128;

/// Binds `127.0.0.1:0` with a listen backlog of `backlog` (the kernel caps it
/// at `net.core.somaxconn`), non-blocking, with `TCP_NODELAY` set so that
/// accepted sockets inherit it.
pub fn bind(backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Prints `PORT <n>` and serves the control protocol on a thread of its own.
/// `on_broadcast(rounds)` starts a broadcast and must not block for long.
/// The process exits on `quit` or when stdin closes (the harness is gone).
pub fn serve(
    listener: &TcpListener,
    counters: Arc<Counters>,
    on_broadcast: impl Fn(u32) + Send + 'static,
) -> io::Result<()> {
    serve_port(listener.local_addr()?.port(), counters, on_broadcast)
}

/// [`serve`] for a server that bound its listener itself (as `ours` does,
/// through the crate's own `runtime::smol::bind` or through `async-net`).
pub fn serve_port(
    port: u16,
    counters: Arc<Counters>,
    on_broadcast: impl Fn(u32) + Send + 'static,
) -> io::Result<()> {
    {
        let mut out = io::stdout().lock();
        writeln!(out, "PORT {port}")?;
        out.flush()?;
    }
    thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                let reply = match words.next() {
                    Some("count") => counters.frames.load(Ordering::Relaxed).to_string(),
                    Some("conns") => counters.conns.load(Ordering::Relaxed).to_string(),
                    Some("broadcast") => {
                        let rounds = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                        on_broadcast(rounds);
                        "ok".to_string()
                    }
                    Some("quit") => break,
                    other => format!("error: unknown command {other:?}"),
                };
                let mut out = io::stdout().lock();
                if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        })?;
    Ok(())
}
