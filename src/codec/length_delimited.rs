//! A codec for frames prefixed with their length, bounded by a maximum.

use std::fmt;
use std::io;

use asynchronous_codec::{Decoder, Encoder};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Default maximum frame length of 8 MiB: large enough for any message a
/// game or chat protocol sends, small enough that a client declaring a huge
/// frame cannot make the server buffer more than this per connection.
const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

/// The widest length field: a `u64`.
const MAX_LENGTH_FIELD_LENGTH: usize = 8;

/// Frames prefixed with their big-endian length, with a maximum frame length.
///
/// Each frame on the wire is a length field of 1 to 8 bytes (chosen at
/// construction), big-endian, holding the number of payload bytes that
/// follow. The length counts the payload only, not the length field itself.
///
/// With a 2-byte length field, the payload `"hello"` is sent as:
///
/// ```text
/// +-- len: u16 --+----- payload -----+
/// | \x00 \x05    | h  e  l  l  o     |
/// +--------------+-------------------+
///   2 bytes        5 bytes
/// ```
///
/// With a 1-byte field, two frames `"hi"` and an empty one follow each other
/// with nothing in between; an empty payload is a frame like any other:
///
/// ```text
/// +-len-+-payload-+-len-+
/// | \x02|  h  i   | \x00|
/// +-----+---------+-----+
/// ```
///
/// With a 4-byte field, a frame of 70,000 bytes starts with
/// `\x00 \x01 \x11 \x70` (70,000 = 0x00011170).
///
/// # Decoding
///
/// [`decode`](Decoder::decode) yields each payload as [`Bytes`] split off the
/// read buffer, without copying it. The declared length is checked against
/// the [maximum frame length](LengthDelimitedCodec::max_frame_length) as soon
/// as the length field has arrived, *before* anything is reserved or
/// buffered: a frame declaring more than the maximum is an error of kind
/// [`io::ErrorKind::InvalidData`], so a client that sends
/// `\xff\xff\xff\xff` with a 4-byte field costs the server nothing.
///
/// At the end of the input, [`decode_eof`](Decoder::decode_eof) reports a
/// frame cut short (a partial length field or payload) as an error of kind
/// [`io::ErrorKind::UnexpectedEof`].
///
/// The codec does not reserve room for a declared payload in advance (unlike
/// tokio-util's): the read buffer grows only as bytes actually arrive, so
/// holding memory costs a client the bandwidth to send it.
///
/// # Encoding
///
/// [`encode`](Encoder::encode) writes the length field then the payload. A
/// payload longer than the maximum frame length, or too long for the length
/// field (more than 255 bytes with a 1-byte field, more than 65,535 with a
/// 2-byte one...), is an error of kind [`io::ErrorKind::InvalidInput`]:
/// frames are never silently truncated.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use stream_multiplexer::codec::{Decoder, Encoder, LengthDelimitedCodec};
///
/// let mut codec = LengthDelimitedCodec::new(2);
///
/// let mut wire = BytesMut::new();
/// codec.encode(Bytes::from("hello"), &mut wire)?;
/// assert_eq!(&wire[..], b"\x00\x05hello");
///
/// // Only part of the frame has arrived: nothing to yield yet.
/// let mut partial = wire.split_to(4);
/// assert_eq!(codec.decode(&mut partial)?, None);
///
/// // The rest arrives.
/// partial.unsplit(wire);
/// assert_eq!(codec.decode(&mut partial)?, Some(Bytes::from("hello")));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A declared length above the maximum is rejected as soon as the length
/// field is read:
///
/// ```
/// use bytes::BytesMut;
/// use std::io::ErrorKind;
/// use stream_multiplexer::codec::{Decoder, LengthDelimitedCodec};
///
/// let mut codec = LengthDelimitedCodec::new(4).max_frame_length(1024);
/// let mut wire = BytesMut::from(&b"\x40\x00\x00\x00"[..]); // declares 1 GiB
/// let error = codec.decode(&mut wire).unwrap_err();
/// assert_eq!(error.kind(), ErrorKind::InvalidData);
/// ```
#[derive(Clone)]
pub struct LengthDelimitedCodec {
    /// Width of the length field in bytes, 1..=8.
    length_field_length: usize,
    /// Largest payload accepted by both encode and decode.
    max_frame_length: usize,
    /// Where the decoder is in the current frame.
    state: DecodeState,
}

/// Whether the decoder is waiting for a length field or for a payload whose
/// length it has already read (and removed from the buffer). Remembering the
/// length saves parsing it again each time more bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    Head,
    Data(usize),
}

