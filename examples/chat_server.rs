//! A chat server on smol: the project's main demo.
//!
//! ```text
//! cargo run --example chat_server                      # listens on 127.0.0.1:7878
//! cargo run --example chat_server -- --addr 0.0.0.0:7000
//! CHAT_ADDR=127.0.0.1:0 cargo run --example chat_server  # any free port
//! nc 127.0.0.1 7878                                    # or telnet, or socat
//! ```
//!
//! The protocol is newline-delimited UTF-8 text (a `\r\n` ending is fine
//! too), framed by the crate's [`RecoveringLinesCodec`] with a 4 KiB
//! maximum line:
//!
//! - A new connection lands in the **lobby** (channel 0) and gets a welcome
//!   line. It can only pick a name: `/nick NAME` moves it to the **rooms**
//!   (channel 1), into `#general`.
//! - In the rooms, a plain line goes to everyone else in the same room, as
//!   `<NAME> text`. `/join ROOM` changes room, `/who` lists the room, and
//!   `/quit` (anywhere) sends a goodbye line and closes the connection.
//!
//! The server prints `listening on ADDR` on stdout once it is bound (the
//! only line it prints there, so a script can read the port), and logs
//! connections and bad input on stderr. Ctrl-C stops it; the system then
//! closes every connection.
//!
//! A client that sends its lines and half-closes (`printf '/nick a\n' | nc
//! -N`, `socat`, most scripts) still gets every reply: the multiplexer
//! announces its end but lets the server answer what it read, and the
//! server then closes the connection (see [`Outbox::farewell`]).
//!
//! # Time limits
//!
//! The multiplexer runs with a clock (one timer for every connection): a
//! client that completes no line for [`IDLE_TIMEOUT`] is told `* idle, bye`
//! and closed, and one whose socket takes no bytes for [`WRITE_TIMEOUT`]
//! while lines wait for it is dropped. The system's TCP keepalive, which
//! the smol adapter turns on, finds peers that vanished without a word.
//!
//! # Why two channels
//!
//! The lobby and the rooms are different channels of one
//! [`Multiplexer`](stream_multiplexer::Multiplexer), each consumed by its own
//! task through its own bounded queue. When anonymous connections flood the
//! lobby, only the lobby's queue fills: the multiplexer stops reading lobby
//! connections (TCP flow control pushes back on exactly those clients) and
//! goes on reading the rooms at full speed. The two tasks' replies are
//! merged fairly, so the lobby's replies cannot crowd out the rooms' either.
//!
//! # Bad input and memory
//!
//! The server's memory stays bounded whatever clients send. A connection
//! buffers at most one 4 KiB line (plus one read) and queues at most
//! [`BACKLOG_PER_CLIENT`] lines for its client: a client that stops reading
//! is disconnected when that overflows, and nobody waits for it. There are
//! at most [`MAX_CLIENTS`] connections, the queues between the multiplexer
//! and the tasks are bounded, and names and rooms are short and go away
//! with their users. Lines sent are cut to 4 KiB too (see [`fit`]).
//!
//! A line longer than 4 KiB, or one that is not UTF-8, gets its client an
//! error line (`* error: line longer than 4096 bytes`, `* error: line is
//! not valid utf-8`) and a disconnect; the other users do not notice
//! (those in the sender's room see it leave, as for `/quit`). The codec
//! reports such a line as a value rather than failing the connection's
//! reader, so the connection is still open when the server answers: the
//! [`Gate`] in front of each task sends the error line and then
//! `OutgoingPacket::Shutdown`, which writes it before closing. The codec
//! buffers at most one line of 4 KiB: once a line is longer, it is
//! reported and the rest of it is dropped as it arrives, so a client
//! sending a gigabyte without a newline costs no more than one sending a
//! 4 KiB line.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use stream_multiplexer::codec::{LineError, RecoveringLinesCodec};
use stream_multiplexer::runtime::smol::{Incoming, bind, clock, incoming};
use stream_multiplexer::{
    ChannelId, DisconnectReason, HalvesStream, IncomingMessage, IncomingPacket, MultiplexerBuilder,
    OutgoingMessage, OutgoingPacket, StreamId,
};

