//! CI's check that the soak run builds and stays correct: `bench soak
//! --smoke` (20 clients for 3 seconds, every way of leaving) must pass its
//! checks — counters balanced, every stream gone, no client error, every
//! connection accepted, every hostile frame rejected, a clean shutdown. The
//! RSS is not checked (the run is far too short to mean anything), and no
//! timing is asserted.

#![cfg(feature = "ours")]

use std::process::Command;

#[test]
fn a_short_soak_balances_its_counters_and_sees_no_client_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["soak", "--smoke"])
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    for check in [
        "PASS stats balanced",
        "PASS every stream gone",
        "PASS client errors",
        "PASS clean shutdown",
        "SKIP RSS steady",
        "soak: PASS",
    ] {
        assert!(
            stdout.contains(check),
            "no {check:?} in:\n{stdout}\n{stderr}"
        );
    }
}
