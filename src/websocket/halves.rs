//! One WebSocket connection as the two halves the multiplexer takes:
//! [`WsWrite`], a sink of messages, and [`WsRead`], a stream of them.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures::io::{AsyncRead, AsyncWrite};
use futures::sink::Sink;
use futures::stream::{FusedStream, Stream};

use super::message::WsMessage;
use super::read_burst::ReadBurst;
use super::write_buffer::WriteBuffered;

/// The WebSocket over a connection whose writes are gathered and whose
/// reads come in bursts.
pub(super) type Socket<C> = WebSocketStream<WriteBuffered<ReadBurst<C>>>;

/// The socket both halves use. Reading may write (a pong, a close reply)
/// and closing reads (the peer's close reply), so neither half owns a
/// direction outright; the multiplexer polls both from one task, so the
/// lock is never contended there.
type Shared<C> = Arc<Mutex<Socket<C>>>;

/// The most control frames (pings, pongs) one poll of a reader handles
/// before it yields to the task's other work, so that a client sending
/// nothing but pings cannot keep the multiplexer in one reader.
const CONTROL_FRAMES_PER_POLL: usize = 64;

/// The most messages one poll of a closing writer discards while it waits
/// for the peer's close reply, for the same reason.
const DISCARDED_PER_POLL: usize = 64;

/// Splits an open WebSocket into its halves.
pub(super) fn split<C>(socket: Socket<C>) -> (WsWrite<C>, WsRead<C>) {
    let shared = Arc::new(Mutex::new(socket));
    (
        WsWrite {
            socket: Arc::clone(&shared),
            close: CloseState::Open,
        },
        WsRead {
            socket: shared,
            state: ReadState::Reading,
        },
    )
}

/// Locks the socket. A panic elsewhere while it was held (poisoning) does
/// not make it unusable: tungstenite's state is changed by whole calls.
fn lock<C>(socket: &Mutex<Socket<C>>) -> MutexGuard<'_, Socket<C>> {
    socket.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tungstenite error as an I/O error: what the halves report, as the
/// crate's other halves do.
pub(super) fn into_io(error: WsError) -> io::Error {
    let kind = match error {
        WsError::Io(error) => return error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::NotConnected,
        WsError::Capacity(_)
        | WsError::Protocol(_)
        | WsError::Utf8(_)
        | WsError::AttackAttempt
        | WsError::HttpFormat(_)
        | WsError::Http(_) => io::ErrorKind::InvalidData,
        WsError::WriteBufferFull(_) => io::ErrorKind::OutOfMemory,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error.to_string())
}

/// The close code that tells a client why its connection is failed after
/// `error`, if the connection can still carry one.
fn close_code(error: &WsError) -> Option<CloseCode> {
    match error {
        // A message or frame over the maximum size.
        WsError::Capacity(_) => Some(CloseCode::Size),
        // Invalid UTF-8 in a text message.
        WsError::Utf8(_) => Some(CloseCode::Invalid),
        WsError::Protocol(_) => Some(CloseCode::Protocol),
        // The connection itself failed: nothing can be sent on it.
        _ => None,
    }
}

/// The stream of messages a WebSocket client sends: the read half of a
/// connection accepted by [`Accept`](super::Accept).
///
/// - Yields each text and binary message, whole, as a [`WsMessage`].
/// - **Pings are answered** while the reader is polled: tungstenite queues
///   the pong when it reads the ping, and the reader's next read writes and
///   flushes it, whether or not the server is sending anything.
/// - **A close from the client ends the stream**: the reader writes the
///   close reply (completing the close handshake), then yields `None`.
/// - **An error is yielded once, then the stream ends**, like
///   [`FramedRead`](crate::framed::FramedRead). A message over the maximum
///   size, invalid UTF-8 in a text message or any other protocol violation
///   is an error of kind [`io::ErrorKind::InvalidData`]; the client is sent
///   a close frame saying why (1009, 1007 or 1002) before the connection is
///   closed.
///
/// # Examples
///
/// See the [module docs](super).
#[must_use = "streams do nothing unless polled"]
pub struct WsRead<C> {
    socket: Shared<C>,
    state: ReadState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Reading,
    /// A ping was read: its pong is written before anything more is read,
    /// so that a client that sends pings and never reads its pongs is not
    /// read either (its pongs would pile up in tungstenite's write buffer).
    Answering,
    /// The WebSocket ended; tungstenite may have written a last frame (the
    /// close reply) without flushing it.
    Flushing,
    Done,
}

