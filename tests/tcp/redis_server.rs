//! [`RedisServer`]: a `redis-server` of a test's own, on a free port,
//! persistence off, killed when dropped (`redis.rs`, `chat_nodes.rs`).
//!
//! It is ready when it says so: the test waits for the server's own
//! "Ready to accept connections" line on its standard output, not for a
//! connection attempt to succeed.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use super::SAFETY_TIMEOUT;

/// How many ports are tried before giving up.
const PORT_ATTEMPTS: usize = 50;

/// What `redis-server` logs (at level `notice`) once it listens.
const READY: &str = "Ready to accept connections";

/// A `redis-server` on a free port of its own.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it is ready.
    pub fn start() -> Self {
        for _ in 0..PORT_ATTEMPTS {
            // Below the ephemeral range (from 32768 on Linux, 49152
            // elsewhere), so that no client connection of a test takes the
            // port, even while the server is down for a restart.
            let port = 20_000
                + u16::try_from(RandomState::new().hash_one(thread::current().id()) % 10_000)
                    .expect("a port");
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut server = Self { port, child: None };
            // Another process may have taken the port in the meantime.
            if server.launch().is_ok() {
                return server;
            }
        }
        panic!("no free port for redis-server");
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.address())
    }

    /// Starts the server on its port and waits for its ready line; fails
    /// if it ends before it (the port is taken).
    fn launch(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let output = child.stdout.take().expect("stdout is piped");
        self.child = Some(child);
        let (ready, said) = mpsc::channel();
        // Reads the log until the server ends, so that its pipe never
        // fills; the ready line is passed on.
        thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                if line.contains(READY) {
                    let _ = ready.send(());
                }
            }
        });
        match said.recv_timeout(SAFETY_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.kill();
                Err(format!(
                    "redis-server on port {} ended before it was ready",
                    self.port
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("redis-server never said it was ready"),
        }
    }

    /// Kills the server (as a crash would: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(error) = self.launch() {
            panic!("restarting on port {}: {error}", self.port);
        }
    }

    /// Sends one command on a connection of its own; returns the first
    /// line of the reply, without its CRLF.
    pub fn command(&self, arguments: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(SAFETY_TIMEOUT))?;
        let mut wire = format!("*{}\r\n", arguments.len()).into_bytes();
        for argument in arguments {
            wire.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
            wire.extend_from_slice(argument);
            wire.extend_from_slice(b"\r\n");
        }
        stream.write_all(&wire)?;
        let mut line = Vec::new();
        BufReader::new(stream).read_until(b'\n', &mut line)?;
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
        }
        Ok(line)
    }

    /// Publishes `payload` on `channel` as any client would; returns how
    /// many subscribers Redis gave it to.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        let reply = self
            .command(&[b"PUBLISH", channel.as_bytes(), payload])
            .expect("redis answers");
        std::str::from_utf8(&reply)
            .ok()
            .and_then(|reply| reply.strip_prefix(':'))
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("not a count: {reply:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
