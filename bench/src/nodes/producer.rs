//! The producer: one TCP client of node A whose every frame the node sends
//! to the room. It stamps each frame with its number and the time it is
//! written ([`Stamp`]).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use super::stamp::{Clock, Phase, Stamp};
use crate::proto::{FRAME, frame};

/// Frames written at once while flooding: one write of 2 KiB, each frame
/// stamped when its write starts.
const FLOOD_BATCH: usize = 64;

/// The producer's connection and the number of its next message.
#[derive(Debug)]
pub struct Producer {
    stream: TcpStream,
    clock: Clock,
    next_seq: u64,
}

impl Producer {
    /// Connects to `addr` (blocking, `TCP_NODELAY`).
    pub fn connect(addr: SocketAddr, clock: Clock) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            clock,
            next_seq: 0,
        })
    }

    /// Messages written so far, over every phase.
    pub fn sent(&self) -> u64 {
        self.next_seq
    }

    /// Writes `n` messages as fast as the node reads them: the socket's
    /// send buffer, then the node, set the pace. Returns when the first
    /// was written ([`Clock::now_ns`]).
    pub fn flood(&mut self, n: u64, phase: Phase) -> io::Result<u64> {
        let mut buf = Vec::with_capacity(FLOOD_BATCH * FRAME);
        let first_ns = self.clock.now_ns();
        let mut left = n;
        while left > 0 {
            let batch = left.min(FLOOD_BATCH as u64);
            buf.clear();
            let now = self.clock.now_ns();
            for _ in 0..batch {
                buf.extend_from_slice(&self.next_frame(now, phase));
            }
            self.stream.write_all(&buf)?;
            left -= batch;
        }
        Ok(first_ns)
    }

    /// Writes `n` messages, one every `1 / rate` seconds on a fixed
    /// schedule (one that falls behind catches up at once, so the rate
    /// holds on average), each stamped just before its write. Returns
    /// when the first was written.
    pub fn paced(&mut self, n: u64, rate: f64, phase: Phase) -> io::Result<u64> {
        let interval_ns = 1e9 / rate.max(1e-3);
        let start = self.clock.now_ns();
        let mut first_ns = start;
        for k in 0..n {
            let due = start + (k as f64 * interval_ns) as u64;
            let now = self.clock.now_ns();
            if now < due {
                thread::sleep(Duration::from_nanos(due - now));
            }
            let sent_ns = self.clock.now_ns();
            if k == 0 {
                first_ns = sent_ns;
            }
            let one = self.next_frame(sent_ns, phase);
            self.stream.write_all(&one)?;
        }
        Ok(first_ns)
    }

    fn next_frame(&mut self, sent_ns: u64, phase: Phase) -> [u8; FRAME] {
        let stamp = Stamp {
            seq: self.next_seq,
            sent_ns,
            phase,
        };
        self.next_seq += 1;
        frame(&stamp.encode())
    }
}
