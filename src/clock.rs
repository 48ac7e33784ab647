//! [`Clock`]: how time reaches the multiplexer, from outside.
//!
//! The core never reads a runtime's timer: it counts ticks from a stream
//! that the application gives it. Each runtime adapter builds one in a call
//! (`runtime::smol::clock`, `runtime::tokio::clock`,
//! `runtime::async_std::clock`); a plain-futures application builds one
//! from any timer with [`Clock::new`], and a test drives one by hand.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};

/// A stream of ticks, one every `period`, that the multiplexer counts to
/// measure its time limits (see
/// [`MultiplexerBuilder::clock`](crate::MultiplexerBuilder::clock)).
///
/// A time limit of `T` ends after `ceil(T / period)` ticks, and at most one
/// tick later: a deadline that falls between two ticks is noticed at the
/// second. A tick that comes late (a busy executor) makes every deadline
/// late by as much; none comes early.
///
/// # Examples
///
/// A clock a test drives by hand: each value sent is one tick.
///
/// ```
/// use std::time::Duration;
/// use futures::channel::mpsc;
/// use stream_multiplexer::Clock;
///
/// let (ticks, tick_rx) = mpsc::unbounded::<()>();
/// let clock = Clock::new(Duration::from_secs(1), tick_rx);
/// assert_eq!(clock.period(), Duration::from_secs(1));
/// ticks.unbounded_send(()).unwrap(); // one second has passed
/// ```
pub struct Clock {
    period: Duration,
    ticks: Pin<Box<dyn Stream<Item = ()> + Send>>,
}

impl Clock {
    /// A clock whose `ticks` stream yields one item every `period` (the
    /// items themselves are ignored). A period of zero is taken as one
    /// nanosecond.
    ///
    /// When the stream ends, time stops: no deadline passes after that.
    ///
    /// # Examples
    ///
    /// Any timer will do; here, an interval from the `async-io` crate that
    /// smol uses.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stream_multiplexer::Clock;
    ///
    /// let period = Duration::from_millis(250);
    /// let clock = Clock::new(period, async_io::Timer::interval(period));
    /// assert_eq!(clock.period(), period);
    /// ```
    pub fn new<S>(period: Duration, ticks: S) -> Self
    where
        S: Stream + Send + 'static,
    {
        Self {
            period: Self::usable_period(period),
            ticks: Box::pin(ticks.map(|_| ())),
        }
    }

    /// What a clock makes of `period`: a period of zero becomes one
    /// nanosecond. The runtime adapters start their timers with it, so
    /// that timer and clock agree (tokio's interval panics on zero; other
    /// timers would tick on every poll).
    pub(crate) fn usable_period(period: Duration) -> Duration {
        period.max(Duration::from_nanos(1))
    }

    /// The time between two ticks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stream_multiplexer::Clock;
    ///
    /// let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
    /// assert_eq!(clock.period(), Duration::from_secs(1));
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How many ticks make up `limit`, rounded up, at least one.
    pub(crate) fn ticks_in(&self, limit: Duration) -> u64 {
        let ticks = limit.as_nanos().div_ceil(self.period.as_nanos()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The ticks stream, polled by `Run`.
    pub(crate) fn ticks(&mut self) -> Pin<&mut (dyn Stream<Item = ()> + Send)> {
        self.ticks.as_mut()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_rounded_up_to_whole_ticks_and_never_zero() {
        let clock = Clock::new(Duration::from_secs(1), futures::stream::pending::<()>());
        assert_eq!(clock.ticks_in(Duration::from_secs(30)), 30);
        assert_eq!(clock.ticks_in(Duration::from_millis(30_001)), 31);
        assert_eq!(clock.ticks_in(Duration::ZERO), 1);
        assert_eq!(clock.ticks_in(Duration::MAX), 18_446_744_073_709_551_615);
    }
}
