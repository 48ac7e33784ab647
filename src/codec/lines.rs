//! A codec for newline-delimited UTF-8 text, bounded by a maximum line length.

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
/// A line that is not valid UTF-8 is an `InvalidData` error too. After an
/// error the codec does not try to resynchronise: the connection should be
/// dropped (this crate's [`FramedRead`](crate::framed::FramedRead) ends
/// after its first error).
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

    fn too_long(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {} bytes", self.max_line_length),
        )
    }

    /// Takes the first `length` bytes of `src` (a line without its `\n`),
    /// strips a trailing `\r`, checks the length and UTF-8 and consumes
    /// `consumed` bytes.
    fn take_line(
        &mut self,
        src: &mut BytesMut,
        length: usize,
        consumed: usize,
    ) -> io::Result<String> {
        self.next_index = 0;
        let line = &src[..length];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line_length {
            return Err(self.too_long());
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text.to_owned(),
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        };
        src.advance(consumed);
        Ok(text)
    }
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
        let start = self.next_index.min(src.len());
        match src[start..].iter().position(|&byte| byte == b'\n') {
            Some(offset) => {
                let length = start + offset;
                self.take_line(src, length, length + 1).map(Some)
            }
            None => {
                // One more byte than the maximum may be a `\r` whose `\n`
                // has not arrived yet; anything beyond cannot be a valid line.
                if src.len() > self.max_line_length.saturating_add(1) {
                    return Err(self.too_long());
                }
                self.next_index = src.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<String>> {
        match self.decode(src)? {
            Some(line) => Ok(Some(line)),
            None if src.is_empty() => Ok(None),
            None => {
                let length = src.len();
                self.take_line(src, length, length).map(Some)
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