/// Where to listen when neither `--addr` nor `CHAT_ADDR` says.
const DEFAULT_ADDR: &str = "127.0.0.1:7878";
/// Longest line, in bytes, either way: what one connection can make the
/// server buffer.
const MAX_LINE: usize = 4 * 1024;
/// Lines queued for one client while its socket takes no more. A burst (a
/// paste of a thousand lines into a room) is written out as fast as each
/// reader's socket takes it; only a client whose socket is full *and* that
/// has this many lines waiting has stopped reading, and is disconnected. It
/// caps what such a client costs at 128 lines of at most 4 KiB (less when
/// they are broadcasts, which are shared).
const BACKLOG_PER_CLIENT: usize = 128;
/// A client that completes no line for this long is told so and closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// A client whose socket takes no bytes for this long while lines wait for
/// it is dropped: it stopped reading, or its network did.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the multiplexer's clock ticks: the resolution of the limits.
const CLOCK_PERIOD: Duration = Duration::from_secs(1);
/// Connections served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 10_000;
/// The kernel's queue of connections not yet accepted (capped by
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;
/// Packets waiting in each queue between the multiplexer and a task.
const QUEUE: usize = 1024;
/// Longest nickname or room name, in bytes.
const MAX_NAME: usize = 24;
/// Names per `/who` line: 100 names of at most 24 bytes and their
/// separators fit well within one 4 KiB line.
const WHO_PER_LINE: usize = 100;
/// Packets a task handles before it lets the executor run other tasks.
/// futures' mpsc receiver never returns `Pending` while it holds packets,
/// so without this a flooded lobby would keep an executor thread to itself.
const PACKETS_PER_TURN: usize = 64;

/// Unauthenticated connections: they may only pick a name.
const LOBBY: ChannelId = 0;
/// Named users, in rooms.
const ROOMS: ChannelId = 1;
/// The room a user enters with `/nick`.
const FIRST_ROOM: &str = "general";

const WELCOME: &str = "* welcome! choose a nickname with /nick NAME (then /join ROOM, /who, /quit)";
const NAME_RULES: &str = "* a name is 1 to 24 letters, digits, '-' or '_'";

/// A line to send. Shared, so that a line said in a room of a thousand
/// users is queued a thousand times but stored once.
type Line = Arc<str>;
/// What a connection's reader yields: a line, a line it could not take (too
/// long, or not UTF-8), or the I/O error that ended the connection.
type Received = io::Result<Result<String, LineError>>;
/// What the multiplexer hands a channel's task.
type Packet = IncomingPacket<Received>;
/// What a task's consumer sees: good lines only (see [`Gate`]).
type Event = IncomingPacket<String>;
type Outgoing = OutgoingPacket<Line>;

fn main() -> ExitCode {
    match start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat_server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn start() -> Result<(), Box<dyn Error>> {
    let address = address()?;
    let listener = bind(address, LISTEN_BACKLOG)?;
    // The first and only line on stdout: whoever started the server (with
    // port 0, say) learns the address from it.
    println!("listening on {}", listener.local_addr()?);
    smol::block_on(serve(incoming(listener)))
}

/// `--addr ADDR` (or `--addr=ADDR`), else `CHAT_ADDR`, else 127.0.0.1:7878.
fn address() -> Result<SocketAddr, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut chosen = std::env::var("CHAT_ADDR").ok();
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--addr") {
            Some("") => chosen = Some(args.next().ok_or("--addr needs an address")?),
            Some(value) if value.starts_with('=') => chosen = Some(value[1..].to_owned()),
            _ => {
                return Err(
                    format!("unknown argument {arg:?}; usage: chat_server [--addr ADDR]").into(),
                );
            }
        }
    }
    let text = chosen.as_deref().unwrap_or(DEFAULT_ADDR);
    Ok(text
        .parse()
        .map_err(|error| format!("bad address {text:?}: {error}"))?)
}

