//! The idle scenario's idle clients, held in this process or by helper
//! processes of the bench binary (`bench clients`), so that how many there
//! can be is bounded by the server's descriptor limit alone, not by the
//! harness's as well.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::load;

/// Idle clients, each connected and having sent one frame.
#[derive(Debug)]
pub enum IdleClients {
    /// Held by this process.
    Here(Vec<TcpStream>),
    /// Held by helper processes; closed when they exit.
    Elsewhere(Vec<Holder>),
}

impl IdleClients {
    /// Connects `n` clients to `addr`, each of which then sends one frame
    /// ([`load::send_hello`]): in this process if `procs` is 0, else spread
    /// evenly over `procs` helper processes started at once. Returns once
    /// every client has connected and sent.
    pub fn connect(
        addr: SocketAddr,
        n: usize,
        procs: usize,
        timeout: Duration,
    ) -> io::Result<Self> {
        if procs == 0 {
            let mut socks = load::connect(addr, n, timeout)?;
            load::send_hello(&mut socks)?;
            return Ok(Self::Here(socks));
        }
        let mut holders = Vec::with_capacity(procs);
        for k in 0..procs {
            let share = n * (k + 1) / procs - n * k / procs;
            if share > 0 {
                holders.push(Holder::spawn(addr, share, timeout)?);
            }
        }
        for holder in &mut holders {
            holder.wait_ready()?;
        }
        Ok(Self::Elsewhere(holders))
    }
}

/// A helper process holding idle clients (`bench clients`). Dropping it
/// closes its stdin: it then closes its clients and exits.
#[derive(Debug)]
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    clients: usize,
}

impl Holder {
    fn spawn(addr: SocketAddr, clients: usize, timeout: Duration) -> io::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["clients", "--addr", &addr.to_string()])
            .args(["--count", &clients.to_string()])
            .args(["--timeout", &timeout.as_secs_f64().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Self {
            child,
            stdin,
            stdout,
            clients,
        })
    }

    /// Waits for the helper's `READY <n>`: all its clients connected and sent.
    fn wait_ready(&mut self) -> io::Result<()> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim() == format!("READY {}", self.clients) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "client helper (pid {}): expected READY {}, got {line:?}",
                self.child.id(),
                self.clients
            )))
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stdin.take());
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

/// `bench clients`: connects `n` idle clients to `addr`, sends one frame on
/// each, prints `READY <n>`, and holds them until stdin closes (the harness
/// is done or gone).
pub fn hold(addr: SocketAddr, n: usize, timeout: Duration) -> io::Result<()> {
    let limit = crate::raise_fd_limit(n as u64 + 64)?;
    if limit < n as u64 + 16 {
        return Err(io::Error::other(format!(
            "open-file limit is {limit}: too low for {n} clients"
        )));
    }
    let mut socks = load::connect(addr, n, timeout)?;
    load::send_hello(&mut socks)?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "READY {n}")?;
        out.flush()?;
    }
    // Hold until stdin ends; what it says does not matter.
    for line in io::stdin().lock().lines() {
        line?;
    }
    drop(socks);
    Ok(())
}
