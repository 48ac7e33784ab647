//! The chat example as its users meet it: a real process, spoken to over
//! TCP with plain blocking sockets, one line at a time, as `nc` would.
//!
//! Each test starts its own server on a free port (`CHAT_ADDR=127.0.0.1:0`)
//! and learns the port from the `listening on ADDR` line the server prints
//! first. Nothing sleeps: every step waits for the line that proves the
//! server has done the step before; read timeouts (`tcp::SAFETY_TIMEOUT`)
//! only keep a broken server from hanging the test.

#![cfg(feature = "smol")]

mod tcp;

use std::io::Write;

use tcp::child::ExampleServer;
use tcp::client::Client;
use tcp::framing::Framing;

#[test]
fn two_users_chat_in_a_room_and_the_lobby_is_not_heard() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    // Carol has no name: she is in the lobby, and the lobby only answers
    // her. That answer proves the server has handled her line.
    let mut carol = server.connect();
    carol.send_line("can anyone hear me?");
    assert_eq!(carol.recv_line(), "* choose a nickname first: /nick NAME");

    // Had Carol's line reached the room, it would have been queued for Bob
    // before this one.
    alice.send_line("hi bob");
    assert_eq!(bob.recv_line(), "<alice> hi bob");
    bob.send_line("hi alice");
    assert_eq!(alice.recv_line(), "<bob> hi alice");

    alice.send_line("/who");
    assert_eq!(alice.recv_line(), "* in #general: alice, bob");
}

#[test]
fn users_in_other_rooms_are_not_heard() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    bob.send_line("/join games");
    assert_eq!(bob.recv_line(), "* you are in #games");
    assert_eq!(alice.recv_line(), "* bob left #general");

    bob.send_line("anyone?");
    bob.send_line("/who");
    assert_eq!(bob.recv_line(), "* in #games: bob");
    alice.send_line("/who");
    assert_eq!(alice.recv_line(), "* in #general: alice");
}

#[test]
fn quit_says_goodbye_then_closes() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    bob.send_line("/quit");
    assert_eq!(bob.recv_line(), "* bye, bob!");
    bob.expect_closed();
    assert_eq!(alice.recv_line(), "* bob left #general");

    // Quitting from the lobby works too, and the name is free again.
    let mut carol = server.connect();
    carol.send_line("/quit");
    assert_eq!(carol.recv_line(), "* bye!");
    carol.expect_closed();
    let _bob_again = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");
}

#[test]
fn the_longest_line_reaches_the_room_cut_to_the_limit() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    // 4 KiB is the most a client may send; with "<alice> " in front it is
    // more than the codec may encode, so the server cuts it rather than
    // fail the write (which would disconnect Bob).
    alice.send_line(&"x".repeat(4096));
    let line = bob.recv_line();
    assert_eq!(line.len(), 4096);
    assert!(line.starts_with("<alice> xxx"));
    bob.send_line("/who");
    assert_eq!(bob.recv_line(), "* in #general: alice, bob");
}

#[test]
fn a_taken_name_is_refused() {
    let server = Chat::start();
    let _alice = server.named("alice");
    let mut other = server.connect();
    other.send_line("/nick alice");
    assert_eq!(other.recv_line(), "* alice is taken, try another");
    other.send_line("/nick a!ice");
    assert_eq!(
        other.recv_line(),
        "* a name is 1 to 24 letters, digits, '-' or '_'"
    );
}

#[test]
fn bad_input_gets_an_error_line_then_a_disconnect_and_others_chat_on() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    // A line over 4 KiB from a user in a room.
    bob.send_line(&"x".repeat(5000));
    assert_eq!(bob.recv_line(), "* error: line longer than 4096 bytes");
    bob.expect_closed();
    assert_eq!(alice.recv_line(), "* bob left #general");

    // Bytes that are not UTF-8, from the lobby.
    let mut mallory = server.connect();
    mallory.write(b"\xff\xfe hello\n");
    assert_eq!(mallory.recv_line(), "* error: line is not valid utf-8");
    mallory.expect_closed();

    // Alice noticed nothing else, and chats on with a newcomer.
    let mut carol = server.named("carol");
    assert_eq!(alice.recv_line(), "* carol joined #general");
    carol.send_line("hi alice");
    assert_eq!(alice.recv_line(), "<carol> hi alice");
    alice.send_line("hi carol");
    assert_eq!(carol.recv_line(), "<alice> hi carol");
    alice.send_line("/who");
    assert_eq!(alice.recv_line(), "* in #general: alice, carol");
}

