//! Adapters that turn a runtime's TCP listener into a stream of connections.
//!
//! The multiplexer is built on the `futures` traits only and runs on any
//! executor. What differs between runtimes is how connections are accepted:
//! each adapter here takes one runtime's listener and gives an owned,
//! `'static` [`Stream`](futures::Stream) of `io::Result<connection>`, where
//! the connection is a `futures::io` [`AsyncRead`](futures::io::AsyncRead) +
//! [`AsyncWrite`](futures::io::AsyncWrite) that
//! [`HalvesStream`](crate::HalvesStream) frames.
//!
//! There is one module per runtime, each behind a cargo feature of the same
//! name, so that an application compiles only its own runtime:
//!
//! | module    | feature            | listener                        |
//! |-----------|--------------------|---------------------------------|
//! | [`smol`]  | `smol` (default)   | `async_net::TcpListener`        |
//! | [`async_std`] | `async-std`    | `async_std::net::TcpListener`   |
//! | [`tokio`] | `tokio`            | `tokio::net::TcpListener`       |
//!
//! An adapter is the only place that uses a runtime's timer: when accepting
//! fails because the process or system is out of file descriptors or
//! memory, it waits a moment before accepting again rather than spinning on
//! an accept that keeps failing. Every failed accept is still yielded, for
//! the multiplexer to count.

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;

/// Whether a failed accept means the process or the system ran out of a
/// resource (file descriptors, socket buffers, memory), so that accepting
/// again at once would fail again.
#[cfg_attr(
    not(any(feature = "smol", feature = "async-std", feature = "tokio")),
    allow(dead_code)
)]
pub(crate) fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    if error.kind() == std::io::ErrorKind::OutOfMemory {
        return true;
    }
    let Some(code) = error.raw_os_error() else {
        return false;
    };
    errno::RESOURCE_EXHAUSTION.contains(&code)
}

/// The `errno` values of resource exhaustion, per platform, without a
/// dependency on `libc`: EMFILE, ENFILE, ENOBUFS, ENOMEM.
#[cfg_attr(
    not(any(feature = "smol", feature = "async-std", feature = "tokio")),
    allow(dead_code)
)]
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
    use super::is_resource_exhaustion;
    use std::io;

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
}
