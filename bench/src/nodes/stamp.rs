//! What the producer writes in each room message's 32-byte payload, and
//! the clock it reads the time from.
//!
//! ```text
//! +------------+--------------+-------+------------------------+
//! | seq (u64)  | sent (u64)   | phase | "nodes-room-msg!"      |
//! | 8 B        | 8 B, ns      | 1 B   | 15 B, checked          |
//! +------------+--------------+-------+------------------------+
//! ```
//!
//! `seq` counts the producer's messages from 0 across the phases of one
//! measurement, so that each member can check it gets every one once, in
//! order. `sent` is nanoseconds on the harness's [`Clock`]: the producer and
//! the members run in the harness process and share it, so a latency is a
//! difference of two readings of one monotonic clock.

use std::time::Instant;

use crate::proto::PAYLOAD;

/// The last 15 bytes of every payload.
const FILLER: &[u8; 15] = b"nodes-room-msg!";

/// The part of a measurement a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before anything is measured: first allocations, first writes.
    Warmup = 0,
    /// The producer writes as fast as node A reads.
    Flood = 1,
    /// The producer writes at a fixed rate, well below what the nodes take.
    Paced = 2,
}

impl Phase {
    /// How many phases there are (the latency histograms' first index).
    pub const COUNT: usize = 3;

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Warmup),
            1 => Some(Self::Flood),
            2 => Some(Self::Paced),
            _ => None,
        }
    }
}

/// Nanoseconds since a fixed instant, the same for every thread that
/// holds a copy.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One room message, as the producer wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The producer's message number.
    pub seq: u64,
    /// When the producer wrote it ([`Clock::now_ns`]).
    pub sent_ns: u64,
    /// The phase it belongs to.
    pub phase: Phase,
}

impl Stamp {
    /// The payload that carries this stamp.
    pub fn encode(&self) -> [u8; PAYLOAD] {
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&self.seq.to_be_bytes());
        payload[8..16].copy_from_slice(&self.sent_ns.to_be_bytes());
        payload[16] = self.phase as u8;
        payload[17..].copy_from_slice(FILLER);
        payload
    }

    /// The stamp `payload` carries; `None` if it is not one of ours.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        if payload.len() != PAYLOAD || payload[17..] != FILLER[..] {
            return None;
        }
        let word = |range: std::ops::Range<usize>| {
            u64::from_be_bytes(payload[range].try_into().expect("8 bytes"))
        };
        Some(Self {
            seq: word(0..8),
            sent_ns: word(8..16),
            phase: Phase::from_byte(payload[16])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_its_payload_and_a_foreign_payload_is_refused() {
        let stamp = Stamp {
            seq: 1 << 40,
            sent_ns: 123_456_789,
            phase: Phase::Paced,
        };
        assert_eq!(Stamp::decode(&stamp.encode()), Some(stamp));
        assert_eq!(Stamp::decode(&crate::proto::BROADCAST_PAYLOAD), None);
        let mut bad_phase = stamp.encode();
        bad_phase[16] = 9;
        assert_eq!(Stamp::decode(&bad_phase), None);
    }
}
