//! The chat example as its users meet it: a real process, spoken to over
//! TCP with plain blocking sockets, one line at a time, as `nc` would.
//!
//! Each test starts its own server on a free port (`CHAT_ADDR=127.0.0.1:0`)
//! and learns the port from the `listening on ADDR` line the server prints
//! first. Nothing sleeps: every step waits for the line that proves the
//! server has done the step before; read timeouts (`tcp::SAFETY_TIMEOUT`)
//! only keep a broken server from hanging the test.
//!
//! A line a client reads proves more than itself: the server sends a
//! user's `Join` or `Leave`, then the lines that follow from it, on one
//! queue that the multiplexer applies in order, so a user who has read
//! `* N users online` (or `* you are in #ROOM`) is in that room for
//! everyone's next line.

#![cfg(feature = "smol")]

mod tcp;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;

use tcp::SAFETY_TIMEOUT;
use tcp::child::ExampleServer;
use tcp::client::Client;
use tcp::framing::Framing;

// Rooms, users and the lobby.

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
    assert_eq!(bob.recv_line(), "* 1 user online");
    assert_eq!(alice.recv_line(), "* bob left #general");

    bob.send_line("anyone?");
    bob.send_line("/who");
    assert_eq!(bob.recv_line(), "* in #games: bob");
    alice.send_line("/who");
    assert_eq!(alice.recv_line(), "* in #general: alice");
}

/// `/who` right after `/join`, in the same write: the multiplexer may not
/// have applied the `Join` yet, and the user is listed all the same.
#[test]
fn who_lists_the_room_at_once_after_joining_it() {
    let server = Chat::start();
    let mut bob = server.named("bob");
    bob.send_line("/join den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 1 user online");

    let mut alice = server.named("alice");
    alice.write(b"/join den\n/who\n");
    assert_eq!(alice.recv_line(), "* you are in #den");
    assert_eq!(alice.recv_line(), "* 2 users online");
    assert_eq!(alice.recv_line(), "* in #den: bob, alice");
    assert_eq!(bob.recv_line(), "* alice joined #den");
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

// Commands sent in one write.

/// `printf '/nick a\n/join den\nhello\n/who\n' | nc`: the lobby may read
/// every line before the move to the rooms takes effect; each still takes
/// effect, in order, in the rooms.
#[test]
fn commands_sent_in_one_write_all_take_effect_in_order() {
    let server = Chat::start();
    let mut bob = server.named("bob");
    bob.send_line("/join den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 1 user online");

    // Straight after connecting, before the welcome has even come.
    let mut a = Client::connect(server.server.address, Framing::Lines);
    a.write(b"/nick a\n/join den\nhello\n/who\n");
    assert!(a.recv_line().starts_with("* welcome!"));
    assert_eq!(a.recv_line(), "* hello a, you are in #general");
    assert_eq!(a.recv_line(), "* 1 user online");
    assert_eq!(a.recv_line(), "* you are in #den");
    assert_eq!(a.recv_line(), "* 2 users online");
    assert_eq!(a.recv_line(), "* in #den: bob, a");
    assert_eq!(bob.recv_line(), "* a joined #den");
    assert_eq!(bob.recv_line(), "<a> hello");
}

/// `printf '/nick a\n/join den\nhello\n' | nc -N`, twenty times: the
/// client half-closes at once, so the lobby may even see it leave before
/// its move. It ends in `#den` having said `hello` there, every time, and
/// no line of it is refused.
#[test]
fn a_script_that_half_closes_ends_in_the_room_it_joined_having_spoken_there() {
    let server = Chat::start();
    let mut bob = server.named("bob");
    bob.send_line("/join den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 1 user online");

    for attempt in 0..20 {
        let nick = format!("a{attempt}");
        let mut script = Client::connect(server.server.address, Framing::Lines);
        script.write(format!("/nick {nick}\n/join den\nhello\n").as_bytes());
        script.shutdown_write();
        assert!(
            script.recv_line().starts_with("* welcome!"),
            "try {attempt}"
        );
        let hello = format!("* hello {nick}, you are in #general");
        assert_eq!(script.recv_line(), hello, "try {attempt}");
        assert_eq!(script.recv_line(), "* 1 user online", "try {attempt}");
        assert_eq!(script.recv_line(), "* you are in #den", "try {attempt}");
        assert_eq!(script.recv_line(), "* 2 users online", "try {attempt}");
        script.expect_closed();

        assert_eq!(bob.recv_line(), format!("* {nick} joined #den"));
        assert_eq!(bob.recv_line(), format!("<{nick}> hello"));
        assert_eq!(bob.recv_line(), format!("* {nick} left #den"));
    }
}

// What users may type, and how it reaches others.

#[test]
fn names_are_compared_in_any_case_and_shown_as_chosen() {
    let server = Chat::start();
    let mut bob = server.named("Bob");
    let mut other = server.connect();
    other.send_line("/nick bob");
    assert_eq!(other.recv_line(), "* bob is taken, try another");
    other.send_line("/nick BOB");
    assert_eq!(other.recv_line(), "* BOB is taken, try another");

    let mut alice = server.named("alice");
    assert_eq!(bob.recv_line(), "* alice joined #general");
    bob.send_line("hi");
    assert_eq!(alice.recv_line(), "<Bob> hi");
    alice.send_line("/who");
    assert_eq!(alice.recv_line(), "* in #general: Bob, alice");

    // Room names too: #Den is #den.
    bob.send_line("/join Den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 1 user online");
    assert_eq!(alice.recv_line(), "* Bob left #general");
    alice.send_line("/join DEN");
    assert_eq!(alice.recv_line(), "* you are in #den");
    assert_eq!(alice.recv_line(), "* 2 users online");
}

/// Bidirectional controls, other format characters and control characters
/// could reorder or hide text on other users' terminals: they arrive as
/// U+FFFD. The zero-width joiner, which emoji sequences need, stays.
#[test]
fn control_and_format_characters_reach_others_as_replacement_characters() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    alice.send_line(
        "a\u{202E}b\u{2066}c\u{200F}d\u{1b}[2Je\u{00AD}f\u{E0041}g\u{FEFF}h\ti \u{1F469}\u{200D}\u{1F4BB}",
    );
    assert_eq!(
        bob.recv_line(),
        "<alice> a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}[2Je\u{FFFD}f\u{FFFD}g\u{FFFD}h\ti \u{1F469}\u{200D}\u{1F4BB}"
    );
    alice.send_line("/me \u{202E}waves");
    assert_eq!(bob.recv_line(), "* alice \u{FFFD}waves");
}

