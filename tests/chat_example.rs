//! The chat example as its users meet it: a real process, spoken to over
//! TCP with plain blocking sockets, one line at a time, as `nc` would.
//!
//! Each test starts its own server on a free port (`CHAT_ADDR=127.0.0.1:0`)
//! and learns the port from the `listening on ADDR` line the server prints
//! first. Nothing sleeps: every step waits for the line that proves the
//! server has done the step before; read timeouts only keep a broken server
//! from hanging the test.

#![cfg(feature = "smol")]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a read may take before the test gives up: a safety net, far
/// longer than anything here should take.
const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn two_users_chat_in_a_room_and_the_lobby_is_not_heard() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    // Carol has no name: she is in the lobby, and the lobby only answers
    // her. That answer proves the server has handled her line.
    let mut carol = server.connect();
    carol.send("can anyone hear me?");
    assert_eq!(carol.recv(), "* choose a nickname first: /nick NAME");

    // Had Carol's line reached the room, it would have been queued for Bob
    // before this one.
    alice.send("hi bob");
    assert_eq!(bob.recv(), "<alice> hi bob");
    bob.send("hi alice");
    assert_eq!(alice.recv(), "<bob> hi alice");

    alice.send("/who");
    assert_eq!(alice.recv(), "* in #general: alice, bob");
}

#[test]
fn users_in_other_rooms_are_not_heard() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    bob.send("/join games");
    assert_eq!(bob.recv(), "* you are in #games");
    assert_eq!(alice.recv(), "* bob left #general");

    bob.send("anyone?");
    bob.send("/who");
    assert_eq!(bob.recv(), "* in #games: bob");
    alice.send("/who");
    assert_eq!(alice.recv(), "* in #general: alice");
}

#[test]
fn quit_says_goodbye_then_closes() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    bob.send("/quit");
    assert_eq!(bob.recv(), "* bye, bob!");
    bob.expect_closed();
    assert_eq!(alice.recv(), "* bob left #general");

    // Quitting from the lobby works too, and the name is free again.
    let mut carol = server.connect();
    carol.send("/quit");
    assert_eq!(carol.recv(), "* bye!");
    carol.expect_closed();
    let _bob_again = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");
}

#[test]
fn the_longest_line_reaches_the_room_cut_to_the_limit() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    // 4 KiB is the most a client may send; with "<alice> " in front it is
    // more than the codec may encode, so the server cuts it rather than
    // fail the write (which would disconnect Bob).
    alice.send(&"x".repeat(4096));
    let line = bob.recv();
    assert_eq!(line.len(), 4096);
    assert!(line.starts_with("<alice> xxx"));
    bob.send("/who");
    assert_eq!(bob.recv(), "* in #general: alice, bob");
}

#[test]
fn a_taken_name_is_refused() {
    let server = Server::start();
    let _alice = server.named("alice");
    let mut other = server.connect();
    other.send("/nick alice");
    assert_eq!(other.recv(), "* alice is taken, try another");
    other.send("/nick a!ice");
    assert_eq!(
        other.recv(),
        "* a name is 1 to 24 letters, digits, '-' or '_'"
    );
}

#[test]
fn bad_input_gets_an_error_line_then_a_disconnect_and_others_chat_on() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    // A line over 4 KiB from a user in a room.
    bob.send(&"x".repeat(5000));
    assert_eq!(bob.recv(), "* error: line longer than 4096 bytes");
    bob.expect_closed();
    assert_eq!(alice.recv(), "* bob left #general");

    // Bytes that are not UTF-8, from the lobby.
    let mut mallory = server.connect();
    mallory.send_bytes(b"\xff\xfe hello\n");
    assert_eq!(mallory.recv(), "* error: line is not valid utf-8");
    mallory.expect_closed();

    // Alice noticed nothing else, and chats on with a newcomer.
    let mut carol = server.named("carol");
    assert_eq!(alice.recv(), "* carol joined #general");
    carol.send("hi alice");
    assert_eq!(alice.recv(), "<carol> hi alice");
    alice.send("hi carol");
    assert_eq!(carol.recv(), "<alice> hi carol");
    alice.send("/who");
    assert_eq!(alice.recv(), "* in #general: alice, carol");
}

