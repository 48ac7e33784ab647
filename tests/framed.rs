//! FramedRead, FramedWrite and HalvesStream over scripted in-memory I/O.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use futures::executor::block_on;
use futures::io::{AsyncRead, AsyncWrite, Cursor};
use futures::stream::{self, FusedStream};
use futures::task::noop_waker_ref;
use futures::{Sink, SinkExt, Stream, StreamExt};
use stream_multiplexer::codec::{Encoder, LengthDelimitedCodec, LinesCodec, RecoveringLinesCodec};
use stream_multiplexer::framed::{FramedRead, FramedWrite};
use stream_multiplexer::{HalvesStream, IntoHalves, Locked};

// ---- scripted I/O ----------------------------------------------------------

/// One step of what a [`ScriptedReader`] does when read.
#[derive(Debug)]
enum Step {
    /// Deliver these bytes (as many as fit the caller's buffer).
    Data(Vec<u8>),
    /// Return `Pending` once, waking the task, as a socket with no data does.
    Pending,
    /// Fail with this kind of error.
    Error(ErrorKind),
}

/// An `AsyncRead` that follows a script, then reports EOF, counting reads.
#[derive(Debug, Default)]
struct ScriptedReader {
    steps: VecDeque<Step>,
    reads: usize,
    /// The size of the buffer each read offered.
    offered: Vec<usize>,
}

impl ScriptedReader {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            reads: 0,
            offered: Vec::new(),
        }
    }

    /// Each byte of `wire` in a read of its own, with `Pending` in between.
    fn byte_by_byte(wire: &[u8]) -> Self {
        Self::new(
            wire.iter()
                .flat_map(|&byte| [Step::Data(vec![byte]), Step::Pending]),
        )
    }
}

impl AsyncRead for ScriptedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.reads += 1;
        self.offered.push(buf.len());
        match self.steps.pop_front() {
            None => Poll::Ready(Ok(0)),
            Some(Step::Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Error(kind)) => Poll::Ready(Err(kind.into())),
            Some(Step::Data(mut data)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if n < data.len() {
                    self.steps.push_front(Step::Data(data.split_off(n)));
                }
                Poll::Ready(Ok(n))
            }
        }
    }
}

/// An `AsyncWrite` that records what it is asked to do.
#[derive(Debug, Default)]
struct RecordingWriter {
    written: Vec<u8>,
    writes: usize,
    flushes: usize,
    closed: bool,
    /// Accept at most this many bytes per write.
    max_per_write: Option<usize>,
    /// Return `Pending` this many times before accepting writes.
    pending_writes: usize,
    /// Accept 0 bytes, as a writer that can take no more does.
    write_zero: bool,
}

impl AsyncWrite for RecordingWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending_writes > 0 {
            self.pending_writes -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.writes += 1;
        if self.write_zero {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(self.max_per_write.unwrap_or(usize::MAX));
        self.written.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

/// Polls a stream once, without blocking.
fn poll_once<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    Pin::new(stream).poll_next(&mut Context::from_waker(noop_waker_ref()))
}

fn length_delimited(width: usize, frames: &[&[u8]]) -> Vec<u8> {
    let mut codec = LengthDelimitedCodec::new(width);
    let mut wire = BytesMut::new();
    for frame in frames {
        codec
            .encode(Bytes::copy_from_slice(frame), &mut wire)
            .unwrap();
    }
    wire.to_vec()
}

fn collect_frames<R>(mut frames: FramedRead<R, LengthDelimitedCodec>) -> io::Result<Vec<Bytes>>
where
    R: AsyncRead + Unpin,
{
    block_on(async {
        let mut decoded = Vec::new();
        while let Some(frame) = frames.next().await {
            decoded.push(frame?);
        }
        Ok(decoded)
    })
}

// ---- FramedRead: buffers ---------------------------------------------------

#[test]
fn reader_holds_no_buffer_before_it_is_polled() {
    let frames = FramedRead::new(ScriptedReader::default(), LengthDelimitedCodec::new(2));
    assert_eq!(frames.buffer_capacity(), 0);
}

#[test]
fn reader_releases_its_buffer_when_a_burst_is_over() {
    let wire = length_delimited(2, &[b"one", b"two"]);
    let reader = ScriptedReader::new([Step::Data(wire), Step::Pending]);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(2));