/// A client may send 4 KiB; with `<alice> ` in front that is more than a
/// line may hold. Such a line is refused with an error, never cut short.
#[test]
fn a_line_too_long_to_send_is_refused_and_one_that_fits_is_sent_whole() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    alice.send_line(&"x".repeat(4096));
    assert_eq!(alice.recv_line(), "* error: line too long to send");
    alice.send_line(&format!("/me {}", "x".repeat(4090)));
    assert_eq!(alice.recv_line(), "* error: line too long to send");

    // The longest that fits: 4096 bytes with "<alice> ". Had anything of
    // the refused ones been sent, Bob would read it first.
    let longest = "y".repeat(4096 - "<alice> ".len());
    alice.send_line(&longest);
    assert_eq!(bob.recv_line(), format!("<alice> {longest}"));
    bob.send_line("/who");
    assert_eq!(bob.recv_line(), "* in #general: alice, bob");
}

#[test]
fn a_double_slash_says_a_line_starting_with_a_slash() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    alice.send_line("//shrug");
    assert_eq!(bob.recv_line(), "<alice> /shrug");
    alice.send_line("/shrug");
    assert_eq!(
        alice.recv_line(),
        "* unknown command /shrug; try /join ROOM, /who, /me ACTION, /msg NAME TEXT, /quit"
    );
}

