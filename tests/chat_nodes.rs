//! The chat example as several servers sharing their rooms through Redis
//! (`chat_server --redis redis://HOST:PORT`): real processes, a
//! `redis-server` that each test starts on a free port (persistence off)
//! and kills when it is done, and clients on plain blocking sockets, as
//! `nc` would be.
//!
//! Nothing sleeps to synchronise: every step waits for the line that proves
//! the step before, read by a client or logged by a server on stderr. A
//! server logs `redis: subscribed to room "NAME"` once Redis has confirmed
//! its subscription to a room: only from then on does what the other
//! servers say there reach it (pub/sub stores nothing). Read timeouts
//! (`tcp::SAFETY_TIMEOUT`) only keep a broken server from hanging a test.
//! `redis-server` is ready when it says so on its output
//! (`tcp::redis_server`).
//!
//! "Once" rests on an order: Redis hands a subscriber the messages of every
//! channel in the order it took them, so a duplicate (or a server's own
//! line sent back to it) would reach a client before any line said after
//! the original, and each check reads the next line said on the other
//! server right after.
//!
//! Needs `redis-server` on the `PATH`.

#![cfg(all(feature = "redis", feature = "smol"))]

mod tcp;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;
use std::thread;

use tcp::client::Client;
use tcp::framing::Framing;
use tcp::redis_server::RedisServer;
use tcp::{SAFETY_TIMEOUT, within_safety_timeout};

#[test]
fn a_room_spans_both_servers_and_lines_and_actions_cross_once_each_way() {
    within_safety_timeout(|| {
        let redis = RedisServer::start();
        let (mut a, mut b) = (Node::start(&redis), Node::start(&redis));
        let mut alice = a.named("alice", 1);
        a.subscribed("general");
        let mut bob = b.named("bob", 1);
        // Joining is said to the room: it crossed.
        assert_eq!(alice.recv_line(), "* bob joined #general");
        b.subscribed("general");

        alice.send_line("hi bob");
        assert_eq!(bob.recv_line(), "<alice> hi bob");
        bob.send_line("hi alice");
        assert_eq!(alice.recv_line(), "<bob> hi alice");
        alice.send_line("/me waves");
        assert_eq!(bob.recv_line(), "* alice waves");
        bob.send_line("/me waves back");
        assert_eq!(alice.recv_line(), "* bob waves back");

        // Once: had Bob got any of Alice's lines twice, he would read the
        // copy before this one; had Alice got hers back, before Bob's.
        alice.send_line("one more");
        assert_eq!(bob.recv_line(), "<alice> one more");
        bob.send_line("and me");
        assert_eq!(alice.recv_line(), "<bob> and me");

        // Users are each server's own, and the replies say so.
        alice.send_line("/who");
        assert_eq!(alice.recv_line(), "* in #general on this server: alice");
        alice.send_line("/msg bob psst");
        assert_eq!(alice.recv_line(), "* no such user on this server: bob");
        // Another alice, on the other server: names are unique per server.
        let mut other_alice = b.named("alice", 2);
        assert_eq!(bob.recv_line(), "* alice joined #general");
        assert_eq!(alice.recv_line(), "* alice joined #general");
        alice.send_line("bye");
        assert_eq!(other_alice.recv_line(), "<alice> bye");
        assert_eq!(bob.recv_line(), "<alice> bye");
    });
}

#[test]
fn with_redis_gone_each_server_chats_on_alone() {
    within_safety_timeout(|| {
        let mut redis = RedisServer::start();
        let (mut a, mut b) = (Node::start(&redis), Node::start(&redis));
        let mut alice = a.named("alice", 1);
        a.subscribed("general");
        let mut bob = b.named("bob", 1);
        assert_eq!(alice.recv_line(), "* bob joined #general");
        b.subscribed("general");
        alice.send_line("hi bob");
        assert_eq!(bob.recv_line(), "<alice> hi bob");

        redis.kill();
        a.logged("redis: subscriber connection lost");
        b.logged("redis: subscriber connection lost");

        let mut carol = a.named("carol", 2);
        assert_eq!(alice.recv_line(), "* carol joined #general");
        carol.send_line("hi alice");
        assert_eq!(alice.recv_line(), "<carol> hi alice");
        alice.send_line("hi carol");
        assert_eq!(carol.recv_line(), "<alice> hi carol");

        let mut dave = b.named("dave", 2);
        assert_eq!(bob.recv_line(), "* dave joined #general");
        dave.send_line("hi bob");
        assert_eq!(bob.recv_line(), "<dave> hi bob");
        bob.send_line("hi dave");
        assert_eq!(dave.recv_line(), "<bob> hi dave");
    });
}

