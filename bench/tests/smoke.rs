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

/// A broadcast to a room, the plain futures mpsc for channel 0, a consumer
/// that takes a batch per wait, and one and two shards behind a router each deliver exactly what was sent (with
/// a read chunk smaller than the default, so that option is exercised too).
#[cfg(feature = "ours")]
#[test]
fn rooms_the_consumer_channels_and_shards_deliver_exactly_what_was_sent() {
    let out = bench(&[
        "all",
        "--smoke",
        "--peers",
        "ours-room/1,ours-mpsc/1,ours-batches/1,ours-shards/1,ours-shards/2",
        "--scenarios",
        "ingress,broadcast,echo",
        "--read-chunk",
        "1024",
    ]);
    assert_no_problems(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| ours-shards/2 |"), "{table}");
}

/// Keyed updates outrun readers behind small socket buffers: under
/// latest-by-key every reader stays connected, reads each key's updates in
/// order and ends on the last one of every key, and values were replaced
/// in the backlogs; under reliable delivery a reader still connected read
/// every update in order. The peers without keyed updates are skipped.
#[cfg(feature = "ours")]
#[test]
fn keyed_updates_reach_slow_readers_newest_last_and_in_order() {
    let out = bench(&[
        "all",
        "--smoke",
        "--peers",
        "mio,ours-room/1,ours-shards/2",
        "--scenarios",
        "latest,reliable",
        "--sndbuf",
        "16384",
        "--reader-rcvbuf",
        "16384",
    ]);
    assert_no_problems(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    let replaced = table
        .split("values replaced by a newer one of their key")
        .nth(1)
        .and_then(|t| t.lines().find(|l| l.starts_with("| 20 |")))
        .unwrap_or_else(|| panic!("no conflation row:\n{table}"));
    // `| 20 | – | 1234 · 3.9 MiB | 987 · 4.0 MiB |`: mio skipped, the others conflated.
    let counts: Vec<u64> = replaced
        .split('|')
        .filter_map(|cell| cell.trim().split(' ').next()?.parse().ok())
        .skip(1)
        .collect();
    assert_eq!(counts.len(), 2, "{replaced}");
    assert!(counts.iter().all(|&n| n > 0), "{replaced}");
}

/// Ingress with a fixed number of frames per client (the mode for counting
/// instructions) counts every one, with the server started through
/// `BENCH_WRAP` and a tool started through `BENCH_ATTACH`.
#[test]
fn a_counted_ingress_under_a_wrapper_counts_every_frame() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "all",
            "--smoke",
            "--peers",
            "mio",
            "--scenarios",
            "ingress",
            "--frames",
            "64",
        ])
        .env("BENCH_WRAP", "env BENCH_WRAPPED=1")
        .env("BENCH_ATTACH", "test -d /proc/{pid}")
        .output()
        .expect("run the bench binary");
    assert_no_problems(&out);
}
