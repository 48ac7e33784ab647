//! A chat server on smol: the project's main demo.
//!
//! ```text
//! cargo run --example chat_server --features websocket,metrics
//!                                  # nc on 127.0.0.1:7878, browsers on http://127.0.0.1:7879/
//! cargo run --example chat_server --features websocket,metrics -- --addr 0.0.0.0:7000
//! CHAT_ADDR=127.0.0.1:0 cargo run --example chat_server ...  # any free ports
//! nc 127.0.0.1 7878                                    # or telnet, or socat
//!
//! # one of several servers sharing their rooms through Redis (see `nodes`)
//! cargo run --example chat_server --features redis,websocket,metrics -- --redis redis://127.0.0.1:6379
//! ```
//!
//! Browsers chat on a page served one port up ([`web`]; `--web-addr` or
//! `CHAT_WEB_ADDR` to move it, `/metrics` beside it), in the same lobby
//! and rooms as the `nc` users.
//!
//! The protocol is newline-delimited UTF-8 text, framed by the crate's
//! [`RecoveringLinesCodec`](stream_multiplexer::codec::RecoveringLinesCodec)
//! with a 4 KiB maximum line. A client that ends its lines with `\r\n`
//! (telnet, `nc -C`) gets replies ending with `\r\n` too ([`codec`]).
//!
//! - A new connection lands in the **lobby** (channel 0) and gets a welcome
//!   line. It can only pick a name: `/nick NAME` moves it to the **rooms**
//!   (channel 1), into `#general`, and tells it how many users are there.
//!   Names are compared in any case (`Bob` cannot log in while `bob` is
//!   online) and shown as chosen.
//! - In the rooms, a plain line goes to everyone else in the same room, as
//!   `<NAME> text` (`//text` says `/text`). `/me ACTION` says `* NAME
//!   ACTION`; `/msg NAME TEXT` sends `*NAME* TEXT` to that user only;
//!   `/join ROOM` changes room, `/who` lists the room, and `/quit`
//!   (anywhere) sends a goodbye line and closes the connection. Any
//!   whitespace separates a command from its argument.
//! - Commands sent in one write all take effect, in order, even those the
//!   lobby read before the move to the rooms ([`handover`]): `printf
//!   '/nick a\n/join den\nhello\n' | nc -N 127.0.0.1 7878` says `hello` in
//!   `#den`.
//! - A line that would be longer than 4 KiB once `<NAME> ` is in front is
//!   not sent: its sender gets `* error: line too long to send`. Control
//!   and format characters (such as the bidirectional controls) in what a
//!   user says reach others as U+FFFD ([`text::printable`]).
//!
//! Rooms are the multiplexer's own ([`stream_multiplexer::Rooms`]): the
//! server sends `Join` and `Leave` packets, and a line said in a room is
//! one message to the room, which the multiplexer hands to every member
//! but the sender. The server keeps only each user's name and room, and
//! so how many users each room has ([`chat`]).
//!
//! The server prints `listening on ADDR` on stdout once it is bound (its
//! first line there, so a script can read the port), then `web on ADDR`
//! and `websocket on ADDR` (the page's port, which takes both), and logs
//! through `tracing` on stderr: connections, names and departures at INFO,
//! bad input at WARN. `RUST_LOG` chooses what is logged (`info` by
//! default; `RUST_LOG=debug` with `--features tracing` adds the
//! multiplexer's own events, each connection's arrival and departure).
//!
//! # More than one server
//!
//! With `--redis redis://HOST:PORT` (and the crate's `redis` feature), the
//! server is one of several that share their rooms through Redis: what is
//! said in a room reaches its members on every server. Names, `/who`,
//! `/msg` and the users-online count stay each server's own. See
//! [`nodes`].
//!
//! # Shutting down
//!
//! Ctrl-C (SIGINT) or SIGTERM shuts the server down gracefully: every
//! connection gets `* server shutting down`, then the multiplexer flushes
//! what is queued and closes every connection, and the process exits with
//! success. A second signal stops it at once. See [`then_goodbye`] for
//! how the notice comes last.
//!
//! A client that sends its lines and half-closes (`printf '/nick a\n' | nc
//! -N`, `socat`, most scripts) still gets every reply: the multiplexer
//! announces its end but lets the server answer what it read, and the
//! server then closes the connection (see [`task::Outbox::farewell`]).
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
//! and the tasks are bounded, what a client sends on its way to the rooms
//! is bounded ([`handover::HANDOVER_BYTES`]), and names are short and go
//! away with their users.
//!
//! A line longer than 4 KiB, or one that is not UTF-8, gets its client an
//! error line (`* error: line longer than 4096 bytes`, `* error: line is
//! not valid utf-8`) and a disconnect; the other users do not notice
//! (those in the sender's room see it leave, as for `/quit`). The codec
//! reports such a line as a value rather than failing the connection's
//! reader, so the connection is still open when the server answers: the
//! [`task::Gate`] in front of each task sends the error line and then
//! `OutgoingPacket::Shutdown`, which writes it before closing. The codec
//! buffers at most one line of 4 KiB: once a line is longer, it is
//! reported and the rest of it is dropped as it arrives, so a client
//! sending a gigabyte without a newline costs no more than one sending a
//! 4 KiB line.
//!
//! # Modules
//!
//! - [`codec`]: lines on the wire, and their endings.
//! - [`text`]: commands, names, and text made safe to show.
//! - [`task`]: the loop each channel's task runs, the gate for bad input,
//!   the outbox of replies.
//! - [`lobby`] (channel 0), [`chat`] (channel 1), and [`handover`], how a
//!   stream goes from one to the other with the lines it sent on its way.
//! - [`nicknames`]: the names taken, shared by both tasks.
//! - [`nodes`]: the rooms shared with other servers through Redis.
//! - [`web`]: the page, `/metrics`, and browsers as halves beside the
//!   `nc` users'.

