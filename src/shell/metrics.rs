//! Process metrics served at `/metrics` in the Prometheus text exposition format.
//! A handful of counters and one histogram do not justify a metrics framework: this is plain
//! atomics and a mutex-guarded map, rendered by hand.
//!
//! Every label value comes from a closed set written here or in the core (event names deploybot
//! parses, outcomes, alert levels and notice kinds): nothing a client sends becomes a series, so
//! the page stays the same size whatever arrives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the processing-latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];

/// The `event` label of a delivery the signature did not (yet) vouch for: its header is the
/// sender's word, and never becomes a label.
pub const UNVERIFIED: &str = "unverified";

/// The `event` label of a verified delivery: its name when deploybot parses that event, `other`
/// for any other name.
pub fn event_label(name: &str) -> &'static str {
    deploybot_core::webhook::event::EVENTS
        .iter()
        .find(|e| **e == name)
        .copied()
        .unwrap_or("other")
}

/// How the intake answered a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Queued,
    Ignored,
    Duplicate,
    Rejected,
    Unauthorized,
    TooLarge,
    /// The budget for bodies in flight was spent: 503 with `Retry-After`.
    Busy,
    /// The body did not arrive within `server.body_timeout`: 408.
    Timeout,
    /// The store could not take it: 503.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Unauthorized => "unauthorized",
            Outcome::TooLarge => "too_large",
            Outcome::Busy => "busy",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    signature_failures: AtomicU64,
    processed: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    rollout_alerts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Counts a delivery answered by the intake, by event label ([`event_label`] once verified,
    /// [`UNVERIFIED`] before) and outcome.
    pub fn delivery(&self, event: &'static str, outcome: Outcome) {
        let mut map = self.deliveries.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((event, outcome.as_str())).or_insert(0) += 1;
    }

    pub fn signature_failure(&self) {
        self.signature_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one processed delivery (`done`, `ignored`, `retry`, `failed`) and how long it took.
    pub fn processed(&self, outcome: &'static str, seconds: f64) {
        {
            let mut map = self.processed.lock().unwrap_or_else(|p| p.into_inner());
            *map.entry(outcome).or_insert(0) += 1;
        }
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Counts an alert a rollout raised (`info`, `warn`, `critical`), by notice kind (`paused`,
    /// `rolled_back`, ...): what to page on when rollouts pause for missing metrics.
    pub fn rollout_alert(&self, level: &'static str, notice: &'static str) {
        let mut map = self
            .rollout_alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry((level, notice)).or_insert(0) += 1;
    }

    /// Renders the text format; `queue_depth` is read from the store at scrape time.
    pub fn render(&self, queue_depth: Option<u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP deploybot_webhook_deliveries_total Webhook deliveries answered, by event and outcome.\n");
        out.push_str("# TYPE deploybot_webhook_deliveries_total counter\n");
        for ((event, outcome), n) in self
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "deploybot_webhook_deliveries_total{{event=\"{event}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP deploybot_webhook_signature_failures_total Deliveries refused for a missing or bad signature.\n");
        out.push_str("# TYPE deploybot_webhook_signature_failures_total counter\n");
        let _ = writeln!(
            out,
            "deploybot_webhook_signature_failures_total {}",
            self.signature_failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP deploybot_queue_depth Deliveries stored and not yet processed.\n");
        out.push_str("# TYPE deploybot_queue_depth gauge\n");
        match queue_depth {
            Some(d) => {
                let _ = writeln!(out, "deploybot_queue_depth {d}");
            }
            None => out.push_str("deploybot_queue_depth NaN\n"),
        }
        out.push_str("# HELP deploybot_deliveries_processed_total Deliveries processed from the queue, by outcome.\n");
        out.push_str("# TYPE deploybot_deliveries_processed_total counter\n");
        for (outcome, n) in self
            .processed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "deploybot_deliveries_processed_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP deploybot_processing_seconds Time to process one delivery from the queue.\n",
        );
        out.push_str("# TYPE deploybot_processing_seconds histogram\n");
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "deploybot_processing_seconds_bucket{{le=\"{le}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "deploybot_processing_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "deploybot_processing_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "deploybot_processing_seconds_count {count}");
        out.push_str("# HELP deploybot_rollout_alerts_total Alerts raised by rollouts, by level and notice (paused, rolled_back, failed, ...).\n");
        out.push_str("# TYPE deploybot_rollout_alerts_total counter\n");
        for ((level, notice), n) in self
            .rollout_alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "deploybot_rollout_alerts_total{{level=\"{level}\",notice=\"{notice}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.delivery(event_label("pull_request"), Outcome::Queued);
        m.delivery(event_label("pull_request"), Outcome::Queued);
        m.delivery(event_label("../../x"), Outcome::Rejected);
        m.delivery(event_label("made_up_event"), Outcome::Rejected);
        m.delivery(UNVERIFIED, Outcome::Unauthorized);
        m.signature_failure();
        m.processed("done", 0.003);
        let text = m.render(Some(4));
        assert!(text.contains(
            "deploybot_webhook_deliveries_total{event=\"pull_request\",outcome=\"queued\"} 2"
        ));
        assert!(text.contains("event=\"other\",outcome=\"rejected\"} 2"));
        assert!(text.contains("event=\"unverified\",outcome=\"unauthorized\"} 1"));
        assert!(text.contains("deploybot_webhook_signature_failures_total 1"));
        assert!(text.contains("deploybot_queue_depth 4"));
        assert!(text.contains("deploybot_processing_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("deploybot_processing_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("deploybot_processing_seconds_bucket{le=\"+Inf\"} 1"));
    }
}