#[test]
fn any_whitespace_separates_a_command_from_its_argument() {
    let server = Chat::start();
    let mut bob = server.named("bob");
    let mut alice = server.connect();
    alice.send_line("/nick\talice");
    assert_eq!(alice.recv_line(), "* hello alice, you are in #general");
    assert_eq!(alice.recv_line(), "* 2 users online");
    assert_eq!(bob.recv_line(), "* alice joined #general");

    alice.send_line("/msg\tbob \t psst");
    assert_eq!(bob.recv_line(), "*alice* psst");
    alice.send_line("/me\t\tnods");
    assert_eq!(bob.recv_line(), "* alice nods");
    alice.send_line("/join\tden");
    assert_eq!(alice.recv_line(), "* you are in #den");
}

/// telnet and `nc -C` end lines with `\r\n`: replies to such a client end
/// with `\r\n` too, lines said by others included, from its first line on;
/// a client switching to `\n` gets `\n` from then on.
#[test]
fn a_client_that_ends_lines_with_crlf_gets_replies_ending_with_crlf() {
    let server = Chat::start();
    let mut alice = server.named("alice");

    let mut carol = Client::connect(server.server.address, Framing::Lines);
    carol.write(b"/nick carol\r\n");
    // The welcome comes before her first line: as any new client's.
    assert!(carol.recv_line().starts_with("* welcome!"));
    assert_eq!(carol.recv_line(), "* hello carol, you are in #general\r");
    assert_eq!(carol.recv_line(), "* 2 users online\r");
    assert_eq!(alice.recv_line(), "* carol joined #general");

    alice.send_line("hi carol");
    assert_eq!(carol.recv_line(), "<alice> hi carol\r");
    carol.write(b"hi alice\r\n/who\r\n");
    assert_eq!(alice.recv_line(), "<carol> hi alice");
    assert_eq!(carol.recv_line(), "* in #general: alice, carol\r");

    carol.write(b"/who\n");
    assert_eq!(carol.recv_line(), "* in #general: alice, carol");
    alice.send_line("bye carol");
    assert_eq!(carol.recv_line(), "<alice> bye carol");
}

// /me, /msg, and how many users a room has.

#[test]
fn me_tells_the_room_what_you_do() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    alice.send_line("/me waves");
    assert_eq!(bob.recv_line(), "* alice waves");
    alice.send_line("/me");
    assert_eq!(alice.recv_line(), "* usage: /me ACTION");
}

#[test]
fn msg_reaches_one_user_only_and_an_unknown_name_gets_an_error() {
    let server = Chat::start();
    let mut alice = server.named("alice");
    let mut bob = server.named("bob");
    let mut carol = server.named("carol");
    assert_eq!(alice.recv_line(), "* bob joined #general");
    assert_eq!(alice.recv_line(), "* carol joined #general");
    assert_eq!(bob.recv_line(), "* carol joined #general");

    // Names are found in any case, and in any room.
    carol.send_line("/join den");
    assert_eq!(carol.recv_line(), "* you are in #den");
    assert_eq!(carol.recv_line(), "* 1 user online");
    assert_eq!(alice.recv_line(), "* carol left #general");
    assert_eq!(bob.recv_line(), "* carol left #general");
    alice.send_line("/msg BOB psst");
    assert_eq!(bob.recv_line(), "*alice* psst");
    alice.send_line("/msg Carol over here");
    assert_eq!(carol.recv_line(), "*alice* over here");

    alice.send_line("/msg nobody hello?");
    assert_eq!(alice.recv_line(), "* no such user: nobody");
    alice.send_line("/msg bob");
    assert_eq!(alice.recv_line(), "* usage: /msg NAME TEXT");

    // Had a private line reached anyone else, they would read it first.
    alice.send_line("hi all");
    assert_eq!(bob.recv_line(), "<alice> hi all");
    carol.send_line("/who");
    assert_eq!(carol.recv_line(), "* in #den: carol");
}

