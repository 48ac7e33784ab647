//! A codec for newline-delimited UTF-8 text, bounded by a maximum line
//! length, that fails on a bad line; and the error saying what was bad.

use std::fmt;
use std::io;
use std::marker::PhantomData;

use asynchronous_codec::{Decoder, Encoder};
use bytes::{Buf, BytesMut};

/// Newline-delimited UTF-8 text, with a maximum line length.
///
/// Each line on the wire ends with `\n`; a `\r` just before it (as `nc -C`
/// and telnet send) is stripped too:
///
/// ```text
/// +---------------+----+   +---------------+----+----+
/// | h e l l o     | \n |   | h e l l o     | \r | \n |   both decode to "hello"
/// +---------------+----+   +---------------+----+----+
/// ```
///
/// # Decoding
///
/// [`decode`](Decoder::decode) yields each line as a [`String`] without its
/// line ending. A line longer than the maximum (not counting its line
/// ending) is an error of kind [`io::ErrorKind::InvalidData`], reported as
/// soon as more bytes than that are buffered without a newline, so a client
/// that never sends one cannot make the server buffer more than the maximum.
/// A line that is not valid UTF-8 is an `InvalidData` error too. Either
/// error wraps a [`LineError`] saying which. The error ends the connection:
/// this crate's [`FramedRead`](crate::framed::FramedRead) ends after its
/// first error, so a server using this codec cannot tell the client why.
/// [`RecoveringLinesCodec`] decodes the same lines but yields a bad line
/// as an `Err(LineError)` item and goes on with the next line, so that the
/// application can answer and then close the connection itself.
///
/// At the end of the input, [`decode_eof`](Decoder::decode_eof) yields a
/// last line that has no newline, as a text tool would.
///
/// # Encoding
///
/// [`encode`](Encoder::encode) writes the text followed by `\n`. The item
/// type `T` is anything that is [`AsRef<str>`]: a [`String`] by default, or
/// for example an `Arc<str>`, so that a line broadcast to many connections
/// is shared rather than copied for each (see
/// [`with_max_line_length`](Self::with_max_line_length)). Text that contains
/// a `\n` would arrive as more than one line, and text longer than the
/// maximum would be rejected by a peer using the same limit; both are
/// errors of kind [`io::ErrorKind::InvalidInput`].
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use stream_multiplexer::codec::{Decoder, Encoder, LinesCodec};
///
/// let mut codec = LinesCodec::new(4096);
///
/// let mut wire = BytesMut::from(&b"hello\r\nwor"[..]);
/// assert_eq!(codec.decode(&mut wire)?, Some("hello".to_string()));
/// assert_eq!(codec.decode(&mut wire)?, None); // "wor" waits for its newline
///
/// let mut out = BytesMut::new();
/// codec.encode("hi there".to_string(), &mut out)?;
/// assert_eq!(&out[..], b"hi there\n");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`RecoveringLinesCodec`]: super::RecoveringLinesCodec
pub struct LinesCodec<T = String> {
    /// Longest line accepted, in bytes, not counting `\r\n` or `\n`.
    max_line_length: usize,
    /// How much of the buffer is known to hold no `\n`, so that a line
    /// arriving a byte at a time is scanned once, not once per byte.
    next_index: usize,
    /// The encoder's item type; `fn(T)` keeps the codec `Send`, `Sync` and
    /// `Unpin` whatever `T` is.
    item: PhantomData<fn(T)>,
}

impl LinesCodec {
    /// Creates a codec for lines of at most `max_line_length` bytes (not
    /// counting the line ending) that encodes [`String`]s.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use std::io::ErrorKind;
    /// use stream_multiplexer::codec::{Decoder, LinesCodec};
    ///
    /// let mut codec = LinesCodec::new(4);
    /// let mut wire = BytesMut::from(&b"four\nfive!\n"[..]);
    /// assert_eq!(codec.decode(&mut wire)?, Some("four".to_string()));
    /// let error = codec.decode(&mut wire).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::InvalidData);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn new(max_line_length: usize) -> Self {
        Self::with_max_line_length(max_line_length)
    }
}