/// Wires the multiplexer to the lobby and rooms tasks and serves forever.
async fn serve(connections: Incoming) -> Result<(), Box<dyn Error>> {
    let (lobby_in, lobby_packets) = mpsc::channel(QUEUE);
    let (rooms_in, rooms_packets) = mpsc::channel(QUEUE);
    let (lobby_out, lobby_replies) = mpsc::channel(QUEUE);
    let (rooms_out, rooms_replies) = mpsc::channel(QUEUE);
    // Taking from each task's replies in turn: a busy lobby delays a room's
    // reply by at most one packet.
    let outgoing = stream::select(rooms_replies, lobby_replies);

    let multiplexer = MultiplexerBuilder::new(BACKLOG_PER_CLIENT)
        .default_channel(LOBBY)
        .max_streams(MAX_CLIENTS)
        .clock(clock(CLOCK_PERIOD))
        .idle_timeout(IDLE_TIMEOUT)
        .write_timeout(WRITE_TIMEOUT)
        .build(outgoing, vec![lobby_in, rooms_in]);

    let nicknames = Nicknames::shared();
    let lobby = Lobby {
        nicknames: Arc::clone(&nicknames),
    };
    let rooms = Rooms::new(nicknames);
    smol::spawn(consume(lobby_packets, lobby_out, lobby)).detach();
    smol::spawn(consume(rooms_packets, rooms_out, rooms)).detach();

    let codec = RecoveringLinesCodec::<Line>::with_max_line_length(MAX_LINE);
    let halves = HalvesStream::with_codec(connections, codec);
    // The control stream never ends: the server runs until it is killed.
    multiplexer.run(halves, stream::pending()).await?;
    Ok(())
}

/// One channel's consumer: it turns each event into replies.
trait Consumer {
    fn handle(&mut self, event: Event, outbox: &mut Outbox);
}

/// Feeds a channel's packets, through a [`Gate`], to `consumer` and sends
/// the replies, until the multiplexer goes away.
async fn consume(
    mut packets: mpsc::Receiver<Packet>,
    mut replies: mpsc::Sender<Outgoing>,
    mut consumer: impl Consumer,
) {
    let mut outbox = Outbox::default();
    let mut gate = Gate::default();
    let mut handled = 0;
    while let Some(packet) = packets.next().await {
        if let Some(event) = gate.admit(packet, &mut outbox) {
            consumer.handle(event, &mut outbox);
        }
        for reply in outbox.0.drain(..) {
            if replies.send(reply).await.is_err() {
                return;
            }
        }
        handled += 1;
        if handled % PACKETS_PER_TURN == 0 {
            smol::future::yield_now().await;
        }
    }
}

/// The packets a consumer sends in answer to one incoming packet, in order.
#[derive(Debug, Default)]
struct Outbox(Vec<Outgoing>);

impl Outbox {
    /// Sends one line to each of `ids`.
    fn tell(&mut self, ids: impl IntoIterator<Item = StreamId>, text: String) {
        let ids: Vec<StreamId> = ids.into_iter().collect();
        if !ids.is_empty() {
            let message = OutgoingMessage::new(ids, [fit(text)]);
            self.0.push(OutgoingPacket::Message(message));
        }
    }

    /// Sends a last line, then closes the connection once it is written.
    fn goodbye(&mut self, id: StreamId, text: String) {
        self.tell([id], text);
        self.0.push(OutgoingPacket::Shutdown(vec![id]));
    }

    /// A client left its channel: what it is owed now. A client whose
    /// reading side ended (a half-close) or that was idle too long can
    /// still be written to: it has had its replies (they were sent before
    /// this, in answer to the lines read before its end), so it is closed;
    /// an idle one is told why first. Other departures have closed the
    /// connection already, or moved it.
    fn farewell(&mut self, id: StreamId, reason: DisconnectReason) {
        match reason {
            DisconnectReason::IdleTimeout => self.goodbye(id, "* idle, bye".to_owned()),
            DisconnectReason::Linkdead => self.0.push(OutgoingPacket::Shutdown(vec![id])),
            _ => {}
        }
    }

    /// A client sent a line over 4 KiB or one that is not UTF-8: it is
    /// told why, then disconnected.
    fn reject(&mut self, id: StreamId, error: LineError) {
        eprintln!("client {id}: {error}; disconnecting");
        self.goodbye(id, format!("* error: {error}"));
    }
}

