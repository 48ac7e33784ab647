//! Decodes arbitrary bytes into a scenario of the model in
//! `tests/model/mod.rs` (the one `tests/properties.rs` runs) and checks the
//! invariants of the crate docs' numbered guarantees on it.

#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

use libfuzzer_sys::fuzz_target;
use model::{Finding, Scenario};

/// The open findings the property test also looks past (see
/// `tests/properties.rs`); a crash here is a new one.
const OPEN_FINDINGS: &[Finding] = &[];

fuzz_target!(|data: &[u8]| {
    let scenario = Scenario::from_bytes(data);
    if let Err(violation) = model::run(&scenario, OPEN_FINDINGS) {
        panic!("{scenario:?}\n{violation}");
    }
});
