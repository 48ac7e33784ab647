//! One stream's write side: its sink, the bounded backlog of values its
//! socket has not taken yet, and whether it still has to flush or close.

use std::collections::VecDeque;
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
    /// Values queued as the latest of a key, by key and value number; an
    /// entry whose value was taken since is stale and skipped. Empty for
    /// writers that never got a keyed value, so plain values pay nothing.
    keyed: Vec<(u64, u64)>,
    wakeup: Wakeup,
    unflushed: bool,
    closing: bool,
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

impl<W, V> Writer<W, V> {
    pub(crate) fn new(sink: W, wakeup: Wakeup) -> Self {
        Self {
            sink,
            backlog: VecDeque::new(),
            taken: 0,
            keyed: Vec::new(),
            wakeup,
            unflushed: false,
            closing: false,
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
    fn remember_latest(&mut self, key: u64) {
        let taken = self.taken;
        if self.keyed.len() > 2 * self.backlog.len() + 8 {
            // Forget the values written since: the list stays within twice
            // the backlog.
            self.keyed.retain(|&(_, number)| number >= taken);
        }
        let number = taken + self.backlog.len() as u64 - 1;
        self.keyed.push((key, number));
    }

    /// Replaces the value queued under `key`, not yet written, with
    /// `value`, in its place. Returns whether there was one. Scans the keyed
    /// values only: O(keys waiting), nothing for a writer that never got
    /// one.
    pub(crate) fn replace_latest(&mut self, key: u64, value: &V) -> bool
    where
        V: Clone,
    {
        let taken = self.taken;
        let waiting = self
            .keyed
            .iter()
            .rev()
            .find(|&&(k, number)| k == key && number >= taken);
        let Some(slot) = waiting.and_then(|&(_, number)| {
            let index = usize::try_from(number - taken).ok()?;
            self.backlog.get_mut(index)
        }) else {
            return false;
        };
        *slot = value.clone();
        true
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
}
