//! One of the crate's examples, built and run as a child process, as its
//! users meet it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, PoisonError};

use super::SAFETY_TIMEOUT;
use super::framing::Framing;

/// An example server, running; killed when dropped, so that a failing test
/// does not leave it behind.
///
/// The example must print `listening on ADDR` as its first line on stdout
/// once it is bound, and take the address to bind from an environment
/// variable, so that each test starts its own on a free port.
pub struct ExampleServer {
    child: Child,
    /// Where clients connect.
    pub address: SocketAddr,
    /// What its clients speak.
    pub framing: Framing,
}

impl ExampleServer {
    /// Builds the example `name`, starts it on a free port (`address_variable`
    /// set to `127.0.0.1:0`) and waits for its `listening on ADDR` line.
    pub fn start(name: &str, address_variable: &str, framing: Framing) -> Self {
        let mut child = Command::new(example_binary(name))
            .env(address_variable, "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start the {name} example: {error}"));
        let stdout = child.stdout.take().expect("the server's stdout");
        // Guard the child before anything can fail; the address is known
        // once it has said it.
        let mut server = Self {
            child,
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            framing,
        };
        let first_line = read_stdout(stdout);
        let line = first_line
            .recv_timeout(SAFETY_TIMEOUT)
            .unwrap_or_else(|error| panic!("no first line from the {name} example: {error}"));
        server.address = line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"));
        server
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        // It may have died already; either way it must be reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stdout on a thread of its own until the child exits,
/// so that the child never writes to a closed or full pipe, and hands over
/// the first line.
fn read_stdout(stdout: impl std::io::Read + Send + 'static) -> std_mpsc::Receiver<String> {
    let (first_line, received) = std_mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = first_line.send(line);
        }
        for _ in lines {}
    });
    received
}

/// Builds the example `name` once per test binary, with the features this
/// test was built with (so that the library is not compiled again), and
/// gives its path.
///
/// Cargo gives tests the path of the package's binaries but not of its
/// examples, so the test asks Cargo to build it and finds it beside its own
/// executable: `target/<profile>/deps/<test>-*` and
/// `target/<profile>/examples/<name>`.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    // Held during the build: tests starting the same example wait for it.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    built
        .entry(name.to_owned())
        .or_insert_with(|| build_example(name))
        .clone()
}

/// Asks Cargo to build the example `name`, and gives its path.
fn build_example(name: &str) -> PathBuf {
    // The features of this test build, all of them: every test that starts
    // an example builds the same binary, so none overwrites another's.
    let features: Vec<&str> = [
        ("smol", cfg!(feature = "smol")),
        ("async-std", cfg!(feature = "async-std")),
        ("tokio", cfg!(feature = "tokio")),
        ("metrics", cfg!(feature = "metrics")),
        ("tracing", cfg!(feature = "tracing")),
        ("redis", cfg!(feature = "redis")),
        ("websocket", cfg!(feature = "websocket")),
        ("tls", cfg!(feature = "tls")),
    ]
    .into_iter()
    .filter_map(|(feature, on)| on.then_some(feature))
    .collect();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", name])
        .args(["--no-default-features", "--features", &features.join(",")])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    // Without what Cargo set for this test alone (`CARGO_PKG_NAME`,
    // `CARGO_MANIFEST_DIR`, ...): build scripts that watch those (ring's)
    // would otherwise run again, and the crates after them be rebuilt, at
    // every test run and again at the next `cargo test`.
    for (variable, _) in std::env::vars_os() {
        let variable = variable.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| variable.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*variable)
        {
            cargo.env_remove(&*variable);
        }
    }
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "cargo could not build the {name} example");

    let test = std::env::current_exe().expect("the test's own path");
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}
