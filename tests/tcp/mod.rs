//! Real-TCP support for the per-runtime integration tests: a server on the
//! multiplexer spawned on the runtime under test, blocking `std` clients,
//! and a watchdog so that a hang fails the test instead of blocking CI.

#![allow(dead_code, unreachable_pub)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Sink, StreamExt, TryStreamExt};
use stream_multiplexer::{
    ControlMessage, IncomingPacket, MultiplexerBuilder, MultiplexerError, OutgoingMessage,
    OutgoingPacket, Stats, StreamId,
};

/// A safety net, never a synchronisation: every wait in these tests ends
/// on an event long before this.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(60);

pub type BoxWrite = Pin<Box<dyn Sink<Bytes, Error = io::Error> + Send>>;
pub type BoxRead = BoxStream<'static, io::Result<Bytes>>;
pub type BoxHalves = BoxStream<'static, io::Result<(BoxWrite, BoxRead)>>;
pub type Packet = IncomingPacket<io::Result<Bytes>>;

/// One executor (and its reactor) under test.
pub trait Runtime: Send + Sync + 'static {
    /// Binds a loopback listener through this runtime's adapter and frames
    /// it with a 2-byte length prefix.
    fn listen(&self) -> (SocketAddr, BoxHalves);
    /// Runs a future on this runtime's executor.
    fn spawn(&self, future: BoxFuture<'static, ()>);
}

/// Boxes each connection's halves so that every runtime's server has the
/// same type.
pub fn boxed<H, W, R>(halves: H) -> BoxHalves
where
    H: futures::Stream<Item = io::Result<(W, R)>> + Send + 'static,
    W: Sink<Bytes, Error = io::Error> + Send + 'static,
    R: futures::Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    halves
        .map_ok(|(write, read)| {
            let write: BoxWrite = Box::pin(write);
            let read: BoxRead = read.boxed();
            (write, read)
        })
        .boxed()
}

/// Fails unless `packet` is the announcement `expected` (packets hold
/// `io::Error`s, which cannot be compared).
#[track_caller]
pub fn assert_announcement(packet: &Packet, expected: IncomingPacket<()>) {
    let actual = match packet {
        IncomingPacket::StreamConnected(id) => IncomingPacket::StreamConnected(*id),
        IncomingPacket::StreamDisconnected(id, reason) => {
            IncomingPacket::StreamDisconnected(*id, *reason)
        }
        IncomingPacket::Message(_) => panic!("expected {expected:?}, got {packet:?}"),
    };
    assert_eq!(actual, expected);
}

pub struct ServerSetup {
    pub channels: Vec<usize>,
    pub sender_buffer_size: usize,
}

impl Default for ServerSetup {
    fn default() -> Self {
        Self {
            channels: vec![32, 32, 32],
            sender_buffer_size: 128,
        }
    }
}

/// The application's side of a running multiplexer.
pub struct Server {
    pub address: SocketAddr,
    pub outgoing: mpsc::UnboundedSender<OutgoingPacket<Bytes>>,
    pub control: mpsc::UnboundedSender<ControlMessage>,
    pub channels: Vec<mpsc::Receiver<Packet>>,
    pub stats: Stats,
    finished: std_mpsc::Receiver<Result<(), MultiplexerError>>,
}

impl Server {
    pub fn start(runtime: &dyn Runtime, setup: ServerSetup) -> Self {
        let (address, halves) = runtime.listen();
        let (senders, channels): (Vec<_>, Vec<_>) = setup
            .channels
            .iter()
            .map(|&size| mpsc::channel(size))
            .unzip();
        let (outgoing, outgoing_rx) = mpsc::unbounded();
        let (control, control_rx) = mpsc::unbounded();
        let multiplexer =
            MultiplexerBuilder::new(setup.sender_buffer_size).build(outgoing_rx, senders);
        let stats = multiplexer.stats();
        let run = multiplexer.run(halves, control_rx);
        let (done, finished) = std_mpsc::channel();
        runtime.spawn(
            async move {
                let _ = done.send(run.await);
            }
            .boxed(),
        );
        Self {
            address,
            outgoing,
            control,
            channels,
            stats,
            finished,
        }
    }

    /// The next packet on `channel` (blocks the test thread).
    pub fn next(&mut self, channel: usize) -> Packet {
        futures::executor::block_on(self.channels[channel].next()).expect("channel ended")
    }

    /// Connects a client and returns it with the id announced on channel 0.
    pub fn connect(&mut self) -> (Client, StreamId) {
        let client = Client::connect(self.address);
        match self.next(0) {
            IncomingPacket::StreamConnected(id) => (client, id),
            other => panic!("expected StreamConnected, got {other:?}"),
        }
    }

    pub fn send(&self, packet: OutgoingPacket<Bytes>) {
        self.outgoing
            .unbounded_send(packet)
            .expect("outgoing closed");
    }

    pub fn message(&self, ids: impl IntoIterator<Item = StreamId>, value: Bytes) {
        self.send(OutgoingPacket::Message(OutgoingMessage::new(ids, [value])));
    }

    pub fn shutdown(&self) {
        self.control
            .unbounded_send(ControlMessage::Shutdown)
            .expect("control closed");
    }

    /// Waits for `Run` to resolve.
    pub fn finished(&self) -> Result<(), MultiplexerError> {
        self.finished
            .recv_timeout(SAFETY_TIMEOUT)
            .expect("the multiplexer did not finish")
    }
}

/// A blocking client speaking 2-byte length-prefixed frames.
pub struct Client {
    stream: TcpStream,
}

impl Client {
    pub fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(SAFETY_TIMEOUT))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self { stream }
    }

    pub fn try_clone(&self) -> Self {
        Self {
            stream: self.stream.try_clone().expect("clone"),
        }
    }

    pub fn send(&mut self, payload: &[u8]) {
        self.stream.write_all(&encode(payload)).expect("write");
    }

    /// Sends many frames in one write.
    pub fn send_all<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let mut bytes = Vec::new();
        for payload in payloads {
            bytes.extend(encode(payload));
        }
        self.stream.write_all(&bytes).expect("write");
    }

    /// The next frame, or `None` at the end of the connection.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut length = [0; 2];
        match self.stream.read_exact(&mut length) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return None,
            Err(error) => panic!("read failed: {error}"),
        }
        let mut payload = vec![0; usize::from(u16::from_be_bytes(length))];
        self.stream.read_exact(&mut payload).expect("read payload");
        Some(payload)
    }
}

pub fn encode(payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).expect("frame too long for the test");
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a `Message` packet from `id`.
pub fn payload(packet: &Packet, id: StreamId) -> Bytes {
    assert_eq!(packet.id(), id, "a packet from another stream: {packet:?}");
    match packet.value() {
        Some(Ok(bytes)) => bytes.clone(),
        other => panic!("expected a frame, got {other:?} in {packet:?}"),
    }
}

/// Runs a scenario on its own thread and fails if it does not finish within
/// the safety timeout, so a hang cannot block CI.
pub fn within_safety_timeout(scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std_mpsc::channel();
    let worker = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(SAFETY_TIMEOUT * 2) {
        Ok(()) => worker.join().expect("scenario panicked"),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => panic!("the scenario hung"),
    }
}
