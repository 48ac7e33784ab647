//! One stream's write side: its sink, the bounded backlog of values its
//! socket has not taken yet, and whether it still has to flush or close.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::task::Poll;

use futures::Sink;

use crate::wake::Wakeup;

/// The write side of a connection.
#[derive(Debug)]
pub(crate) struct Writer<W, V> {
    sink: W,
    backlog: VecDeque<V>,
    /// Values ever taken from the front of the backlog: the backlog's
    /// front is value number `taken`.
    taken: u64,
    /// The value number of the value queued last under each key: a keyed
    /// value finds the one it replaces in one look-up, however many keys
    /// wait. An entry whose value was taken since is stale: treated as
    /// absent, overwritten by the key's next value, and dropped in bulk
    /// (see [`Writer::remember_latest`]) so that the map stays within twice
    /// the backlog. `None` for writers that never got a keyed value (one
    /// word in every writer), so plain values pay nothing.
    keyed: Option<Box<KeyMap>>,
    wakeup: Wakeup,
    unflushed: bool,
    closing: bool,
    /// The sink failed in [`Writer::hand_over`]: the next pump reports it.
    failed: bool,
}

/// Whether a pump flushes the sink after handing it the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Flush now.
    Now,
    /// Hand the values over but leave them in the sink's buffer: more are
    /// coming, and they will leave together.
    Later,
}

/// What one turn of [`Writer::pump`] left the writer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// Everything queued was written and flushed: nothing to do until more
    /// values come.
    Idle,
    /// The sink takes nothing more for now; its waker queues this writer
    /// again when it does.
    Blocked,
    /// The per-turn limit was reached with values still queued; the writer
    /// has queued itself again.
    Yielded,
    /// Everything queued was handed to the sink, which was not flushed
    /// ([`Flush::Later`]); pump it again to flush.
    Unflushed,
    /// A closing writer finished flushing and closed its sink.
    Closed,
    /// The sink failed: the connection is dead.
    Failed,
}

/// What one turn of [`Writer::pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pumped {
    /// Values that left the backlog for the sink.
    pub(crate) written: usize,
    /// Whether a flush of the sink completed.
    pub(crate) flushed: bool,
    pub(crate) outcome: WriteOutcome,
}

impl Pumped {
    /// Whether the socket took something: a value handed on, a flush or a
    /// close completed. What the write timeout waits for.
    pub(crate) fn progressed(&self) -> bool {
        self.written > 0
            || self.flushed
            || matches!(self.outcome, WriteOutcome::Idle | WriteOutcome::Closed)
    }
}

/// The most values one writer hands to its sink in one turn, so that one
/// stream with a deep backlog cannot hold up the others.
const VALUES_PER_TURN: usize = 256;

/// The backlog capacity a writer keeps once its backlog is empty: enough for
/// the usual trickle of values without reallocating, small enough that ten
/// thousand idle connections hold little.
const IDLE_BACKLOG_CAPACITY: usize = 4;

/// A backlog that grew past this many slots is shrunk back to
/// [`IDLE_BACKLOG_CAPACITY`] once empty and flushed. Below it, the slots are
/// kept: a steady stream of a few values per poll would otherwise
/// reallocate on every turn.
const SHRINK_BACKLOG_ABOVE: usize = 32;

/// Value numbers by key: see [`Writer::keyed`].
type KeyMap = HashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

