//! The web port's requests: read (bounded, within a deadline), routed,
//! and answered with one response each, or handed to the WebSocket
//! acceptor.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::stream::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use smol::Timer;
use smol::lock::Semaphore;
use stream_multiplexer::runtime::smol::{Connection, Incoming};

use super::replay::Replayed;

/// The longest request head (request line and headers) read: a browser's
/// `GET`, cookies and all, takes a fraction of it. A longer one gets
/// `431`.
const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed per request: a browser sends about fifteen, its
/// WebSocket upgrade about twenty. More get `431`.
const MAX_HEADERS: usize = 64;
/// How long a connection has to send its request head and take the
/// answer, from the moment it is accepted: a page is a few KiB, which a
/// socket takes at once.
const DEADLINE: Duration = Duration::from_secs(10);
/// The most bytes read and dropped after an answer, waiting for the
/// client to close (see [`Response::write_to`]).
const LINGER_BYTES: u64 = 64 * 1024;
/// Requests read or answered at once; more wait in the listen backlog.
const MAX_REQUESTS: usize = 256;

const PAGE: &str = include_str!("../page/index.html");
const STYLE: &str = include_str!("../page/chat.css");
const SCRIPT: &str = include_str!("../page/chat.js");

/// Accepts connections for ever, and answers each on a task of its own,
/// at most [`MAX_REQUESTS`] at once.
pub(super) async fn serve(
    mut connections: Incoming,
    metrics: PrometheusHandle,
    upgrades: mpsc::Sender<Replayed>,
) {
    let slots = Arc::new(Semaphore::new(MAX_REQUESTS));
    loop {
        let slot = slots.acquire_arc().await;
        let connection = match connections.next().await {
            Some(Ok(connection)) => connection,
            Some(Err(error)) => {
                eprintln!("chat_server: web: accept failed: {error}");
                continue;
            }
            // `Incoming` never ends.
            None => return,
        };
        let metrics = metrics.clone();
        let upgrades = upgrades.clone();
        smol::spawn(async move {
            // A request that fails (the deadline, a reset) is dropped with
            // its connection: there is nobody to tell.
            let _ = answer(connection, &metrics, upgrades).await;
            drop(slot);
        })
        .detach();
    }
}

/// Reads one request and answers it, or hands it to the WebSocket
/// acceptor, all within [`DEADLINE`].
async fn answer(
    mut connection: Connection,
    metrics: &PrometheusHandle,
    mut upgrades: mpsc::Sender<Replayed>,
) -> io::Result<()> {
    let mut deadline = Timer::at(Instant::now() + DEADLINE);
    let (head, asked) = within(&mut deadline, read_request(&mut connection)).await?;
    let response = match asked {
        Asked::Upgrade => {
            match upgrades.try_send(Replayed::new(head, connection)) {
                Ok(()) => return Ok(()),
                // Too many handshakes waiting, or the server is shutting
                // down and takes no more connections.
                Err(refused) => {
                    connection = refused.into_inner().into_connection();
                    Response::status(SERVICE_UNAVAILABLE)
                }
            }
        }
        Asked::Resource { path, head_only } => {
            Response::resource(&path, metrics).head_only(head_only)
        }
        Asked::Refused(status) => Response::status(status),
    };
    within(&mut deadline, response.write_to(&mut connection)).await
}

/// `work`, or `TimedOut` once `deadline` has passed.
async fn within<T>(
    deadline: &mut Timer,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let expired = async {
        deadline.await;
        Err(io::ErrorKind::TimedOut.into())
    };
    smol::future::or(work, expired).await
}

