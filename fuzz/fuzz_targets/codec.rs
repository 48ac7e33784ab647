//! Arbitrary bytes, delivered in arbitrary chunks (with `Pending` and
//! `Interrupted` reads in between, and an EOF or an I/O error at the end),
//! read through `framed::FramedRead` with each of the crate's codecs:
//! `LengthDelimitedCodec` (length field of 1 to 8 bytes, maximum frame
//! length 0..=511), `LinesCodec` and `RecoveringLinesCodec` (maximum line
//! length 0..=511), with a read chunk size of 1..=255 bytes or the default.
//!
//! Checked after every poll, and at the end:
//! - nothing panics, and every poll ends (bounded work: at most 32 reads
//!   per poll);
//! - the bytes buffered never exceed what the codec may need to hold (a
//!   length field and a maximal frame; a maximal line and a `\r`) plus one
//!   read chunk, and the buffer's capacity never exceeds twice that, plus
//!   8 (a `BytesMut` may double an allocation when it grows, and a `Vec`
//!   allocates at least 8 bytes);
//! - the items, and the way the stream ends, are exactly those of a
//!   reference decoder written from the codecs' documentation, and the
//!   frames re-encode to the prefix of the input they were decoded from;
//! - after its end (clean or the first error) the stream stays ended.
//!
//! The input: byte 0 picks the codec (bits 0-1: length-delimited, lines,
//! recovering lines, length-delimited), the width of the length field
//! (bits 2-4, plus one), whether the input ends with an I/O error instead of
//! an EOF (bit 5), and whether the items are kept alive until the end rather
//! than dropped at once (bit 6: kept items share the read buffer's
//! allocation, which changes how it grows); bytes 1-2 the maximum length
//! (little-endian, modulo 512); byte 3 the read chunk size (0 for the
//! default, 8 KiB); byte 4 the number of entries in the delivery plan
//! (modulo 16), which follow, one byte each; then the wire. Each entry of
//! the plan (used in turn, cyclically) delivers one chunk: bits 0-5 its
//! length (1 to 48, or 64 to 1,024 in steps of 64), bit 6 an `Interrupted`
//! error first, bit 7 a `Pending` first.

#![no_main]

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::io::AsyncRead;
use futures::stream::{FusedStream, Stream};
use libfuzzer_sys::fuzz_target;
use stream_multiplexer::codec::{
    Decoder, Encoder, LengthDelimitedCodec, LineError, LinesCodec, RecoveringLinesCodec,
};
use stream_multiplexer::framed::FramedRead;

/// `FramedRead`'s most reads per poll (its documented bound on work).
const READS_PER_POLL: usize = 32;
/// The smallest allocation a `Vec<u8>` makes: a buffer asked for fewer
/// bytes (a read chunk of 1, a limit of 0) holds this many.
const MIN_ALLOCATION: usize = 8;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    match input.codec {
        Codec::LengthDelimited { width } => length_delimited(&input, width),
        Codec::Lines => lines(&input),
        Codec::RecoveringLines => recovering_lines(&input),
    }
});

#[derive(Debug, Clone, Copy)]
enum Codec {
    LengthDelimited { width: usize },
    Lines,
    RecoveringLines,
}