#[test]
fn entering_a_room_tells_how_many_users_are_in_it() {
    let server = Chat::start();
    let mut alice = server.connect();
    alice.send_line("/nick alice");
    assert_eq!(alice.recv_line(), "* hello alice, you are in #general");
    assert_eq!(alice.recv_line(), "* 1 user online");
    let mut bob = server.connect();
    bob.send_line("/nick bob");
    assert_eq!(bob.recv_line(), "* hello bob, you are in #general");
    assert_eq!(bob.recv_line(), "* 2 users online");
    assert_eq!(alice.recv_line(), "* bob joined #general");

    alice.send_line("/join den");
    assert_eq!(alice.recv_line(), "* you are in #den");
    assert_eq!(alice.recv_line(), "* 1 user online");
    assert_eq!(bob.recv_line(), "* alice left #general");
    bob.send_line("/join den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 2 users online");

    // Both have left #general.
    let mut carol = server.connect();
    carol.send_line("/nick carol");
    assert_eq!(carol.recv_line(), "* hello carol, you are in #general");
    assert_eq!(carol.recv_line(), "* 1 user online");
}

/// Twenty users enter `#den` at once: whatever order the server takes
/// them in, each is told the count with itself and those before it, so
/// the counts are 1 to 20, once each, although the multiplexer applies
/// their `Join`s only after the server has sent them.
#[test]
fn users_entering_a_room_at_once_are_each_told_the_count_with_them() {
    const USERS: usize = 20;
    let server = Chat::start();
    let mut users: Vec<Client> = (0..USERS)
        .map(|i| {
            let mut user = Client::connect(server.server.address, Framing::Lines);
            user.write(format!("/nick u{i}\n/join den\n").as_bytes());
            user
        })
        .collect();
    let mut counts: Vec<usize> = users
        .iter_mut()
        .map(|user| {
            let mut line = user.recv_line();
            while line != "* you are in #den" {
                line = user.recv_line();
            }
            let online = user.recv_line();
            online
                .strip_prefix("* ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|count| count.parse().ok())
                .unwrap_or_else(|| panic!("expected a count, got {online:?}"))
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=USERS).collect::<Vec<_>>());
}

// Bad input, floods and half-closes.

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

/// The same, on the way from the lobby to the rooms: a bad line right
/// after `/nick`, in the same write. Whether the lobby read it before the
/// move or the rooms after, the user is refused in both: nothing it sends
/// after the bad line is heard, and its name is free again.
#[test]
fn a_bad_line_on_the_way_to_the_rooms_refuses_the_user_there_too() {
    let server = Chat::start();
    let mut alice = server.named("alice");

    let mut mallory = Client::connect(server.server.address, Framing::Lines);
    mallory.write(b"/nick mallory\n\xff\nsneaky\n");
    assert!(mallory.recv_line().starts_with("* welcome!"));
    let mut line = mallory.recv_line();
    let greeted = line == "* hello mallory, you are in #general";
    if greeted {
        // The rooms read the bad line: she was in the room for a moment.
        assert_eq!(mallory.recv_line(), "* 2 users online");
        line = mallory.recv_line();
    }
    assert_eq!(line, "* error: line is not valid utf-8");
    mallory.expect_closed();
    if greeted {
        // Her departure, which frees her name, is over once Alice reads
        // it; had "sneaky" reached the room, Alice would read it first.
        assert_eq!(alice.recv_line(), "* mallory joined #general");
        assert_eq!(alice.recv_line(), "* mallory left #general");
    }
    // Refused by the lobby, her name was freed before the lobby reads
    // anything from a newcomer (the lobby reads its channel in order).
    let _mallory_again = server.named("mallory");
    assert_eq!(alice.recv_line(), "* mallory joined #general");
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
        assert_eq!(client.recv_line(), "* 1 user online", "try {attempt}");
        client.expect_closed();
    }
}

// Shutting down.

#[test]
fn sigterm_tells_everyone_then_closes_every_connection_and_exits_cleanly() {
    shutting_down_tells_everyone_then_closes_and_exits_cleanly("TERM");
}

/// Ctrl-C in the server's terminal.
#[test]
fn sigint_tells_everyone_then_closes_every_connection_and_exits_cleanly() {
    shutting_down_tells_everyone_then_closes_and_exits_cleanly("INT");
}

