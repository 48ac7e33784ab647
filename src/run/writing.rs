//! Writing: which writers to pump, and when their sinks flush.

use crate::DisconnectReason;
use crate::run::lifecycle::{Close, Streams};
use crate::run::parts::Parts;
use crate::writer::{Flush, Pumped, WriteOutcome};

/// Writers pumped per poll.
const WRITERS_PER_POLL: usize = 1024;

/// Consecutive polls that may leave the writers unflushed while the
/// application sends faster than one poll applies (see [`WriteQueue::pump`]).
const MAX_DEFERRED_FLUSHES: usize = 64;

/// One pumped writer in this many reports its backlog depth to the
/// `metrics` histogram: enough samples under load, too few to cost anything
/// measurable.
const BACKLOG_SAMPLE_EVERY: u64 = 64;

/// The writers waiting for a turn, and the flush policy.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    /// Keys of writers to pump: drained from the wake hub (woken by their
    /// sinks) or pushed directly when values are queued to an idle writer.
    ready: Vec<usize>,
    /// The writers being pumped in this poll (kept to reuse its allocation).
    pumping: Vec<usize>,
    /// Writers whose sinks hold values that were not flushed yet.
    unflushed: Vec<usize>,
    /// Polls in a row that deferred flushing.
    deferred_flushes: usize,
    /// Writers pumped, while backlog depths are sampled.
    sampled: u64,
}

/// What one writing step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriteReport {
    /// Writers were left for the next poll (the budget ran out), or a
    /// failed writer's departure waits in its channel.
    pub(crate) more: bool,
    /// Values handed to sinks: room made in backlogs.
    pub(crate) written: usize,
}

impl WriteQueue {
    /// Gives a writer that just had values queued a turn.
    pub(crate) fn schedule(&mut self, key: usize) {
        self.ready.push(key);
    }

    /// Pumps the ready writers, up to [`WRITERS_PER_POLL`].
    ///
    /// While the application sends faster than one poll applies
    /// (`outgoing_busy`), the writers' flushes wait, for up to
    /// [`MAX_DEFERRED_FLUSHES`] polls, so that many frames leave in one
    /// write instead of one write per stream per poll. The sinks still take
    /// the values (and write out whatever passes their high-water mark);
    /// only the flush of the rest waits.
    pub(crate) fn pump<P: Parts>(
        &mut self,
        streams: &mut Streams<P>,
        outgoing_busy: bool,
    ) -> WriteReport {
        let flush = if !outgoing_busy || self.deferred_flushes >= MAX_DEFERRED_FLUSHES {
            self.deferred_flushes = 0;
            Flush::Now
        } else {
            self.deferred_flushes += 1;
            Flush::Later
        };
        streams.hub.drain_writers(&mut self.ready);
        if flush == Flush::Now {
            self.ready.append(&mut self.unflushed);
        }
        let take = self.ready.len().min(WRITERS_PER_POLL);
        let mut pumping = std::mem::take(&mut self.pumping);
        pumping.extend(self.ready.drain(..take));
        let mut report = WriteReport::default();
        if streams.stats.samples_backlogs() {
            self.sample(streams, &pumping);
        }
        for &key in &pumping {
            let Some(pumped) = pump_writer(streams, key, flush) else {
                continue;
            };
            report.written += pumped.written;
            report.more |= pumped.outcome == WriteOutcome::Failed;
            self.settle(streams, key, pumped);
        }
        pumping.clear();
        self.pumping = pumping;
        report.more |= !self.ready.is_empty();
        report
    }

    /// Reports the backlog depth of one writer in [`BACKLOG_SAMPLE_EVERY`]
    /// among those about to be pumped.
    fn sample<P: Parts>(&mut self, streams: &Streams<P>, pumping: &[usize]) {
        for &key in pumping {
            self.sampled += 1;
            if self.sampled.is_multiple_of(BACKLOG_SAMPLE_EVERY)
                && let Some(entry) = streams.registry.get(key)
            {
                streams.stats.backlog_sample(entry.writer.backlog_len());
            }
        }
    }

    /// Pumps one writer at once, without flushing, to move what its
    /// socket takes out of its backlog. Returns how many values left it.
    pub(crate) fn pump_now<P: Parts>(&mut self, streams: &mut Streams<P>, key: usize) -> usize {
        let Some(pumped) = pump_writer(streams, key, Flush::Later) else {
            return 0;
        };
        self.settle(streams, key, pumped);
        pumped.written
    }

    /// Acts on what a pump left the writer in.
    fn settle<P: Parts>(&mut self, streams: &mut Streams<P>, key: usize, pumped: Pumped) {
        streams.stats.frames_out(pumped.written as u64);
        if pumped.progressed() {
            streams.wrote(key);
        }
        match pumped.outcome {
            WriteOutcome::Idle | WriteOutcome::Blocked | WriteOutcome::Yielded => {}
            WriteOutcome::Unflushed => self.unflushed.push(key),
            WriteOutcome::Closed => streams.closed(key),
            WriteOutcome::Failed => streams.close(key, Close::Now(DisconnectReason::Linkdead)),
        }
    }
}

fn pump_writer<P: Parts>(streams: &mut Streams<P>, key: usize, flush: Flush) -> Option<Pumped> {
    Some(streams.registry.get_mut(key)?.writer.pump(flush))
}