#[derive(Debug)]
struct Input<'a> {
    codec: Codec,
    fail_at_end: bool,
    keep_items: bool,
    max: usize,
    /// `None`: `FramedRead`'s default.
    read_chunk_size: Option<usize>,
    plan: Vec<u8>,
    wire: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let byte = |index: usize| data.get(index).copied().unwrap_or(0);
        let settings = byte(0);
        let codec = match settings & 0b11 {
            1 => Codec::Lines,
            2 => Codec::RecoveringLines,
            _ => Codec::LengthDelimited {
                width: usize::from((settings >> 2) & 0b111) + 1,
            },
        };
        let max = usize::from(u16::from_le_bytes([byte(1), byte(2)])) % 512;
        let read_chunk_size = match byte(3) {
            0 => None,
            size => Some(usize::from(size)),
        };
        let entries = usize::from(byte(4) % 16);
        let start = 5.min(data.len());
        let plan_end = (start + entries).min(data.len());
        let mut plan = data[start..plan_end].to_vec();
        if plan.is_empty() {
            plan.push(63); // 1 KiB at a time
        }
        Self {
            codec,
            fail_at_end: settings & 0b10_0000 != 0,
            keep_items: settings & 0b100_0000 != 0,
            max,
            read_chunk_size,
            plan,
            wire: &data[plan_end..],
        }
    }

    fn framed<D>(&self, decoder: D) -> FramedRead<Wire<'a>, D> {
        let wire = Wire {
            data: self.wire,
            plan: self.plan.clone(),
            step: 0,
            pended: false,
            interrupted: false,
            fail_at_end: self.fail_at_end,
            reads: 0,
        };
        let mut framed = FramedRead::new(wire, decoder);
        if let Some(size) = self.read_chunk_size {
            framed.set_read_chunk_size(size);
        }
        framed
    }
}

// ---------------------------------------------------------------------------
// The reader: the wire, delivered as the plan says.

struct Wire<'a> {
    data: &'a [u8],
    plan: Vec<u8>,
    step: usize,
    /// The current entry's `Pending` was returned.
    pended: bool,
    /// The current entry's `Interrupted` was returned.
    interrupted: bool,
    fail_at_end: bool,
    /// Reads since the counter was last reset.
    reads: usize,
}

fn chunk_length(entry: u8) -> usize {
    match usize::from(entry & 0b11_1111) {
        small @ 0..48 => small + 1,
        large => (large - 47) * 64,
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.reads += 1;
        assert!(!buffer.is_empty(), "a read of no bytes would look like EOF");
        let entry = this.plan[this.step % this.plan.len()];
        if entry & 0x80 != 0 && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if entry & 0x40 != 0 && !this.interrupted {
            this.interrupted = true;
            return Poll::Ready(Err(io::ErrorKind::Interrupted.into()));
        }
        this.pended = false;
        this.interrupted = false;
        this.step += 1;
        if this.data.is_empty() {
            return Poll::Ready(if this.fail_at_end {
                Err(io::ErrorKind::ConnectionReset.into())
            } else {
                Ok(0)
            });
        }
        let n = chunk_length(entry)
            .min(buffer.len())
            .min(this.data.len());
        buffer[..n].copy_from_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(n))
    }
}

impl fmt::Debug for Wire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wire")
    }
}

// ---------------------------------------------------------------------------
// Driving a FramedRead to its end, checking the bounds after every poll.

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `None` without an error.
    Clean,
    /// An I/O error (or a length-delimited decode error) of this kind.
    Io(io::ErrorKind),
    /// An `InvalidData` error carrying this line error (`LinesCodec`).
    Line(LineError),
}

impl End {
    fn of(error: &io::Error) -> Self {
        match error.get_ref().and_then(|inner| inner.downcast_ref::<LineError>()) {
            Some(&line) => {
                assert_eq!(error.kind(), io::ErrorKind::InvalidData);
                End::Line(line)
            }
            None => End::Io(error.kind()),
        }
    }
}