mod chat;
mod codec;
mod handover;
mod lobby;
mod nicknames;
mod nodes;
mod task;
mod text;
mod web;

use std::error::Error;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures::channel::{mpsc, oneshot};
use futures::{Stream, StreamExt, future, stream};
use stream_multiplexer::runtime::smol::{Incoming, bind, clock, incoming};
use stream_multiplexer::{
    ChannelId, ControlMessage, HalvesStream, IncomingPacket, MultiplexerBuilder, OutgoingMessage,
    OutgoingPacket,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::chat::Chat;
use crate::codec::{ChatCodec, Heard, Reply, Text};
use crate::lobby::Lobby;
use crate::nicknames::Nicknames;
use crate::task::{Inputs, serve};
use crate::web::Site;

const USAGE: &str = "\
usage: chat_server [--addr ADDR] [--web-addr ADDR] [--redis redis://HOST:PORT]

  --addr ADDR    where to listen (or CHAT_ADDR; default 127.0.0.1:7878)
  --web-addr ADDR  the web page, its WebSocket and /metrics (or CHAT_WEB_ADDR;
                 default: the same host, one port up)
  --redis URL    share the rooms with the other chat servers on this Redis
                 (needs --features redis): lines, /me and join/leave notices
                 reach every server; names, /who, /msg and the users-online
                 count are each server's own
  RUST_LOG       what is logged on stderr (default info)";

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

/// Unauthenticated connections: they may only pick a name.
const LOBBY: ChannelId = 0;
/// Named users, in rooms.
const ROOMS: ChannelId = 1;
/// The room a user enters with `/nick`.
const FIRST_ROOM: &str = "general";
/// The room every connection is in, for the shutdown notice; no user can
/// name it (see [`text::valid_name`]).
const EVERYONE: &str = "*";

const WELCOME: &str = "* welcome! choose a nickname with /nick NAME (then /join ROOM, /who, /me ACTION, /msg NAME TEXT, /quit)";
const NAME_RULES: &str = "* a name is 1 to 24 letters, digits, '-' or '_'";
const SHUTTING_DOWN: &str = "* server shutting down";

/// What a connection's reader yields: a line (or one it could not take:
/// too long, or not UTF-8), or the I/O error that ended the connection.
type Received = io::Result<Heard>;
/// What the multiplexer hands a channel's task.
type Packet = IncomingPacket<Received>;
type Outgoing = OutgoingPacket<Reply>;

fn main() -> ExitCode {
    log_to_stderr();
    match start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Events go to stderr, as `RUST_LOG` says (`info` by default), in colour
/// on a terminal only.
fn log_to_stderr() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn start() -> Result<(), Box<dyn Error>> {
    let Some(options) = Options::from_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let listener = bind(options.address, LISTEN_BACKLOG)?;
    // Before the multiplexer is built: its metrics go to the recorder
    // installed then.
    let site = Site::open(options.web, LISTEN_BACKLOG)?;
    // Before anyone can connect: from here on, SIGINT and SIGTERM are ours.
    let signals = Signals::new([Signal::Int, Signal::Term])?;
    // The first line on stdout: whoever started the server (with port 0,
    // say) learns the address from it; then the web side's.
    println!("listening on {}", listener.local_addr()?);
    println!("web on {}", site.local_addr()?);
    println!("websocket on {}", site.local_addr()?);
    smol::block_on(serve_chat(incoming(listener), site, signals, options.redis))?;
    tracing::info!("shut down");
    Ok(())
}

/// What the command line and the environment say.
#[derive(Debug)]
struct Options {
    /// Where to listen for `nc` users.
    address: SocketAddr,
    /// Where to listen for browsers: the page, its WebSocket, `/metrics`.
    web: SocketAddr,
    /// Where Redis is (`host:port`), if the rooms are shared through it.
    redis: Option<String>,
}

impl Options {
    /// `--addr ADDR` (or `--addr=ADDR`), else `CHAT_ADDR`, else
    /// 127.0.0.1:7878; `--redis URL` (or `--redis=URL`). `None` for
    /// `--help`.
    fn from_args() -> Result<Option<Self>, Box<dyn Error>> {
        let mut args = std::env::args().skip(1);
        let mut address = std::env::var("CHAT_ADDR").ok();
        let mut web = std::env::var("CHAT_WEB_ADDR").ok();
        let mut redis = None;
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value (see --help)"))
            };
            match name {
                "--addr" => address = Some(value()?),
                "--web-addr" => web = Some(value()?),
                "--redis" => redis = Some(nodes::redis_address(&value()?)?),
                "-h" | "--help" => return Ok(None),
                _ => return Err(format!("unknown argument {arg:?} (see --help)").into()),
            }
        }
        let address = parse_address(address.as_deref().unwrap_or(DEFAULT_ADDR))?;
        // By default the web side is on the same host, one port up (any
        // free port beside port 0).
        let web = match web {
            Some(text) => parse_address(&text)?,
            None => {
                let port = match address.port() {
                    0 => 0,
                    port => port
                        .checked_add(1)
                        .ok_or("no port above 65535 for the web side: say --web-addr")?,
                };
                SocketAddr::new(address.ip(), port)
            }
        };
        Ok(Some(Self {
            address,
            web,
            redis,
        }))
    }
}