#[test]
fn lines_sent_after_a_bad_line_are_not_heard() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    // All in one write: the server reads the good lines after the bad one
    // before its disconnect takes effect, and must not pass them on.
    let mut burst = vec![b'x'; 5000];
    burst.extend_from_slice(b"\nsneaky\n\xff\nsneakier\n");
    bob.write(&burst);
    assert_eq!(bob.recv_line(), "* error: line longer than 4096 bytes");
    bob.expect_closed();
    // Had "sneaky" reached the room, Alice would have it before this.
    assert_eq!(alice.recv_line(), "* bob left #general");
}

#[test]
fn an_endless_line_gets_an_error_line_while_the_room_chats_on() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    // Mallory sends up to 256 MiB and never a newline, from a thread of
    // her own, until the server closes the connection on her.
    let mut mallory = server.connect();
    let mut flood = mallory.writer();
    let flooder = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..4096 {
            if flood.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    assert_eq!(mallory.recv_line(), "* error: line longer than 4096 bytes");
    mallory.expect_closed();
    flooder.join().expect("the flooding thread");

    alice.send_line("still there?");
    assert_eq!(bob.recv_line(), "<alice> still there?");
    bob.send_line("/who");
    assert_eq!(bob.recv_line(), "* in #general: alice, bob");
}

/// One user pastes a thousand lines into a room at once: every reader gets
/// every line, in order, and nobody is disconnected — the backlog counts
/// only what a reader's socket has not taken, and theirs take it.
#[test]
fn a_thousand_line_paste_reaches_every_reader_and_nobody_is_disconnected() {
    const LINES: usize = 1000;
    let server = Chat::start();
    let mut readers: Vec<Client> = (0..4).map(|i| server.named(&format!("r{i}"))).collect();
    let mut paster = server.named("paster");
    let paste: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    paster.write(paste.as_bytes());

    for (i, reader) in readers.iter_mut().enumerate() {
        // Past the notices of those who joined after it.
        let mut line = reader.recv_line();
        while line.starts_with("* ") && line.ends_with(" joined #general") {
            line = reader.recv_line();
        }
        for n in 0..LINES {
            assert_eq!(line, format!("<paster> line {n}"), "reader {i}");
            if n + 1 < LINES {
                line = reader.recv_line();
            }
        }
    }
    paster.send_line("/who");
    assert_eq!(
        paster.recv_line(),
        "* in #general: r0, r1, r2, r3, paster",
        "nobody was disconnected"
    );
}

/// `printf '/nick a\n' | nc -N`: the client sends its line and half-closes
/// at once. It gets the welcome and the hello, every time, then the server
/// closes the connection.
#[test]
fn a_client_that_half_closes_gets_its_replies_every_time() {
    let server = Chat::start();
    for attempt in 0..20 {
        let mut client = Client::connect(server.server.address, server.server.framing);
        client.send_line(&format!("/nick a{attempt}"));
        client.shutdown_write();
        assert!(
            client.recv_line().starts_with("* welcome!"),
            "try {attempt}"
        );
        assert_eq!(
            client.recv_line(),
            format!("* hello a{attempt}, you are in #general"),
            "try {attempt}"
        );
        client.expect_closed();
    }
}

/// The chat example, running (`tcp::child`), and how its users join it.
struct Chat {
    server: ExampleServer,
}

impl Chat {
    /// Starts a chat server of its own, on a free port.
    fn start() -> Self {
        Self {
            server: ExampleServer::start("chat_server", "CHAT_ADDR", Framing::Lines),
        }
    }

    /// A new client, in the lobby, past the welcome line.
    fn connect(&self) -> Client {
        let mut client = Client::connect(self.server.address, self.server.framing);
        assert!(client.recv_line().starts_with("* welcome!"));
        client
    }

    /// A new client that has picked `nick` and is in `#general`.
    fn named(&self, nick: &str) -> Client {
        let mut client = self.connect();
        client.send_line(&format!("/nick {nick}"));
        assert_eq!(
            client.recv_line(),
            format!("* hello {nick}, you are in #general")
        );
        client
    }
}