/// Stands between the multiplexer and a channel's consumer and deals with
/// bad input, so that consumers see only good lines.
///
/// A bad line gets its client an error line and a disconnect: `Shutdown`,
/// which writes the error line before closing. The connection stays open
/// until the multiplexer takes that `Shutdown`, and lines read from it
/// meanwhile are dropped here: a client told to go is not heard any more.
///
/// Each task has a gate of its own. A stream rejected by the lobby just as
/// it moves to the rooms (a bad line read right after `/nick`) could, in
/// the moment between the move and the `Shutdown`, have one more line read
/// into the rooms, which this gate did not reject; it is said in the room
/// as the user arrives and leaves. Sharing the gates would cost a lock per
/// line for that.
#[derive(Debug, Default)]
struct Gate {
    /// Streams told to go, until their departure is announced: at most one
    /// entry per open connection.
    rejected: HashSet<StreamId>,
}

impl Gate {
    /// The event to hand the consumer, if any, answering bad input itself.
    fn admit(&mut self, packet: Packet, outbox: &mut Outbox) -> Option<Event> {
        match packet {
            IncomingPacket::StreamConnected(id) => Some(IncomingPacket::StreamConnected(id)),
            IncomingPacket::StreamDisconnected(id, reason) => {
                self.rejected.remove(&id);
                Some(IncomingPacket::StreamDisconnected(id, reason))
            }
            IncomingPacket::Message(IncomingMessage { stream_id, .. })
                if self.rejected.contains(&stream_id) =>
            {
                None
            }
            IncomingPacket::Message(IncomingMessage { stream_id, value }) => match value {
                Ok(Ok(line)) => Some(IncomingPacket::Message(IncomingMessage::new(
                    stream_id, line,
                ))),
                Ok(Err(bad_line)) => {
                    self.rejected.insert(stream_id);
                    outbox.reject(stream_id, bad_line);
                    None
                }
                // The connection failed and its reader ended: the
                // multiplexer closes it and announces it next, and there is
                // nobody left to answer.
                Err(error) => {
                    eprintln!("client {stream_id}: {error}");
                    None
                }
            },
        }
    }
}

/// Whether a stream announced as gone for `reason` may still be open for
/// writing: its client half-closed (or its connection failed: then what is
/// sent is dropped and counted), or it was idle too long.
fn can_still_be_written_to(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::Linkdead | DisconnectReason::IdleTimeout
    )
}

/// Cuts a line to the codec's maximum (at a character boundary). The codec
/// refuses to encode a longer line, and a failed write disconnects the
/// client it was meant for.
fn fit(mut text: String) -> Line {
    if text.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Arc::from(text)
}