/// The error of [`LengthDelimitedCodec::try_new`]: a length field must be
/// 1 to 8 bytes wide. Holds the width that was asked for.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::codec::{InvalidLengthFieldLength, LengthDelimitedCodec};
///
/// let error = LengthDelimitedCodec::try_new(9).unwrap_err();
/// assert_eq!(error, InvalidLengthFieldLength(9));
/// assert_eq!(error.to_string(), "length field must be 1 to 8 bytes wide, not 9");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("length field must be 1 to 8 bytes wide, not {0}")]
pub struct InvalidLengthFieldLength(pub usize);

impl LengthDelimitedCodec {
    /// Creates a codec with a length field of `length_field_length` bytes and
    /// the default maximum frame length of 8 MiB.
    ///
    /// # Panics
    ///
    /// Panics if `length_field_length` is not in `1..=8`. The width is part
    /// of the protocol the application chose, not something a client sends;
    /// use [`try_new`](Self::try_new) if it comes from configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// let codec = LengthDelimitedCodec::new(2);
    /// assert_eq!(codec.length_field_length(), 2);
    /// assert_eq!(codec.get_max_frame_length(), 8 * 1024 * 1024);
    /// ```
    ///
    /// ```should_panic
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// let _ = LengthDelimitedCodec::new(0);
    /// ```
    #[must_use]
    pub fn new(length_field_length: usize) -> Self {
        match Self::try_new(length_field_length) {
            Ok(codec) => codec,
            Err(error) => panic!("{error}"),
        }
    }

    /// Creates a codec with a length field of `length_field_length` bytes and
    /// the default maximum frame length of 8 MiB, or returns an error if the
    /// width is not in `1..=8`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// assert!(LengthDelimitedCodec::try_new(8).is_ok());
    /// assert!(LengthDelimitedCodec::try_new(0).is_err());
    /// ```
    pub fn try_new(length_field_length: usize) -> Result<Self, InvalidLengthFieldLength> {
        if !(1..=MAX_LENGTH_FIELD_LENGTH).contains(&length_field_length) {
            return Err(InvalidLengthFieldLength(length_field_length));
        }
        Ok(Self {
            length_field_length,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            state: DecodeState::Head,
        })
    }

    /// Sets the maximum payload length, for both decoding and encoding.
    /// Defaults to 8 MiB.
    ///
    /// Decoding a frame that declares more is an
    /// [`InvalidData`](io::ErrorKind::InvalidData) error; encoding a longer
    /// payload is an [`InvalidInput`](io::ErrorKind::InvalidInput) error. The
    /// length field's width is a limit too: the effective maximum is the
    /// smaller of the two.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use std::io::ErrorKind;
    /// use stream_multiplexer::codec::{Encoder, LengthDelimitedCodec};
    ///
    /// let mut codec = LengthDelimitedCodec::new(2).max_frame_length(4);
    /// let mut wire = BytesMut::new();
    /// codec.encode(Bytes::from("four"), &mut wire)?;
    /// let error = codec.encode(Bytes::from("five!"), &mut wire).unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::InvalidInput);
    /// assert_eq!(&wire[..], b"\x00\x04four");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn max_frame_length(mut self, max_frame_length: usize) -> Self {
        self.max_frame_length = max_frame_length;
        self
    }

    /// The maximum payload length set by
    /// [`max_frame_length`](Self::max_frame_length).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// let codec = LengthDelimitedCodec::new(1).max_frame_length(100);
    /// assert_eq!(codec.get_max_frame_length(), 100);
    /// ```
    pub fn get_max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The width of the length field, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// assert_eq!(LengthDelimitedCodec::new(4).length_field_length(), 4);
    /// ```
    pub fn length_field_length(&self) -> usize {
        self.length_field_length
    }

    /// The largest payload the length field can express.
    fn field_capacity(&self) -> u64 {
        // A shift by 64 would overflow, hence the special case for 8 bytes.
        if self.length_field_length == MAX_LENGTH_FIELD_LENGTH {
            u64::MAX
        } else {
            (1u64 << (8 * self.length_field_length)) - 1
        }
    }

    /// Reads the length field at the front of `src`, if it has arrived, and
    /// checks it against the maximum; leaves the buffer as it is.
    #[inline]
    fn peek_head(&self, src: &BytesMut) -> io::Result<Option<usize>> {
        let Some(field) = src.get(..self.length_field_length) else {
            return Ok(None);
        };
        // The common widths read the field in one load; `get_uint` loops
        // over the bytes.
        let declared = match *field {
            [a, b] => u64::from(u16::from_be_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
            _ => {
                let mut field = field;
                field.get_uint(self.length_field_length)
            }
        };
        // Compared as u64 so that a declared length that does not fit a
        // `usize` (on 32-bit targets) is rejected rather than wrapped.
        match usize::try_from(declared) {
            Ok(length) if length <= self.max_frame_length => Ok(Some(length)),
            _ => Err(self.too_long(declared)),
        }
    }

    /// Decodes what `decode`'s inline path leaves: other widths, a frame
    /// not wholly buffered, a length above the maximum.
    #[inline(never)]
    fn decode_rest(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let length = match self.state {
            DecodeState::Head => {
                let Some(length) = self.peek_head(src)? else {
                    return Ok(None);
                };
                let head = self.length_field_length;
                if let Some(whole) = head.checked_add(length).filter(|&n| n <= src.len()) {
                    // The whole frame has arrived (the common case: a read
                    // brings in many). One split takes head and payload off
                    // the buffer; dropping the head from the frozen frame
                    // is a pointer bump, where advancing the shared
                    // `BytesMut` first would cost a second split's work.
                    let mut frame = src.split_to(whole).freeze();
                    frame.advance(head);
                    return Ok(Some(frame));
                }
                // Only part of the payload is here: drop the head now and
                // remember the length, so that it is not parsed again each
                // time more bytes arrive.
                src.advance(head);
                self.state = DecodeState::Data(length);
                length
            }
            DecodeState::Data(length) => length,
        };
        if src.len() < length {
            return Ok(None);
        }
        self.state = DecodeState::Head;
        Ok(Some(src.split_to(length).freeze()))
    }

    #[cold]
    fn too_long(&self, declared: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame of {declared} bytes exceeds the maximum of {}",
                self.max_frame_length
            ),
        )
    }
}

