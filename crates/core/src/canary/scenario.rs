//! The replay source: recorded canary analyses in the `deploybot-canary-scenario/1` format of
//! `../shared/canary-bench`, parsed from text into a [`Window`] and served through
//! [`MetricsSource`], and whole recorded rollouts (`deploybot-canary-rollout/1`, [`RolloutScenario`]:
//! the stable version's history, then one window per canary step). Reading the files is the
//! shell's (`deploybot::adapters::scenario`).
//!
//! What the judge may see ([`Scenario`], [`RolloutScenario`]) is parsed separately from the answer
//! key ([`ScenarioLabels`], [`RolloutLabels`]: `truth`, `family`), so nothing that judges can read
//! the answer: what a judge reads never parses the `effect` field. A `null` step stays a missing
//! sample, never a zero.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::sample::{AnalysisTarget, Interval, MetricsSource, TrackSample, Window};
use crate::failure::Failure;

/// The only scenario format this reader accepts.
pub const FORMAT: &str = "deploybot-canary-scenario/1";

/// The only whole-rollout format this reader accepts.
pub const ROLLOUT_FORMAT: &str = "deploybot-canary-rollout/1";

/// A recorded analysis window, as the judge sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub window: Window,
}

/// The answer key of a scenario, read only by the benchmark for scoring.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScenarioLabels {
    pub name: String,
    pub family: String,
    pub truth: Truth,
    /// The step the regression starts at, to score time to detection from the onset.
    #[serde(default)]
    pub effect: Option<EffectLabel>,
}

/// The part of the injected effect the scorer uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EffectLabel {
    #[serde(default)]
    pub onset_step: Option<usize>,
}

/// What a judge should have concluded about a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    /// The canary is worse than the baseline.
    Rollback,
    /// Canary and baseline come from the same distribution. Rollout files call it `complete`.
    #[serde(alias = "complete")]
    Promote,
    /// The canary's health cannot be verified; anything but promote is right. The suite's
    /// files (`../shared/canary-bench`) call it `hold`.
    #[serde(rename = "hold")]
    Unverifiable,
}

#[derive(Deserialize)]
struct RawScenario {
    format: String,
    name: String,
    step_seconds: u64,
    steps: usize,
    canary_weight: f64,
    latency_buckets_le: Vec<f64>,
    baseline: RawTrack,
    canary: RawTrack,
}

#[derive(Deserialize)]
struct RawTrack {
    requests: Vec<Option<u64>>,
    errors: Vec<Option<u64>>,
    latency_buckets: Vec<Option<Vec<u64>>>,
    /// deploybot's extension: increments of extra counters by metric name, one per step.
    #[serde(default)]
    extra: BTreeMap<String, Vec<Option<u64>>>,
}

impl Scenario {
    /// Parses scenario JSON text (everything but the answer key).
    pub fn parse(text: &str) -> Result<Scenario, ParseError> {
        let raw: RawScenario = serde_json::from_str(text).map_err(ParseError::Json)?;
        if raw.format != FORMAT {
            return Err(ParseError::Invalid(format!(
                "format is {:?}, expected {FORMAT:?}",
                raw.format
            )));
        }
        if !(raw.canary_weight > 0.0 && raw.canary_weight < 1.0) {
            return Err(ParseError::Invalid(format!(
                "canary_weight {} is not between 0 and 1",
                raw.canary_weight
            )));
        }
        if raw.step_seconds == 0 {
            return Err(ParseError::Invalid("step_seconds is 0".into()));
        }
        let buckets = raw.latency_buckets_le.len() + 1;
        let baseline = raw.baseline.samples("baseline", raw.steps, buckets)?;
        let canary = raw.canary.samples("canary", raw.steps, buckets)?;
        let intervals = baseline
            .into_iter()
            .zip(canary)
            .map(|(baseline, canary)| Interval { baseline, canary })
            .collect();
        Ok(Scenario {
            name: raw.name,
            window: Window {
                step_seconds: raw.step_seconds,
                canary_weight: raw.canary_weight,
                latency_buckets_le: raw.latency_buckets_le,
                intervals,
            },
        })
    }
}

