//! A codec for newline-delimited UTF-8 text, bounded by a maximum line
//! length, that reports a bad line as an item and goes on with the next.

use std::fmt;
use std::io;

use asynchronous_codec::{Decoder, Encoder};
use bytes::{Buf, BytesMut};

use super::lines::{LineError, LinesCodec, Scan};

/// Newline-delimited UTF-8 text, with a maximum line length, that reports a
/// bad line as an item and goes on with the next one.
///
/// It reads the same lines as [`LinesCodec`] and encodes the same way, but
/// its items are `Result<String, LineError>`: a line that is too long or
/// not UTF-8 is yielded as `Err(LineError)` instead of failing the stream.
/// A [`FramedRead`](crate::framed::FramedRead) with this codec thus keeps
/// reading after a bad line, so a server can answer the client (say why,
/// then close the connection with
/// [`OutgoingPacket::Shutdown`](crate::OutgoingPacket::Shutdown), which
/// writes that answer first) rather than drop it without a word. I/O errors
/// still end the reader.
///
/// ```text
/// max_line_length = 4
///
/// wire:   h i \n  x x x x x x ..(1 GB).. x \n  n o t \xff \n  o k \r \n
/// items:  Ok("hi")  Err(TooLong)              Err(NotUtf8)      Ok("ok")
///                   ^ once 6 bytes are buffered: 4, and a possible \r,
///                     then one more. The rest of the line is dropped
///                     as it arrives, up to and including its \n.
/// ```
///
/// # Memory
///
/// A line is buffered only while it may still be good: up to
/// `max_line_length + 1` bytes (the line and a `\r` whose `\n` has not
/// arrived). One more byte without a newline and the line is reported
/// [`TooLong`](LineError::TooLong), once, and its bytes are dropped from
/// the buffer, then every byte that arrives until the next `\n` is dropped
/// too, without being buffered: a client that sends a gigabyte with no
/// newline costs no more than one that sends a line of the maximum length
/// (and a read's worth of bytes). A line that is too long but arrives
/// whole, newline included, is reported and dropped at once. A line that
/// is not UTF-8 is reported [`NotUtf8`](LineError::NotUtf8) and dropped.
/// Either way decoding resumes with the next line.
///
/// Dropping bytes still takes reads. This crate's
/// [`FramedRead`](crate::framed::FramedRead) yields to its task every 32
/// reads that complete no line, so a client that keeps the socket full
/// with one endless line cannot hold the task (or, in a multiplexer, the
/// other connections) either.
///
/// At the end of the input, [`decode_eof`](Decoder::decode_eof) yields a
/// last line that has no newline, checked like any other.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use stream_multiplexer::codec::{Decoder, LineError, RecoveringLinesCodec};
///
/// let mut codec = RecoveringLinesCodec::new(4);
///
/// let mut wire = BytesMut::from(&b"hi\nxxxxxx"[..]);
/// assert_eq!(codec.decode(&mut wire)?, Some(Ok("hi".to_string())));
/// // Six bytes and no newline: too long, reported now.
/// let too_long = LineError::TooLong { max_line_length: 4 };
/// assert_eq!(codec.decode(&mut wire)?, Some(Err(too_long)));
/// assert!(wire.is_empty());
///
/// // The rest of that line is dropped as it arrives, and the next line
/// // decodes.
/// wire.extend_from_slice(b"xxxxxxxxxxxxxxx");
/// assert_eq!(codec.decode(&mut wire)?, None);
/// assert!(wire.is_empty());
/// wire.extend_from_slice(b"xx\nok\r\n");
/// assert_eq!(codec.decode(&mut wire)?, Some(Ok("ok".to_string())));
///
/// // A line that is not UTF-8 is reported, and the next one decodes.
/// wire.extend_from_slice(b"\xff\nfine\n");
/// assert_eq!(codec.decode(&mut wire)?, Some(Err(LineError::NotUtf8)));
/// assert_eq!(codec.decode(&mut wire)?, Some(Ok("fine".to_string())));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Through a [`FramedRead`](crate::framed::FramedRead), which goes on after
/// a bad line:
///
/// ```
/// use futures::{executor::block_on, io::Cursor, StreamExt};
/// use stream_multiplexer::codec::{LineError, RecoveringLinesCodec};
/// use stream_multiplexer::framed::FramedRead;
///
/// let wire = Cursor::new(b"caf\xe9\ncafe\n".to_vec());
/// let mut lines = FramedRead::new(wire, RecoveringLinesCodec::new(80));
/// block_on(async {
///     assert_eq!(lines.next().await.unwrap()?, Err(LineError::NotUtf8));
///     assert_eq!(lines.next().await.unwrap()?, Ok("cafe".to_string()));
///     assert!(lines.next().await.is_none());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RecoveringLinesCodec<T = String> {
    lines: LinesCodec<T>,
    /// Inside a line already reported too long: its bytes are dropped as
    /// they arrive, up to and including its `\n`.
    discarding: bool,
}

