//! `RecoveringLinesCodec`: a bad line is an item, decoding goes on with the
//! next line, and a line that never ends costs no more than the maximum.

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use futures::executor::block_on;
use futures::io::{AsyncRead, AsyncReadExt, Cursor};
use futures::task::noop_waker_ref;
use futures::{Stream, StreamExt};
use stream_multiplexer::codec::{Decoder, Encoder, LineError, LinesCodec, RecoveringLinesCodec};
use stream_multiplexer::framed::FramedRead;

type Line = Result<String, LineError>;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn ok(text: &str) -> Line {
    Ok(text.to_owned())
}

fn too_long(max_line_length: usize) -> Line {
    Err(LineError::TooLong { max_line_length })
}

const NOT_UTF8: Line = Err(LineError::NotUtf8);

/// Decodes `wire`, received in one read, then the end of the input.
fn decode_at_once(codec: &mut RecoveringLinesCodec, wire: &[u8]) -> Vec<Line> {
    let mut buffer = BytesMut::from(wire);
    let mut lines = Vec::new();
    while let Some(line) = codec.decode_eof(&mut buffer).unwrap() {
        lines.push(line);
    }
    lines
}

/// Decodes `wire` received one byte at a time, as a slow client sends it,
/// then the end of the input; checks on the way that no more than the
/// maximum line and its `\r` are ever buffered.
fn decode_byte_by_byte(codec: &mut RecoveringLinesCodec, wire: &[u8]) -> Vec<Line> {
    let mut buffer = BytesMut::new();
    let mut lines = Vec::new();
    for &byte in wire {
        buffer.put_u8(byte);
        while let Some(line) = codec.decode(&mut buffer).unwrap() {
            lines.push(line);
        }
        assert!(buffer.len() <= codec.max_line_length() + 1);
    }
    while let Some(line) = codec.decode_eof(&mut buffer).unwrap() {
        lines.push(line);
    }
    lines
}

// ---- decoding good lines -----------------------------------------------------

#[test]
fn good_lines_are_ok_items_without_their_lf_or_crlf() {
    let mut codec = RecoveringLinesCodec::new(100);
    assert_eq!(
        decode_at_once(&mut codec, b"one\ntwo\r\n\r\nin\rside\n\n"),
        [ok("one"), ok("two"), ok(""), ok("in\rside"), ok("")]
    );
}

#[test]
fn a_line_of_the_maximum_length_and_its_cr_wait_for_the_lf() {
    let mut codec = RecoveringLinesCodec::new(4);
    // Max + 1 bytes: a whole line and the `\r` of a CRLF, or too long;
    // only the next byte tells.
    let mut buffer = BytesMut::from(&b"1234\r"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    buffer.put_u8(b'\n');
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(ok("1234")));

    let mut buffer = BytesMut::from(&b"1234\r"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    buffer.put_u8(b'5');
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(too_long(4)));
}

#[test]
fn multibyte_characters_split_across_reads_decode() {
    let mut codec = RecoveringLinesCodec::new(100);
    assert_eq!(
        decode_byte_by_byte(&mut codec, "héllo wörld ✓\r\nsecond\n".as_bytes()),
        [ok("héllo wörld ✓"), ok("second")]
    );
}

// ---- bad lines ---------------------------------------------------------------

#[test]
fn a_line_is_reported_too_long_once_as_soon_as_more_than_the_max_is_buffered() {
    let mut codec = RecoveringLinesCodec::new(8);
    let mut buffer = BytesMut::from(&b"123456789"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    assert_eq!(
        buffer.len(),
        9,
        "max + 1 bytes are kept: a `\\r` may follow"
    );

    buffer.put_u8(b'0');
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(too_long(8)));
    assert!(buffer.is_empty(), "what was buffered is dropped");

    // The rest of the line is dropped as it arrives and never reported again.
    for _ in 0..100 {
        buffer.put_slice(b"more bytes, no newline");
        assert_eq!(codec.decode(&mut buffer).unwrap(), None);
        assert!(buffer.is_empty());
    }

    // Its newline ends it; the next line decodes.
    buffer.put_slice(b"end of the long one\nnext\r\n");
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(ok("next")));
    assert!(buffer.is_empty());
}

