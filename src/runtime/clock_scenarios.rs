//! The tests of a clock's ticks, written once and run by each adapter on
//! its own timer: its private `ticks` stream, and its runtime's sleep for
//! the multiplexer being busy and for the safety net.
//!
//! Every bound is a lower bound (a timer never fires early), so a slow
//! machine makes the tests slower, never wrong.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use futures::{Stream, StreamExt};

/// The period the scenarios tick at: short, since the ticks are what they
/// wait for.
pub(super) const PERIOD: Duration = Duration::from_millis(10);

/// How long a scenario may take before it is taken to hang: only a net
/// under a test that would otherwise never end.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// The stream yields at all.
pub(super) async fn ticks_at_all<F: Future>(
    ticks: impl Stream<Item = ()>,
    sleep: impl Fn(Duration) -> F,
) {
    within_safety_net(&sleep, async {
        let mut ticks = pin!(ticks);
        assert_eq!(ticks.next().await, Some(()));
        assert_eq!(ticks.next().await, Some(()));
    })
    .await;
}

/// The first tick comes a period after the first poll, and the next a
/// period after that.
pub(super) async fn ticks_are_never_early<F: Future>(
    ticks: impl Stream<Item = ()>,
    sleep: impl Fn(Duration) -> F,
) {
    within_safety_net(&sleep, async {
        let mut ticks = pin!(ticks);
        let start = Instant::now();
        assert_eq!(ticks.next().await, Some(()));
        assert!(
            start.elapsed() >= PERIOD,
            "first tick after {:?}",
            start.elapsed()
        );
        assert_eq!(ticks.next().await, Some(()));
        assert!(
            start.elapsed() >= 2 * PERIOD,
            "second tick after {:?}",
            start.elapsed()
        );
    })
    .await;
}

/// While the clock is not polled for several periods (the multiplexer is
/// busy), the ticks it missed are not fired at once when it is polled
/// again: the tick after the late one comes a period after it.
pub(super) async fn missed_ticks_are_not_made_up_in_a_burst<F: Future>(
    ticks: impl Stream<Item = ()>,
    sleep: impl Fn(Duration) -> F,
) {
    within_safety_net(&sleep, async {
        let mut ticks = pin!(ticks);
        assert_eq!(ticks.next().await, Some(()));
        sleep(3 * PERIOD).await;
        // The late tick is set off no earlier than now, and the one after
        // it a period after that; a burst would yield both at once.
        let polled_late = Instant::now();
        assert_eq!(ticks.next().await, Some(()));
        assert_eq!(ticks.next().await, Some(()));
        assert!(
            polled_late.elapsed() >= PERIOD,
            "two ticks {:?} after a stall",
            polled_late.elapsed()
        );
    })
    .await;
}

/// Runs `scenario`, failing the test if it has not finished after
/// [`SAFETY_NET`].
async fn within_safety_net<F: Future>(sleep: impl Fn(Duration) -> F, scenario: impl Future) {
    match select(pin!(scenario), pin!(sleep(SAFETY_NET))).await {
        Either::Left(_) => {}
        Either::Right(_) => panic!("the scenario did not finish within {SAFETY_NET:?}"),
    }
}
