//! What the judge reads: per interval and per track, the counter increments of that interval.
//! Both the Prometheus source and the replay source produce these; the judge consumes them.
//! `None` means no sample exists (scrape gap, series gone): never the same as zero.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// Counter increments of one track (baseline or canary) over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSample {
    /// Requests served in the interval.
    pub requests: u64,
    /// Failed requests (5xx) in the interval.
    pub errors: u64,
    /// Requests per latency bucket in the interval, NOT cumulative; one entry per bound of
    /// [`Window::latency_buckets_le`] plus a last entry for `+Inf`. Empty when latency is unknown.
    pub latency_buckets: Vec<u64>,
    /// Increments of the configured extra counters in the interval, by metric name; a name
    /// absent here has no sample for this interval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, u64>,
}

/// One interval: a sample per track, each possibly missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub baseline: Option<TrackSample>,
    pub canary: Option<TrackSample>,
}

/// A run of consecutive intervals of one canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Length of an interval in seconds.
    pub step_seconds: u64,
    /// The share of traffic the canary should receive (0..1), for the sample-ratio check.
    pub canary_weight: f64,
    /// Upper bounds (seconds) of the latency histogram buckets, `+Inf` implied.
    pub latency_buckets_le: Vec<f64>,
    pub intervals: Vec<Interval>,
}

/// What a metrics source is asked for: one service's canary and baseline in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisTarget {
    pub service: String,
    pub namespace: String,
    pub environment: String,
}

/// A port to a metrics backend (Prometheus, or a replay of recorded intervals).
pub trait MetricsSource: Send + Sync {
    /// The intervals of `step_seconds` each that end at or before `end_unix`, starting at
    /// `start_unix`, for both tracks of `target`. A transient failure means the source did not
    /// answer (after the source's own retries); a permanent one that the query itself is wrong.
    fn window(
        &self,
        target: &AnalysisTarget,
        start_unix: i64,
        end_unix: i64,
        step_seconds: u64,
    ) -> impl Future<Output = Result<Window, Failure>> + Send;
}
