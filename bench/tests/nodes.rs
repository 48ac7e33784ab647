//! CI's check that `bench nodes` builds and stays correct: on tiny sizes,
//! one node and then two nodes through a `redis-server` the run starts
//! itself, every member gets every room message exactly once, in order,
//! and the backplanes' counters agree (nothing dropped, nothing rejected).
//! No figure it prints is asserted: timing on a shared machine proves
//! nothing.
//!
//! Needs `redis-server` on the `PATH`.

#![cfg(feature = "ours")]

use std::process::Command;

#[test]
fn a_room_on_one_node_and_across_two_delivers_every_message_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["nodes", "--smoke"])
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nodes failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("2 measurements, no problems"),
        "{stdout}\n{stderr}"
    );
    // 5 + 50 + 20 messages: node A published each once, node B handed
    // each to its members once, and nothing was dropped or rejected.
    for row in [
        "| 1 | one node |",
        "| 1 | two nodes + Redis |",
        "| 1 | A | 75 | 75 | 0 | 0 |",
        "| 1 | B | 0 | 0 | 0 | 0 | 0 | 75 | 0 | 0 |",
    ] {
        assert!(stdout.contains(row), "no {row:?} in:\n{stdout}");
    }
}