#[test]
fn lines_sent_after_a_bad_line_are_not_heard() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    // All in one write: the server reads the good lines after the bad one
    // before its disconnect takes effect, and must not pass them on.
    let mut burst = vec![b'x'; 5000];
    burst.extend_from_slice(b"\nsneaky\n\xff\nsneakier\n");
    bob.send_bytes(&burst);
    assert_eq!(bob.recv(), "* error: line longer than 4096 bytes");
    bob.expect_closed();
    // Had "sneaky" reached the room, Alice would have it before this.
    assert_eq!(alice.recv(), "* bob left #general");
}

#[test]
fn an_endless_line_gets_an_error_line_while_the_room_chats_on() {
    let server = Server::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv(), "* bob joined #general");

    // Mallory sends up to 256 MiB and never a newline, from a thread of
    // her own, until the server closes the connection on her.
    let mut mallory = server.connect();
    let mut flood = mallory.writer.try_clone().expect("clone the socket");
    let flooder = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..4096 {
            if flood.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    assert_eq!(mallory.recv(), "* error: line longer than 4096 bytes");
    mallory.expect_closed();
    flooder.join().expect("the flooding thread");

    alice.send("still there?");
    assert_eq!(bob.recv(), "<alice> still there?");
    bob.send("/who");
    assert_eq!(bob.recv(), "* in #general: alice, bob");
}

/// The chat example, running; killed when dropped, so that a failing test
/// does not leave it behind.
struct Server {
    child: Child,
    address: String,
    /// Kept open: the server must never write to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(example_binary())
            .env("CHAT_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the chat example");
        let stdout = child.stdout.take().expect("the server's stdout");
        // Guard the child before anything can fail.
        let mut server = Self {
            child,
            address: String::new(),
            _stdout: BufReader::new(stdout),
        };
        let mut line = String::new();
        server
            ._stdout
            .read_line(&mut line)
            .expect("read the server's first line");
        server.address = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
            .to_owned();
        server
    }

    /// A new client, in the lobby, past the welcome line.
    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.address).expect("connect to the chat server");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("set a read timeout");
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().expect("clone the socket")),
            writer: stream,
        };
        assert!(client.recv().starts_with("* welcome!"));
        client
    }

    /// A new client that has picked `nick` and is in `#general`.
    fn named(&self, nick: &str) -> Client {
        let mut client = self.connect();
        client.send(&format!("/nick {nick}"));
        assert_eq!(
            client.recv(),
            format!("* hello {nick}, you are in #general")
        );
        client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // It may have died already; either way it must be reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One user, with a blocking socket.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to the server");
    }

    /// The next line from the server, without its newline.
    fn recv(&mut self) -> String {
        let mut line = String::new();
        let read = self
            .reader
            .read_line(&mut line)
            .expect("read a line from the server");
        assert!(read > 0, "the server closed the connection");
        line.trim_end_matches('\n').to_owned()
    }

    /// Expects the server to close the connection with nothing more to
    /// say: an end of file, or a reset when the server closed it with input
    /// still unread.
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "more before the end: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
            Err(error) => panic!("expected the server to close the connection: {error}"),
        }
    }
}

/// Builds the chat example once, with the features this test was built
/// with (so that the library is not compiled again), and gives its path.
///
/// Cargo gives tests the path of the package's binaries but not of its
/// examples, so the test asks Cargo to build it and finds it beside its own
/// executable: `target/<profile>/deps/chat_example-*` and
/// `target/<profile>/examples/chat_server`.
fn example_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let mut features = vec!["smol"];
            if cfg!(feature = "tokio") {
                features.push("tokio");
            }
            if cfg!(feature = "async-std") {
                features.push("async-std");
            }
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--quiet", "--example", "chat_server"])
                .args(["--no-default-features", "--features", &features.join(",")])
                .arg("--manifest-path")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
            if !cfg!(debug_assertions) {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo");
            assert!(status.success(), "cargo could not build the chat example");

            let test = std::env::current_exe().expect("the test's own path");
            let profile_dir = test
                .parent()
                .and_then(|deps| deps.parent())
                .expect("the test runs from target/<profile>/deps");
            profile_dir
                .join("examples")
                .join(format!("chat_server{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}