    assert!(matches!(poll_once(&mut frames), Poll::Ready(Some(Ok(_)))));
    assert!(frames.buffer_capacity() > 0, "the second frame is buffered");
    assert!(matches!(poll_once(&mut frames), Poll::Ready(Some(Ok(_)))));
    assert!(poll_once(&mut frames).is_pending());
    assert_eq!(frames.buffer_capacity(), 0, "idle: no buffer held");
}

#[test]
fn reader_keeps_a_partial_frame_across_pending_reads() {
    let wire = length_delimited(2, &[b"hello"]);
    let reader = ScriptedReader::new([
        Step::Data(wire[..4].to_vec()),
        Step::Pending,
        Step::Data(wire[4..].to_vec()),
    ]);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(2));

    assert!(poll_once(&mut frames).is_pending());
    assert!(frames.buffer_capacity() > 0, "the partial frame is kept");
    match poll_once(&mut frames) {
        Poll::Ready(Some(Ok(frame))) => assert_eq!(frame, Bytes::from("hello")),
        other => panic!("expected the frame, got {other:?}"),
    }
}

#[test]
fn huge_declared_length_within_max_reserves_nothing_until_bytes_arrive() {
    // 8 MiB - 1 is allowed, but only 10 bytes of it have arrived.
    let mut wire = vec![0x00, 0x7f, 0xff, 0xff];
    wire.extend_from_slice(&[0; 10]);
    let reader = ScriptedReader::new([Step::Data(wire), Step::Pending]);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(4));

    assert!(poll_once(&mut frames).is_pending());
    assert!(
        frames.buffer_capacity() <= 2 * frames.read_chunk_size(),
        "capacity {} grew towards the declared length",
        frames.buffer_capacity()
    );
}

#[test]
fn declared_length_of_a_gibibyte_ends_the_reader_with_invalid_data() {
    let mut wire = vec![0x40, 0x00, 0x00, 0x00]; // 1 GiB
    wire.extend_from_slice(&[0; 100]);
    let reader = ScriptedReader::new([Step::Data(wire)]);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(4));

    match block_on(frames.next()) {
        Some(Err(error)) => assert_eq!(error.kind(), ErrorKind::InvalidData),
        other => panic!("expected InvalidData, got {other:?}"),
    }
    assert_eq!(frames.buffer_capacity(), 0);
    assert!(block_on(frames.next()).is_none());
}

#[test]
fn read_chunk_size_bounds_each_read() {
    let wire = length_delimited(2, &[&[9; 100]]);
    let mut frames = FramedRead::new(
        ScriptedReader::new([Step::Data(wire)]),
        LengthDelimitedCodec::new(2),
    );
    frames.set_read_chunk_size(16);
    assert_eq!(collect_frames(frames).unwrap(), [Bytes::from(vec![9; 100])]);

    // 102 bytes in reads of 16: 7 reads of data, and one that sees EOF.
    let wire = length_delimited(2, &[&[9; 100]]);
    let mut frames = FramedRead::new(
        ScriptedReader::new([Step::Data(wire)]),
        LengthDelimitedCodec::new(2),
    );
    frames.set_read_chunk_size(16);
    while block_on(frames.next()).is_some() {}
    assert_eq!(frames.get_ref().reads, 8);
}