impl ScenarioLabels {
    /// Parses the answer key out of scenario JSON text (for scoring only).
    pub fn parse(text: &str) -> Result<ScenarioLabels, ParseError> {
        serde_json::from_str(text).map_err(ParseError::Json)
    }
}

/// A recorded rollout, as the judge sees it: what Prometheus held about the stable version before
/// the rollout started, then each canary step's intervals at its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutScenario {
    pub name: String,
    /// The stable version alone, serving all traffic, before the rollout: baseline samples only
    /// (the canary is `None` in every interval), `canary_weight` 0.
    pub history: Window,
    /// One window per canary step, in the order of the plan.
    pub steps: Vec<Window>,
}

/// The answer key of a rollout file, read only by the benchmark for scoring.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RolloutLabels {
    pub name: String,
    pub family: String,
    /// `complete` (read as [`Truth::Promote`]), `rollback` or `hold`.
    pub truth: Truth,
    #[serde(default)]
    pub effect: Option<RolloutEffectLabel>,
}

/// The part of a rollout's injected effect the scorer uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RolloutEffectLabel {
    /// The step (0-based) from which the canary is worse.
    #[serde(default)]
    pub onset_step_index: Option<usize>,
}

#[derive(Deserialize)]
struct RawRollout {
    format: String,
    name: String,
    step_seconds: u64,
    intervals_per_step: usize,
    latency_buckets_le: Vec<f64>,
    history: RawTrack,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
struct RawStep {
    canary_weight: f64,
    baseline: RawTrack,
    canary: RawTrack,
}

impl RolloutScenario {
    /// Parses rollout JSON text (everything but the answer key). Each step holds
    /// `intervals_per_step` intervals, the history as many as it lists.
    pub fn parse(text: &str) -> Result<RolloutScenario, ParseError> {
        let raw: RawRollout = serde_json::from_str(text).map_err(ParseError::Json)?;
        if raw.format != ROLLOUT_FORMAT {
            return Err(ParseError::Invalid(format!(
                "format is {:?}, expected {ROLLOUT_FORMAT:?}",
                raw.format
            )));
        }
        if raw.step_seconds == 0 {
            return Err(ParseError::Invalid("step_seconds is 0".into()));
        }
        if raw.steps.is_empty() {
            return Err(ParseError::Invalid(
                "a rollout needs at least one step".into(),
            ));
        }
        let buckets = raw.latency_buckets_le.len() + 1;
        let window = |canary_weight: f64, intervals: Vec<Interval>| Window {
            step_seconds: raw.step_seconds,
            canary_weight,
            latency_buckets_le: raw.latency_buckets_le.clone(),
            intervals,
        };
        let history_len = raw.history.requests.len();
        let history = raw
            .history
            .samples("history", history_len, buckets)?
            .into_iter()
            .map(|baseline| Interval {
                baseline,
                canary: None,
            })
            .collect();
        let mut steps = Vec::with_capacity(raw.steps.len());
        let mut previous = 0.0;
        for (i, step) in raw.steps.into_iter().enumerate() {
            let w = step.canary_weight;
            if !(w > previous && w < 1.0) {
                return Err(ParseError::Invalid(format!(
                    "steps[{i}].canary_weight {w} must be above the previous step's ({previous}) and below 1"
                )));
            }
            previous = w;
            let n = raw.intervals_per_step;
            let baseline = step
                .baseline
                .samples(&format!("steps[{i}].baseline"), n, buckets)?;
            let canary = step
                .canary
                .samples(&format!("steps[{i}].canary"), n, buckets)?;
            let intervals = baseline
                .into_iter()
                .zip(canary)
                .map(|(baseline, canary)| Interval { baseline, canary })
                .collect();
            steps.push(window(w, intervals));
        }
        Ok(RolloutScenario {
            name: raw.name,
            history: window(0.0, history),
            steps,
        })
    }
}

impl RolloutLabels {
    /// Parses the answer key out of rollout JSON text (for scoring only).
    pub fn parse(text: &str) -> Result<RolloutLabels, ParseError> {
        serde_json::from_str(text).map_err(ParseError::Json)
    }
}

/// Why scenario text could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

impl RawTrack {
    /// One sample per step. A step whose requests or errors are null has no sample; a step with
    /// counts but a null histogram keeps its counts and an empty (unknown) histogram.
    fn samples(
        self,
        track: &str,
        steps: usize,
        buckets: usize,
    ) -> Result<Vec<Option<TrackSample>>, ParseError> {
        if let Some(name) = self.extra.keys().find(|n| !super::is_metric_name(n)) {
            return Err(ParseError::Invalid(format!(
                "{track}.extra: {name:?} is not a metric name ({})",
                super::METRIC_NAME_RULE
            )));
        }
        let extra_lengths = self
            .extra
            .iter()
            .map(|(name, v)| (format!("extra.{name}"), v.len()));
        for (field, len) in [
            ("requests".to_string(), self.requests.len()),
            ("errors".to_string(), self.errors.len()),
            ("latency_buckets".to_string(), self.latency_buckets.len()),
        ]
        .into_iter()
        .chain(extra_lengths)
        {
            if len != steps {
                return Err(ParseError::Invalid(format!(
                    "{track}.{field} has {len} steps, expected {steps}"
                )));
            }
        }
        let mut out = Vec::with_capacity(steps);
        for (step, ((requests, errors), latency)) in self
            .requests
            .into_iter()
            .zip(self.errors)
            .zip(self.latency_buckets)
            .enumerate()
        {
            let (Some(requests), Some(errors)) = (requests, errors) else {
                out.push(None);
                continue;
            };
            if errors > requests {
                return Err(ParseError::Invalid(format!(
                    "{track} step {step}: {errors} errors but only {requests} requests"
                )));
            }
            let latency_buckets = match latency {
                Some(b) if b.len() == buckets => b,
                Some(b) => {
                    return Err(ParseError::Invalid(format!(
                        "{track}.latency_buckets step {step} has {} buckets, expected {buckets}",
                        b.len()
                    )));
                }
                None => Vec::new(),
            };
            let extra = self
                .extra
                .iter()
                .filter_map(|(name, v)| Some((name.clone(), v[step]?)))
                .collect();
            out.push(Some(TrackSample {
                requests,
                errors,
                latency_buckets,
                extra,
            }));
        }
        Ok(out)
    }
}

/// Serves a recorded window as if it were live: interval `i` covers
/// `[origin + i*step, origin + (i+1)*step)`.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    window: Window,
    origin_unix: i64,
}

