//! Side-by-side benchmark of `stream_multiplexer` against its peers: a load
//! generator used identically against every server, the servers themselves
//! (each run as a child process of the harness), and the report (markdown
//! table and SVG plots). With the `ours` feature, also the soak run (module
//! `soak`).

pub mod control;
pub mod harness;
pub mod idle_clients;
pub mod load;
#[cfg(feature = "ours")]
pub mod nodes;
pub mod proto;
pub mod readers;
pub mod report;
pub mod server;
pub mod servers;
#[cfg(feature = "ours")]
pub mod soak;
#[cfg(feature = "ours")]
pub mod tick_floor;
#[cfg(feature = "ws")]
pub mod ws;

/// Raises this process's open-file limit as far as it goes (children
/// inherit it): 10,000 clients need 10,000 descriptors on each side.
pub fn raise_fd_limit(want: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_max < want {
            // Root may raise the hard limit; if that fails, keep what we have.
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(want);
            }
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}