/// Found by the codec fuzz target: lines arriving a byte at a time, some
/// longer than the maximum, grew the buffer past twice the most it must
/// hold (`BytesMut` doubled its whole allocation, the bytes already split
/// off its front included). The bound: twice the longest line kept (the
/// maximum and a `\r`) plus a read chunk, and the 8 bytes a `Vec` rounds to.
#[test]
fn buffer_stays_within_twice_a_maximal_frame_and_a_read_chunk() {
    const MAX: usize = 96;
    const CHUNK: usize = 143;
    let wire = include_bytes!("data/codec-buffer-growth.bin");
    // Never `Pending`, so the buffer is never released between reads.
    let reads = wire
        .iter()
        .flat_map(|&byte| [Step::Error(ErrorKind::Interrupted), Step::Data(vec![byte])]);
    let mut lines = FramedRead::new(ScriptedReader::new(reads), RecoveringLinesCodec::new(MAX));
    lines.set_read_chunk_size(CHUNK);
    let bound = 2 * (MAX + 1 + CHUNK) + 8;
    loop {
        let poll = poll_once(&mut lines);
        let capacity = lines.buffer_capacity();
        assert!(
            capacity <= bound,
            "a buffer of {capacity} bytes, bound {bound}"
        );
        if let Poll::Ready(None) = poll {
            break;
        }
    }
}

// ---- FramedRead: decoding ----------------------------------------------------

#[test]
fn thousands_of_frames_from_one_read_are_decoded_before_reading_again() {
    let payloads: Vec<Vec<u8>> = (0..5_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let wire = length_delimited(2, &slices);
    let mut frames = FramedRead::new(
        ScriptedReader::new([Step::Data(wire.clone())]),
        LengthDelimitedCodec::new(2),
    );
    frames.set_read_chunk_size(wire.len());

    let mut decoded = Vec::new();
    while let Some(frame) = block_on(frames.next()) {
        decoded.push(frame.unwrap());
    }
    assert_eq!(decoded, payloads);
    // Reads grow from 512 bytes to the 30,000-byte chunk: 6 reads bring
    // every frame in, the 7th sees EOF. Reading per frame would be 5,000.
    assert_eq!(frames.get_ref().reads, 7, "{:?}", frames.get_ref().offered);
}

#[test]
fn reads_grow_while_they_come_back_full_and_shrink_when_they_do_not() {
    // A client that sends 64 KiB at once, then single small frames.
    let mut steps = vec![Step::Data(vec![0; 64 * 1024])];
    steps.extend((0..8).flat_map(|_| [Step::Data(vec![0]), Step::Pending]));
    let reader = ScriptedReader::new(steps);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(1));
    while let Some(frame) = block_on(frames.next()) {
        frame.unwrap();
    }
    let offered = &frames.get_ref().offered;
    assert_eq!(offered[..6], [512, 1024, 2048, 4096, 8192, 8192], "growth");
    let last = offered[offered.len() - 1];
    assert_eq!(last, 512, "shrank back for small reads: {offered:?}");
}

#[test]
fn frames_arriving_one_byte_per_read_decode_intact() {
    let wire = length_delimited(3, &[b"", b"a", b"hello world", b""]);
    let frames = FramedRead::new(
        ScriptedReader::byte_by_byte(&wire),
        LengthDelimitedCodec::new(3),
    );
    assert_eq!(
        collect_frames(frames).unwrap(),
        [
            Bytes::new(),
            Bytes::from("a"),
            Bytes::from("hello world"),
            Bytes::new()
        ]
    );
}

#[test]
fn zero_length_frames_are_yielded_as_empty_items() {
    let frames = FramedRead::new(Cursor::new(vec![0, 0, 0]), LengthDelimitedCodec::new(1));
    assert_eq!(
        collect_frames(frames).unwrap(),
        [Bytes::new(), Bytes::new(), Bytes::new()]
    );
}

#[test]
fn clean_eof_ends_the_stream_without_an_error() {
    let wire = length_delimited(2, &[b"last"]);
    let mut frames = FramedRead::new(Cursor::new(wire), LengthDelimitedCodec::new(2));
    assert_eq!(
        block_on(frames.next()).unwrap().unwrap(),
        Bytes::from("last")
    );
    assert!(block_on(frames.next()).is_none());
    assert!(frames.is_terminated());
}

