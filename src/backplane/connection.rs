//! One connection to Redis: commands packed by the `redis` crate, replies
//! parsed by its parser, over any futures-io byte stream.
//!
//! The `redis` crate's own async connections read their socket from a task
//! they spawn, into an unbounded queue of pub/sub messages, and need
//! tokio's I/O traits. Here the socket is read only when the caller asks
//! for a reply, which is how the subscriber stops reading (and lets TCP
//! push back on Redis) while the multiplexer is behind.
//!
//! The parser keeps what it has of a reply between calls: it is fed
//! through a reader that says "would block" when the bytes read so far run
//! out, and goes on where it stopped when fed again.

use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::io::{AsyncRead, AsyncWrite};
use redis::{Cmd, Parser, Value};

use super::events::LinkError;

/// A byte stream to Redis: a TCP connection on the application's runtime,
/// or anything else that reads and writes.
pub(crate) trait RedisIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> RedisIo for T {}

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// A write buffer that grew past this (a large publication) is given back
/// once written, so that one large message does not pin its size for the
/// life of the connection.
const KEPT_WRITE_CAPACITY: usize = 64 * 1024;

/// An open connection and what is under way on it.
pub(crate) struct Connection {
    io: Box<dyn RedisIo>,
    parser: Parser,
    /// Bytes read from the socket and not yet given to the parser:
    /// `read[start..end]`.
    read: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes given to the parser since it last completed a reply: the
    /// parser buffers a reply whole, so this is what bounds its memory.
    fed: usize,
    max_reply: usize,
    /// Commands packed and not yet written: `out[written..]`.
    out: Vec<u8>,
    written: usize,
    /// Replies expected to commands sent.
    awaiting: usize,
    /// The tick at which something was last heard (or, when nothing was
    /// awaited, at which a reply began to be awaited).
    heard_at: u64,
    /// Whether the connection answered its opening `PING`.
    ready: bool,
}

/// What the liveness check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// Silence after which a `PING` is sent.
    pub(crate) ping_ticks: u64,
    /// How long a reply may be awaited.
    pub(crate) reply_ticks: u64,
}

impl Connection {
    /// A connection over `io`, opened at tick `now` with a `PING`: it is
    /// [`ready`](Self::is_ready) once Redis answered.
    pub(crate) fn open(io: Box<dyn RedisIo>, max_reply: usize, now: u64) -> Self {
        let mut connection = Self {
            io,
            parser: Parser::new(),
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            fed: 0,
            max_reply,
            out: Vec::new(),
            written: 0,
            awaiting: 0,
            heard_at: now,
            ready: false,
        };
        connection.send(&redis::cmd("PING"), 1, now);
        connection
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    /// Redis answered the opening `PING`.
    pub(crate) fn set_ready(&mut self) {
        self.ready = true;
    }

    /// Packs `command`, to which `replies` replies are expected, for the
    /// next [`poll_write`](Self::poll_write).
    pub(crate) fn send(&mut self, command: &Cmd, replies: usize, now: u64) {
        if self.awaiting == 0 {
            // The wait for a reply starts now, not at the last one heard.
            self.heard_at = now;
        }
        self.awaiting += replies;
        command.write_packed_command(&mut self.out);
    }

    /// Bytes packed and not yet written.
    pub(crate) fn unwritten(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes what is packed, then flushes.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))
                .map_err(LinkError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(LinkError::Io(io::ErrorKind::WriteZero.into())));
            }
            self.written += n;
        }
        if !self.out.is_empty() {
            ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(LinkError::Io)?;
            self.out.clear();
            self.written = 0;
            if self.out.capacity() > KEPT_WRITE_CAPACITY {
                self.out = Vec::new();
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next value from Redis (a reply, or a pub/sub message), read from
    /// the socket if what was read so far holds no whole one.
    pub(crate) fn poll_value(
        &mut self,
        cx: &mut Context<'_>,
        now: u64,
    ) -> Poll<Result<Value, LinkError>> {
        loop {
            let mut feed = Feed {
                bytes: &self.read[self.start..self.end],
                starved: false,
            };
            let result = self.parser.parse_value(&mut feed);
            let (left, starved) = (feed.bytes.len(), feed.starved);
            self.fed += self.end - self.start - left;
            self.start = self.end - left;
            match result {
                Ok(value) => {
                    self.fed = 0;
                    self.heard_at = now;
                    return Poll::Ready(Ok(value));
                }
                // The parser wants more than was read: read on.
                Err(_) if starved => {}
                Err(error) => return Poll::Ready(Err(LinkError::Protocol(error.to_string()))),
            }
            if self.fed > self.max_reply {
                return Poll::Ready(Err(LinkError::TooLarge));
            }
            let n = ready!(Pin::new(&mut self.io).poll_read(cx, &mut self.read))
                .map_err(LinkError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(LinkError::Closed));
            }
            self.start = 0;
            self.end = n;
        }
    }

    /// A reply to a command sent came.
    pub(crate) fn replied(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    /// This side stopped reading on purpose at tick `now` (there is no room
    /// for what Redis sends): silence from Redis means nothing meanwhile.
    pub(crate) fn hold(&mut self, now: u64) {
        self.heard_at = now;
    }

    /// Sends a `PING` after a silence, and fails a connection whose
    /// awaited reply is overdue: a Redis that hangs, or a peer gone without
    /// a word (no FIN ever comes through a dead network path).
    pub(crate) fn check(&mut self, now: u64, liveness: Liveness) -> Result<(), LinkError> {
        let silence = now.saturating_sub(self.heard_at);
        if self.awaiting > 0 {
            if silence >= liveness.reply_ticks {
                return Err(LinkError::TimedOut);
            }
        } else if silence >= liveness.ping_ticks {
            self.send(&redis::cmd("PING"), 1, now);
        }
        Ok(())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("ready", &self.ready)
            .field("awaiting", &self.awaiting)
            .field("unwritten", &self.unwritten())
            .finish_non_exhaustive()
    }
}

/// Gives the parser the bytes read so far, then "would block", which the
/// parser takes as "wait for more" and keeps its place.
struct Feed<'a> {
    bytes: &'a [u8],
    /// Whether the parser asked for more than there was.
    starved: bool,
}

