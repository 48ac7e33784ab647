//! The chat's wire format: the crate's [`RecoveringLinesCodec`], plus the
//! line ending each client uses, so that replies end as its lines do.
//!
//! The crate's codec reads `\n` and `\r\n` alike and strips the `\r`
//! without saying whether there was one; it ends every line it writes with
//! `\n`. [`ChatCodec`] wraps it and changes neither its limits nor its
//! handling of bad lines: when decoding, it looks at the end of the line
//! the crate's codec is about to take, and reports the ending with the
//! line; when encoding, it puts a `\r` before the `\n` for a client that
//! speaks `\r\n`.
//!
//! ```text
//! wire:    / n i c k   a \r \n  h i \n
//! decoded: Heard { "/nick a", CrLf }  Heard { "hi", Lf }
//!
//! sent:    EndLinesWith(CrLf)  Line("* hello a")  Line("<b> hi")
//! wire:    (nothing)           * hello a \r \n    < b >   h i \r \n
//! ```
//!
//! Each connection has its own encoder (the multiplexer clones the codec
//! for every connection's write half), so the ending is a setting of that
//! connection's encoder, changed by a [`Reply::EndLinesWith`] sent to it in
//! order with its lines. A line said in a room is one value shared by every
//! member, and still reaches each in its own ending.

use std::io;

use bytes::BytesMut;
use stream_multiplexer::codec::{Decoder, Encoder, LineError, RecoveringLinesCodec};
use stream_multiplexer::websocket::Utf8Bytes;

/// A line to send, shared: a line said in a room of a thousand users is
/// queued a thousand times but stored once. UTF-8 bytes, so that a
/// browser's connection sends the same value as a text message, without a
/// copy ([`crate::web`]).
pub(crate) type Text = Utf8Bytes;

/// How a client ends its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `\n`, as `nc` and most scripts send.
    #[default]
    Lf,
    /// `\r\n`, as telnet and `nc -C` send.
    CrLf,
}

/// A line read from a client: its text, or why it could not be taken, and
/// how it ended (`None` for a last line that the end of the input cut off
/// before its newline).
#[derive(Debug)]
pub(crate) struct Heard {
    pub(crate) line: Result<String, LineError>,
    pub(crate) ending: Option<Ending>,
}

/// What the server writes to a client.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A line, ended as the connection's encoder is set to.
    Line(Text),
    /// Sets how the lines after it end; writes nothing.
    EndLinesWith(Ending),
}

/// The crate's [`RecoveringLinesCodec`] with line endings: see the module
/// docs.
#[derive(Debug, Clone)]
pub(crate) struct ChatCodec {
    lines: RecoveringLinesCodec<Text>,
    /// Decoding: inside a line that was reported too long, which the
    /// crate's codec drops up to and including its `\n` (its own state,
    /// mirrored here, to know which `\n` ends the next line it yields).
    dropping: bool,
    /// Decoding: how many bytes at the start of the buffer are known to
    /// hold no `\n`, so that a line arriving a byte at a time is scanned
    /// once, as the crate's codec does.
    scanned: usize,
    /// Encoding: how lines end.
    ending: Ending,
}

impl ChatCodec {
    /// Lines of at most `max_line_length` bytes either way, not counting
    /// the line ending.
    pub(crate) fn new(max_line_length: usize) -> Self {
        Self {
            lines: RecoveringLinesCodec::with_max_line_length(max_line_length),
            dropping: false,
            scanned: 0,
            ending: Ending::Lf,
        }
    }
}

impl Decoder for ChatCodec {
    type Item = Heard;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Heard>> {
        // Where the next line starts: past the rest of a line being
        // dropped, once its newline has come.
        let start = if self.dropping {
            match newline(src, 0) {
                Some(end) => end + 1,
                None => {
                    // The crate's codec drops all of it and waits for more.
                    let item = self.lines.decode(src)?;
                    debug_assert!(item.is_none() && src.is_empty());
                    return Ok(None);
                }
            }
        } else {
            0
        };
        let end = newline(src, start.max(self.scanned));
        let ending = end.map(|end| {
            if end > start && src[end - 1] == b'\r' {
                Ending::CrLf
            } else {
                Ending::Lf
            }
        });
        let buffered = src.len();
        let item = self.lines.decode(src)?;
        // What the crate's codec did, mirrored: a line that is too long
        // before its newline came is reported now and dropped from here on;
        // any other line it yields is the one that ends at `end`.
        self.dropping = false;
        match &item {
            Some(Err(LineError::TooLong { .. })) if end.is_none() => {
                self.dropping = true;
                self.scanned = 0;
            }
            Some(_) => {
                debug_assert_eq!(Some(buffered - src.len()), end.map(|end| end + 1));
                self.scanned = 0;
            }
            None => {
                debug_assert!(end.is_none());
                self.scanned = src.len();
            }
        }
        Ok(item.map(|line| Heard { line, ending }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Heard>> {
        if let Some(heard) = self.decode(src)? {
            return Ok(Some(heard));
        }
        // No newline is coming: what is left is a last line (or the end of
        // one being dropped), which the crate's codec takes as it is.
        self.dropping = false;
        self.scanned = 0;
        let line = self.lines.decode_eof(src)?;
        Ok(line.map(|line| Heard { line, ending: None }))
    }
}

impl Encoder for ChatCodec {
    type Item<'a> = Reply;
    type Error = io::Error;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> io::Result<()> {
        match reply {
            Reply::EndLinesWith(ending) => self.ending = ending,
            Reply::Line(text) => {
                // Checks the length (the `\r` is not counted, as a reader
                // with the same limit does not count it either) and that
                // there is no newline inside, then ends it with `\n`.
                self.lines.encode(text, dst)?;
                if self.ending == Ending::CrLf {
                    let newline = dst.len() - 1;
                    dst[newline] = b'\r';
                    dst.extend_from_slice(b"\n");
                }
            }
        }
        Ok(())
    }
}

/// Where the first `\n` at or after `from` is.
fn newline(src: &[u8], from: usize) -> Option<usize> {
    let from = from.min(src.len());
    src[from..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map(|offset| from + offset)
}
