//! The bounded codecs, driven directly through `Decoder` and `Encoder`.

use std::io::ErrorKind;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use stream_multiplexer::codec::{
    Decoder, Encoder, InvalidLengthFieldLength, LengthDelimitedCodec, LinesCodec,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// Feeds `wire` to `decoder` one byte at a time, as a slow client would,
/// and collects what it decodes.
fn decode_byte_by_byte<D: Decoder>(decoder: &mut D, wire: &[u8]) -> Result<Vec<D::Item>, D::Error> {
    let mut buffer = BytesMut::new();
    let mut items = Vec::new();
    for &byte in wire {
        buffer.put_u8(byte);
        while let Some(item) = decoder.decode(&mut buffer)? {
            items.push(item);
        }
    }
    while let Some(item) = decoder.decode_eof(&mut buffer)? {
        items.push(item);
    }
    Ok(items)
}

fn encode_all(codec: &mut LengthDelimitedCodec, frames: &[Bytes]) -> BytesMut {
    let mut wire = BytesMut::new();
    for frame in frames {
        codec.encode(frame.clone(), &mut wire).expect("frame fits");
    }
    wire
}

// ---- LengthDelimitedCodec: limits ------------------------------------------

#[test]
fn declared_length_of_a_gibibyte_is_rejected_without_reserving_it() {
    let mut codec = LengthDelimitedCodec::new(4);
    let mut wire = BytesMut::with_capacity(64);
    wire.put_u32(GIB as u32);
    wire.put_slice(b"some payload");
    let capacity_before = wire.capacity();

    let error = codec
        .decode(&mut wire)
        .expect_err("1 GiB is above the 8 MiB default");

    assert_eq!(error.kind(), ErrorKind::InvalidData);
    assert_eq!(wire.capacity(), capacity_before, "nothing was reserved");
}

#[test]
fn declared_length_above_max_is_rejected_as_soon_as_the_length_field_arrives() {
    let mut codec = LengthDelimitedCodec::new(2).max_frame_length(100);
    // Only the length field: no payload byte has arrived yet.
    let mut wire = BytesMut::from(&[0u8, 101][..]);
    let error = codec.decode(&mut wire).expect_err("101 > 100");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn declared_length_equal_to_max_is_accepted() {
    let mut codec = LengthDelimitedCodec::new(2).max_frame_length(3);
    let mut wire = BytesMut::from(&b"\x00\x03abc"[..]);
    assert_eq!(codec.decode(&mut wire).unwrap(), Some(Bytes::from("abc")));
}

#[test]
fn declared_length_beyond_u64_range_of_smaller_fields_is_rejected_with_an_eight_byte_field() {
    let mut codec = LengthDelimitedCodec::new(8);
    let mut wire = BytesMut::from(&[0xff; 8][..]);
    let error = codec
        .decode(&mut wire)
        .expect_err("u64::MAX is above the max");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn frame_too_long_for_the_length_field_is_an_encode_error_not_a_truncation() {
    for (width, too_long) in [(1, 256), (2, 65_536)] {
        let mut codec = LengthDelimitedCodec::new(width);
        let mut wire = BytesMut::new();
        let error = codec
            .encode(Bytes::from(vec![0; too_long]), &mut wire)
            .expect_err("does not fit the field");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "width {width}");
        assert!(wire.is_empty(), "nothing was written for width {width}");

        // One byte less fits exactly.
        codec
            .encode(Bytes::from(vec![7; too_long - 1]), &mut wire)
            .unwrap();
        assert_eq!(wire.len(), width + too_long - 1);
        assert!(wire[..width].iter().all(|&byte| byte == 0xff));
    }
}

#[test]
fn frame_longer_than_max_is_an_encode_error() {
    let mut codec = LengthDelimitedCodec::new(4).max_frame_length(10);
    let mut wire = BytesMut::new();
    let error = codec
        .encode(Bytes::from(vec![0; 11]), &mut wire)
        .expect_err("11 > 10");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(wire.is_empty());
}

#[test]
fn length_field_width_outside_one_to_eight_is_refused() {
    assert_eq!(
        LengthDelimitedCodec::try_new(0).unwrap_err(),
        InvalidLengthFieldLength(0)
    );
    assert_eq!(
        LengthDelimitedCodec::try_new(9).unwrap_err(),
        InvalidLengthFieldLength(9)
    );
    for width in 1..=8 {
        assert_eq!(
            LengthDelimitedCodec::try_new(width)
                .unwrap()
                .length_field_length(),
            width
        );
    }
}

#[test]
#[should_panic(expected = "length field must be 1 to 8 bytes wide, not 9")]
fn new_panics_on_a_width_outside_one_to_eight() {
    let _ = LengthDelimitedCodec::new(9);
}

// ---- LengthDelimitedCodec: wire format -------------------------------------

#[test]
fn length_field_is_big_endian_and_counts_the_payload_only() {
    let mut codec = LengthDelimitedCodec::new(3);
    let wire = encode_all(&mut codec, &[Bytes::from(vec![b'x'; 0x0102])]);
    assert_eq!(&wire[..3], &[0x00, 0x01, 0x02]);
    assert_eq!(wire.len(), 3 + 0x0102);
}

#[test]
fn every_length_field_width_round_trips() {
    for width in 1..=8 {
        let mut codec = LengthDelimitedCodec::new(width);
        let mut frames = vec![
            Bytes::new(),
            Bytes::from_static(b"a"),
            Bytes::from(vec![0xab; 255]),
        ];
        if width > 1 {
            frames.push(Bytes::from(vec![0xcd; 256]));
            frames.push(Bytes::from(
                (0..5000u32).map(|i| i as u8).collect::<Vec<_>>(),
            ));
        }
        let mut wire = encode_all(&mut codec, &frames);
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert_eq!(decoded, frames, "width {width}");
        assert!(wire.is_empty(), "width {width} left bytes behind");
    }
}

#[test]
fn every_length_field_width_decodes_alike_wherever_a_read_ends() {
    // A whole frame in the buffer and a frame whose payload is still
    // arriving take different paths through the decoder; cutting the input
    // at every byte exercises both, and both must agree.
    for width in 1..=8 {
        let mut codec = LengthDelimitedCodec::new(width);
        let frames = [
            Bytes::from_static(b"first"),
            Bytes::new(),
            Bytes::from(vec![0x5a; 40]),
            Bytes::from_static(b"z"),
        ];
        let wire = encode_all(&mut codec, &frames);
        for cut in 0..=wire.len() {
            let mut buffer = BytesMut::from(&wire[..cut]);
            let mut decoded = Vec::new();
            while let Some(frame) = codec.decode(&mut buffer).unwrap() {
                decoded.push(frame);
            }
            buffer.extend_from_slice(&wire[cut..]);
            while let Some(frame) = codec.decode_eof(&mut buffer).unwrap() {
                decoded.push(frame);
            }
            assert_eq!(decoded, frames, "width {width}, cut at {cut}");
            assert!(buffer.is_empty(), "width {width}, cut at {cut}");
        }
    }
}

#[test]
fn declared_length_above_max_is_rejected_with_every_width() {
    for width in 1..=8 {
        let mut codec = LengthDelimitedCodec::new(width).max_frame_length(100);
        let mut wire = BytesMut::new();
        wire.put_uint(101, width);
        wire.extend_from_slice(&[0; 101]);
        let error = codec.decode(&mut wire).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData, "width {width}");

        let mut codec = LengthDelimitedCodec::new(width).max_frame_length(100);
        let mut wire = BytesMut::new();
        wire.put_uint(100, width);
        wire.extend_from_slice(&[0; 100]);
        assert_eq!(codec.decode(&mut wire).unwrap().unwrap().len(), 100);
    }
}

#[test]
fn zero_length_frames_decode_as_empty_payloads() {
    let mut codec = LengthDelimitedCodec::new(2);
    let mut wire = BytesMut::from(&b"\x00\x00\x00\x00\x00\x01z\x00\x00"[..]);
    let mut decoded = Vec::new();
    while let Some(frame) = codec.decode(&mut wire).unwrap() {
        decoded.push(frame);
    }
    assert_eq!(
        decoded,
        [Bytes::new(), Bytes::new(), Bytes::from("z"), Bytes::new()]
    );
}

#[test]
fn frames_delivered_one_byte_at_a_time_decode_intact() {
    let mut codec = LengthDelimitedCodec::new(4);
    let frames: Vec<Bytes> = (0..50).map(|i| Bytes::from(vec![i as u8; i * 7])).collect();
    let wire = encode_all(&mut codec, &frames);
    assert_eq!(decode_byte_by_byte(&mut codec, &wire).unwrap(), frames);
}

#[test]
fn thousands_of_frames_in_one_buffer_all_decode_in_order() {
    let mut codec = LengthDelimitedCodec::new(2);
    let frames: Vec<Bytes> = (0..10_000u32)
        .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
        .collect();
    let mut wire = encode_all(&mut codec, &frames);
    let mut decoded = Vec::with_capacity(frames.len());
    while let Some(frame) = codec.decode(&mut wire).unwrap() {
        decoded.push(frame);
    }
    assert_eq!(decoded, frames);
}

#[test]
fn decoded_payload_shares_the_read_buffer_without_copying() {
    let mut codec = LengthDelimitedCodec::new(2);
    let mut wire = BytesMut::from(&b"\x00\x05hello\x00\x05world"[..]);
    let start = wire.as_ptr();
    let first = codec.decode(&mut wire).unwrap().unwrap();
    let second = codec.decode(&mut wire).unwrap().unwrap();
    assert_eq!(first.as_ptr(), start.wrapping_add(2));
    assert_eq!(second.as_ptr(), start.wrapping_add(9));
}

#[test]
fn truncated_frame_at_eof_is_an_unexpected_eof_error() {
    // Cut inside the length field, and inside the payload.
    for partial in [&b"\x00"[..], &b"\x00\x05hel"[..]] {
        let mut codec = LengthDelimitedCodec::new(2);
        let mut wire = BytesMut::from(partial);
        assert_eq!(codec.decode(&mut wire).unwrap(), None);
        let error = codec.decode_eof(&mut wire).expect_err("frame cut short");
        assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{partial:?}");
    }
}

#[test]
fn clean_eof_after_whole_frames_is_not_an_error() {
    let mut codec = LengthDelimitedCodec::new(2);
    let mut wire = BytesMut::from(&b"\x00\x02hi"[..]);
    assert_eq!(
        codec.decode_eof(&mut wire).unwrap(),
        Some(Bytes::from("hi"))
    );
    assert_eq!(codec.decode_eof(&mut wire).unwrap(), None);
}

// ---- LinesCodec --------------------------------------------------------------

fn decode_lines(codec: &mut LinesCodec, wire: &[u8]) -> std::io::Result<Vec<String>> {
    let mut buffer = BytesMut::from(wire);
    let mut lines = Vec::new();
    while let Some(line) = codec.decode_eof(&mut buffer)? {
        lines.push(line);
    }
    Ok(lines)
}

#[test]
fn lines_lose_their_line_feed_and_a_carriage_return_before_it() {
    let mut codec = LinesCodec::new(100);
    let lines = decode_lines(&mut codec, b"one\ntwo\r\n\r\nin\rside\n\n").unwrap();
    assert_eq!(lines, ["one", "two", "", "in\rside", ""]);
}

#[test]
fn line_without_newline_is_rejected_once_more_than_the_max_is_buffered() {
    let mut codec = LinesCodec::new(8);
    // Max + 1 bytes may still be a full line and its '\r': keep waiting.
    let mut buffer = BytesMut::from(&b"123456789"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    // One more, still without a newline: this can no longer be a valid line.
    buffer.put_u8(b'0');
    let error = codec.decode(&mut buffer).expect_err("line too long");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn line_longer_than_max_is_rejected_even_when_its_newline_is_buffered() {
    let mut codec = LinesCodec::new(4);
    let mut buffer = BytesMut::from(&b"12345\n"[..]);
    let error = codec.decode(&mut buffer).expect_err("5 > 4");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn line_of_exactly_max_length_with_crlf_is_accepted() {
    let mut codec = LinesCodec::new(4);
    assert_eq!(decode_lines(&mut codec, b"1234\r\n").unwrap(), ["1234"]);
}

#[test]
fn line_that_is_not_utf8_is_rejected() {
    let mut codec = LinesCodec::new(100);
    let mut buffer = BytesMut::from(&b"caf\xe9\n"[..]);
    let error = codec.decode(&mut buffer).expect_err("latin-1, not UTF-8");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn multibyte_utf8_split_across_reads_decodes() {
    let mut codec = LinesCodec::new(100);
    let wire = "héllo wörld ✓\nsecond\n".as_bytes();
    assert_eq!(
        decode_byte_by_byte(&mut codec, wire).unwrap(),
        ["héllo wörld ✓", "second"]
    );
}

#[test]
fn last_line_without_newline_is_yielded_at_eof() {
    let mut codec = LinesCodec::new(100);
    assert_eq!(decode_lines(&mut codec, b"a\nlast").unwrap(), ["a", "last"]);
    assert_eq!(decode_lines(&mut codec, b"").unwrap(), Vec::<String>::new());
}

#[test]
fn last_line_at_eof_is_still_bounded_and_checked() {
    let mut codec = LinesCodec::new(3);
    let mut buffer = BytesMut::from(&b"abcd"[..]); // max + 1: waits for a '\r\n'
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    let error = codec.decode_eof(&mut buffer).expect_err("4 > 3 at eof");
    assert_eq!(error.kind(), ErrorKind::InvalidData);
}

#[test]
fn encoded_lines_end_with_a_line_feed() {
    let mut codec = LinesCodec::new(100);
    let mut wire = BytesMut::new();
    codec.encode("hello".to_string(), &mut wire).unwrap();
    codec.encode(String::new(), &mut wire).unwrap();
    assert_eq!(&wire[..], b"hello\n\n");
    assert_eq!(decode_lines(&mut codec, &wire).unwrap(), ["hello", ""]);
}

#[test]
fn encoding_a_line_with_a_newline_or_above_max_is_an_error() {
    let mut codec = LinesCodec::new(5);
    let mut wire = BytesMut::new();
    let error = codec.encode("a\nb".to_string(), &mut wire).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let error = codec.encode("123456".to_string(), &mut wire).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(wire.is_empty());
}

#[test]
fn shared_lines_encode_like_strings() {
    let mut codec = LinesCodec::<Arc<str>>::with_max_line_length(100);
    let mut wire = BytesMut::new();
    let line: Arc<str> = Arc::from("broadcast");
    codec.encode(line.clone(), &mut wire).unwrap();
    codec.encode(line, &mut wire).unwrap();
    assert_eq!(&wire[..], b"broadcast\nbroadcast\n");
}
