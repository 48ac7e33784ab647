//! One client connection of the WebSocket load generator: a non-blocking
//! mio socket, plain (`ws://`) or through a rustls client (`wss://`), read
//! and written like a socket, and the HTTP upgrade that opens it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use stream_multiplexer::tls::rustls::pki_types::ServerName;
use stream_multiplexer::tls::rustls::{ClientConfig, ClientConnection};

use super::wire;

/// The most TLS bytes (either way) rustls holds for one client before a
/// write accepts nothing more: rustls's own default.
const TLS_BUFFER: usize = 64 * 1024;

/// A client socket, with TLS or without.
pub struct Conn {
    /// The socket (registered with the generator's poll while a load runs).
    pub sock: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Conn {
    /// A plain connection, or a TLS client over it when `tls` is given.
    fn new(sock: TcpStream, tls: Option<&Arc<ClientConfig>>) -> io::Result<Self> {
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let mut conn =
                    ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                conn.set_buffer_limit(Some(TLS_BUFFER));
                Some(Box::new(conn))
            }
        };
        Ok(Self { sock, tls })
    }

    /// Writes what it can of `data` (plain bytes; with TLS, what rustls
    /// takes to encrypt, pushed on to the socket as far as it goes) and
    /// says how much; `WouldBlock` when it took nothing.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.write(data);
        };
        // What is already sealed goes first, so that rustls's buffer
        // drains before it takes more.
        flush_tls(tls, &mut self.sock)?;
        let n = tls.writer().write(data)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match flush_tls(tls, &mut self.sock) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Pushes what TLS holds to the socket; `WouldBlock` if some is left.
    /// Nothing to do without TLS.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => flush_tls(tls, &mut self.sock),
            None => Ok(()),
        }
    }

    /// Reads plain bytes: `Ok(0)` when the server closed the connection,
    /// `WouldBlock` when nothing is there now. With TLS, reading also
    /// drives the handshake and answers what the server's records ask.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(io::Error::other)?;
            match flush_tls(tls, &mut self.sock) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

fn flush_tls(tls: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(())
}

/// Connects `n` clients to `addr` and opens each as a WebSocket (with TLS
/// first when `tls` is given): every HTTP upgrade is sent at once and the
/// responses are awaited together, through one poll. Returns the open
/// connections, in order, each with nothing left unread.
pub fn open(
    addr: SocketAddr,
    n: usize,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> io::Result<Vec<Conn>> {
    let until = Instant::now() + timeout;
    let socks = crate::load::connect(addr, n, timeout)?;
    let poll = Poll::new()?;
    let mut conns = Vec::with_capacity(n);
    for (i, mut sock) in socks.into_iter().enumerate() {
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn::new(sock, tls)?);
    }
    let request = wire::upgrade_request();
    let mut upgrades: Vec<Upgrade> = (0..n).map(|_| Upgrade::default()).collect();
    let mut left = n;
    let mut scratch = vec![0u8; 4096];
    for i in 0..n {
        left -= usize::from(upgrades[i].progress(&mut conns[i], &request, &mut scratch)?);
    }
    let mut poll = poll;
    let mut events = Events::with_capacity(1024);
    while left > 0 {
        let now = Instant::now();
        if now >= until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{left} of {n} WebSocket handshakes still pending"),
            ));
        }
        match poll.poll(&mut events, Some(until - now)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            let i = event.token().0;
            left -= usize::from(upgrades[i].progress(&mut conns[i], &request, &mut scratch)?);
        }
    }
    for conn in &mut conns {
        poll.registry().deregister(&mut conn.sock)?;
    }
    Ok(conns)
}

/// One client's way through the upgrade.
#[derive(Default)]
struct Upgrade {
    /// Bytes of the request written.
    sent: usize,
    /// The response so far.
    response: Vec<u8>,
    done: bool,
}

impl Upgrade {
    /// Takes the upgrade as far as the socket allows; `Ok(true)` the first
    /// time it completes.
    fn progress(
        &mut self,
        conn: &mut Conn,
        request: &[u8],
        scratch: &mut [u8],
    ) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        while self.sent < request.len() {
            match conn.write(&request[self.sent..]) {
                Ok(k) => self.sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        match conn.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        loop {
            match conn.read(scratch) {
                Ok(0) => return Err(io::Error::other("server closed during the handshake")),
                Ok(k) => self.response.extend_from_slice(&scratch[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        match wire::upgrade_response(&self.response) {
            Ok(None) => Ok(false),
            // The server speaks only when spoken to: nothing follows the
            // response yet.
            Ok(Some(len)) if len == self.response.len() => {
                self.done = true;
                self.response = Vec::new();
                Ok(true)
            }
            Ok(Some(_)) => Err(io::Error::other("bytes after the upgrade response")),
            Err(status) => Err(io::Error::other(format!("upgrade refused: {status}"))),
        }
    }
}

/// Sends one binary message on each connection (the idle clients' hello,
/// so that every server has read from every connection once). A fresh
/// connection takes 38 bytes at once; TLS ones are flushed until done.
pub fn send_hello(conns: &mut [Conn], timeout: Duration) -> io::Result<()> {
    let hello = wire::client_frame(&crate::proto::INGRESS_PAYLOAD);
    let until = Instant::now() + timeout;
    for conn in conns {
        if conn.write(&hello)? != hello.len() {
            return Err(io::Error::other("short hello write"));
        }
        loop {
            match conn.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