impl RecoveringLinesCodec {
    /// Creates a codec for lines of at most `max_line_length` bytes (not
    /// counting the line ending) that encodes [`String`]s.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use stream_multiplexer::codec::{Decoder, LineError, RecoveringLinesCodec};
    ///
    /// let mut codec = RecoveringLinesCodec::new(4);
    /// let mut wire = BytesMut::from(&b"four\nfive!\nsix\n"[..]);
    /// assert_eq!(codec.decode(&mut wire)?, Some(Ok("four".to_string())));
    /// let too_long = LineError::TooLong { max_line_length: 4 };
    /// assert_eq!(codec.decode(&mut wire)?, Some(Err(too_long)));
    /// assert_eq!(codec.decode(&mut wire)?, Some(Ok("six".to_string())));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn new(max_line_length: usize) -> Self {
        Self::with_max_line_length(max_line_length)
    }
}

impl<T> RecoveringLinesCodec<T> {
    /// Creates a codec for lines of at most `max_line_length` bytes (not
    /// counting the line ending) that encodes any `T: AsRef<str>`, as
    /// [`LinesCodec::with_max_line_length`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use std::sync::Arc;
    /// use stream_multiplexer::codec::{Encoder, RecoveringLinesCodec};
    ///
    /// let mut codec = RecoveringLinesCodec::<Arc<str>>::with_max_line_length(4096);
    /// let mut out = BytesMut::new();
    /// codec.encode(Arc::from("* error: line longer than 4096 bytes"), &mut out)?;
    /// assert_eq!(&out[..], b"* error: line longer than 4096 bytes\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn with_max_line_length(max_line_length: usize) -> Self {
        Self {
            lines: LinesCodec::with_max_line_length(max_line_length),
            discarding: false,
        }
    }

    /// The longest line accepted, in bytes, not counting the line ending.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::RecoveringLinesCodec;
    ///
    /// assert_eq!(RecoveringLinesCodec::new(80).max_line_length(), 80);
    /// ```
    pub fn max_line_length(&self) -> usize {
        self.lines.max_line_length()
    }

    /// Drops the rest of a line reported too long: up to and including its
    /// `\n` if it is in `src` (then returns `true`), else all of `src`.
    fn skip_rest_of_line(&mut self, src: &mut BytesMut) -> bool {
        match src.iter().position(|&byte| byte == b'\n') {
            Some(newline) => {
                src.advance(newline + 1);
                self.discarding = false;
                true
            }
            None => {
                src.clear();
                false
            }
        }
    }
}

impl<T> Clone for RecoveringLinesCodec<T> {
    fn clone(&self) -> Self {
        Self {
            lines: self.lines.clone(),
            discarding: self.discarding,
        }
    }
}

impl<T> fmt::Debug for RecoveringLinesCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveringLinesCodec")
            .field("max_line_length", &self.max_line_length())
            .field("discarding", &self.discarding)
            .finish_non_exhaustive()
    }
}

impl<T> Decoder for RecoveringLinesCodec<T> {
    type Item = Result<String, LineError>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        if self.discarding && !self.skip_rest_of_line(src) {
            return Ok(None);
        }
        match self.lines.scan(src) {
            Scan::Line(line) => Ok(Some(line)),
            Scan::TooLongSoFar => {
                // Reported once, now; what is buffered and the rest of the
                // line as it arrives are dropped, so that the buffer never
                // holds more than a line of the maximum length.
                src.clear();
                self.lines.rescan();
                self.discarding = true;
                Ok(Some(Err(self.lines.too_long())))
            }
            Scan::Incomplete => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        if src.is_empty() {
            // The end of the input ends a line being dropped too.
            self.discarding = false;
            return Ok(None);
        }
        let length = src.len();
        Ok(Some(self.lines.take_line(src, length, length)))
    }
}

impl<T: AsRef<str>> Encoder for RecoveringLinesCodec<T> {
    type Item<'a> = T;
    type Error = io::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> io::Result<()> {
        self.lines.encode(item, dst)
    }
}