#[test]
fn truncated_frame_at_eof_is_an_unexpected_eof_error_then_the_end() {
    let mut wire = length_delimited(2, &[b"whole"]);
    wire.extend_from_slice(b"\x00\x09cut");
    let mut frames = FramedRead::new(Cursor::new(wire), LengthDelimitedCodec::new(2));
    assert_eq!(
        block_on(frames.next()).unwrap().unwrap(),
        Bytes::from("whole")
    );
    let error = block_on(frames.next()).unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
    assert!(block_on(frames.next()).is_none());
}

#[test]
fn interrupted_reads_are_retried_not_reported() {
    let wire = length_delimited(1, &[b"ok"]);
    let reader = ScriptedReader::new([Step::Error(ErrorKind::Interrupted), Step::Data(wire)]);
    let frames = FramedRead::new(reader, LengthDelimitedCodec::new(1));
    assert_eq!(collect_frames(frames).unwrap(), [Bytes::from("ok")]);
}

#[test]
fn a_frame_arriving_in_many_reads_yields_to_the_task_every_32_reads() {
    // A 100 KiB frame in 1 KiB reads that never run dry: a client keeping
    // the socket full must not keep the task (and its other connections)
    // waiting until the frame is complete.
    let wire = length_delimited(4, &[&[7; 100 * 1024]]);
    let steps = wire.chunks(1024).map(|chunk| Step::Data(chunk.to_vec()));
    let mut frames = FramedRead::new(ScriptedReader::new(steps), LengthDelimitedCodec::new(4));
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);

    let mut polls = 0;
    let frame = loop {
        let reads_before = frames.get_ref().reads;
        let poll = Pin::new(&mut frames).poll_next(&mut cx);
        polls += 1;
        assert!(frames.get_ref().reads - reads_before <= 32);
        match poll {
            Poll::Ready(item) => break item.unwrap().unwrap(),
            Poll::Pending => {
                assert_eq!(frames.get_ref().reads - reads_before, 32);
                assert_eq!(wakes.count(), polls, "woken to go on");
            }
        }
    };
    assert_eq!(frame, Bytes::from(vec![7; 100 * 1024]));
    assert!(polls > 1);
}

/// A waker that counts how often it is woken.
#[derive(Debug, Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- FramedRead: fused after an error --------------------------------------

#[test]
fn reader_ends_after_a_decode_error_and_never_reads_again() {
    // A frame above the maximum, then valid frames that must not be decoded.
    let mut wire = vec![0x00, 0xff];
    wire.extend(length_delimited(2, &[b"after"]));
    let reader = ScriptedReader::new([
        Step::Data(wire),
        Step::Data(length_delimited(2, &[b"more"])),
    ]);
    let codec = LengthDelimitedCodec::new(2).max_frame_length(16);
    let mut frames = FramedRead::new(reader, codec);

    let error = block_on(frames.next()).unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData);
    let reads = frames.get_ref().reads;
    for _ in 0..3 {
        assert!(block_on(frames.next()).is_none());
    }
    assert!(frames.is_terminated());
    assert_eq!(frames.get_ref().reads, reads, "read after the error");
    assert_eq!(frames.buffer_capacity(), 0);
}

#[test]
fn reader_ends_after_an_io_error() {
    let reader = ScriptedReader::new([
        Step::Data(length_delimited(1, &[b"before"])),
        Step::Error(ErrorKind::ConnectionReset),
        Step::Data(length_delimited(1, &[b"after"])),
    ]);
    let mut frames = FramedRead::new(reader, LengthDelimitedCodec::new(1));

    assert_eq!(
        block_on(frames.next()).unwrap().unwrap(),
        Bytes::from("before")
    );
    let error = block_on(frames.next()).unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert!(block_on(frames.next()).is_none());
    assert!(block_on(frames.next()).is_none());
}

#[test]
fn line_reader_ends_after_a_line_that_is_too_long() {
    let reader = ScriptedReader::new([Step::Data(b"ok\nthis line is far too long\nok\n".to_vec())]);
    let mut lines = FramedRead::new(reader, LinesCodec::new(8));
    assert_eq!(block_on(lines.next()).unwrap().unwrap(), "ok");
    let error = block_on(lines.next()).unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData);
    assert!(block_on(lines.next()).is_none());
}

