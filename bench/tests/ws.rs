//! CI's check that `bench ws` builds and that every WebSocket server stays
//! correct, over `ws://` and `wss://`: the smoke run (20 clients, one run)
//! checks exact counts (every message an ingress client sent reached the
//! consumer once, every broadcast delivery and every echo arrived intact,
//! every idle client's hello was read) and fails on any mismatch. No
//! figure it prints is asserted: timing on a shared machine proves nothing.

#![cfg(feature = "ws")]

use std::process::Command;

#[test]
fn every_websocket_server_delivers_exactly_what_was_sent() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["ws", "--smoke"])
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ws smoke run failed:\n{stderr}\n{stdout}"
    );
    assert!(stderr.contains("no problems"), "{stderr}");
    for expected in [
        "| run | ours-ws/1 | ours-ws:4096/1 | tt/1 | tt/2 | ours-wss/1 |",
        "### targets",
        "| TLS: echo p99, wss / ws |",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}
