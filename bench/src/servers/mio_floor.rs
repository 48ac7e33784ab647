//! The floor: a minimal single-threaded mio server that parses frames in
//! place in one shared read buffer and delivers them nowhere (it counts
//! them). It echoes complete frames straight from that buffer, and
//! broadcasts by writing one shared pre-encoded buffer of all rounds to every
//! connection (coalesced: a few big writes per connection, no copy per
//! recipient). Whatever a multiplexer does on top costs the difference.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::ServerOpts;
use crate::control::{self, Counters};
use crate::proto::{BROADCAST_PAYLOAD, frames, split_frames};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Shared read buffer: big enough for a maximal frame plus a large read.
const SCRATCH: usize = 256 * 1024;
/// Reads per readiness event before other connections get a turn.
const READ_BUDGET: usize = 8;

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// A partial frame left from the previous read.
    carry: Vec<u8>,
    /// Echo bytes the socket did not take yet.
    out: Vec<u8>,
    /// A broadcast in progress: the shared buffer and how far we got.
    bcast: Option<(Arc<[u8]>, usize)>,
    /// Queued for another read turn (its budget ran out with data left).
    requeued: bool,
}

/// Serves until the harness says `quit`.
pub fn run(opts: &ServerOpts) -> io::Result<()> {
    let std_listener = control::bind(opts.backlog)?;
    let counters = Counters::new();
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let broadcasts: Arc<Mutex<Vec<u32>>> = Arc::default();
    {
        let (waker, broadcasts) = (Arc::clone(&waker), Arc::clone(&broadcasts));
        control::serve(&std_listener, Arc::clone(&counters), move |rounds| {
            broadcasts.lock().expect("broadcasts lock").push(rounds);
            let _ = waker.wake();
        })?;
    }
    let mut listener = TcpListener::from_std(std_listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;

    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH];
    let mut again: Vec<usize> = Vec::new();
    let mut frames_in = 0u64;
    let mut accepted = 0u64;
    loop {
        let timeout = if again.is_empty() {
            None
        } else {
            Some(std::time::Duration::ZERO)
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn {
                                stream,
                                carry: Vec::new(),
                                out: Vec::new(),
                                bcast: None,
                                requeued: false,
                            });
                            accepted += 1;
                            counters.conns.store(accepted, Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            eprintln!("mio server: accept: {e}");
                            break;
                        }
                    }
                },
                WAKER => {
                    let pending = std::mem::take(&mut *broadcasts.lock().expect("lock"));
                    for rounds in pending {
                        let all: Arc<[u8]> = frames(&BROADCAST_PAYLOAD, rounds as usize).into();
                        let keys: Vec<usize> = conns.iter().map(|(k, _)| k).collect();
                        for key in keys {
                            conns[key].bcast = Some((Arc::clone(&all), 0));
                            if flush(&mut conns[key]).is_err() {
                                close(&mut conns, &poll, key);
                            }
                        }
                    }
                }
                Token(key) => {
                    if event.is_writable() && conns.contains(key) && flush(&mut conns[key]).is_err()
                    {
                        close(&mut conns, &poll, key);
                    }
                    if (event.is_readable() || event.is_read_closed()) && conns.contains(key) {
                        read(
                            &mut conns,
                            &poll,
                            key,
                            &mut scratch,
                            &mut frames_in,
                            &mut again,
                            opts.echo,
                        );
                        counters.frames.store(frames_in, Relaxed);
                    }
                }
            }
        }
        for key in std::mem::take(&mut again) {
            if let Some(conn) = conns.get_mut(key) {
                conn.requeued = false;
                read(
                    &mut conns,
                    &poll,
                    key,
                    &mut scratch,
                    &mut frames_in,
                    &mut again,
                    opts.echo,
                );
                // Published after every connection's turn, not once per
                // turn of the loop: a turn over many full sockets can
                // outlast a slice of the harness's window on a loaded
                // machine, which then saw no progress at all.
                counters.frames.store(frames_in, Relaxed);
            }
        }
        counters.frames.store(frames_in, Relaxed);
    }
}

/// Reads up to `READ_BUDGET` times, counting (and maybe echoing) every
/// complete frame in place; requeues the connection if data may be left.
fn read(
    conns: &mut Slab<Conn>,
    poll: &Poll,
    key: usize,
    scratch: &mut [u8],
    frames_in: &mut u64,
    again: &mut Vec<usize>,
    echo: bool,
) {
    let conn = &mut conns[key];
    for _ in 0..READ_BUDGET {
        let kept = conn.carry.len();
        scratch[..kept].copy_from_slice(&conn.carry);
        match conn.stream.read(&mut scratch[kept..]) {
            Ok(0) => return close(conns, poll, key),
            Ok(n) => {
                let total = kept + n;
                let used = split_frames(&scratch[..total], |_| *frames_in += 1);
                conn.carry.clear();
                conn.carry.extend_from_slice(&scratch[used..total]);
                if echo && used > 0 {
                    conn.out.extend_from_slice(&scratch[..used]);
                    if flush(conn).is_err() {
                        return close(conns, poll, key);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return close(conns, poll, key),
        }
    }
    if !conn.requeued {
        conn.requeued = true;
        again.push(key);
    }
}

/// Writes pending echo bytes, then the broadcast, until the socket is full.
fn flush(conn: &mut Conn) -> io::Result<()> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if conn.out.capacity() > 64 * 1024 {
        conn.out = Vec::new();
    }
    while let Some((all, pos)) = &mut conn.bcast {
        match conn.stream.write(&all[*pos..]) {
            Ok(n) => {
                *pos += n;
                if *pos == all.len() {
                    conn.bcast = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn close(conns: &mut Slab<Conn>, poll: &Poll, key: usize) {
    if let Some(mut conn) = conns.try_remove(key) {
        let _ = poll.registry().deregister(&mut conn.stream);
    }
}
