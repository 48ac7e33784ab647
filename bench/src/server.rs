//! The harness's handle on a server child process: spawn it, talk the
//! [`control`](crate::control) protocol, read its memory from `/proc`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::control::Updates;

/// One server configuration under test: a server kind and its thread count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// `mio`, `tokio`, `v016` or `ours`.
    pub kind: String,
    /// Worker threads.
    pub threads: usize,
}

impl Peer {
    /// Parses `kind` or `kind/threads` (threads default to 1).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, threads) = match s.split_once('/') {
            Some((k, t)) => (
                k,
                t.parse()
                    .map_err(|_| format!("bad thread count in {s:?}"))?,
            ),
            None => (s, 1),
        };
        Ok(Self {
            kind: kind.to_string(),
            threads,
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == "mio" {
            write!(f, "mio")
        } else {
            write!(f, "{}/{}", self.kind, self.threads)
        }
    }
}

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: peak resident since the process started.
    pub peak: u64,
}

/// How the harness starts a server, beyond which peer it is.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Echo every frame back to its sender.
    pub echo: bool,
    /// Listen backlog asked of the kernel.
    pub backlog: i32,
    /// The `ours` server's per-stream outgoing backlog under policy
    /// Disconnect (`None`: its default; other servers ignore it).
    pub sender_buffer: Option<usize>,
    /// `ours-clock`: the clock's period (other servers ignore it).
    pub clock_period: Duration,
    /// `ours-clock`: the idle timeout (other servers ignore it).
    pub idle_timeout: Duration,
    /// `ours` on smol: `SO_SNDBUF` of accepted sockets (others ignore it).
    pub send_buffer: Option<usize>,
    /// `ours` on smol: the read chunk size (others ignore it).
    pub read_chunk: Option<usize>,
    /// `ours` on smol: the write high-water mark (others ignore it).
    pub write_hwm: Option<usize>,
}

/// A running server child.
#[derive(Debug)]
pub struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// It runs under `BENCH_WRAP`'s tool (which may take a while to exit:
    /// a profiler writing its data).
    wrapped: bool,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `peer` as `<this exe> server ...` and waits for its port.
    /// With `BENCH_WRAP` set (e.g. `valgrind --tool=callgrind`), the
    /// command runs under it: `$BENCH_WRAP <this exe> server ...`, split on
    /// whitespace.
    pub fn spawn(peer: &Peer, launch: &Launch) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut cmd = Command::new(tool);
                cmd.args(words).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.args(["server", "--impl", &peer.kind])
            .args(["--threads", &peer.threads.to_string()])
            .args(["--backlog", &launch.backlog.to_string()])
            .args(["--clock-ms", &millis(launch.clock_period)])
            .args([
                "--idle-timeout",
                &launch.idle_timeout.as_secs_f64().to_string(),
            ]);
        if launch.echo {
            cmd.arg("--echo");
        }
        if let Some(n) = launch.sender_buffer {
            cmd.args(["--sender-buffer", &n.to_string()]);
        }
        if let Some(n) = launch.send_buffer {
            cmd.args(["--sndbuf", &n.to_string()]);
        }
        if let Some(n) = launch.read_chunk {
            cmd.args(["--read-chunk", &n.to_string()]);
        }
        if let Some(n) = launch.write_hwm {
            cmd.args(["--write-hwm", &n.to_string()]);
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
            wrapped: !wrap.trim().is_empty(),
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

    /// Frames that reached the server's channel-0 consumer so far.
    pub fn count(&mut self) -> io::Result<u64> {
        self.ask_number("count")
    }

    /// Connections the server has taken in so far.
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

    /// Starts a run of keyed updates (`ours` servers only).
    pub fn updates(&mut self, updates: &Updates) -> io::Result<()> {
        let command = format!(
            "updates {} {} {} {}",
            updates.duration.as_secs_f64(),
            updates.rate,
            updates.keys,
            updates.class.word()
        );
        match self.ask(&command)?.as_str() {
            "ok" => Ok(()),
            other => Err(io::Error::other(format!("updates: {other}"))),
        }
    }

    /// Keyed updates sent so far, and whether the producer is done.
    pub fn produced(&mut self) -> io::Result<(u64, bool)> {
        let reply = self.ask("produced")?;
        let mut words = reply.split_whitespace();
        match (
            words.next().and_then(|w| w.parse().ok()),
            words.next().and_then(|w| w.parse::<u8>().ok()),
        ) {
            (Some(n), Some(done)) => Ok((n, done == 1)),
            _ => Err(io::Error::other(format!("produced: unexpected {reply:?}"))),
        }
    }

    /// The multiplexer's own counter `name` (`conflated`, `backlog_full`,
    /// `volatile_dropped`; `ours` servers only).
    pub fn stat(&mut self, name: &str) -> io::Result<u64> {
        let reply = self.ask("stats")?;
        reply
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("stats: no {name} in {reply:?}")))
    }

    /// Waits until `what()` reaches `target`; returns the value and the time taken.
    fn wait_for(
        &mut self,
        target: u64,
        timeout: Duration,
        mut what: impl FnMut(&mut Self) -> io::Result<u64>,
        name: &str,
    ) -> io::Result<(u64, Duration)> {
        let start = Instant::now();
        loop {
            let now = what(self)?;
            if now >= target {
                return Ok((now, start.elapsed()));
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

    /// Waits until the server has taken in `n` connections.
    pub fn wait_conns(&mut self, n: u64, timeout: Duration) -> io::Result<Duration> {
        self.wait_for(n, timeout, Self::conns, "connections")
            .map(|(_, t)| t)
    }

    /// Waits until the consumer has seen `n` frames; returns the count then.
    pub fn wait_count(&mut self, n: u64, timeout: Duration) -> io::Result<u64> {
        self.wait_for(n, timeout, Self::count, "frames")
            .map(|(c, _)| c)
    }

    /// The server's process id (for `BENCH_ATTACH`, see the harness).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now and at its peak.
    pub fn memory(&self) -> io::Result<Memory> {
        Memory::of(&self.child.id().to_string())
    }

    /// The CPU time the server has run for so far, all its threads, user
    /// and system (see [`cpu_time`]).
    pub fn cpu_time(&self) -> io::Result<Duration> {
        cpu_time(self.child.id())
    }
}

/// A duration in milliseconds, as the command line takes it.
fn millis(d: Duration) -> String {
    (d.as_secs_f64() * 1e3).to_string()
}

/// The CPU time process `pid` has run for so far: the sum of its live
/// threads' `/proc/PID/task/TID/schedstat` (nanoseconds on a CPU, user and
/// system). Time counts only while a thread runs, so a server that waits
/// for a core on a shared machine is not charged for the wait, which makes
/// CPU time per frame steadier than frames per second. (`utime + stime` of
/// `/proc/PID/stat` count in 10 ms ticks, too coarse for a quiet server.)
/// A thread that exited is no longer counted: every server here keeps its
/// threads until it exits.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected schedstat {stat:?}")))?;
    }
    Ok(Duration::from_nanos(ns))
}

impl Memory {
    /// The resident memory of process `pid` (a number, or `self`), from
    /// `/proc/PID/status`.
    pub fn of(pid: &str) -> io::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or(0)
        };
        Ok(Memory {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        let grace = Duration::from_secs(if self.wrapped { 120 } else { 3 });
        let until = Instant::now() + grace;
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