impl<C> Stream for WsRead<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Item = io::Result<WsMessage>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut socket = lock(&this.socket);
        let mut control_frames = 0;
        loop {
            match this.state {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Flushing => {
                    // A failed flush changes nothing: the stream ends either way.
                    let _flushed = ready!(Pin::new(socket.get_mut()).poll_flush(cx));
                    this.state = ReadState::Done;
                    return Poll::Ready(None);
                }
                ReadState::Answering => match ready!(Pin::new(&mut *socket).poll_flush(cx)) {
                    Ok(()) => this.state = ReadState::Reading,
                    Err(error) => {
                        this.state = ReadState::Done;
                        return Poll::Ready(Some(Err(into_io(error))));
                    }
                },
                ReadState::Reading => {}
            }
            match ready!(Pin::new(&mut *socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    return Poll::Ready(Some(Ok(WsMessage::Text(text))));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Poll::Ready(Some(Ok(WsMessage::Binary(bytes))));
                }
                // A ping: tungstenite queued its pong as it read it, and
                // writes and flushes it at the start of the next read, which
                // this loop does now. So a ping is answered even while the
                // server sends nothing and the writer is never polled. A
                // close: the same next read writes the close reply, then
                // ends the stream (`None`).
                Some(Ok(
                    message @ (Message::Ping(_)
                    | Message::Pong(_)
                    | Message::Frame(_)
                    | Message::Close(_)),
                )) => {
                    if matches!(message, Message::Ping(_)) {
                        this.state = ReadState::Answering;
                    }
                    control_frames += 1;
                    if control_frames == CONTROL_FRAMES_PER_POLL {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                None => this.state = ReadState::Flushing,
                Some(Err(error)) => {
                    fail(&mut socket, &error, cx);
                    this.state = ReadState::Done;
                    return Poll::Ready(Some(Err(into_io(error))));
                }
            }
        }
    }
}

/// Tells the client why its connection fails, with a close frame, as far
/// as the socket takes it now; the writer's close flushes the rest.
fn fail<C>(socket: &mut Socket<C>, error: &WsError, cx: &mut Context<'_>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Some(code) = close_code(error) else {
        return;
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    };
    // Best effort: the connection is failed whether or not it arrives.
    if Pin::new(&mut *socket)
        .start_send(Message::Close(Some(frame)))
        .is_ok()
    {
        let _flushed = Pin::new(&mut *socket).poll_flush(cx);
    }
}

impl<C> FusedStream for WsRead<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn is_terminated(&self) -> bool {
        self.state == ReadState::Done
    }
}