/// `* server shutting down` goes to the room every connection is in, which
/// each server follows through Redis like any other: it must reach the
/// server's own users only.
#[test]
fn the_shutdown_notice_stays_on_the_server_shutting_down() {
    within_safety_timeout(|| {
        let redis = RedisServer::start();
        let (mut a, mut b) = (Node::start(&redis), Node::start(&redis));
        let mut alice = a.named("alice", 1);
        a.subscribed("general");
        let mut bob = b.named("bob", 1);
        assert_eq!(alice.recv_line(), "* bob joined #general");
        // The notice's room is `*`: B follows it, so a notice that went
        // through Redis would reach Bob.
        b.subscribed("*");
        b.subscribed("general");

        a.signal("TERM");
        assert_eq!(alice.recv_line(), "* server shutting down");
        alice.expect_closed();
        let status = a.exit_status();
        assert!(status.success(), "server A exited with {status}");

        // A server exits once what it said to rooms is published, so a
        // notice sent through Redis would have been published before what
        // a server started after says; Redis hands B both in that order.
        let mut a_again = Node::start(&redis);
        let mut carol = a_again.named("carol", 1);
        assert_eq!(bob.recv_line(), "* carol joined #general");
        a_again.subscribed("general");
        bob.send_line("still here");
        assert_eq!(carol.recv_line(), "<bob> still here");
    });
}

#[test]
fn a_redis_url_that_is_not_one_is_refused_at_start() {
    let output = Command::new(chat_server())
        .args(["--addr", "127.0.0.1:0", "--redis", "http://127.0.0.1:6379"])
        .stdin(Stdio::null())
        .output()
        .expect("run the chat server");
    assert!(!output.status.success(), "it exited with success");
    assert!(output.stdout.is_empty(), "it listened");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"--redis takes redis://HOST[:PORT], not "http://127.0.0.1:6379""#),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- helpers

/// A chat server of this test's own, sharing its rooms through a
/// [`RedisServer`]; killed when dropped.
struct Node {
    child: Option<Child>,
    address: SocketAddr,
    /// Its stderr, a line at a time, read on a thread of its own.
    log: std_mpsc::Receiver<String>,
    /// What it has logged so far.
    logged: Vec<String>,
}

impl Node {
    /// Starts one on a free port and waits for its `listening on ADDR`.
    fn start(redis: &RedisServer) -> Self {
        let mut child = Command::new(chat_server())
            .args(["--addr", "127.0.0.1:0", "--redis", &redis.url()])
            // What the tests wait for is logged at INFO, whatever the
            // environment says.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the chat server");
        let stdout = child.stdout.take().expect("its stdout");
        let stderr = child.stderr.take().expect("its stderr");
        let mut node = Self {
            child: Some(child),
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            log: lines_of(stderr),
            logged: Vec::new(),
        };
        let line = lines_of(stdout)
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("no first line from the chat server");
        node.address = line
            .strip_prefix("listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"));
        node
    }

    /// A new client that has picked `nick` and is in `#general`, past the
    /// line that says that `count` users are there, on this server.
    fn named(&self, nick: &str, count: usize) -> Client {
        let mut client = Client::connect(self.address, Framing::Lines);
        assert!(client.recv_line().starts_with("* welcome!"));
        client.send_line(&format!("/nick {nick}"));
        assert_eq!(
            client.recv_line(),
            format!("* hello {nick}, you are in #general")
        );
        let users = if count == 1 { "user" } else { "users" };
        assert_eq!(
            client.recv_line(),
            format!("* {count} {users} online on this server")
        );
        client
    }

    /// Waits until Redis has confirmed its subscription to `room`: from
    /// then on, what the other servers say there reaches it.
    fn subscribed(&mut self, room: &str) {
        self.logged(&format!("redis: subscribed to room {room:?}"));
    }

    /// Waits until it has logged a line with `what` in it (or has
    /// already).
    fn logged(&mut self, what: &str) {
        while !self.logged.iter().any(|line| line.contains(what)) {
            let line = self
                .log
                .recv_timeout(SAFETY_TIMEOUT)
                .unwrap_or_else(|error| panic!("waiting for {what:?} in the log: {error}"));
            self.logged.push(line);
        }
    }

    /// Sends it `signal` (`TERM`, `INT`) with `kill`.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("it is running").id();
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for it to exit, within the safety timeout.
    fn exit_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("it is running");
        let pid = child.id();
        let (exited, status) = std_mpsc::channel();
        thread::spawn(move || {
            let _ = exited.send(child.wait().expect("wait for the server"));
        });
        status.recv_timeout(SAFETY_TIMEOUT).unwrap_or_else(|_| {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
            panic!("the server did not exit");
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines of a child's output, read on a thread of their own to the
/// end, so that the child never writes to a full or closed pipe.
fn lines_of(output: impl Read + Send + 'static) -> std_mpsc::Receiver<String> {
    let (line, lines) = std_mpsc::channel();
    thread::spawn(move || {
        for read in BufReader::new(output).lines() {
            let Ok(read) = read else { return };
            // Nobody listens any more: read on, to the end.
            let _ = line.send(read);
        }
    });
    lines
}

/// The chat example, built once per test binary with the `redis` feature,
/// and with every other feature this test was built with, so that Cargo
/// builds the example only, over the library this test uses.
///
/// Cargo gives tests the path of the package's binaries but not of its
/// examples, so the test asks Cargo to build it and finds it beside its own
/// executable: `target/<profile>/deps/<test>-*` and
/// `target/<profile>/examples/chat_server`. (The tests of
/// `chat_example.rs` build it there with fewer features; without
/// `--redis`, both builds behave the same.)
fn chat_server() -> PathBuf {
    tcp::child::example_binary("chat_server")
}