impl ReplaySource {
    pub fn new(window: Window, origin_unix: i64) -> ReplaySource {
        ReplaySource {
            window,
            origin_unix,
        }
    }
}

impl MetricsSource for ReplaySource {
    async fn window(
        &self,
        _target: &AnalysisTarget,
        start_unix: i64,
        end_unix: i64,
        step_seconds: u64,
    ) -> Result<Window, Failure> {
        if step_seconds != self.window.step_seconds {
            return Err(Failure::permanent(
                "reading the replayed window",
                format!(
                    "replay recorded {}s steps, asked for {step_seconds}s",
                    self.window.step_seconds
                ),
            ));
        }
        let step = step_seconds as i64;
        let intervals = self
            .window
            .intervals
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let from = self.origin_unix + *i as i64 * step;
                from >= start_unix && from + step <= end_unix
            })
            .map(|(_, iv)| iv.clone())
            .collect();
        Ok(Window {
            intervals,
            ..self.window.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{
      "format": "deploybot-canary-scenario/1", "name": "t", "family": "f", "truth": "promote",
      "effect": {"anything": 1}, "step_seconds": 60, "steps": 3, "canary_weight": 0.1,
      "latency_buckets_le": [0.1, 1.0],
      "baseline": {"requests": [100, null, 100], "errors": [1, null, 0],
                   "latency_buckets": [[50, 49, 1], null, null]},
      "canary": {"requests": [10, 0, 12], "errors": [0, 0, 1],
                 "latency_buckets": [[5, 5, 0], [0, 0, 0], [6, 6, 0]]}
    }"#;

    #[test]
    fn nulls_are_missing_samples_not_zeros() {
        let s = Scenario::parse(TEXT).unwrap();
        assert_eq!(s.name, "t");
        let iv = &s.window.intervals;
        assert_eq!(iv.len(), 3);
        assert_eq!(iv[1].baseline, None);
        assert_eq!(iv[1].canary.as_ref().unwrap().requests, 0);
        // counts present, histogram null: counts kept, latency unknown
        assert_eq!(
            iv[2].baseline.as_ref().unwrap().latency_buckets,
            Vec::<u64>::new()
        );
        assert_eq!(
            iv[0].baseline.as_ref().unwrap().latency_buckets,
            vec![50, 49, 1]
        );
    }

    #[test]
    fn rejects_wrong_format_and_inconsistent_lengths() {
        let bad = TEXT.replace("scenario/1", "scenario/2");
        assert!(
            Scenario::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("format")
        );
        let bad = TEXT.replace("[100, null, 100]", "[100, null]");
        let msg = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(msg.contains("baseline.requests has 2 steps"), "{msg}");
        let bad = TEXT.replace("\"errors\": [0, 0, 1]", "\"errors\": [0, 0, 13]");
        assert!(
            Scenario::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("13 errors")
        );
        assert!(Scenario::parse("{").is_err());
        let bad = TEXT.replace(
            r#""canary": {"requests""#,
            r#""canary": {"extra": {"orders": [1, 2]}, "requests""#,
        );
        let msg = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(msg.contains("canary.extra.orders has 2 steps"), "{msg}");
        let bad = TEXT.replace(
            r#""canary": {"requests""#,
            r#""canary": {"extra": {"or ders": [1, 2, 3]}, "requests""#,
        );
        let msg = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(msg.contains("not a metric name"), "{msg}");
    }

    #[test]
    fn extra_counters_are_read_per_step_and_null_is_missing() {
        let text = TEXT.replace(
            r#""canary": {"requests""#,
            r#""canary": {"extra": {"orders": [2, null, 3]}, "requests""#,
        );
        let s = Scenario::parse(&text).unwrap();
        let iv = &s.window.intervals;
        assert_eq!(iv[0].canary.as_ref().unwrap().extra["orders"], 2);
        assert!(!iv[1].canary.as_ref().unwrap().extra.contains_key("orders"));
        assert_eq!(iv[2].canary.as_ref().unwrap().extra["orders"], 3);
        assert!(iv[0].baseline.as_ref().unwrap().extra.is_empty());
    }

    /// The replay source answers at once: its future is ready on the first poll, so no runtime
    /// is needed to drive it.
    fn ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the replay source must answer at once"),
        }
    }

    #[test]
    fn replay_source_serves_the_intervals_inside_the_range() {
        let s = Scenario::parse(TEXT).unwrap();
        let src = ReplaySource::new(s.window.clone(), 1000);
        let target = AnalysisTarget {
            service: "s".into(),
            namespace: "n".into(),
            environment: "e".into(),
        };
        let w = ready(src.window(&target, 1060, 1180, 60)).unwrap();
        assert_eq!(w.intervals, s.window.intervals[1..3].to_vec());
        assert!(matches!(
            ready(src.window(&target, 1000, 1180, 30)),
            Err(f) if !f.is_transient()
        ));
    }
}
