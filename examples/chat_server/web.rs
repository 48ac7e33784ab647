//! The chat's web side: one port that serves the page browsers chat in,
//! the multiplexer's metrics, and the browsers' WebSocket connections,
//! which join the `nc` users in the same multiplexer, lobby and rooms.
//!
//! ```text
//! GET /                      the page (page/index.html, chat.css, chat.js,
//!                            embedded in the binary)
//! GET /metrics               the multiplexer's counters, in Prometheus text
//! any request with           a chat connection: one line per text message,
//!   Upgrade: websocket       both ways (the crate's websocket::Acceptor)
//! anything else              404 (405 for a method other than GET or HEAD)
//! ```
//!
//! # One port, and why
//!
//! The page's script opens its WebSocket to the host and port it was
//! loaded from (`ws://` + `location.host`), so it works however the page is
//! reached (another host name, a port forward, port 0 in the tests)
//! without being told a second port, and users open one port, not two.
//! Serving the page and the WebSocket from one port means looking at each
//! request before the handshake: the crate's acceptor answers anything but
//! an upgrade with `426`. So [`http`] reads each request's head itself
//! and answers plain requests, and an upgrade request goes to the
//! acceptor as a [`Replayed`](replay::Replayed) connection, which gives
//! the head back to the handshake before the rest of the connection. The
//! acceptor then does everything it does on a port of its own (checks the
//! upgrade, answers `400` or `426`, bounds handshakes). A second port
//! would spare the replay, a page of code, and cost the page a setting.
//!
//! # Bounds
//!
//! A stranger cannot hold the port, nor make it buffer much: at most 256
//! requests are read or answered at once (more wait in the listen
//! backlog), each has 10 s to send its head and take the answer, and a
//! head longer than 8 KiB is refused with `431` ([`http`]'s limits).
//! Each answer says `Connection: close`: one request per connection, and
//! no connection waits for a next one. The head is parsed once, when its
//! blank line has come, so a head trickled a byte at a time costs one scan
//! of each byte.
//!
//! # Browsers in the multiplexer
//!
//! [`with_browsers`] merges the `nc` users' halves and the browsers' into
//! the one stream of halves the multiplexer takes, as
//! [`futures::future::Either`]s, so that both are served by the same
//! lobby and rooms tasks. A browser's text message is one line, whole: no
//! line ending is looked for in it (a newline inside reaches others as
//! `�`, as any control character does), and one over 4 KiB fails the
//! connection (close code 1009), as the acceptor's message limit is the
//! line limit; a binary message is taken as a line of UTF-8 bytes. Each
//! line the server writes to a browser is one text message, from the same
//! shared bytes an `nc` user's copy is written from ([`browsers`]).
//! Everything else is as for `nc` users: the time limits, the backlog per
//! client, the shutdown notice.
//!
//! # Modules
//!
//! - [`http`]: the port's requests, read, routed and answered.
//! - [`replay`]: a connection whose request head is read again.
//! - [`browsers`]: browsers' connections as the chat's halves.

mod browsers;
mod http;
mod replay;

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_net::TcpListener;
use futures::channel::mpsc;
use futures::stream::{Stream, StreamExt};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use smol::Timer;
use stream_multiplexer::runtime::smol::{bind, clock, incoming};
use stream_multiplexer::websocket::Acceptor;

use self::browsers::BrowserHalves;
pub(crate) use self::browsers::with_browsers;
use crate::{CLOCK_PERIOD, MAX_LINE};

/// Upgrade requests read but not yet taken by the acceptor, which has
/// bounds of its own (256 handshakes at once); past it, `503`.
const UPGRADE_QUEUE: usize = 64;
/// How often the Prometheus recorder drains its histograms' samples, which
/// pile up between scrapes otherwise: the exporter's own default.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// The web side, bound and with its metrics recorder installed, not
/// serving yet.
#[derive(Debug)]
pub(crate) struct Site {
    listener: TcpListener,
    metrics: PrometheusHandle,
}

impl Site {
    /// Binds `address`, and installs a Prometheus recorder as the `metrics`
    /// facade's global recorder. The multiplexer registers its metrics with
    /// the recorder installed when it is built: this comes first.
    pub(crate) fn open(address: SocketAddr, backlog: u32) -> Result<Self, Box<dyn Error>> {
        let listener = bind(address, backlog)?;
        let metrics = PrometheusBuilder::new().install_recorder()?;
        Ok(Self { listener, metrics })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the page and the metrics on tasks of their own, and gives the
    /// browsers that connect, as halves for [`with_browsers`].
    pub(crate) fn serve(self) -> impl Stream<Item = io::Result<BrowserHalves>> + Unpin {
        let (upgrades, upgraded) = mpsc::channel(UPGRADE_QUEUE);
        smol::spawn(http::serve(
            incoming(self.listener),
            self.metrics.clone(),
            upgrades,
        ))
        .detach();
        smol::spawn(upkeep(self.metrics)).detach();
        Acceptor::new()
            .max_message_size(MAX_LINE)
            .accept(upgraded.map(Ok), clock(CLOCK_PERIOD))
    }
}

/// Drains the recorder's histogram samples every [`UPKEEP_PERIOD`], for
/// ever.
async fn upkeep(metrics: PrometheusHandle) {
    let mut ticks = Timer::interval(UPKEEP_PERIOD);
    while ticks.next().await.is_some() {
        metrics.run_upkeep();
    }
}