impl<T> LinesCodec<T> {
    /// Creates a codec for lines of at most `max_line_length` bytes (not
    /// counting the line ending) that encodes any `T: AsRef<str>`.
    ///
    /// # Examples
    ///
    /// Encoding shared lines, so that a broadcast clones a pointer, not the
    /// text:
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use std::sync::Arc;
    /// use stream_multiplexer::codec::{Encoder, LinesCodec};
    ///
    /// let mut codec = LinesCodec::<Arc<str>>::with_max_line_length(4096);
    /// let line: Arc<str> = Arc::from("welcome");
    /// let mut out = BytesMut::new();
    /// codec.encode(line.clone(), &mut out)?;
    /// assert_eq!(&out[..], b"welcome\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            max_line_length,
            next_index: 0,
            item: PhantomData,
        }
    }

    /// The longest line accepted, in bytes, not counting the line ending.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::LinesCodec;
    ///
    /// assert_eq!(LinesCodec::new(80).max_line_length(), 80);
    /// ```
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// Looks for the next line in `src`. A line whose newline has arrived
    /// is consumed, good or bad; a line found too long before its newline
    /// arrives is left in `src` for the caller to drop or keep.
    pub(super) fn scan(&mut self, src: &mut BytesMut) -> Scan {
        let start = self.next_index.min(src.len());
        match src[start..].iter().position(|&byte| byte == b'\n') {
            Some(offset) => {
                let length = start + offset;
                Scan::Line(self.take_line(src, length, length + 1))
            }
            // One more byte than the maximum may be a `\r` whose `\n` has
            // not arrived yet; anything beyond cannot be a valid line.
            None if src.len() > self.max_line_length.saturating_add(1) => Scan::TooLongSoFar,
            None => {
                self.next_index = src.len();
                Scan::Incomplete
            }
        }
    }

    /// Takes the first `length` bytes of `src` (a line without its `\n`),
    /// strips a trailing `\r`, checks the length and UTF-8, and consumes
    /// `consumed` bytes whether the line is good or not.
    pub(super) fn take_line(
        &mut self,
        src: &mut BytesMut,
        length: usize,
        consumed: usize,
    ) -> Result<String, LineError> {
        self.next_index = 0;
        let line = &src[..length];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let decoded = if line.len() > self.max_line_length {
            Err(self.too_long())
        } else {
            std::str::from_utf8(line)
                .map(str::to_owned)
                .map_err(|_| LineError::NotUtf8)
        };
        src.advance(consumed);
        decoded
    }

    /// Forgets how much of the buffer was scanned, for a caller that
    /// emptied it.
    pub(super) fn rescan(&mut self) {
        self.next_index = 0;
    }

    pub(super) fn too_long(&self) -> LineError {
        LineError::TooLong {
            max_line_length: self.max_line_length,
        }
    }
}

/// What [`LinesCodec::scan`] found.
#[derive(Debug)]
pub(super) enum Scan {
    /// A whole line, consumed with its line ending.
    Line(Result<String, LineError>),
    /// Too long already, and its newline has not arrived: nothing consumed.
    TooLongSoFar,
    /// The start of a line that may still turn out fine.
    Incomplete,
}

impl<T> Clone for LinesCodec<T> {
    fn clone(&self) -> Self {
        Self {
            max_line_length: self.max_line_length,
            next_index: self.next_index,
            item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for LinesCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinesCodec")
            .field("max_line_length", &self.max_line_length)
            .finish_non_exhaustive()
    }
}

impl<T> Decoder for LinesCodec<T> {
    type Item = String;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<String>> {
        match self.scan(src) {
            Scan::Line(line) => Ok(Some(line?)),
            Scan::TooLongSoFar => Err(self.too_long().into()),
            Scan::Incomplete => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<String>> {
        match self.decode(src)? {
            Some(line) => Ok(Some(line)),
            None if src.is_empty() => Ok(None),
            None => {
                let length = src.len();
                Ok(Some(self.take_line(src, length, length)?))
            }
        }
    }
}

impl<T: AsRef<str>> Encoder for LinesCodec<T> {
    type Item<'a> = T;
    type Error = io::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> io::Result<()> {
        let line = item.as_ref().as_bytes();
        if line.len() > self.max_line_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("line longer than {} bytes", self.max_line_length),
            ));
        }
        if line.contains(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "line contains a newline",
            ));
        }
        dst.reserve(line.len() + 1);
        dst.extend_from_slice(line);
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}

/// Why a line could not be decoded: the item [`RecoveringLinesCodec`]
/// yields in its place, and what the [`io::Error`] of [`LinesCodec`] wraps.
///
/// Its `Display` is short and lowercase, fit to be sent back to the client
/// as is. It converts into an [`io::Error`] of kind
/// [`InvalidData`](io::ErrorKind::InvalidData).
///
/// # Examples
///
/// ```
/// use std::io;
/// use stream_multiplexer::codec::LineError;
///
/// let error = LineError::TooLong { max_line_length: 4096 };
/// assert_eq!(error.to_string(), "line longer than 4096 bytes");
/// assert_eq!(LineError::NotUtf8.to_string(), "line is not valid utf-8");
///
/// let error = io::Error::from(LineError::NotUtf8);
/// assert_eq!(error.kind(), io::ErrorKind::InvalidData);
/// assert_eq!(error.to_string(), "line is not valid utf-8");
/// ```
///
/// [`RecoveringLinesCodec`]: super::RecoveringLinesCodec
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LineError {
    /// The line was longer than the codec's maximum, not counting its line
    /// ending.
    #[error("line longer than {max_line_length} bytes")]
    TooLong {
        /// The codec's maximum line length.
        max_line_length: usize,
    },
    /// The line was not valid UTF-8.
    #[error("line is not valid utf-8")]
    NotUtf8,
}

impl From<LineError> for io::Error {
    fn from(error: LineError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}