impl Default for LengthDelimitedCodec {
    /// A codec with a 4-byte length field and the default maximum frame
    /// length of 8 MiB.
    ///
    /// ```
    /// use stream_multiplexer::codec::LengthDelimitedCodec;
    ///
    /// assert_eq!(LengthDelimitedCodec::default().length_field_length(), 4);
    /// ```
    fn default() -> Self {
        Self::new(4)
    }
}

impl fmt::Debug for LengthDelimitedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LengthDelimitedCodec")
            .field("length_field_length", &self.length_field_length)
            .field("max_frame_length", &self.max_frame_length)
            .finish_non_exhaustive()
    }
}

impl Decoder for LengthDelimitedCodec {
    type Item = Bytes;
    type Error = io::Error;

    // The common case inline (a `FramedRead` is generic, so it is compiled
    // in the crate that uses it, and this can be inlined there): a 2- or
    // 4-byte length field and the whole frame buffered. Everything else,
    // errors included, is `decode_rest`.
    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if self.state == DecodeState::Head {
            let head = self.length_field_length;
            let length = match (head, src.get(..head)) {
                (2, Some(&[a, b])) => usize::from(u16::from_be_bytes([a, b])),
                // (A length that does not fit a `usize` becomes one the
                // checks below send on to `decode_rest`, which rejects it.)
                (4, Some(&[a, b, c, d])) => {
                    usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX)
                }
                _ => return self.decode_rest(src),
            };
            // `src` holds the head, so the subtraction cannot wrap (where
            // `head + length` could, on a 32-bit target).
            if length <= self.max_frame_length && length <= src.len() - head {
                let mut frame = src.split_to(head + length).freeze();
                frame.advance(head);
                return Ok(Some(frame));
            }
        }
        self.decode_rest(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.state == DecodeState::Head => Ok(None),
            None => {
                let message = match self.state {
                    DecodeState::Head => format!(
                        "connection closed inside a length field ({} of {} bytes)",
                        src.len(),
                        self.length_field_length
                    ),
                    DecodeState::Data(length) => format!(
                        "connection closed inside a frame ({} of {length} bytes)",
                        src.len()
                    ),
                };
                // Forget the partial frame so a further call ends cleanly.
                src.clear();
                self.state = DecodeState::Head;
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, message))
            }
        }
    }
}

impl Encoder for LengthDelimitedCodec {
    type Item<'a> = Bytes;
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        let length = item.len();
        if length > self.max_frame_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {length} bytes exceeds the maximum of {}",
                    self.max_frame_length
                ),
            ));
        }
        // usize -> u64 is lossless on every supported target.
        let length_u64 = length as u64;
        if length_u64 > self.field_capacity() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {length} bytes does not fit a {}-byte length field",
                    self.length_field_length
                ),
            ));
        }
        dst.reserve(self.length_field_length + length);
        // The usual widths written as one store each, not as a copy of the
        // tail of an 8-byte big-endian number; each fits: checked above.
        match self.length_field_length {
            1 => dst.put_u8(length as u8),
            2 => dst.put_u16(length as u16),
            4 => dst.put_u32(length as u32),
            width => dst.put_uint(length_u64, width),
        }
        dst.extend_from_slice(&item);
        Ok(())
    }
}
