//! The harness's handle on a WebSocket server child process (`bench ws
//! server ...`): spawn it, ask it the [`control`](crate::control)
//! protocol's questions, read its memory and CPU time from `/proc`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::server::{Memory, Peer, cpu_time};

/// A running server child.
pub struct WsServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl WsServer {
    /// Starts `peer` as `<this exe> ws server ...` and waits for its port.
    pub fn spawn(
        peer: &Peer,
        echo: bool,
        backlog: i32,
        cert: Option<(&Path, &Path)>,
    ) -> io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["ws", "server", "--impl", &peer.kind])
            .args(["--threads", &peer.threads.to_string()])
            .args(["--backlog", &backlog.to_string()]);
        if echo {
            cmd.arg("--echo");
        }
        if let Some((cert, key)) = cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{peer}: expected PORT, got {line:?}")))?;
        Ok(Self {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn ask(&mut self, command: &str) -> io::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(io::Error::other("server exited"));
        }
        Ok(line.trim().to_string())
    }

    fn ask_number(&mut self, command: &str) -> io::Result<u64> {
        let reply = self.ask(command)?;
        reply
            .parse()
            .map_err(|_| io::Error::other(format!("{command}: unexpected reply {reply:?}")))
    }

    /// Binary messages that reached the server's consumer so far.
    pub fn count(&mut self) -> io::Result<u64> {
        self.ask_number("count")
    }

    /// WebSocket connections the server has opened so far.
    pub fn conns(&mut self) -> io::Result<u64> {
        self.ask_number("conns")
    }

    /// Starts `rounds` rounds of one message to every connection.
    pub fn broadcast(&mut self, rounds: u64) -> io::Result<()> {
        match self.ask(&format!("broadcast {rounds}"))?.as_str() {
            "ok" => Ok(()),
            other => Err(io::Error::other(format!("broadcast: {other}"))),
        }
    }

    /// Waits until `what()` reaches `target`; returns the value then.
    fn wait_for(
        &mut self,
        target: u64,
        timeout: Duration,
        what: fn(&mut Self) -> io::Result<u64>,
        name: &str,
    ) -> io::Result<u64> {
        let start = Instant::now();
        loop {
            let now = what(self)?;
            if now >= target {
                return Ok(now);
            }
            if start.elapsed() > timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name}: {now} of {target} after {timeout:?}"),
                ));
            }
            thread::sleep(Duration::from_micros(500));
        }
    }

    /// Waits until the server has opened `n` connections.
    pub fn wait_conns(&mut self, n: u64, timeout: Duration) -> io::Result<u64> {
        self.wait_for(n, timeout, Self::conns, "connections")
    }

    /// Waits until the consumer has seen `n` messages; returns the count.
    pub fn wait_count(&mut self, n: u64, timeout: Duration) -> io::Result<u64> {
        self.wait_for(n, timeout, Self::count, "messages")
    }

    /// The server's resident memory now and at its peak.
    pub fn memory(&self) -> io::Result<Memory> {
        Memory::of(&self.child.id().to_string())
    }

    /// The CPU time the server has run for so far, all threads.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        cpu_time(self.child.id())
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
