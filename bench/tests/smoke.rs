//! CI's check that the harness builds and every server stays correct: the
//! smoke run (tiny sizes, a few seconds) checks exact counts (every frame an
//! ingress client sent reached the consumer once, every broadcast delivery
//! and every echo arrived intact) and fails on any mismatch. No figure it
//! prints is asserted: timing on a shared machine proves nothing.

use std::process::Command;

#[test]
fn every_server_delivers_exactly_what_was_sent() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["all", "--smoke"])
        .output()
        .expect("run the bench binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "smoke run failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("no problems"), "{stderr}");
}