/// The number after `buffered: ` in `FramedRead`'s `Debug` output: the
/// bytes read and not yet decoded, which it exposes nowhere else.
fn buffered<D: fmt::Debug>(framed: &FramedRead<Wire<'_>, D>) -> usize {
    let debug = format!("{framed:?}");
    let start = debug.find("buffered: ").expect("`buffered` in the Debug output") + 10;
    let digits: String = debug[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a number of bytes")
}

/// Polls `framed` to its end, handing each item to `check` as it comes
/// (and dropping it then, unless `keep`), and returns how it ended.
/// `limit` is the most bytes the codec may need to hold between reads.
fn drive<D, F>(mut framed: FramedRead<Wire<'_>, D>, limit: usize, keep: bool, mut check: F) -> End
where
    D: Decoder<Error = io::Error> + Unpin + fmt::Debug,
    F: FnMut(&D::Item),
{
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let chunk = framed.read_chunk_size();
    let bound = limit + chunk;
    let mut kept = Vec::new();
    // Each poll reads at least once unless it yields, and each read that
    // is not a Pending or an Interrupted delivers a byte or ends the wire.
    let wire_length = framed.get_ref().data.len();
    let max_polls = 4 * wire_length + 64;
    let mut polls = 0;
    let end = loop {
        polls += 1;
        assert!(polls <= max_polls, "no end after {polls} polls");
        framed.get_mut().reads = 0;
        let poll = Pin::new(&mut framed).poll_next(&mut cx);
        let reads = framed.get_ref().reads;
        assert!(reads <= READS_PER_POLL, "{reads} reads in one poll");
        let held = buffered(&framed);
        assert!(held <= bound, "{held} bytes buffered, bound {limit} + {chunk}");
        let capacity = framed.buffer_capacity();
        assert!(
            capacity <= 2 * bound + MIN_ALLOCATION,
            "a buffer of {capacity} bytes, bound 2 x ({limit} + {chunk}) + {MIN_ALLOCATION}"
        );
        match poll {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(item))) => {
                check(&item);
                if keep {
                    kept.push(item);
                }
            }
            Poll::Ready(Some(Err(error))) => break End::of(&error),
            Poll::Ready(None) => break End::Clean,
        }
    };
    // Fused: ended for good, with nothing held.
    for _ in 0..2 {
        assert!(matches!(
            Pin::new(&mut framed).poll_next(&mut cx),
            Poll::Ready(None)
        ));
    }
    assert!(framed.is_terminated());
    assert_eq!(framed.buffer_capacity(), 0, "a buffer kept after the end");
    drop(kept);
    end
}

// ---------------------------------------------------------------------------
// Length-delimited frames.

fn length_delimited(input: &Input<'_>, width: usize) {
    let codec = LengthDelimitedCodec::new(width).max_frame_length(input.max);
    let (expected, expected_end) = reference_frames(input.wire, width, input.max, input.fail_at_end);
    let mut frames = expected.iter();
    let mut encoder = codec.clone();
    let mut reencoded = BytesMut::new();
    let end = drive(
        input.framed(codec),
        width + input.max,
        input.keep_items,
        |frame: &Bytes| {
            assert_eq!(Some(&&frame[..]), frames.next(), "a frame the reference does not have");
            encoder
                .encode(frame.clone(), &mut reencoded)
                .expect("a decoded frame re-encodes");
        },
    );
    assert_eq!(frames.next(), None, "a frame missed");
    assert_eq!(end, expected_end);
    assert!(
        input.wire.starts_with(&reencoded),
        "the frames do not re-encode to a prefix of the input"
    );
}

/// The frames of `wire` and its end, from `LengthDelimitedCodec`'s docs: a
/// big-endian length field of `width` bytes, then as many bytes; a declared
/// length above `max` is `InvalidData` as soon as the field is in; a frame
/// cut short by the end is `UnexpectedEof`. With `fail_at_end`, every
/// complete frame is still decoded before the read that fails.
fn reference_frames(
    wire: &[u8],
    width: usize,
    max: usize,
    fail_at_end: bool,
) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = wire;
    let short = if fail_at_end {
        End::Io(io::ErrorKind::ConnectionReset)
    } else {
        End::Io(io::ErrorKind::UnexpectedEof)
    };
    loop {
        if rest.len() < width {
            let end = if rest.is_empty() && !fail_at_end {
                End::Clean
            } else {
                short
            };
            return (frames, end);
        }
        let declared = rest[..width]
            .iter()
            .fold(0u64, |length, &byte| (length << 8) | u64::from(byte));
        if declared > max as u64 {
            return (frames, End::Io(io::ErrorKind::InvalidData));
        }
        let length = declared as usize;
        if rest.len() - width < length {
            return (frames, short);
        }
        frames.push(&rest[width..width + length]);
        rest = &rest[width + length..];
    }
}

// ---------------------------------------------------------------------------
// Lines.