/// Replaces control characters (other than tab): what a user types ends up
/// on other users' terminals, where an escape sequence could rewrite their
/// screen.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Whether `name` can be a nickname or a room name: short, and made of
/// characters that cannot be confused with the protocol's own.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One line from a user, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    /// A plain line, to say in the room.
    Say(&'a str),
    Nick(&'a str),
    Join(&'a str),
    Who,
    Quit,
    Unknown(&'a str),
}

impl<'a> Command<'a> {
    fn parse(line: &'a str) -> Self {
        let Some(command) = line.strip_prefix('/') else {
            return Command::Say(line);
        };
        let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
        let argument = argument.trim();
        match verb {
            "nick" => Command::Nick(argument),
            "join" => Command::Join(argument.strip_prefix('#').unwrap_or(argument)),
            "who" => Command::Who,
            "quit" => Command::Quit,
            _ => Command::Unknown(verb),
        }
    }
}

/// Nicknames in use, shared by the lobby (which hands them out) and the
/// rooms (which give them back). Locked once per `/nick` and once per user
/// leaving the rooms, never per chat line.
#[derive(Debug, Default)]
struct Nicknames {
    taken: HashSet<String>,
    /// Names handed out to streams that are on their way to the rooms: the
    /// rooms task collects them when the stream arrives.
    arriving: HashMap<StreamId, String>,
}

type SharedNicknames = Arc<Mutex<Nicknames>>;

impl Nicknames {
    fn shared() -> SharedNicknames {
        Arc::default()
    }

    /// Locks the names. A task that panicked holding the lock left the sets
    /// consistent (each method changes them in one step), so a poisoned lock
    /// is still usable.
    fn lock(shared: &SharedNicknames) -> std::sync::MutexGuard<'_, Self> {
        shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `name` to stream `id`, unless someone has it already.
    fn claim(&mut self, id: StreamId, name: &str) -> bool {
        if !self.taken.insert(name.to_owned()) {
            return false;
        }
        self.arriving.insert(id, name.to_owned());
        true
    }

    /// Whether `id` has a name and is on its way to the rooms.
    fn is_arriving(&self, id: StreamId) -> bool {
        self.arriving.contains_key(&id)
    }

    /// The name of a stream that just arrived in the rooms.
    fn arrive(&mut self, id: StreamId) -> Option<String> {
        self.arriving.remove(&id)
    }

    /// A stream that had claimed a name left before it reached the rooms.
    fn cancel(&mut self, id: StreamId) {
        if let Some(name) = self.arriving.remove(&id) {
            self.taken.remove(&name);
        }
    }

    fn release(&mut self, name: &str) {
        self.taken.remove(name);
    }
}

/// Channel 0: new connections, until they pick a free name.
#[derive(Debug)]
struct Lobby {
    nicknames: SharedNicknames,
}

impl Consumer for Lobby {
    fn handle(&mut self, event: Event, outbox: &mut Outbox) {
        match event {
            IncomingPacket::StreamConnected(id) => {
                eprintln!("client {id} connected");
                outbox.tell([id], WELCOME.to_owned());
            }
            // Moved on with a name: the rooms look after it now.
            IncomingPacket::StreamDisconnected(_, DisconnectReason::ChannelChange(_)) => {}
            IncomingPacket::StreamDisconnected(id, reason) => {
                eprintln!("client {id} left from the lobby ({reason:?})");
                let mut nicknames = Nicknames::lock(&self.nicknames);
                if can_still_be_written_to(reason) && nicknames.is_arriving(id) {
                    // `/nick` then a half-close: the move goes ahead, and
                    // the rooms greet it, collect its name and close it.
                    // (Had its connection failed instead, the move finds
                    // it gone and its name stays taken: that takes a write
                    // error in the moment between `/nick` and the move.)
                    return;
                }
                // It may have claimed a name and left before the move.
                nicknames.cancel(id);
                outbox.farewell(id, reason);
            }
            IncomingPacket::Message(IncomingMessage {
                stream_id,
                value: line,
            }) => self.command(stream_id, &line, outbox),
        }
    }
}

impl Lobby {
    fn command(&mut self, id: StreamId, line: &str, outbox: &mut Outbox) {
        let mut nicknames = Nicknames::lock(&self.nicknames);
        if nicknames.is_arriving(id) {
            // Read before the move took effect: it belongs to no room yet.
            outbox.tell([id], "* not sent: you were still on your way in".to_owned());
            return;
        }
        match Command::parse(line) {
            Command::Nick(name) if !valid_name(name) => outbox.tell([id], NAME_RULES.to_owned()),
            Command::Nick(name) if !nicknames.claim(id, name) => {
                outbox.tell([id], format!("* {name} is taken, try another"));
            }
            Command::Nick(_) => outbox
                .0
                .push(OutgoingPacket::ChangeChannel(vec![id], ROOMS)),
            Command::Quit => outbox.goodbye(id, "* bye!".to_owned()),
            _ => outbox.tell([id], "* choose a nickname first: /nick NAME".to_owned()),
        }
    }
}

/// Channel 1: named users and the rooms they are in.
#[derive(Debug)]
struct Rooms {
    nicknames: SharedNicknames,
    users: HashMap<StreamId, User>,
    rooms: HashMap<String, Room>,
}

#[derive(Debug)]
struct User {
    nick: String,
    room: String,
}

/// The users in one room. It exists while someone is in it.
#[derive(Debug, Default)]
struct Room {
    /// Stream ids, which grow with time: in order of connection.
    members: BTreeSet<StreamId>,
}

impl Room {
    /// Everyone in the room but `id`.
    fn others(&self, id: StreamId) -> impl Iterator<Item = StreamId> + '_ {
        self.members
            .iter()
            .copied()
            .filter(move |&member| member != id)
    }
}

impl Consumer for Rooms {
    fn handle(&mut self, event: Event, outbox: &mut Outbox) {
        match event {
            IncomingPacket::StreamConnected(id) => self.arrive(id, outbox),
            IncomingPacket::StreamDisconnected(id, reason) => self.depart(id, reason, outbox),
            IncomingPacket::Message(IncomingMessage {
                stream_id,
                value: line,
            }) => self.command(stream_id, &line, outbox),
        }
    }
}

impl Rooms {
    fn new(nicknames: SharedNicknames) -> Self {
        Self {
            nicknames,
            users: HashMap::new(),
            rooms: HashMap::new(),
        }
    }

    /// A stream moved here by the lobby, with the name it claimed there.
    fn arrive(&mut self, id: StreamId, outbox: &mut Outbox) {
        // The lobby claims a name before it moves a stream, so the name is
        // always there; a guest name keeps a bug from costing a user.
        let nick = Nicknames::lock(&self.nicknames)
            .arrive(id)
            .unwrap_or_else(|| format!("guest{id}"));
        eprintln!("client {id} is {nick}");
        outbox.tell([id], format!("* hello {nick}, you are in #{FIRST_ROOM}"));
        self.enter(id, nick, FIRST_ROOM.to_owned(), outbox);
    }

    fn depart(&mut self, id: StreamId, reason: DisconnectReason, outbox: &mut Outbox) {
        outbox.farewell(id, reason);
        let Some(user) = self.users.remove(&id) else {
            return;
        };
        eprintln!("client {id} ({}) left ({reason:?})", user.nick);
        self.leave(id, &user, outbox);
        Nicknames::lock(&self.nicknames).release(&user.nick);
    }

    fn command(&mut self, id: StreamId, line: &str, outbox: &mut Outbox) {
        let Some(user) = self.users.get(&id) else {
            return;
        };
        match Command::parse(line) {
            Command::Say("") => {}
            Command::Say(text) => {
                let line = format!("<{}> {}", user.nick, printable(text));
                outbox.tell(self.rooms[&user.room].others(id), line);
            }
            Command::Join(room) => self.join(id, room, outbox),
            Command::Who => self.who(id, outbox),
            Command::Quit => outbox.goodbye(id, format!("* bye, {}!", user.nick)),
            Command::Nick(_) => outbox.tell([id], format!("* you are {} already", user.nick)),
            Command::Unknown(verb) => outbox.tell(
                [id],
                format!(
                    "* unknown command /{}; try /join ROOM, /who, /quit",
                    printable(verb)
                ),
            ),
        }
    }

    /// `/join ROOM`: leave this room, enter that one.
    fn join(&mut self, id: StreamId, room: &str, outbox: &mut Outbox) {
        if !valid_name(room) {
            outbox.tell([id], NAME_RULES.to_owned());
            return;
        }
        if self.users.get(&id).is_some_and(|user| user.room == room) {
            outbox.tell([id], format!("* you are in #{room} already"));
            return;
        }
        let Some(user) = self.users.remove(&id) else {
            return;
        };
        self.leave(id, &user, outbox);
        outbox.tell([id], format!("* you are in #{room}"));
        self.enter(id, user.nick, room.to_owned(), outbox);
    }

    /// `/who`: the names in the user's room, a hundred per line.
    fn who(&self, id: StreamId, outbox: &mut Outbox) {
        let room = &self.users[&id].room;
        let names: Vec<&str> = self.rooms[room]
            .members
            .iter()
            .map(|member| self.users[member].nick.as_str())
            .collect();
        for chunk in names.chunks(WHO_PER_LINE) {
            outbox.tell([id], format!("* in #{room}: {}", chunk.join(", ")));
        }
    }

    /// Puts a user in a room and tells the room.
    fn enter(&mut self, id: StreamId, nick: String, room: String, outbox: &mut Outbox) {
        let members = &mut self.rooms.entry(room.clone()).or_default().members;
        outbox.tell(members.iter().copied(), format!("* {nick} joined #{room}"));
        members.insert(id);
        self.users.insert(id, User { nick, room });
    }

    /// Takes a user out of its room, tells the room, and forgets the room
    /// if it is empty now.
    fn leave(&mut self, id: StreamId, user: &User, outbox: &mut Outbox) {
        let Some(room) = self.rooms.get_mut(&user.room) else {
            return;
        };
        room.members.remove(&id);
        if room.members.is_empty() {
            self.rooms.remove(&user.room);
        } else {
            let line = format!("* {} left #{}", user.nick, user.room);
            outbox.tell(room.members.iter().copied(), line);
        }
    }
}
