//! The time limits of one `Run`: the clock it counts, the wheel of streams
//! to look at, and when each stream's limit falls.

use std::task::{Context, Poll};

use crate::Clock;
use crate::StreamId;
use crate::config::Config;
use crate::registry::{StreamEntry, StreamState};
use crate::timer_wheel::TimerWheel;

/// What a stream's passed deadline means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Values waited and its socket took nothing for the write timeout.
    Write,
    /// It completed no frame for the idle timeout.
    Idle,
    /// It was leaving, and the application's time for last words is over.
    Linger,
}

/// The clock, the limits in ticks, and the streams to look at.
#[derive(Debug)]
pub(crate) struct Timers {
    clock: Clock,
    wheel: TimerWheel<(usize, StreamId)>,
    /// Entries handed back by the wheel and not looked at yet (a poll looks
    /// at a bounded number).
    due: Vec<(u64, (usize, StreamId))>,
    idle_ticks: Option<u64>,
    write_ticks: Option<u64>,
    /// Whether the clock's stream ended: time stands still.
    stopped: bool,
}

impl Timers {
    pub(crate) fn new(clock: Clock, config: &Config) -> Self {
        let idle_ticks = config.idle_timeout.map(|t| clock.ticks_in(t));
        let write_ticks = config.write_timeout.map(|t| clock.ticks_in(t));
        let span = idle_ticks.max(write_ticks).unwrap_or(1);
        Self {
            clock,
            wheel: TimerWheel::new(span),
            due: Vec::new(),
            idle_ticks,
            write_ticks,
            stopped: false,
        }
    }

    /// The current tick.
    pub(crate) fn now(&self) -> u64 {
        self.wheel.now()
    }

    /// Takes the ticks that have come, unless streams from earlier ticks
    /// still wait to be looked at, and hands back the entries they make
    /// due.
    pub(crate) fn poll_ticks(&mut self, cx: &mut Context<'_>) {
        while self.due.is_empty() && !self.stopped {
            match self.clock.ticks().poll_next(cx) {
                Poll::Ready(Some(())) => self.wheel.advance(&mut self.due),
                Poll::Ready(None) => self.stopped = true,
                Poll::Pending => return,
            }
        }
    }

    /// The next entry to look at, if any.
    pub(crate) fn next_due(&mut self) -> Option<(u64, (usize, StreamId))> {
        self.due.pop()
    }

    /// Whether entries wait to be looked at.
    pub(crate) fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// How long a leaving stream waits for the application's last words:
    /// the write timeout, or else the idle timeout.
    fn linger_ticks(&self) -> Option<u64> {
        self.write_ticks.or(self.idle_ticks)
    }

    /// Whether a leaving stream may wait for last words at all.
    pub(crate) fn lingers(&self) -> bool {
        self.linger_ticks().is_some()
    }

    /// The earliest tick at which one of the stream's limits passes.
    fn deadline<W, R, V>(&self, entry: &StreamEntry<W, R, V>) -> Option<u64> {
        let state = match entry.state {
            StreamState::Open(_) => self.idle_ticks.map(|t| entry.last_read.saturating_add(t)),
            StreamState::Leaving { since, .. } => {
                self.linger_ticks().map(|t| since.saturating_add(t))
            }
            StreamState::Closing => None,
        };
        let write = self
            .write_ticks
            .filter(|_| entry.writer.is_busy())
            .map(|t| entry.last_written.saturating_add(t));
        match (state, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the wheel hands the stream back no later than its
    /// deadline. Call it whenever a deadline may have come closer: when the
    /// stream is admitted, its writer becomes busy, or it starts leaving.
    /// (A deadline that moves later needs nothing: the wheel hands the
    /// stream back early and [`Self::check`] schedules it again.)
    pub(crate) fn schedule<W, R, V>(&mut self, key: usize, entry: &mut StreamEntry<W, R, V>) {
        let Some(deadline) = self.deadline(entry) else {
            return;
        };
        if entry.timer_at == 0 || deadline < entry.timer_at {
            entry.timer_at = self.wheel.schedule(deadline, (key, entry.id));
        }
    }

    /// Looks at a stream the wheel handed back at tick `at`: returns what
    /// passed, if anything did, or schedules it again for its deadline.
    pub(crate) fn check<W, R, V>(
        &mut self,
        at: u64,
        key: usize,
        entry: &mut StreamEntry<W, R, V>,
    ) -> Option<Expiry> {
        if entry.timer_at != at {
            // A stale entry: the stream was scheduled earlier since.
            return None;
        }
        entry.timer_at = 0;
        let now = self.now();
        let passed =
            |limit: Option<u64>, since: u64| limit.is_some_and(|t| since.saturating_add(t) <= now);
        if entry.writer.is_busy() && passed(self.write_ticks, entry.last_written) {
            return Some(Expiry::Write);
        }
        match entry.state {
            StreamState::Open(_) if passed(self.idle_ticks, entry.last_read) => {
                return Some(Expiry::Idle);
            }
            StreamState::Leaving { since, .. } if passed(self.linger_ticks(), since) => {
                return Some(Expiry::Linger);
            }
            _ => {}
        }
        self.schedule(key, entry);
        None
    }
}
