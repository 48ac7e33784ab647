//! What operators read: the `metrics` published (features `metrics`) agree
//! with `Stats` after a scripted run, and the `tracing` events (feature
//! `tracing`) tell connects, moves and disconnects with their reasons.

#![cfg(all(feature = "metrics", feature = "tracing"))]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{Harness, Limits, Setup};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stream_multiplexer::{OutgoingMessage, OutgoingPacket, StatsSnapshot};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// A run that makes every counter move: connects, a move, room sends of
/// each class, a slow client kicked, unknown ids, a rejected move, an idle
/// timeout and a half-close.
fn scripted(harness: &mut Harness) {
    let (mut a, a_id) = harness.connect_on(0);
    let (_slow, slow_id) = harness.connect_on(0);
    let (mut c, c_id) = harness.connect_on(0);
    a.send(1);
    harness.send(OutgoingPacket::ChangeChannel(vec![c_id], 1));
    harness.send(OutgoingPacket::ChangeChannel(vec![c_id], 9));
    harness.send(OutgoingPacket::Join(vec![a_id, slow_id, c_id], "r".into()));
    for value in 0..12 {
        harness.send(OutgoingPacket::Message(
            OutgoingMessage::to_room("r", [value]).volatile(),
        ));
        harness.send(OutgoingPacket::Message(
            OutgoingMessage::new([slow_id], [100 + value]).latest(1),
        ));
    }
    harness.message([12_345], [0]);
    harness.settle();
    a.received();
    c.received();
    for value in 0..12 {
        harness.message([slow_id], [value]);
    }
    harness.settle();
    a.hang_up();
    harness.tick(5);
    harness.drain_settled(0);
    harness.drain_settled(1);
}

/// The two tests run one at a time. `tracing` caches, per call site, whether
/// any subscriber wants its events; a call site first reached by the
/// metrics test's thread (no subscriber) while the tracing test's
/// subscriber is being registered on another thread can be cached as
/// unwanted, and that test then misses events.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn setup() -> Setup {
    Setup {
        sender_buffer_size: 4,
        client_buffer: 1,
        clock: Some(Limits {
            idle: Some(5),
            write: Some(50),
        }),
        ..Setup::default()
    }
}

#[test]
fn every_published_counter_equals_the_stats() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut harness = metrics::with_local_recorder(&recorder, || Harness::new(setup()));
    scripted(&mut harness);
    let stats = harness.stats.snapshot();

    let mut published: HashMap<String, f64> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name.push_str(&format!("{{{}={}}}", label.key(), label.value()));
        }
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        published.insert(name, value);
    }
    let get = |name: &str| published.get(name).copied().unwrap_or(-1.0);
    let d = stats.disconnects;
    let expected: &[(&str, u64)] = &[
        ("stream_multiplexer_accepted_total", stats.accepted),
        (
            "stream_multiplexer_accept_errors_total",
            stats.accept_errors,
        ),
        ("stream_multiplexer_frames_in_total", stats.frames_in),
        ("stream_multiplexer_frames_out_total", stats.frames_out),
        (
            "stream_multiplexer_disconnects_total{reason=linkdead}",
            d.linkdead,
        ),
        (
            "stream_multiplexer_disconnects_total{reason=channel_change}",
            d.channel_change,
        ),
        (
            "stream_multiplexer_disconnects_total{reason=shutdown}",
            d.shutdown,
        ),
        (
            "stream_multiplexer_disconnects_total{reason=backlog_full}",
            d.backlog_full,
        ),
        (
            "stream_multiplexer_disconnects_total{reason=idle_timeout}",
            d.idle_timeout,
        ),
        (
            "stream_multiplexer_disconnects_total{reason=write_timeout}",
            d.write_timeout,
        ),
        (
            "stream_multiplexer_closed_total{cause=channel_closed}",
            stats.closed_with_channel,
        ),
        (
            "stream_multiplexer_closed_total{cause=aborted}",
            stats.aborted,
        ),
        (
            "stream_multiplexer_dropped_total{cause=unknown_id}",
            stats.dropped_unknown_id,
        ),
        (
            "stream_multiplexer_dropped_total{cause=volatile}",
            stats.volatile_dropped,
        ),
        (
            "stream_multiplexer_moves_rejected_total",
            stats.moves_rejected,
        ),
        ("stream_multiplexer_room_sends_total", stats.room_sends),
        ("stream_multiplexer_conflated_total", stats.conflated),
        ("stream_multiplexer_rooms", stats.rooms),
        ("stream_multiplexer_room_members", stats.room_members),
    ];
    for &(name, value) in expected {
        assert_eq!(get(name), value as f64, "{name} (stats: {stats:?})");
    }
    let open: f64 = (0..3)
        .map(|k| get(&format!("stream_multiplexer_streams_open{{channel={k}}}")))
        .sum();
    assert_eq!(open, stats.streams_open as f64);

    // The script moved every counter it could, or the test proves little.
    let StatsSnapshot {
        accepted,
        frames_in,
        frames_out,
        dropped_unknown_id,
        moves_rejected,
        room_sends,
        volatile_dropped,
        conflated,
        ..
    } = stats;
    for (what, value) in [
        ("accepted", accepted),
        ("frames_in", frames_in),
        ("frames_out", frames_out),
        ("dropped_unknown_id", dropped_unknown_id),
        ("moves_rejected", moves_rejected),
        ("room_sends", room_sends),
        ("volatile_dropped", volatile_dropped),
        ("conflated", conflated),
        ("channel_change", d.channel_change),
        ("backlog_full", d.backlog_full),
        ("idle_timeout", d.idle_timeout),
        ("linkdead", d.linkdead),
    ] {
        assert!(value > 0, "the script never moved {what}: {stats:?}");
    }
}

/// Keeps every event's message and fields.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Line(String);
        impl Visit for Line {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
}

#[test]
fn connects_moves_and_disconnects_are_traced_with_their_reasons() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let stats = tracing::subscriber::with_default(subscriber, || {
        let mut harness = Harness::new(setup());
        scripted(&mut harness);
        harness.stats.snapshot()
    });
    let events = events.0.lock().unwrap();
    let has = |needle: &[&str]| events.iter().any(|e| needle.iter().all(|n| e.contains(n)));
    assert!(
        has(&["DEBUG", "stream connected", "stream=1", "channel=0"]),
        "{events:#?}"
    );
    assert!(
        has(&["DEBUG", "stream moved", "from=0", "to=1"]),
        "{events:#?}"
    );
    assert!(
        has(&["INFO", "stream disconnected", "BacklogFull"]),
        "{events:#?}"
    );
    assert!(
        has(&["INFO", "stream disconnected", "IdleTimeout"]),
        "{events:#?}"
    );
    assert!(
        has(&["DEBUG", "stream disconnected", "Linkdead"]),
        "{events:#?}"
    );
    // Nothing per frame at INFO: only the disconnects the multiplexer
    // decided on.
    let d = stats.disconnects;
    let infos = events.iter().filter(|e| e.starts_with("INFO")).count() as u64;
    assert_eq!(
        infos,
        d.backlog_full + d.idle_timeout + d.write_timeout,
        "{events:#?}"
    );
}