fn parse_address(text: &str) -> Result<SocketAddr, Box<dyn Error>> {
    Ok(text
        .parse()
        .map_err(|error| format!("bad address {text:?}: {error}"))?)
}

/// Wires the multiplexer to the lobby and rooms tasks, to the browsers, to
/// the signals and, with `redis`, to the other servers; serves until a
/// signal stops it.
async fn serve_chat(
    connections: Incoming,
    site: Site,
    signals: Signals,
    redis: Option<String>,
) -> Result<(), Box<dyn Error>> {
    let (lobby_in, lobby_packets) = mpsc::channel(QUEUE);
    let (rooms_in, rooms_packets) = mpsc::channel(QUEUE);
    let (lobby_out, lobby_replies) = mpsc::channel(QUEUE);
    let (rooms_out, rooms_replies) = mpsc::channel(QUEUE);
    let (handovers, handovers_in) = mpsc::unbounded();
    let (control, control_in) = mpsc::unbounded();
    let (stop_lobby, lobby_stop) = oneshot::channel();
    let (stop_rooms, rooms_stop) = oneshot::channel();
    // Taking from each task's replies in turn: a busy lobby delays a room's
    // reply by at most one packet.
    let replies = stream::select(rooms_replies, lobby_replies);
    // Through the backplane, with `--redis`: the other servers' room
    // messages join the replies, and ours go to them.
    let (outgoing, peers) = nodes::link(redis.as_deref(), replies);
    let scope = peers.scope();

    let multiplexer = MultiplexerBuilder::new(BACKLOG_PER_CLIENT)
        .default_channel(LOBBY)
        .max_streams(MAX_CLIENTS)
        .clock(clock(CLOCK_PERIOD))
        .idle_timeout(IDLE_TIMEOUT)
        .write_timeout(WRITE_TIMEOUT)
        .build(
            then_goodbye(outgoing, control.clone()),
            vec![lobby_in, rooms_in],
        );

    let nicknames = Nicknames::shared();
    let lobby = Lobby::new(nicknames.clone(), handovers);
    let chat = Chat::new(nicknames, multiplexer.rooms(), scope);
    let lobby_inputs = Inputs {
        packets: lobby_packets,
        handovers: None,
        stop: Some(lobby_stop),
    };
    let rooms_inputs = Inputs {
        packets: rooms_packets,
        handovers: Some(handovers_in),
        stop: Some(rooms_stop),
    };
    smol::spawn(serve(lobby, lobby_inputs, lobby_out)).detach();
    smol::spawn(serve(chat, rooms_inputs, rooms_out)).detach();
    smol::spawn(on_signals(signals, [stop_lobby, stop_rooms], control)).detach();
    let peers = smol::spawn(peers.run(multiplexer.rooms()));

    let nc = HalvesStream::with_codec(connections, ChatCodec::new(MAX_LINE));
    let halves = web::with_browsers(nc, site.serve());
    multiplexer.run(halves, control_in).await?;
    // What was said to rooms last goes out to the other servers before the
    // process ends.
    peers.await;
    Ok(())
}