/// Hashes the application's keys of latest-by-key values: one multiply,
/// folded so that keys differing only in their high bits (shifted or
/// packed keys) still land in different buckets.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64((self.0 << 8) | u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        let product = u128::from(key ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Truncations on purpose: the two halves of the product, folded.
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl<W, V> Writer<W, V> {
    pub(crate) fn new(sink: W, wakeup: Wakeup) -> Self {
        Self {
            sink,
            backlog: VecDeque::new(),
            taken: 0,
            keyed: None,
            wakeup,
            unflushed: false,
            closing: false,
            failed: false,
        }
    }

    /// Values queued and not yet handed to the sink.
    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Whether anything waits to be written, flushed or closed: the time
    /// the socket takes for it is what the write timeout limits.
    pub(crate) fn is_busy(&self) -> bool {
        !self.backlog.is_empty() || self.unflushed || self.closing
    }

    /// Queues values, under `key` if they are the latest of a key. Returns
    /// whether the writer was idle, in which case the caller must schedule
    /// it: a writer with values queued is always either scheduled already
    /// or waiting for its sink's wake-up.
    #[must_use]
    #[inline]
    pub(crate) fn enqueue(&mut self, values: &[V], key: Option<u64>) -> bool
    where
        V: Clone,
    {
        let was_idle = self.backlog.is_empty();
        if let [value] = values {
            // The usual message, one value: pushed without `extend`'s
            // reserve-and-iterate, which showed in broadcast profiles.
            self.backlog.push_back(value.clone());
        } else {
            self.backlog.extend(values.iter().cloned());
        }
        if let Some(key) = key
            && !values.is_empty()
        {
            self.remember_latest(key);
        }
        was_idle
    }

    /// Notes that the value just queued last is the latest of `key`.
    ///
    /// Not inlined, nor is [`Self::replace_latest`]: the map's code would
    /// crowd the delivery loop that plain values run through.
    #[inline(never)]
    fn remember_latest(&mut self, key: u64) {
        let taken = self.taken;
        let keyed = self.keyed.get_or_insert_default();
        if keyed.len() > 2 * self.backlog.len() + 8 {
            // Forget the values written since: at most one entry per value
            // waiting is left, so the next sweep is at least as many new
            // keys away, and the sweeps cost O(1) per keyed value.
            keyed.retain(|_, number| *number >= taken);
            if keyed.capacity() > 4 * keyed.len() + SHRINK_BACKLOG_ABOVE {
                // A sweep visits every slot: a map grown in a burst must not
                // make each later sweep pay for the burst.
                keyed.shrink_to(2 * keyed.len());
            }
        }
        let number = taken + self.backlog.len() as u64 - 1;
        keyed.insert(key, number);
    }

    /// Replaces the value queued under `key`, not yet written, with
    /// `value`, in its place. Returns whether there was one. One look-up,
    /// whatever the number of keys waiting.
    #[inline(never)]
    pub(crate) fn replace_latest(&mut self, key: u64, value: &V) -> bool
    where
        V: Clone,
    {
        let Some(&number) = self.keyed.as_ref().and_then(|keyed| keyed.get(&key)) else {
            return false;
        };
        // Below `taken`: that value was written already.
        let Some(slot) = number
            .checked_sub(self.taken)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| self.backlog.get_mut(index))
        else {
            return false;
        };
        *slot = value.clone();
        true
    }

    /// Hands `value` straight to the sink when nothing waits in the
    /// backlog, so that it need not be queued there and taken out again by
    /// the next [`pump`](Self::pump). Returns, if the sink took it, whether
    /// the writer was busy before (unflushed: a turn is coming already).
    ///
    /// Never past a value already queued: with a backlog, or once closing,
    /// it is refused, as it is when the sink is not ready (its waker is
    /// registered then). A refused value is for the caller to queue. A
    /// value taken leaves the writer unflushed, as a pump that wrote it
    /// would have: the caller makes sure the writer gets a turn, where the
    /// flush policy flushes it. A sink that fails here is not polled again:
    /// the failure is kept for the next pump to report, so that the
    /// connection is found dead where it would have been had the value
    /// been queued (a shutdown or close applied meanwhile keeps its reason).
    #[inline]
    pub(crate) fn hand_over(&mut self, value: &V) -> Option<bool>
    where
        W: Sink<V> + Unpin,
        V: Clone,
    {
        if !self.backlog.is_empty() || self.closing || self.failed {
            return None;
        }
        let mut cx = self.wakeup.context();
        let mut sink = Pin::new(&mut self.sink);
        match sink.as_mut().poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {
                self.failed = true;
                return None;
            }
            Poll::Pending => return None,
        }
        if sink.start_send(value.clone()).is_err() {
            self.failed = true;
            return None;
        }
        Some(std::mem::replace(&mut self.unflushed, true))
    }

    /// Asks the writer to flush what is queued and then close its sink.
    pub(crate) fn close(&mut self) {
        self.closing = true;
        self.wakeup.wake();
    }

    /// Hands queued values to the sink, flushes it (always, once closing),
    /// and closes it if asked to.
    pub(crate) fn pump(&mut self, flush: Flush) -> Pumped
    where
        W: Sink<V> + Unpin,
    {
        let mut pumped = Pumped {
            written: 0,
            flushed: false,
            outcome: WriteOutcome::Idle,
        };
        pumped.outcome = self.pump_counting(flush, &mut pumped);
        pumped
    }

    fn pump_counting(&mut self, flush: Flush, pumped: &mut Pumped) -> WriteOutcome
    where
        W: Sink<V> + Unpin,
    {
        if self.failed {
            return WriteOutcome::Failed;
        }
        let mut cx = self.wakeup.begin_poll();
        let mut sink = Pin::new(&mut self.sink);
        while !self.backlog.is_empty() {
            if pumped.written == VALUES_PER_TURN {
                self.wakeup.wake();
                return WriteOutcome::Yielded;
            }
            match sink.as_mut().poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return WriteOutcome::Failed,
                Poll::Pending => return WriteOutcome::Blocked,
            }
            let Some(value) = self.backlog.pop_front() else {
                break;
            };
            self.taken += 1;
            if sink.as_mut().start_send(value).is_err() {
                return WriteOutcome::Failed;
            }
            pumped.written += 1;
            self.unflushed = true;
        }
        if self.unflushed && flush == Flush::Later && !self.closing {
            return WriteOutcome::Unflushed;
        }
        if self.unflushed {
            match sink.as_mut().poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    pumped.flushed = true;
                }
                Poll::Ready(Err(_)) => return WriteOutcome::Failed,
                Poll::Pending => return WriteOutcome::Blocked,
            }
        }
        if let Some(keyed) = &mut self.keyed {
            // Everything queued has been written out: no value waits under
            // a key. The slots are kept for the next values unless a burst
            // grew them, as the backlog's are.
            if keyed.capacity() > SHRINK_BACKLOG_ABOVE {
                self.keyed = None;
            } else {
                keyed.clear();
            }
        }
        if self.backlog.capacity() > SHRINK_BACKLOG_ABOVE {
            // Everything queued has been written out: the burst is over, so
            // give its memory back (an idle connection holds no buffers).
            // Not sooner: while flushes wait for more values (the
            // application outrunning `Run`), the backlog empties on every
            // poll and would be regrown, reallocation after reallocation.
            self.backlog.shrink_to(IDLE_BACKLOG_CAPACITY);
        }
        if self.closing {
            return match sink.poll_close(&mut cx) {
                Poll::Ready(Ok(())) => WriteOutcome::Closed,
                Poll::Ready(Err(_)) => WriteOutcome::Failed,
                Poll::Pending => WriteOutcome::Blocked,
            };
        }
        WriteOutcome::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::WakeHub;

    fn writer() -> Writer<futures::sink::Drain<u32>, u32> {
        let hub = WakeHub::new(1);
        Writer::new(futures::sink::drain(), Wakeup::writer(&hub, 0))
    }

    /// An idle connection holds no buffers: a backlog that grew in a burst
    /// is given back once everything queued has been written and flushed,
    /// and not before: while flushes are held back for more values, the
    /// backlog empties on every poll, and shrinking it then meant growing
    /// it again on the next, reallocation after reallocation.
    #[test]
    fn a_backlog_keeps_its_slots_until_the_burst_is_flushed_then_gives_them_back() {
        let mut writer = writer();
        for _ in 0..2 {
            let values: Vec<u32> = (0..200).collect();
            let _ = writer.enqueue(&values, None);
            let pumped = writer.pump(Flush::Later);
            assert_eq!(
                pumped,
                Pumped {
                    written: 200,
                    flushed: false,
                    outcome: WriteOutcome::Unflushed
                }
            );
            assert!(
                writer.backlog.capacity() >= 200,
                "the slots stay for the next values while the flush waits"
            );
        }

        let pumped = writer.pump(Flush::Now);
        assert_eq!(
            pumped,
            Pumped {
                written: 0,
                flushed: true,
                outcome: WriteOutcome::Idle
            }
        );
        assert!(
            writer.backlog.capacity() <= SHRINK_BACKLOG_ABOVE,
            "flushed and idle, the backlog holds {} slots",
            writer.backlog.capacity()
        );
    }

    #[test]
    fn the_latest_value_of_a_key_takes_the_place_of_the_one_waiting() {
        let mut writer = writer();
        let _ = writer.enqueue(&[1], Some(7));
        let _ = writer.enqueue(&[2], Some(8));
        let _ = writer.enqueue(&[3], None);
        assert!(writer.replace_latest(7, &10));
        assert!(!writer.replace_latest(9, &11));
        let queued: Vec<u32> = writer.backlog.iter().copied().collect();
        assert_eq!(queued, [10, 2, 3]);
        // Once written, a value can no longer be replaced.
        let _ = writer.pump(Flush::Now);
        assert!(!writer.replace_latest(7, &12));
        let _ = writer.enqueue(&[4], Some(7));
        assert!(writer.replace_latest(7, &13));
        assert_eq!(writer.backlog.iter().copied().collect::<Vec<_>>(), [13]);
    }

    /// The map of keys holds at most twice the backlog (plus a few), and
    /// never a key whose value was written: however many keys come and go
    /// while the backlog stays short, and it is given back once idle.
    #[test]
    fn the_keys_remembered_stay_within_twice_the_backlog() {
        let mut writer = writer();
        for key in 0..10_000u64 {
            let _ = writer.enqueue(&[key as u32], Some(key));
            let keyed = writer.keyed.as_ref().unwrap();
            assert!(
                keyed.len() <= 2 * writer.backlog.len() + 9,
                "{} keys for {} values waiting",
                keyed.len(),
                writer.backlog.len()
            );
            assert!(keyed.capacity() <= 4 * keyed.len() + 2 * SHRINK_BACKLOG_ABOVE);
            if key % 3 != 0 {
                // Values leave, the flush waits: stale keys pile up, unless
                // swept.
                let _ = writer.pump(Flush::Later);
            }
        }
        // A key whose value was written is not replaced, even while its
        // entry is still in the map.
        let _ = writer.enqueue(&[1], Some(20_000));
        let _ = writer.pump(Flush::Later);
        assert!(!writer.replace_latest(20_000, &2));
        let _ = writer.pump(Flush::Now);
        assert!(
            writer
                .keyed
                .as_ref()
                .is_none_or(|keyed| keyed.is_empty() && keyed.capacity() <= SHRINK_BACKLOG_ABOVE)
        );
    }

    /// Keys far apart only in their high bits still hash apart.
    #[test]
    fn keys_differing_in_high_bits_hash_apart() {
        use std::hash::BuildHasher;
        let hasher = BuildHasherDefault::<KeyHasher>::default();
        let buckets: std::collections::HashSet<u64> =
            (0..64u64).map(|k| hasher.hash_one(k << 40) & 63).collect();
        assert!(buckets.len() > 32, "{} buckets of 64", buckets.len());
    }

    /// A sink that records what it takes, ready or not as the test says,
    /// failing when told to.
    #[derive(Debug, Default)]
    struct Gate {
        taken: Vec<u32>,
        ready: bool,
        fail: bool,
    }

    impl Sink<u32> for Gate {
        type Error = ();
        fn poll_ready(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), ()>> {
            match (self.fail, self.ready) {
                (true, _) => Poll::Ready(Err(())),
                (false, true) => Poll::Ready(Ok(())),
                (false, false) => Poll::Pending,
            }
        }
        fn start_send(mut self: Pin<&mut Self>, value: u32) -> Result<(), ()> {
            self.taken.push(value);
            Ok(())
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn gate() -> Writer<Gate, u32> {
        let hub = WakeHub::new(1);
        Writer::new(Gate::default(), Wakeup::writer(&hub, 0))
    }

    /// A value handed straight to the sink never overtakes one queued
    /// before it: with a backlog, or a sink not ready, it is refused (to be
    /// queued behind), and once the backlog is written out it goes straight
    /// through, leaving the writer unflushed as a pump would.
    #[test]
    fn a_value_handed_over_never_overtakes_the_backlog() {
        let mut writer = gate();
        assert_eq!(writer.hand_over(&1), None, "the sink is not ready");
        let _ = writer.enqueue(&[1], None);
        writer.sink.ready = true;
        assert_eq!(writer.hand_over(&2), None, "1 waits in the backlog");
        let _ = writer.enqueue(&[2], None);
        let _ = writer.pump(Flush::Later);
        assert!(writer.backlog.is_empty() && writer.unflushed);
        assert_eq!(writer.hand_over(&3), Some(true), "2 is not flushed yet");
        assert!(writer.is_busy(), "unflushed, as if pumped");
        assert_eq!(writer.sink.taken, [1, 2, 3]);
        let pumped = writer.pump(Flush::Now);
        assert_eq!(
            pumped,
            Pumped {
                written: 0,
                flushed: true,
                outcome: WriteOutcome::Idle
            }
        );
        assert!(!writer.is_busy());
        assert_eq!(writer.hand_over(&4), Some(false), "an idle writer");
        writer.close();
        assert_eq!(writer.hand_over(&5), None, "a closing writer takes no more");
        assert_eq!(writer.sink.taken, [1, 2, 3, 4]);
    }

    /// A sink that fails when handed a value is not polled again there: the
    /// failure waits for the writer's next pump, which reports it.
    #[test]
    fn a_sink_failing_on_hand_over_is_reported_by_the_next_pump() {
        let mut writer = gate();
        writer.sink.fail = true;
        assert_eq!(writer.hand_over(&1), None);
        writer.sink.fail = false;
        writer.sink.ready = true;
        assert_eq!(
            writer.hand_over(&2),
            None,
            "not handed to a sink that failed"
        );
        let _ = writer.enqueue(&[2], None);
        assert_eq!(writer.pump(Flush::Now).outcome, WriteOutcome::Failed);
        assert!(writer.sink.taken.is_empty());
    }
}