#[test]
fn line_reader_rejects_an_endless_line_with_bounded_memory() {
    // A client that sends bytes and never a newline.
    let reader = ScriptedReader::new((0..1_000).map(|_| Step::Data(vec![b'x'; 1024])));
    let mut lines = FramedRead::new(reader, LinesCodec::new(4096));
    let error = block_on(lines.next()).unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidData);
    assert!(
        lines.get_ref().reads <= 6,
        "read {} KiB",
        lines.get_ref().reads
    );
}

// ---- FramedWrite -------------------------------------------------------------

#[test]
fn writer_holds_no_buffer_until_a_frame_is_sent_and_none_after_a_flush() {
    let mut frames = FramedWrite::new(RecordingWriter::default(), LengthDelimitedCodec::new(2));
    assert_eq!(frames.buffer_capacity(), 0);
    block_on(frames.feed(Bytes::from("hello"))).unwrap();
    assert!(frames.buffer_capacity() > 0);
    block_on(frames.flush()).unwrap();
    assert_eq!(frames.buffer_capacity(), 0);
    assert_eq!(frames.get_ref().written, b"\x00\x05hello");
    assert_eq!(frames.get_ref().flushes, 1, "the writer itself was flushed");
}

#[test]
fn frames_below_the_high_water_mark_wait_for_a_flush() {
    let mut frames = FramedWrite::new(RecordingWriter::default(), LengthDelimitedCodec::new(2));
    for _ in 0..100 {
        block_on(frames.feed(Bytes::from_static(&[7; 32]))).unwrap();
    }
    assert_eq!(frames.get_ref().writes, 0);
    assert_eq!(frames.buffered_len(), 100 * 34);
    block_on(frames.flush()).unwrap();
    assert_eq!(frames.get_ref().writes, 1, "100 frames in one write");
}

#[test]
fn many_frames_leave_in_few_writes() {
    let count = 10_000;
    let mut frames = FramedWrite::new(RecordingWriter::default(), LengthDelimitedCodec::new(2));
    let mut source =
        stream::iter((0..count).map(|i: u32| Ok(Bytes::from(i.to_be_bytes().to_vec()))));
    block_on(frames.send_all(&mut source)).unwrap();

    let writer = frames.get_ref();
    // 60,000 bytes, a write each time the 16 KiB high-water mark is
    // passed and one at the final flush: 4. Nothing like one per frame.
    assert!(
        writer.writes <= 5,
        "{} writes for {count} frames",
        writer.writes
    );

    let decoded = collect_frames(FramedRead::new(
        Cursor::new(writer.written.clone()),
        LengthDelimitedCodec::new(2),
    ))
    .unwrap();
    assert_eq!(decoded.len(), count as usize);
    assert!(
        decoded
            .iter()
            .zip(0u32..)
            .all(|(frame, i)| frame[..] == i.to_be_bytes())
    );
}

#[test]
fn reaching_the_high_water_mark_writes_before_accepting_more() {
    let mut frames = FramedWrite::new(RecordingWriter::default(), LengthDelimitedCodec::new(2));
    frames.set_high_water_mark(1024);
    for _ in 0..100 {
        block_on(frames.feed(Bytes::from_static(&[1; 98]))).unwrap();
        assert!(
            frames.buffered_len() < 1024 + 100,
            "buffer exceeded the mark by more than a frame"
        );
    }
    let writes = frames.get_ref().writes;
    // 10,000 bytes, written about every 1,024: ~10 writes, not 100.
    assert!((8..=12).contains(&writes), "{writes} writes");
}

#[test]
fn partial_writes_are_continued_until_everything_is_written() {
    let writer = RecordingWriter {
        max_per_write: Some(3),
        ..RecordingWriter::default()
    };
    let mut frames = FramedWrite::new(writer, LinesCodec::new(100));
    block_on(frames.send("partial writes".to_string())).unwrap();
    assert_eq!(frames.get_ref().written, b"partial writes\n");
    assert_eq!(frames.get_ref().writes, 5);
}

