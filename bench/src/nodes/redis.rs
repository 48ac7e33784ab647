//! A `redis-server` of the benchmark's own: started on a free port of
//! 127.0.0.1 with persistence off, killed when dropped.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Ports tried before giving up (another process may take a free port
/// between the look and the start).
const ATTEMPTS: usize = 20;

/// How long a started server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match Self::launch(port) {
                Ok(redis) => return Ok(redis),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free port for redis-server")))
    }

    fn launch(port: u16) -> io::Result<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // No snapshots, no append-only file: nothing on disk.
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting redis-server: {e}")))?;
        let mut redis = Self { child, port };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if redis.ping().is_ok() {
                return Ok(redis);
            }
            // It exits at once if the port was taken meanwhile.
            if let Some(status) = redis.child.try_wait()? {
                return Err(io::Error::other(format!("redis-server exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server never answered PING",
                ));
            }
            // Another process: no event to wait on.
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> io::Result<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        if &reply == b"+PONG\r\n" {
            Ok(())
        } else {
            Err(io::Error::other("unexpected reply to PING"))
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
