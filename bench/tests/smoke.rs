//! CI's check that the harness builds and every server stays correct: the
//! smoke run (tiny sizes, a few seconds) checks exact counts (every frame an
//! ingress client sent reached the consumer once, every broadcast delivery
//! and every echo arrived intact) and fails on any mismatch. No figure it
//! prints is asserted: timing on a shared machine proves nothing.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("run the bench binary")
}

fn assert_no_problems(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "smoke run failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("no problems"), "{stderr}");
}

#[test]
fn every_server_delivers_exactly_what_was_sent() {
    assert_no_problems(&bench(&["all", "--smoke"]));
}

/// The server with a clock, ticking every millisecond so that its timer
/// wheel turns many times in the run, closes no benchmark client and loses
/// nothing; the idle clients held by helper processes all reach it; the
/// quiet CPU figures are taken.
#[cfg(feature = "ours")]
#[test]
fn a_server_with_a_fast_clock_delivers_exactly_what_was_sent() {
    let out = bench(&[
        "all",
        "--smoke",
        "--peers",
        "ours/1,ours-clock/1",
        "--clock-ms",
        "1",
        "--idle-procs",
        "2",
        "--quiet",
        "0.2",
    ]);
    assert_no_problems(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| ours-clock/1 |"), "{table}");
    assert!(
        table.contains("beside C idle clients (lower is better)"),
        "{table}"
    );
}

/// `bench tick-floor` measures ticks and prints its figure.
#[cfg(feature = "ours")]
#[test]
fn the_tick_floor_counts_ticks() {
    let out = bench(&["tick-floor", "--clock-ms", "1", "--secs", "0.2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("µs per tick"), "{stdout}");
}