#[test]
fn a_writer_that_is_not_ready_makes_flush_pending_not_lost() {
    let writer = RecordingWriter {
        pending_writes: 1,
        ..RecordingWriter::default()
    };
    let mut frames = FramedWrite::new(writer, LengthDelimitedCodec::new(1));
    let mut cx = Context::from_waker(noop_waker_ref());
    Pin::new(&mut frames).start_send(Bytes::from("x")).unwrap();
    let flush = <FramedWrite<_, _> as Sink<Bytes>>::poll_flush(Pin::new(&mut frames), &mut cx);
    assert!(flush.is_pending());
    assert_eq!(frames.buffered_len(), 2);
    let flush = <FramedWrite<_, _> as Sink<Bytes>>::poll_flush(Pin::new(&mut frames), &mut cx);
    assert!(matches!(flush, Poll::Ready(Ok(()))));
    assert_eq!(frames.get_ref().written, b"\x01x");
}

#[test]
fn a_writer_that_accepts_zero_bytes_is_a_write_zero_error() {
    let writer = RecordingWriter {
        write_zero: true,
        ..RecordingWriter::default()
    };
    let mut frames = FramedWrite::new(writer, LengthDelimitedCodec::new(1));
    let error = block_on(frames.send(Bytes::from("x"))).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WriteZero);
}

#[test]
fn close_writes_buffered_frames_then_closes_the_writer() {
    let mut frames = FramedWrite::new(RecordingWriter::default(), LengthDelimitedCodec::new(1));
    block_on(frames.feed(Bytes::from("bye"))).unwrap();
    assert!(!frames.get_ref().closed);
    block_on(frames.close()).unwrap();
    assert_eq!(frames.get_ref().written, b"\x03bye");
    assert!(frames.get_ref().closed);
}

#[test]
fn a_frame_that_cannot_be_encoded_is_refused_and_the_others_still_go_out() {
    let codec = LengthDelimitedCodec::new(1);
    let mut frames = FramedWrite::new(RecordingWriter::default(), codec);
    block_on(frames.feed(Bytes::from("a"))).unwrap();
    let error = block_on(frames.feed(Bytes::from(vec![0; 256]))).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    block_on(frames.feed(Bytes::from("b"))).unwrap();
    block_on(frames.flush()).unwrap();
    assert_eq!(frames.get_ref().written, b"\x01a\x01b");
}

// ---- IntoHalves and HalvesStream -------------------------------------------

#[test]
fn locked_connection_splits_into_working_halves() {
    let (read, write) = Locked(Cursor::new(length_delimited(2, &[b"hi"]))).into_halves();
    let mut frames = FramedRead::new(read, LengthDelimitedCodec::new(2));
    assert_eq!(block_on(frames.next()).unwrap().unwrap(), Bytes::from("hi"));
    let mut sink = FramedWrite::new(write, LengthDelimitedCodec::new(2));
    block_on(sink.send(Bytes::from("yo"))).unwrap();
}

#[test]
fn halves_stream_passes_accept_errors_through_and_goes_on() {
    let connections = stream::iter(vec![
        Err(io::Error::from(ErrorKind::ConnectionAborted)),
        Ok(Cursor::new(length_delimited(2, &[b"one"]))),
        Err(io::Error::other("emfile")),
        Ok(Cursor::new(length_delimited(2, &[b"two"]))),
    ]);
    let halves = HalvesStream::new(connections, 2);
    let results = block_on(halves.collect::<Vec<_>>());
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[0].as_ref().unwrap_err().kind(),
        ErrorKind::ConnectionAborted
    );
    assert_eq!(results[2].as_ref().unwrap_err().to_string(), "emfile");

    let mut read_all = Vec::new();
    for result in results.into_iter().flatten() {
        let (_write, read) = result;
        read_all.extend(collect_frames(read).unwrap());
    }
    assert_eq!(read_all, [Bytes::from("one"), Bytes::from("two")]);
}