#[test]
fn a_too_long_line_that_arrives_whole_is_reported_and_consumed() {
    let mut codec = RecoveringLinesCodec::new(4);
    assert_eq!(
        decode_at_once(&mut codec, b"12345\nok\n12345\r\nok\r\n"),
        [too_long(4), ok("ok"), too_long(4), ok("ok")]
    );
}

#[test]
fn a_line_that_is_not_utf8_is_reported_and_the_next_line_decodes() {
    let mut codec = RecoveringLinesCodec::new(100);
    assert_eq!(
        decode_at_once(&mut codec, b"caf\xe9\r\nnext\nhalf a \xe2\x9c\nlast\n"),
        [NOT_UTF8, ok("next"), NOT_UTF8, ok("last")]
    );
}

#[test]
fn the_same_items_come_out_whether_bytes_arrive_at_once_or_one_by_one() {
    let mut wire = Vec::new();
    wire.extend_from_slice(b"hi\r\n");
    wire.extend_from_slice(&[b'x'; 20]);
    wire.extend_from_slice(b"\n");
    wire.extend_from_slice(b"caf\xe9\r\n");
    wire.extend_from_slice("é ✓\r\n".as_bytes());
    wire.extend_from_slice(b"123456789\r\n");
    wire.extend_from_slice(b"12345678\r\n");
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(b"last");
    let expected = [
        ok("hi"),
        too_long(8),
        NOT_UTF8,
        ok("é ✓"),
        too_long(8),
        ok("12345678"),
        ok(""),
        ok("last"),
    ];

    let mut codec = RecoveringLinesCodec::new(8);
    assert_eq!(decode_at_once(&mut codec, &wire), expected);
    let mut codec = RecoveringLinesCodec::new(8);
    assert_eq!(decode_byte_by_byte(&mut codec, &wire), expected);
}

#[test]
fn a_line_that_never_ends_is_reported_once_and_never_buffered() {
    // 128 MiB here (a test build scans slowly); the bound is checked after
    // every chunk, so it holds however long the line goes on.
    const MAX: usize = 4 * KIB;
    const CHUNK: usize = 64 * KIB;
    let mut codec = RecoveringLinesCodec::new(MAX);
    let chunk = vec![b'x'; CHUNK];
    let mut buffer = BytesMut::with_capacity(CHUNK);
    let mut reports = Vec::new();

    for _ in 0..(128 * MIB / CHUNK) {
        buffer.put_slice(&chunk);
        while let Some(line) = codec.decode(&mut buffer).unwrap() {
            reports.push(line);
        }
        assert!(buffer.len() <= MAX + 1, "{} bytes buffered", buffer.len());
        assert!(
            buffer.capacity() <= 2 * CHUNK,
            "capacity {}",
            buffer.capacity()
        );
    }
    assert_eq!(reports, [too_long(MAX)]);

    buffer.put_slice(b"\nafter\n");
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(ok("after")));
}

// ---- the end of the input ----------------------------------------------------

#[test]
fn a_last_line_without_newline_is_checked_like_any_other() {
    let mut codec = RecoveringLinesCodec::new(4);
    assert_eq!(
        decode_at_once(&mut codec, b"a\nlast"),
        [ok("a"), ok("last")]
    );
    assert_eq!(
        decode_at_once(&mut codec, b"a\nfive!"),
        [ok("a"), too_long(4)]
    );
    assert_eq!(decode_at_once(&mut codec, b"a\n\xff"), [ok("a"), NOT_UTF8]);
    assert_eq!(decode_at_once(&mut codec, b""), Vec::<Line>::new());
}

#[test]
fn the_end_of_the_input_ends_a_line_being_dropped() {
    let mut codec = RecoveringLinesCodec::new(4);
    let mut buffer = BytesMut::from(&b"far too long"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(too_long(4)));
    buffer.put_slice(b"and more");
    assert_eq!(codec.decode_eof(&mut buffer).unwrap(), None);
    assert!(buffer.is_empty());

    // A codec used again starts with a fresh line, not in the dropped one.
    buffer.put_slice(b"new\n");
    assert_eq!(codec.decode(&mut buffer).unwrap(), Some(ok("new")));
}