/// The first signal stops both tasks, which ends the replies and so, after
/// the goodbye, the multiplexer ([`then_goodbye`]); a second one stops the
/// multiplexer at once.
async fn on_signals(
    signals: Signals,
    stops: [oneshot::Sender<()>; 2],
    control: mpsc::UnboundedSender<ControlMessage>,
) {
    // A failed read of the signal pipe is skipped: the next signal comes.
    let mut signals = signals.filter_map(|signal| future::ready(signal.ok()));
    let Some(signal) = signals.next().await else {
        return;
    };
    tracing::info!(?signal, "shutting down (again to stop at once)");
    for stop in stops {
        let _ = stop.send(());
    }
    if let Some(signal) = signals.next().await {
        tracing::info!(?signal, "stopping now");
        let _ = control.unbounded_send(ControlMessage::Abort);
    }
}

/// The multiplexer's outgoing stream: the tasks' replies, then, once both
/// tasks have stopped, `* server shutting down` to everyone, then a
/// graceful `Shutdown` on the control stream.
///
/// The notice is the last packet the multiplexer takes: the replies end
/// only when both tasks have dropped their senders, which they do when
/// told to stop, and after everything they sent before has been taken; a
/// backplane's stream (`--redis`) ends with them, dropping what other
/// servers still send. So nothing reaches a client after the notice. It
/// goes to the room that every connection joins as it arrives (the lobby's
/// `Join`s come before it, on the same stream), so it reaches every open
/// connection, in the lobby or in a room, once. It comes after the
/// backplane, not through it, so that it reaches this server's
/// connections only, not the other servers' (see [`nodes`]). `Shutdown`
/// comes after: the multiplexer
/// stops accepting and reading, writes out what is queued (the notice
/// last) and closes every connection. (A connection accepted after the
/// lobby stopped, in the moment before that, is closed without a word.)
fn then_goodbye(
    replies: impl Stream<Item = Outgoing> + Unpin,
    control: mpsc::UnboundedSender<ControlMessage>,
) -> impl Stream<Item = Outgoing> + Unpin {
    let notice = OutgoingMessage::to_room(EVERYONE, [Reply::Line(Text::from(SHUTTING_DOWN))]);
    let shut_down = stream::poll_fn(move |_| {
        let _ = control.unbounded_send(ControlMessage::Shutdown);
        Poll::Ready(None)
    });
    replies
        .chain(stream::once(future::ready(OutgoingPacket::Message(notice))))
        .chain(shut_down)
}