#[test]
fn halves_stream_builder_applies_its_options_to_every_connection() {
    let connections = stream::iter(vec![
        Ok(Cursor::new(length_delimited(2, &[b"12345"]))),
        Ok(Cursor::new(Vec::new())),
    ]);
    let mut halves = HalvesStream::builder(2)
        .max_frame_length(4)
        .read_chunk_size(100)
        .write_high_water_mark(200)
        .build(connections);
    block_on(async {
        while let Some(connection) = halves.next().await {
            let (write, mut read) = connection.unwrap();
            assert_eq!(read.read_chunk_size(), 100);
            assert_eq!(write.high_water_mark(), 200);
            assert_eq!(read.decoder().get_max_frame_length(), 4);
            if let Some(Err(error)) = read.next().await {
                assert_eq!(error.kind(), ErrorKind::InvalidData);
            }
        }
    });
}

#[test]
fn halves_stream_frames_lines_with_the_lines_codec() {
    let connections = stream::iter(vec![Ok(Cursor::new(b"hello\r\nworld\n".to_vec()))]);
    let mut halves = HalvesStream::with_codec(connections, LinesCodec::new(4096));
    let (mut write, read) = block_on(halves.next()).unwrap().unwrap();
    let lines: Vec<String> = block_on(read.map(Result::unwrap).collect());
    assert_eq!(lines, ["hello", "world"]);
    block_on(write.send("hi".to_string())).unwrap();
}

#[cfg(feature = "smol")]
mod smol_adapter {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use stream_multiplexer::runtime::smol::{bind, incoming};

    /// Runs `test` to completion, failing instead of hanging if it is
    /// stuck (a watchdog, not a synchronisation: passing runs never wait).
    fn run_with_watchdog(test: impl std::future::Future<Output = ()>) {
        smol::block_on(async {
            let watchdog = smol::Timer::after(std::time::Duration::from_secs(20));
            match futures::future::select(Box::pin(test), watchdog).await {
                futures::future::Either::Left(((), _)) => {}
                futures::future::Either::Right(_) => panic!("test stuck for 20 s"),
            }
        });
    }

    #[test]
    fn smol_connections_and_their_halves_are_send_and_unpin() {
        fn send_unpin<T: Send + Unpin + 'static>() {}
        send_unpin::<stream_multiplexer::runtime::smol::Incoming>();
        send_unpin::<stream_multiplexer::runtime::smol::Connection>();
        send_unpin::<HalvesStream<stream_multiplexer::runtime::smol::Incoming>>();
        send_unpin::<FramedRead<async_net::TcpStream, LengthDelimitedCodec>>();
        send_unpin::<FramedWrite<async_net::TcpStream, LengthDelimitedCodec>>();
        send_unpin::<FramedWrite<async_net::TcpStream, LinesCodec<std::rc::Rc<str>>>>();
    }

    /// Accepting while out of file descriptors fails with `EMFILE`; the
    /// stream must yield that error and then wait, not fail again at once.
    /// The descriptor limit is lowered in a child process running this test
    /// alone, so the rest of the suite keeps its descriptors.
    #[test]
    #[cfg(target_os = "linux")]
    fn accept_backs_off_when_out_of_file_descriptors() {
        const CHILD: &str = "STREAM_MULTIPLEXER_EMFILE_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(r#"ulimit -n 64 && exec "$0" --exact "$1" --test-threads 1"#)
                .arg(std::env::current_exe().unwrap())
                .arg("smol_adapter::accept_backs_off_when_out_of_file_descriptors")
                .env(CHILD, "1")
                .status()
                .unwrap();
            assert!(status.success(), "child test failed: {status}");
            return;
        }