impl<C> fmt::Debug for WsRead<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsRead")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The sink of messages to a WebSocket client: the write half of a
/// connection accepted by [`Accept`](super::Accept).
///
/// It takes anything that converts into a [`WsMessage`]: a `WsMessage`,
/// [`Utf8Bytes`], a `String` or `&'static str` (sent as text), [`Bytes`]
/// or a `Vec<u8>` (sent as binary). So it can stand beside the write half
/// of another transport in one multiplexer, with a value type both take
/// (see the [module docs](super#one-multiplexer-several-transports)).
///
/// - [`start_send`](Sink::start_send) frames the message; frames are
///   gathered and leave in one write when the sink is flushed (or when 16
///   KiB wait), and the buffer that gathered them is released then.
/// - [`poll_close`](Sink::poll_close) performs the **close handshake**: it
///   sends a close frame (code 1000, normal closure), reads until the
///   client's close reply comes (discarding any message that arrives
///   before it: the application closed this connection), then closes the
///   connection itself. A client that never replies holds the close until
///   the multiplexer's [write timeout](crate::MultiplexerBuilder::write_timeout)
///   drops it. If the connection was already closing (the client closed
///   it, or a reader error sent its own close code), it only finishes
///   that.
/// - Errors are [`io::Error`]s; sending after the client closed the
///   connection is an error of kind [`io::ErrorKind::NotConnected`].
///
/// [`Bytes`]: bytes::Bytes
///
/// # Examples
///
/// See the [module docs](super).
#[must_use = "sinks do nothing unless polled"]
pub struct WsWrite<C> {
    socket: Shared<C>,
    close: CloseState,
}

/// How far [`WsWrite::poll_close`] has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    /// The close frame is queued; flushing it.
    Flushing,
    /// Reading until the client's close reply.
    AwaitingReply,
    /// Closing the connection under the WebSocket.
    ClosingConnection,
    Closed,
}

/// Whether `result` failed only because the WebSocket is already closing
/// or closed, which a close takes as done.
fn closing_already<T>(result: Result<T, WsError>) -> Result<(), WsError> {
    use async_tungstenite::tungstenite::error::ProtocolError;
    match result {
        Ok(_)
        | Err(
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::SendAfterClosing),
        ) => Ok(()),
        Err(error) => Err(error),
    }
}

impl<C, T> Sink<T> for WsWrite<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: Into<WsMessage>,
{
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut socket = lock(&self.socket);
        Sink::<Message>::poll_ready(Pin::new(&mut *socket), cx).map_err(into_io)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> io::Result<()> {
        let mut socket = lock(&self.socket);
        Pin::new(&mut *socket)
            .start_send(item.into().into_tungstenite())
            .map_err(into_io)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut socket = lock(&self.socket);
        Sink::<Message>::poll_flush(Pin::new(&mut *socket), cx).map_err(into_io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut socket = lock(&this.socket);
        loop {
            match this.close {
                CloseState::Open => {
                    ready!(Sink::<Message>::poll_ready(Pin::new(&mut *socket), cx))
                        .map_err(into_io)?;
                    let normal = CloseFrame {
                        code: CloseCode::Normal,
                        reason: Utf8Bytes::from_static(""),
                    };
                    closing_already(
                        Pin::new(&mut *socket).start_send(Message::Close(Some(normal))),
                    )
                    .map_err(into_io)?;
                    this.close = CloseState::Flushing;
                }
                CloseState::Flushing => {
                    closing_already(ready!(Sink::<Message>::poll_flush(
                        Pin::new(&mut *socket),
                        cx
                    )))
                    .map_err(into_io)?;
                    this.close = CloseState::AwaitingReply;
                }
                CloseState::AwaitingReply => {
                    let mut discarded = 0;
                    // `None` once the reply came (or the reader had already
                    // ended); an error means there is no reply to wait for.
                    while let Some(Ok(_)) = ready!(Pin::new(&mut *socket).poll_next(cx)) {
                        discarded += 1;
                        if discarded == DISCARDED_PER_POLL {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                    this.close = CloseState::ClosingConnection;
                }
                CloseState::ClosingConnection => {
                    // tungstenite leaves the connection open once the close
                    // handshake is done: close it, which flushes what is
                    // gathered and, under TLS, sends `close_notify`.
                    let closed = ready!(Pin::new(socket.get_mut()).poll_close(cx));
                    this.close = CloseState::Closed;
                    return Poll::Ready(closed);
                }
                CloseState::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<C> fmt::Debug for WsWrite<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWrite")
            .field("close", &self.close)
            .finish_non_exhaustive()
    }
}
