//! The multiplexer's counters, published through the `metrics` facade
//! (feature `metrics`), so that any exporter (Prometheus, StatsD, ...) can
//! read them.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `stream_multiplexer_accepted_total` | counter | |
//! | `stream_multiplexer_accept_errors_total` | counter | |
//! | `stream_multiplexer_frames_in_total`, `..._frames_out_total` | counter | |
//! | `stream_multiplexer_disconnects_total` | counter | `reason`: `linkdead`, `channel_change`, `shutdown`, `backlog_full`, `idle_timeout`, `write_timeout` |
//! | `stream_multiplexer_closed_total` | counter | `cause`: `channel_closed`, `aborted` |
//! | `stream_multiplexer_dropped_total` | counter | `cause`: `unknown_id`, `volatile` |
//! | `stream_multiplexer_moves_rejected_total` | counter | |
//! | `stream_multiplexer_room_sends_total` | counter | |
//! | `stream_multiplexer_conflated_total` | counter | |
//! | `stream_multiplexer_streams_open` | gauge | `channel` |
//! | `stream_multiplexer_rooms`, `..._room_members` | gauge | |
//! | `stream_multiplexer_backlog_depth` | histogram | |
//!
//! Each counter equals the [`StatsSnapshot`](crate::StatsSnapshot) field of
//! the same name. The handles are registered once, when the multiplexer is
//! built, with the recorder installed then: install yours first. The
//! backlog histogram is sampled: one pumped writer in 64 reports its depth.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::{ChannelId, DisconnectReason};

/// The registered handles of one multiplexer's metrics.
#[derive(Debug)]
pub(crate) struct Meters {
    pub(crate) accepted: Counter,
    pub(crate) accept_errors: Counter,
    pub(crate) frames_in: Counter,
    pub(crate) frames_out: Counter,
    disconnects: [Counter; 6],
    pub(crate) closed_with_channel: Counter,
    pub(crate) aborted: Counter,
    pub(crate) dropped_unknown_id: Counter,
    pub(crate) volatile_dropped: Counter,
    pub(crate) moves_rejected: Counter,
    pub(crate) room_sends: Counter,
    pub(crate) conflated: Counter,
    streams_open: Vec<Gauge>,
    pub(crate) rooms: Gauge,
    pub(crate) room_members: Gauge,
    pub(crate) backlog_depth: Histogram,
}

impl Meters {
    /// Registers every metric, with a `streams_open` gauge per channel.
    pub(crate) fn register(channels: usize) -> Self {
        let disconnect = |reason: &'static str| counter!("stream_multiplexer_disconnects_total", "reason" => reason);
        Self {
            accepted: counter!("stream_multiplexer_accepted_total"),
            accept_errors: counter!("stream_multiplexer_accept_errors_total"),
            frames_in: counter!("stream_multiplexer_frames_in_total"),
            frames_out: counter!("stream_multiplexer_frames_out_total"),
            disconnects: [
                disconnect("linkdead"),
                disconnect("channel_change"),
                disconnect("shutdown"),
                disconnect("backlog_full"),
                disconnect("idle_timeout"),
                disconnect("write_timeout"),
            ],
            closed_with_channel: counter!("stream_multiplexer_closed_total", "cause" => "channel_closed"),
            aborted: counter!("stream_multiplexer_closed_total", "cause" => "aborted"),
            dropped_unknown_id: counter!("stream_multiplexer_dropped_total", "cause" => "unknown_id"),
            volatile_dropped: counter!("stream_multiplexer_dropped_total", "cause" => "volatile"),
            moves_rejected: counter!("stream_multiplexer_moves_rejected_total"),
            room_sends: counter!("stream_multiplexer_room_sends_total"),
            conflated: counter!("stream_multiplexer_conflated_total"),
            streams_open: (0..channels)
                .map(|channel| gauge!("stream_multiplexer_streams_open", "channel" => channel.to_string()))
                .collect(),
            rooms: gauge!("stream_multiplexer_rooms"),
            room_members: gauge!("stream_multiplexer_room_members"),
            backlog_depth: histogram!("stream_multiplexer_backlog_depth"),
        }
    }

    pub(crate) fn disconnect(&self, reason: DisconnectReason) -> &Counter {
        let index = match reason {
            DisconnectReason::Linkdead => 0,
            DisconnectReason::ChannelChange(_) => 1,
            DisconnectReason::Shutdown => 2,
            DisconnectReason::BacklogFull => 3,
            DisconnectReason::IdleTimeout => 4,
            DisconnectReason::WriteTimeout => 5,
        };
        &self.disconnects[index]
    }

    /// The open streams gauge of `channel` (none for a channel the
    /// multiplexer was not built with).
    pub(crate) fn streams_open(&self, channel: ChannelId) -> Option<&Gauge> {
        self.streams_open.get(channel)
    }
}