/// What a request asks for.
#[derive(Debug)]
enum Asked {
    /// A WebSocket connection: for the acceptor.
    Upgrade,
    /// A resource; only its headers for `HEAD`.
    Resource { path: String, head_only: bool },
    /// Nothing this server gives: the status that says why.
    Refused(&'static str),
}

const BAD_REQUEST: &str = "400 Bad Request";
const NOT_FOUND: &str = "404 Not Found";
const METHOD_NOT_ALLOWED: &str = "405 Method Not Allowed";
const HEAD_TOO_LARGE: &str = "431 Request Header Fields Too Large";
const SERVICE_UNAVAILABLE: &str = "503 Service Unavailable";

/// Reads a request's head, and gives every byte read (the head, and any
/// that came after it, for the WebSocket handshake to read again) and what
/// it asks.
async fn read_request(connection: &mut Connection) -> io::Result<(Vec<u8>, Asked)> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let filled = head.len();
        if filled == MAX_HEAD {
            return Ok((head, Asked::Refused(HEAD_TOO_LARGE)));
        }
        head.resize((filled + 1024).min(MAX_HEAD), 0);
        let read = connection.read(&mut head[filled..]).await?;
        head.truncate(filled + read);
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // Only the new bytes, and the three before them, can complete the
        // blank line that ends the head.
        if !ends_head(&head[filled.saturating_sub(3)..]) {
            continue;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let asked = match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => asked(&request),
            Ok(httparse::Status::Partial) => continue,
            Err(httparse::Error::TooManyHeaders) => Asked::Refused(HEAD_TOO_LARGE),
            Err(_) => Asked::Refused(BAD_REQUEST),
        };
        return Ok((head, asked));
    }
}

/// Whether `bytes` hold the blank line that ends a request head (`\r\n`
/// line endings, or bare `\n`, which httparse takes too).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == b"\n\n") || bytes.windows(3).any(|three| three == b"\n\r\n")
}

/// What a parsed request asks for.
fn asked(request: &httparse::Request<'_, '_>) -> Asked {
    let upgrade = request.headers.iter().any(|header| {
        header.name.eq_ignore_ascii_case("upgrade")
            && std::str::from_utf8(header.value).is_ok_and(|value| {
                value
                    .split(',')
                    .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
            })
    });
    if upgrade {
        return Asked::Upgrade;
    }
    let head_only = match request.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Asked::Refused(METHOD_NOT_ALLOWED),
    };
    let target = request.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    Asked::Resource {
        path: path.to_owned(),
        head_only,
    }
}

/// An HTTP response, whole.
#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Cow<'static, [u8]>,
    head_only: bool,
}

impl Response {
    /// What `path` names.
    fn resource(path: &str, metrics: &PrometheusHandle) -> Self {
        let (content_type, body) = match path {
            "/" | "/index.html" => ("text/html; charset=utf-8", Cow::Borrowed(PAGE.as_bytes())),
            "/chat.css" => ("text/css; charset=utf-8", Cow::Borrowed(STYLE.as_bytes())),
            "/chat.js" => (
                "text/javascript; charset=utf-8",
                Cow::Borrowed(SCRIPT.as_bytes()),
            ),
            // The text format's content type, as Prometheus asks for it.
            "/metrics" => (
                "text/plain; version=0.0.4; charset=utf-8",
                Cow::Owned(metrics.render().into_bytes()),
            ),
            _ => return Self::status(NOT_FOUND),
        };
        Self {
            status: "200 OK",
            content_type,
            body,
            head_only: false,
        }
    }

    /// A status, said in its body too.
    fn status(status: &'static str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Owned(format!("{status}\n").into_bytes()),
            head_only: false,
        }
    }

    fn head_only(self, head_only: bool) -> Self {
        Self { head_only, ..self }
    }

    /// Writes the response and closes the connection.
    async fn write_to(&self, connection: &mut Connection) -> io::Result<()> {
        let mut message = format!(
            "HTTP/1.1 {}\r\n\
             Content-Type: {}\r\n\
             Content-Length: {}\r\n\
             Cache-Control: no-cache\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:\r\n\
             Connection: close\r\n\
             {}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            // The methods there are, for a request that used another.
            if self.status == METHOD_NOT_ALLOWED { "Allow: GET, HEAD\r\n" } else { "" },
        )
        .into_bytes();
        if !self.head_only {
            message.extend_from_slice(&self.body);
        }
        connection.write_all(&message).await?;
        connection.close().await?;
        // Closing a socket with bytes unread (the rest of a head too long
        // to read, say) resets the connection, and the reset can destroy
        // the answer before the client reads it: what the client still
        // sends is read and dropped until it closes its side, up to a
        // bound (and the deadline).
        let mut rest = connection.take(LINGER_BYTES);
        futures::io::copy(&mut rest, &mut futures::io::sink()).await?;
        Ok(())
    }
}
