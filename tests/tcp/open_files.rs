//! This process's limit on open file descriptors (`ulimit -n`), for tests
//! that hold thousands of sockets: each loopback connection costs two
//! descriptors here, the client's and the server's.

use std::process::Command;

/// Makes sure this process may open at least `needed` file descriptors,
/// raising its soft limit to its hard limit if it must (with `prlimit`, from
/// util-linux: the standard library cannot). `Err` says why the test cannot
/// run here, for it to skip with.
pub fn ensure(needed: u64) -> Result<(), String> {
    let (soft, hard) = limits()?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!(
            "needs {needed} open files, and the hard limit is {hard} (raise it with `ulimit -Hn`)"
        ));
    }
    let raised = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
    match (raised, limits()?) {
        (_, (soft, _)) if soft >= needed => {
            eprintln!("raised the soft limit on open files to {soft}");
            Ok(())
        }
        (status, (soft, _)) => Err(format!(
            "needs {needed} open files; the soft limit is {soft}, and raising it to {hard} \
             with prlimit failed ({status:?}): raise it with `ulimit -n {hard}`"
        )),
    }
}

/// The soft and hard limits on open files, from `/proc/self/limits`
/// ("unlimited" read as `u64::MAX`).
fn limits() -> Result<(u64, u64), String> {
    let limits = std::fs::read_to_string("/proc/self/limits")
        .map_err(|error| format!("cannot read /proc/self/limits: {error}"))?;
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .ok_or("no `Max open files` in /proc/self/limits")?;
    let mut values = line.split_whitespace().map(|value| match value {
        "unlimited" => Ok(u64::MAX),
        value => value
            .parse()
            .map_err(|_| format!("unreadable limit {value:?}")),
    });
    match (values.next(), values.next()) {
        (Some(soft), Some(hard)) => Ok((soft?, hard?)),
        _ => Err(format!("unreadable `Max open files{line}`")),
    }
}
