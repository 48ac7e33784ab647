//! The wire format every server and the load generator agree on: a 2-byte
//! big-endian length prefix, then the payload (32 bytes in every scenario).
//!
//! ```text
//! +--------+--------------------------------+
//! | 0x0020 |        32 bytes of payload      |
//! +--------+--------------------------------+
//!   2 B              32 B                      = 34 B on the wire
//! ```

/// Payload length used by every scenario.
pub const PAYLOAD: usize = 32;
/// Length prefix width.
pub const HEADER: usize = 2;
/// One frame on the wire.
pub const FRAME: usize = HEADER + PAYLOAD;

/// The payload the servers broadcast and that receivers check for.
pub const BROADCAST_PAYLOAD: [u8; PAYLOAD] = *b"broadcast-payload-0123456789abcd";

/// Payload sent by ingress clients (content is not checked by the servers).
pub const INGRESS_PAYLOAD: [u8; PAYLOAD] = *b"ingress-payload-0123456789abcdef";

/// Encodes one frame.
pub fn frame(payload: &[u8; PAYLOAD]) -> [u8; FRAME] {
    let mut out = [0u8; FRAME];
    out[..HEADER].copy_from_slice(&(PAYLOAD as u16).to_be_bytes());
    out[HEADER..].copy_from_slice(payload);
    out
}

/// `n` copies of a frame, back to back: written repeatedly by the generator
/// (one big write instead of one per frame) and by the mio floor's broadcast.
pub fn frames(payload: &[u8; PAYLOAD], n: usize) -> Vec<u8> {
    let one = frame(payload);
    let mut out = Vec::with_capacity(FRAME * n);
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

/// The echo payload of client `id`'s request number `seq`.
pub fn echo_payload(id: u32, seq: u32) -> [u8; PAYLOAD] {
    let mut p = [0x5au8; PAYLOAD];
    p[..4].copy_from_slice(&id.to_be_bytes());
    p[4..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The tail of every keyed update's payload (see [`update_payload`]).
pub const UPDATE_MARK: [u8; 12] = *b"keyed-update";

/// The payload of keyed update number `seq` (counted from 0 over all keys)
/// for `key`, produced at `at_ns` on [`monotonic_ns`]'s clock:
///
/// ```text
/// +-----+-----------+-----------+----------------+
/// | key |    seq    |   at_ns   |  keyed-update  |
/// +-----+-----------+-----------+----------------+
///   4 B      8 B         8 B          12 B          = 32 B, big-endian
/// ```
pub fn update_payload(key: u32, seq: u64, at_ns: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..4].copy_from_slice(&key.to_be_bytes());
    p[4..12].copy_from_slice(&seq.to_be_bytes());
    p[12..20].copy_from_slice(&at_ns.to_be_bytes());
    p[20..].copy_from_slice(&UPDATE_MARK);
    p
}

/// A keyed update's `(key, seq, at_ns)`, or `None` if `payload` is not one.
pub fn parse_update(payload: &[u8]) -> Option<(u32, u64, u64)> {
    if payload.len() != PAYLOAD || payload[20..] != UPDATE_MARK {
        return None;
    }
    let word = |r: std::ops::Range<usize>| {
        payload[r]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    Some((word(0..4) as u32, word(4..12), word(12..20)))
}

/// Updates are numbered 0, 1, 2, … and update `seq` is for key
/// `seq % keys`: of `produced` updates, the last one for `key`, if any.
pub fn last_update_of(key: u32, keys: u32, produced: u64) -> Option<u64> {
    let (key, keys) = (u64::from(key), u64::from(keys.max(1)));
    if produced <= key {
        return None;
    }
    let last = produced - 1;
    Some(last - (last + keys - key) % keys)
}

/// Nanoseconds on `CLOCK_MONOTONIC`: the same clock in every process of
/// the machine, so the server stamps an update and a client reading it
/// computes its age.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Splits the complete frames at the front of `buf`, calling `f` with each
/// payload, and returns how many bytes they took (the rest is a partial frame
/// to keep for the next read). Frames are parsed in place: nothing is copied.
#[inline]
pub fn split_frames(buf: &[u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let len = u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize;
        let end = pos + HEADER + len;
        if end > buf.len() {
            break;
        }
        f(&buf[pos + HEADER..end]);
        pos = end;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_partial_tail() {
        let mut buf = frames(&INGRESS_PAYLOAD, 3);
        buf.truncate(FRAME * 2 + 5);
        let mut n = 0;
        let used = split_frames(&buf, |p| {
            assert_eq!(p, &INGRESS_PAYLOAD);
            n += 1;
        });
        assert_eq!((n, used), (2, FRAME * 2));
    }

    #[test]
    fn an_update_reads_back_and_the_last_of_each_key_is_found() {
        let p = update_payload(7, 123_456_789_012, 42);
        assert_eq!(parse_update(&p), Some((7, 123_456_789_012, 42)));
        assert_eq!(parse_update(&BROADCAST_PAYLOAD), None);
        // 10 updates over 4 keys: 0 1 2 3 | 4 5 6 7 | 8 9
        assert_eq!(last_update_of(0, 4, 10), Some(8));
        assert_eq!(last_update_of(1, 4, 10), Some(9));
        assert_eq!(last_update_of(2, 4, 10), Some(6));
        assert_eq!(last_update_of(3, 4, 10), Some(7));
        assert_eq!(last_update_of(3, 4, 3), None);
    }

    #[test]
    fn split_handles_zero_length_and_one_byte() {
        let buf = [0u8, 0, 0, 1, 7, 0];
        let mut seen = Vec::new();
        let used = split_frames(&buf, |p| seen.push(p.to_vec()));
        assert_eq!(seen, vec![vec![], vec![7]]);
        assert_eq!(used, 5);
    }
}
