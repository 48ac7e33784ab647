//! Browsers' connections as the chat's halves: each text message a line,
//! both ways, beside the `nc` users' halves in one stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;
use futures::sink::Sink;
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use stream_multiplexer::codec::LineError;
use stream_multiplexer::websocket::{WsMessage, WsRead, WsWrite};

use super::replay::Replayed;
use crate::Received;
use crate::codec::{Heard, Reply};

/// A browser's connection as the acceptor gives it.
pub(crate) type BrowserHalves = (WsWrite<Replayed>, WsRead<Replayed>);

/// A browser's read half: each message a line.
pub(crate) type BrowserRead = stream::Map<WsRead<Replayed>, fn(io::Result<WsMessage>) -> Received>;

/// The `nc` users' halves and the browsers', as the one stream of halves
/// the multiplexer takes: writers that take the chat's [`Reply`]s and
/// readers that yield its lines, whatever the transport.
pub(crate) fn with_browsers<W, R>(
    nc: impl Stream<Item = io::Result<(W, R)>> + Unpin,
    browsers: impl Stream<Item = io::Result<BrowserHalves>> + Unpin,
) -> impl Stream<Item = io::Result<(Either<W, BrowserWrite>, Either<R, BrowserRead>)>> + Unpin {
    let nc = nc.map_ok(|(write, read)| (Either::Left(write), Either::Left(read)));
    let browsers = browsers.map_ok(|(write, read)| {
        let read = read.map(heard as fn(io::Result<WsMessage>) -> Received);
        (Either::Right(BrowserWrite(write)), Either::Right(read))
    });
    stream::select(nc, browsers)
}

/// A browser's message, as the line it is.
fn heard(message: io::Result<WsMessage>) -> Received {
    let line = match message? {
        WsMessage::Text(text) => Ok(text.as_str().to_owned()),
        WsMessage::Binary(bytes) => String::from_utf8(bytes.into()).map_err(|_| LineError::NotUtf8),
    };
    // A message has no line ending; `None` changes nothing in how the
    // server answers (and a browser's writer has no endings to set).
    Ok(Heard { line, ending: None })
}

/// A browser's write half: each line one text message.
#[derive(Debug)]
pub(crate) struct BrowserWrite(WsWrite<Replayed>);

impl Sink<Reply> for BrowserWrite {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<WsMessage>::poll_ready(Pin::new(&mut self.0), cx)
    }

    fn start_send(mut self: Pin<&mut Self>, reply: Reply) -> io::Result<()> {
        match reply {
            Reply::Line(text) => Pin::new(&mut self.0).start_send(WsMessage::Text(text)),
            // Messages have no line endings to change. (The server sends
            // this only after a line that ended otherwise than `\n`, which
            // a browser's never do.)
            Reply::EndLinesWith(_) => Ok(()),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<WsMessage>::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<WsMessage>::poll_close(Pin::new(&mut self.0), cx)
    }
}