/// Users in two rooms, one in the lobby and one speaking `\r\n` each read
/// `* server shutting down`, then the end of the connection, and the
/// server exits with success.
fn shutting_down_tells_everyone_then_closes_and_exits_cleanly(signal: &str) {
    let server = OwnServer::start();
    let chat = Chat::at(server.address);
    let mut alice = chat.named("alice");
    let mut bob = chat.named("bob");
    assert_eq!(alice.recv_line(), "* bob joined #general");
    bob.send_line("/join den");
    assert_eq!(bob.recv_line(), "* you are in #den");
    assert_eq!(bob.recv_line(), "* 1 user online");
    assert_eq!(alice.recv_line(), "* bob left #general");
    let mut carol = chat.connect();
    let mut dave = Client::connect(server.address, Framing::Lines);
    dave.write(b"/nick dave\r\n");
    assert!(dave.recv_line().starts_with("* welcome!"));
    assert_eq!(dave.recv_line(), "* hello dave, you are in #general\r");
    assert_eq!(dave.recv_line(), "* 2 users online\r");
    assert_eq!(alice.recv_line(), "* dave joined #general");

    server.signal(signal);
    for (name, client, notice) in [
        ("alice", &mut alice, "* server shutting down"),
        ("bob", &mut bob, "* server shutting down"),
        ("carol", &mut carol, "* server shutting down"),
        ("dave", &mut dave, "* server shutting down\r"),
    ] {
        assert_eq!(client.recv_line(), notice, "{name}");
        client.expect_closed();
    }
    let status = server.exit_status();
    assert!(status.success(), "the server exited with {status}");
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
        connect(self.server.address)
    }

    /// A new client that has picked `nick` and is in `#general`, past the
    /// line that says how many users are there.
    fn named(&self, nick: &str) -> Client {
        named(self.server.address, nick)
    }

    /// The users of a server started otherwise ([`OwnServer`]).
    fn at(address: SocketAddr) -> Users {
        Users { address }
    }
}

/// How users join a chat server at `address`.
struct Users {
    address: SocketAddr,
}

impl Users {
    fn connect(&self) -> Client {
        connect(self.address)
    }

    fn named(&self, nick: &str) -> Client {
        named(self.address, nick)
    }
}

fn connect(address: SocketAddr) -> Client {
    let mut client = Client::connect(address, Framing::Lines);
    assert!(client.recv_line().starts_with("* welcome!"));
    client
}

fn named(address: SocketAddr, nick: &str) -> Client {
    let mut client = connect(address);
    client.send_line(&format!("/nick {nick}"));
    assert_eq!(
        client.recv_line(),
        format!("* hello {nick}, you are in #general")
    );
    let online = client.recv_line();
    assert!(
        online.starts_with("* ") && online.ends_with(" online"),
        "{online:?}"
    );
    client
}

/// A chat server this file starts itself, to send it a signal and see how
/// it exits: the shared harness's server (`tcp::child`) is killed when
/// dropped, and keeps its process to itself.
struct OwnServer {
    child: Option<Child>,
    address: SocketAddr,
}

impl OwnServer {
    fn start() -> Self {
        // The harness builds the example, once per test binary, into
        // `target/<profile>/examples`, beside this test's `deps`.
        drop(Chat::start());
        let test = std::env::current_exe().expect("the test's own path");
        let binary = test
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps")
            .join("examples")
            .join(format!("chat_server{}", std::env::consts::EXE_SUFFIX));
        let mut child = Command::new(binary)
            .env("CHAT_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the chat server");
        let stdout = child.stdout.take().expect("the server's stdout");
        let mut server = Self {
            child: Some(child),
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        // Read on a thread of its own, to the end, so that a silent server
        // fails the test rather than hanging it.
        let (first_line, received) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = first_line.send(line);
            }
            for _ in lines {}
        });
        let line = received
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("no first line from the chat server");
        server.address = line
            .strip_prefix("listening on ")
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"));
        server
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .expect("the server is running")
            .id()
            .to_string()
    }

    /// Sends it `signal` (`TERM`, `INT`) with `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for it to exit, within the safety timeout.
    fn exit_status(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id();
        let (exited, status) = std_mpsc::channel();
        std::thread::spawn(move || {
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

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