impl Read for Feed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            self.starved = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.bytes.len());
        let (given, rest) = self.bytes.split_at(n);
        buf[..n].copy_from_slice(given);
        self.bytes = rest;
        Ok(n)
    }
}

/// Whether `value` answers a `PING`: `+PONG` on a plain connection,
/// `["pong", ""]` on one that has subscriptions.
pub(crate) fn is_pong(value: &Value) -> bool {
    match value {
        Value::SimpleString(text) => text.eq_ignore_ascii_case("pong"),
        Value::Array(items) => matches!(
            items.first(),
            Some(Value::BulkString(kind)) if kind.eq_ignore_ascii_case(b"pong")
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::future::poll_fn;

    /// A peer that sends `wire` in chunks of `chunk` bytes, then ends.
    struct Peer {
        wire: Vec<u8>,
        chunk: usize,
        sent: Vec<u8>,
    }

    impl AsyncRead for Peer {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.chunk.min(buf.len()).min(self.wire.len());
            buf[..n].copy_from_slice(&self.wire[..n]);
            self.wire.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Peer {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.sent.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn connection(wire: &[u8], chunk: usize, max_reply: usize) -> Connection {
        let peer = Peer {
            wire: wire.to_vec(),
            chunk,
            sent: Vec::new(),
        };
        Connection::open(Box::new(peer), max_reply, 0)
    }

    fn values(connection: &mut Connection) -> (Vec<Value>, LinkError) {
        let mut values = Vec::new();
        loop {
            match block_on(poll_fn(|cx| connection.poll_value(cx, 0))) {
                Ok(value) => values.push(value),
                Err(error) => return (values, error),
            }
        }
    }

    const WIRE: &[u8] = b"+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nr\r\n:1\r\n\
        *3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$5\r\nhello\r\n:3\r\n-ERR nope\r\n";

    #[test]
    fn replies_split_anywhere_come_out_whole() {
        for chunk in [1, 2, 3, 7, 64, READ_CHUNK] {
            let (values, end) = values(&mut connection(WIRE, chunk, 1024));
            assert!(matches!(end, LinkError::Closed), "{chunk}: {end:?}");
            assert_eq!(values.len(), 5, "chunk {chunk}");
            assert!(is_pong(&values[0]));
            assert_eq!(
                values[2],
                Value::Array(vec![
                    Value::BulkString(b"message".to_vec()),
                    Value::BulkString(b"r".to_vec()),
                    Value::BulkString(b"hello".to_vec()),
                ])
            );
            assert_eq!(values[3], Value::Int(3));
            assert!(matches!(values[4], Value::ServerError(_)));
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let (values, end) = values(&mut connection(b"+PONG\r\n?what\r\n", 3, 1024));
        assert_eq!(values.len(), 1);
        assert!(matches!(end, LinkError::Protocol(_)), "{end:?}");
    }

    #[test]
    fn a_reply_larger_than_the_maximum_is_refused_before_it_is_whole() {
        let mut wire = b"$1000000\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'x', 100_000));
        let (values, end) = values(&mut connection(&wire, 4096, 16 * 1024));
        assert!(values.is_empty());
        assert!(matches!(end, LinkError::TooLarge), "{end:?}");
    }

    #[test]
    fn silence_brings_a_ping_and_an_unanswered_one_times_out() {
        let liveness = Liveness {
            ping_ticks: 10,
            reply_ticks: 5,
        };
        let mut connection = connection(b"", 1, 1024);
        assert!(connection.check(4, liveness).is_ok());
        assert!(
            matches!(connection.check(5, liveness), Err(LinkError::TimedOut)),
            "the opening PING"
        );

        connection.replied();
        assert!(connection.check(9, liveness).is_ok());
        assert_eq!(connection.awaiting, 0);
        assert!(connection.check(10, liveness).is_ok());
        assert_eq!(connection.awaiting, 1, "a PING after 10 ticks of silence");
        assert!(connection.check(14, liveness).is_ok());
        connection.hold(14);
        assert!(
            connection.check(18, liveness).is_ok(),
            "holding is not silence"
        );
        assert!(matches!(
            connection.check(19, liveness),
            Err(LinkError::TimedOut)
        ));
    }
}