fn lines(input: &Input<'_>) {
    let codec = LinesCodec::new(input.max);
    let (expected, expected_end) = reference_lines(input.wire, input.max, input.fail_at_end, false);
    let mut lines = expected.iter();
    let mut encoder = codec.clone();
    let mut reencoded = BytesMut::new();
    let end = drive(
        input.framed(codec),
        input.max + 1,
        input.keep_items,
        |line: &String| {
            assert_eq!(Some(&Ok(line.clone())), lines.next(), "a line the reference does not have");
            encoder
                .encode(line.clone(), &mut reencoded)
                .expect("a decoded line re-encodes");
        },
    );
    assert_eq!(lines.next(), None, "a line missed");
    assert_eq!(end, expected_end);
    assert_reencoded_lines(input.wire, &reencoded);
}

fn recovering_lines(input: &Input<'_>) {
    let codec = RecoveringLinesCodec::new(input.max);
    let (expected, expected_end) = reference_lines(input.wire, input.max, input.fail_at_end, true);
    let mut lines = expected.iter();
    let mut encoder = codec.clone();
    let mut reencoded = BytesMut::new();
    let end = drive(
        input.framed(codec),
        input.max + 1,
        input.keep_items,
        |line: &Result<String, LineError>| {
            assert_eq!(Some(line), lines.next(), "an item the reference does not have");
            if let Ok(line) = line {
                encoder
                    .encode(line.clone(), &mut reencoded)
                    .expect("a decoded line re-encodes");
            }
        },
    );
    assert_eq!(lines.next(), None, "an item missed");
    assert_eq!(end, expected_end);
    if expected.iter().all(Result::is_ok) {
        assert_reencoded_lines(input.wire, &reencoded);
    }
}

/// Good lines re-encode (`line\n`) to the input they came from once the
/// `\r` of each `\r\n` is removed: checked on the prefix they cover.
fn assert_reencoded_lines(wire: &[u8], reencoded: &[u8]) {
    let mut rest = wire;
    for line in reencoded.split_inclusive(|&byte| byte == b'\n') {
        let text = &line[..line.len() - 1];
        assert!(rest.starts_with(text), "a line that is not the input's");
        rest = &rest[text.len()..];
        rest = rest.strip_prefix(b"\r").unwrap_or(rest);
        // The last line may have ended at the end of the input instead.
        rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    }
}

/// The lines of `wire` and its end, from the lines codecs' docs: lines end
/// with `\n`, one `\r` before it is stripped; a line longer than `max` is
/// `TooLong` (found as soon as `max + 1` bytes without a newline are
/// buffered, or when it is complete), one that is not UTF-8 `NotUtf8`; the
/// last line may lack its newline at the end of the input. `LinesCodec`
/// ends at the first bad line; `RecoveringLinesCodec` yields it as an error
/// item and goes on. With `fail_at_end`, a last line without a newline is
/// lost to the failed read, unless already found too long.
fn reference_lines(
    wire: &[u8],
    max: usize,
    fail_at_end: bool,
    recovering: bool,
) -> (Vec<Result<String, LineError>>, End) {
    let check = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max {
            Err(LineError::TooLong {
                max_line_length: max,
            })
        } else {
            String::from_utf8(line.to_vec()).map_err(|_| LineError::NotUtf8)
        }
    };
    let mut items = Vec::new();
    let mut rest = wire;
    loop {
        let (item, done) = match rest.iter().position(|&byte| byte == b'\n') {
            Some(newline) => {
                let item = check(&rest[..newline]);
                rest = &rest[newline + 1..];
                (item, false)
            }
            None if rest.len() > max + 1 => (check(rest), true),
            None if fail_at_end => return (items, End::Io(io::ErrorKind::ConnectionReset)),
            None if rest.is_empty() => return (items, End::Clean),
            None => (check(rest), true),
        };
        match item {
            Err(error) if !recovering => return (items, End::Line(error)),
            item => items.push(item),
        }
        if done {
            let end = if fail_at_end {
                End::Io(io::ErrorKind::ConnectionReset)
            } else {
                End::Clean
            };
            return (items, end);
        }
    }
}
