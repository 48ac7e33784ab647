//! A connection to Redis that makes itself again: connecting, waiting
//! between failed attempts, and counting and reporting each change.

use std::fmt;
use std::task::{Context, Poll};

use super::config::{ConnectFuture, Connector};
use super::connection::{Connection, Liveness};
use super::events::{BackplaneEvent, Events, LinkError, LinkKind};
use super::stats::BackplaneStats;

/// The backplane's times, in ticks of its clock, and its size bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) liveness: Liveness,
    pub(crate) reconnect_min: u64,
    pub(crate) reconnect_max: u64,
    pub(crate) max_message_size: usize,
}

/// What a link needs from the backplane at each step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    /// Ticks counted so far.
    pub(crate) now: u64,
    pub(crate) timing: &'a Timing,
    pub(crate) connector: &'a Connector,
    pub(crate) stats: &'a BackplaneStats,
    pub(crate) events: &'a Events,
}

/// One of the backplane's two connections, through its whole life.
pub(crate) struct Link {
    kind: LinkKind,
    state: State,
    /// The wait after the next failed attempt, in ticks: doubled after
    /// each failure, back to the minimum once a connection is up.
    next_wait: u64,
    /// Whether a connection failed or was lost since the start, so that
    /// the next one up counts as a reconnect.
    troubled: bool,
}

enum State {
    /// No connection; the next attempt once the tick `until` has come.
    Waiting {
        until: u64,
    },
    Connecting {
        connecting: ConnectFuture,
        deadline: u64,
    },
    Open(Connection),
}

impl Link {
    /// A link that connects at its first poll.
    pub(crate) fn new(kind: LinkKind, timing: &Timing) -> Self {
        Self {
            kind,
            state: State::Waiting { until: 0 },
            next_wait: timing.reconnect_min,
            troubled: false,
        }
    }

    /// Connects, or waits to, as the time has come; the open connection,
    /// if there is one (whether or not it has answered its `PING` yet).
    pub(crate) fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
        env: Env<'_>,
    ) -> Option<&mut Connection> {
        loop {
            match &mut self.state {
                State::Waiting { until } => {
                    if env.now < *until {
                        break;
                    }
                    self.state = State::Connecting {
                        connecting: env.connector.connect(),
                        deadline: env.now + env.timing.liveness.reply_ticks,
                    };
                }
                State::Connecting {
                    connecting,
                    deadline,
                } => match connecting.as_mut().poll(cx) {
                    Poll::Ready(Ok(io)) => {
                        self.state =
                            State::Open(Connection::open(io, env.timing.max_message_size, env.now));
                    }
                    Poll::Ready(Err(error)) => self.fail(LinkError::Connect(error), env),
                    Poll::Pending if env.now >= *deadline => self.fail(LinkError::TimedOut, env),
                    Poll::Pending => break,
                },
                State::Open(_) => break,
            }
        }
        self.connection()
    }

    /// The open connection, if there is one.
    pub(crate) fn connection(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            State::Open(connection) => Some(connection),
            _ => None,
        }
    }

    /// Whether the connection is open and has answered its `PING`.
    pub(crate) fn is_up(&self) -> bool {
        matches!(&self.state, State::Open(connection) if connection.is_ready())
    }

    /// The open connection answered its `PING`: it is up.
    pub(crate) fn established(&mut self, env: Env<'_>) {
        let State::Open(connection) = &mut self.state else {
            return;
        };
        connection.set_ready();
        self.next_wait = env.timing.reconnect_min;
        if self.troubled {
            env.stats.reconnected();
        }
        let kind = self.kind;
        env.events.emit(|| BackplaneEvent::Connected(kind));
    }

    /// The connection failed, or could not be made: drop it, count and
    /// report it, and wait before the next attempt. A connection that was
    /// up is tried again at once (Redis may have closed just this one); an
    /// attempt that failed is tried again after the wait, which doubles.
    pub(crate) fn fail(&mut self, error: LinkError, env: Env<'_>) {
        let kind = self.kind;
        let until = if self.is_up() {
            env.stats.disconnected();
            env.events
                .emit(|| BackplaneEvent::Disconnected(kind, error));
            env.now
        } else {
            env.stats.connect_failed();
            env.events
                .emit(|| BackplaneEvent::ConnectFailed(kind, error));
            let until = env.now + self.next_wait;
            self.next_wait = (self.next_wait * 2).min(env.timing.reconnect_max);
            until
        };
        self.troubled = true;
        self.state = State::Waiting { until };
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Connecting { .. } => "connecting",
            State::Open(connection) if connection.is_ready() => "up",
            State::Open(_) => "opening",
        };
        f.debug_struct("Link")
            .field("kind", &self.kind)
            .field("state", &state)
            .finish()
    }
}