// ---- encoding ----------------------------------------------------------------

#[test]
fn lines_encode_as_the_lines_codec_encodes_them() {
    let mut codec = RecoveringLinesCodec::new(5);
    let mut wire = BytesMut::new();
    codec.encode("hello".to_owned(), &mut wire).unwrap();
    assert_eq!(&wire[..], b"hello\n");

    let error = codec.encode("a\nb".to_owned(), &mut wire).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let error = codec.encode("123456".to_owned(), &mut wire).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(&wire[..], b"hello\n", "nothing written for a refused line");
}

// ---- the lines codec that fails on a bad line ------------------------------

#[test]
fn the_failing_codec_wraps_the_same_line_errors_in_invalid_data() {
    let mut codec = LinesCodec::new(4);
    for (wire, expected) in [
        (&b"12345\n"[..], LineError::TooLong { max_line_length: 4 }),
        (&b"123456"[..], LineError::TooLong { max_line_length: 4 }),
        (&b"\xff\n"[..], LineError::NotUtf8),
    ] {
        let error = codec.decode(&mut BytesMut::from(wire)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        assert_eq!(error.to_string(), expected.to_string());
        let inner = error.get_ref().and_then(|e| e.downcast_ref::<LineError>());
        assert_eq!(inner, Some(&expected), "{wire:?}");
    }
}

// ---- through FramedRead ------------------------------------------------------

/// A reader whose every read fails with `ConnectionReset`.
#[derive(Debug)]
struct ResetReader;

impl AsyncRead for ResetReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(ErrorKind::ConnectionReset.into()))
    }
}

#[test]
fn a_reader_goes_on_after_bad_lines() {
    let mut wire = b"ok\n".to_vec();
    wire.extend_from_slice(&[b'x'; 5000]);
    wire.extend_from_slice(b"\ncaf\xe9\nstill here\r\n");
    let mut lines = FramedRead::new(Cursor::new(wire), RecoveringLinesCodec::new(4096));

    let items: Vec<Line> = block_on(lines.by_ref().map(Result::unwrap).collect());
    assert_eq!(
        items,
        [ok("ok"), too_long(4096), NOT_UTF8, ok("still here")]
    );
    assert_eq!(lines.buffer_capacity(), 0);
}

#[test]
fn an_io_error_still_ends_the_reader() {
    let wire = Cursor::new(b"a\n\xff\n".to_vec()).chain(ResetReader);
    let mut lines = FramedRead::new(wire, RecoveringLinesCodec::new(80));
    block_on(async {
        assert_eq!(lines.next().await.unwrap().unwrap(), ok("a"));
        assert_eq!(lines.next().await.unwrap().unwrap(), NOT_UTF8);
        let error = lines.next().await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset);
        assert!(lines.next().await.is_none());
        assert!(lines.next().await.is_none());
    });
}

#[test]
fn an_endless_line_through_a_reader_is_dropped_as_it_arrives() {
    // 16 MiB and no newline, then a good line: the reader never runs dry,
    // as a client on a fast link would keep the socket full.
    let wire = futures::io::repeat(b'x')
        .take(16 * MIB as u64)
        .chain(Cursor::new(b"\nafter\n".to_vec()));
    let mut lines = FramedRead::new(wire, RecoveringLinesCodec::new(4096));
    let bound = 4096 + 1 + 2 * lines.read_chunk_size();
    let mut cx = Context::from_waker(noop_waker_ref());

    let mut items = Vec::new();
    let mut polls = 0;
    loop {
        let poll = Pin::new(&mut lines).poll_next(&mut cx);
        polls += 1;
        assert!(
            lines.buffer_capacity() <= bound,
            "buffer of {} bytes",
            lines.buffer_capacity()
        );
        match poll {
            Poll::Ready(Some(item)) => items.push(item.unwrap()),
            Poll::Ready(None) => break,
            // The reader has more, but yields to the task now and then.
            Poll::Pending => {}
        }
    }
    assert_eq!(items, [too_long(4096), ok("after")]);
    // 16 MiB in reads of at most 8 KiB, at most 32 reads per poll.
    assert!(polls >= 16 * MIB / (32 * 8 * KIB), "{polls} polls");
}
