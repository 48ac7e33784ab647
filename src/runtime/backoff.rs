//! The pause an adapter takes after an accept failed for want of file
//! descriptors or memory, shared by every adapter; only the timer differs.
//!
//! Accepting again at once after such a failure would fail again at once:
//! the listener stays readable, since the connection is still waiting in
//! the backlog, and the accept loop would spin on the CPU that the server
//! needs to finish the work that gives descriptors back. Every other
//! failure concerns one connection (the peer reset it while it waited in
//! the backlog, say), and the next accept may well succeed.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// How long to wait before accepting again after the process or system ran
/// out of file descriptors or memory: long enough for some connections to
/// close and give theirs back, short enough that clients waiting in the
/// listen backlog hardly notice.
pub(super) const EXHAUSTION_BACKOFF: Duration = Duration::from_millis(50);

/// Holds accepts back for [`EXHAUSTION_BACKOFF`] after a resource-exhaustion
/// error, on the timer of the adapter's runtime.
///
/// `F` is the runtime's sleep future, or `dyn Future` for a runtime whose
/// sleep future has no name. The sleep is boxed: it is made only after an
/// accept failed for want of resources, so the common path allocates
/// nothing, and a boxed `F` leaves the adapter's stream `Unpin`.
pub(super) struct Backoff<F: ?Sized> {
    /// Makes the runtime's sleep future for a duration.
    sleep: fn(Duration) -> Pin<Box<F>>,
    /// The wait under way, if any: no accept until it completes.
    wait: Option<Pin<Box<F>>>,
}

impl<F: Future + ?Sized> Backoff<F> {
    /// No wait under way; `sleep` makes one when an error calls for it.
    pub(super) fn new(sleep: fn(Duration) -> Pin<Box<F>>) -> Self {
        Self { sleep, wait: None }
    }

    /// Ready when the adapter may accept: no wait is under way, or it has
    /// completed (and is then dropped).
    pub(super) fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(wait) = &mut self.wait {
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
        Poll::Ready(())
    }

    /// Starts a wait if `error`, from a failed accept, is resource
    /// exhaustion; any other error leaves the adapter free to accept again.
    pub(super) fn after_error(&mut self, error: &io::Error) {
        if is_resource_exhaustion(error) {
            self.wait = Some((self.sleep)(EXHAUSTION_BACKOFF));
        }
    }

    /// Whether a wait is under way.
    pub(super) fn is_waiting(&self) -> bool {
        self.wait.is_some()
    }
}

impl<F: Future + ?Sized> fmt::Debug for Backoff<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("waiting", &self.is_waiting())
            .finish()
    }
}

/// Whether a failed accept means the process or the system ran out of a
/// resource (file descriptors, socket buffers, memory), so that accepting
/// again at once would fail again.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    if error.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    let Some(code) = error.raw_os_error() else {
        return false;
    };
    errno::RESOURCE_EXHAUSTION.contains(&code)
}

/// The `errno` values of resource exhaustion, per platform, without a
/// dependency on `libc`: EMFILE, ENFILE, ENOBUFS, ENOMEM.
mod errno {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(super) const RESOURCE_EXHAUSTION: &[i32] = &[24, 23, 105, 12];

    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    pub(super) const RESOURCE_EXHAUSTION: &[i32] = &[24, 23, 55, 12];

    // WSAEMFILE, WSAENOBUFS.
    #[cfg(windows)]
    pub(super) const RESOURCE_EXHAUSTION: &[i32] = &[10024, 10055];

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly",
        windows
    )))]
    pub(super) const RESOURCE_EXHAUSTION: &[i32] = &[];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A wait that never ends: whether the backoff holds accepts back is
    /// then visible in one poll, with no timer involved.
    fn endless(period: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        assert_eq!(period, EXHAUSTION_BACKOFF);
        Box::pin(futures::future::pending())
    }

    /// A wait that is already over.
    fn elapsed(period: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        assert_eq!(period, EXHAUSTION_BACKOFF);
        Box::pin(futures::future::ready(()))
    }

    fn poll_wait<F: Future + ?Sized>(backoff: &mut Backoff<F>) -> Poll<()> {
        backoff.poll_wait(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn out_of_descriptors_and_memory_are_resource_exhaustion() {
        assert!(is_resource_exhaustion(&io::Error::from(
            io::ErrorKind::OutOfMemory
        )));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        for code in [24, 23, 105, 12] {
            assert!(
                is_resource_exhaustion(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn per_connection_accept_errors_are_not_resource_exhaustion() {
        assert!(!is_resource_exhaustion(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // ECONNABORTED, EPERM, EPROTO on Linux: retrying at once is right.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        for code in [103, 1, 71] {
            assert!(
                !is_resource_exhaustion(&io::Error::from_raw_os_error(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn accepts_are_free_until_an_error_calls_for_a_wait() {
        let mut backoff = Backoff::new(endless);
        assert_eq!(poll_wait(&mut backoff), Poll::Ready(()));

        backoff.after_error(&io::Error::from(io::ErrorKind::ConnectionAborted));
        assert!(!backoff.is_waiting());
        assert_eq!(poll_wait(&mut backoff), Poll::Ready(()));
    }

    #[test]
    fn resource_exhaustion_holds_accepts_back_until_the_wait_ends() {
        let mut backoff = Backoff::new(endless);
        backoff.after_error(&io::Error::from(io::ErrorKind::OutOfMemory));
        assert!(backoff.is_waiting());
        assert_eq!(poll_wait(&mut backoff), Poll::Pending);
        assert_eq!(poll_wait(&mut backoff), Poll::Pending);

        let mut backoff = Backoff::new(elapsed);
        backoff.after_error(&io::Error::from(io::ErrorKind::OutOfMemory));
        assert_eq!(poll_wait(&mut backoff), Poll::Ready(()));
        assert!(!backoff.is_waiting(), "the finished wait is dropped");
    }
}