        run_with_watchdog(async {
            let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let address = listener.local_addr().unwrap();
            let mut connections = incoming(listener);
            // Completed by the kernel, waiting in the backlog.
            let _client = std::net::TcpStream::connect(address).unwrap();

            let mut hogs = Vec::new();
            loop {
                match std::fs::File::open("/dev/null") {
                    Ok(file) => hogs.push(file),
                    Err(error) if error.raw_os_error() == Some(24) => break,
                    Err(error) => panic!("unexpected error {error}"),
                }
            }

            let error = connections.next().await.unwrap().unwrap_err();
            assert_eq!(error.raw_os_error(), Some(24), "EMFILE: {error}");
            // Still out of descriptors: without the back-off this would be
            // a second EMFILE right away.
            assert!(poll_once(&mut connections).is_pending(), "accept spun");

            drop(hogs);
            // After the back-off, the waiting client is accepted.
            let accepted = connections.next().await.unwrap();
            assert!(accepted.is_ok(), "{accepted:?}");
        });
    }

    /// Waits (on the socket, not the clock) until `bytes` bytes are there
    /// to be read; fails after 20 s instead of hanging.
    #[cfg(unix)]
    fn wait_until_buffered(
        connection: &stream_multiplexer::runtime::smol::Connection,
        bytes: usize,
    ) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut peeked = vec![0; bytes];
        while !matches!(connection.get_ref().peek(&mut peeked), Ok(n) if n == bytes) {
            assert!(
                std::time::Instant::now() < give_up,
                "{bytes} bytes never arrived"
            );
            std::thread::yield_now();
        }
    }

    /// A read that fills less than its buffer has most likely drained the
    /// socket, so the next read asks the reactor first instead of trying
    /// the kernel (one read system call per burst, not two): even with the
    /// next burst already in the socket, the first poll after a short read
    /// is `Pending`, and the burst arrives once the reactor reports it,
    /// burst after burst.
    #[test]
    #[cfg(unix)]
    fn after_a_short_read_the_next_read_waits_for_the_reactor_and_misses_nothing() {
        use std::io::Write;

        run_with_watchdog(async {
            let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let address = listener.local_addr().unwrap();
            let mut connections = incoming(listener);
            let mut client = std::net::TcpStream::connect(address).unwrap();
            let mut server = connections.next().await.unwrap().unwrap();
            let mut buffer = [0; 64];

            client.write_all(b"first").unwrap();
            let read = server.read(&mut buffer).await.unwrap();
            assert_eq!(&buffer[..read], b"first");
            for burst in 0..8u8 {
                let sent = [burst; 4];
                client.write_all(&sent).unwrap();
                wait_until_buffered(&server, sent.len());
                assert!(
                    futures::poll!(server.read(&mut buffer)).is_pending(),
                    "burst {burst}: the read after a short read went to the kernel"
                );
                let read = server.read(&mut buffer).await.unwrap();
                assert_eq!(&buffer[..read], &sent, "burst {burst}");
            }

            // A read that fills its buffer says nothing about what is left:
            // the next read tries the kernel at once.
            client.write_all(&[7; 8]).unwrap();
            wait_until_buffered(&server, 8);
            // The first read after the previous short one waits for the
            // reactor, then fills its 4 bytes.
            let read = server.read(&mut buffer[..4]).await.unwrap();
            assert_eq!(read, 4);
            match futures::poll!(server.read(&mut buffer)) {
                Poll::Ready(Ok(4)) => assert_eq!(&buffer[..4], &[7; 4]),
                other => panic!("after a full read: {other:?}"),
            }
        });
    }

    #[test]
    fn accepted_tcp_connections_are_framed_both_ways_without_a_lock() {
        run_with_watchdog(async {
            let listener = bind("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
            let address = listener.local_addr().unwrap();
            let mut halves = HalvesStream::new(incoming(listener), 2);

            let mut client = async_net::TcpStream::connect(address).await.unwrap();
            let (mut write, mut read) = halves.next().await.unwrap().unwrap();
            assert!(write.get_ref().nodelay().unwrap(), "TCP_NODELAY is set");

            client.write_all(b"\x00\x04ping\x00\x00").await.unwrap();
            assert_eq!(read.next().await.unwrap().unwrap(), Bytes::from("ping"));
            assert_eq!(read.next().await.unwrap().unwrap(), Bytes::new());

            write.send(Bytes::from("pong")).await.unwrap();
            let mut reply = [0; 6];
            client.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"\x00\x04pong");

            write.close().await.unwrap();
            drop(client);
            assert!(
                read.next().await.is_none(),
                "the client's close ends the reader"
            );
        });
    }
}
