//! deploybot's canary judge: a pure function from the intervals seen so far and the settings to a
//! [`Decision`] (verdict plus the statistics behind it). It does no I/O and keeps no state: the
//! caller passes the whole window each interval and gets the same answer for the same input.
//!
//! How it decides, per interval `t`:
//! 1. Data first. A missing canary or baseline sample, or no traffic on either, is
//!    `Inconclusive` with the reason (never a pass); enough consecutive inconclusive intervals
//!    escalate (pause and alert).
//! 2. Guardrails act on the current interval alone (canary error rate above 20 % by default).
//! 3. Each gating test compares canary with baseline *within* each verified interval
//!    (conditional binomial: of the interval's events, how many fell on the canary, given its
//!    share of the requests), scales each interval's z by the estimated extra-binomial wobble
//!    and sums them from each possible onset on. A mixture over onsets of one-sided
//!    normal-mixture e-values (most weight on "from the start") rolls back when it exceeds
//!    `1/(alpha/m)` (m gating tests): valid however often it is looked at, and a late onset is
//!    not diluted by the healthy intervals before it.
//! 4. Promotion needs, after `min_intervals` verified intervals, evidence for every gating
//!    metric that the canary is *not worse than the tolerance* (the same statistic against the
//!    tolerance ratio), a sound sample ratio, and verified data in the current interval.
//! 5. At `max_intervals` the last look takes two fixed-horizon tests more, each at half of
//!    `alpha` split across the gating tests: z of the same within-interval sum against the
//!    rollback margin, and z of the whole-window rate ratio against 1 with each track's own
//!    wobble (stronger when a quiet canary sits next to a swinging baseline). A canary that is
//!    clearly worse but short of the sequential threshold rolls back instead of ending
//!    inconclusive.
//!
//! The reference judges live in `reference.rs`; this file only holds deploybot's own.

use serde::Serialize;

use super::sample::{Interval, TrackSample, Window};
use super::settings::{Direction, JudgeConfig, MetricMode};
use super::stats::{self, DispersionPrior, SplitCount};

/// What to do with the canary after this interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// No decision yet; keep watching.
    Continue,
    /// The canary is healthy enough: go to the next step.
    Promote,
    /// The canary is worse: take it back.
    Rollback { metric: String, evidence: String },
    /// No evidence can be had right now; `escalate` asks to pause the rollout and alert.
    Inconclusive {
        reason: InconclusiveReason,
        escalate: bool,
    },
}

impl Verdict {
    /// `continue`, `promote`, `rollback` or `inconclusive`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Continue => "continue",
            Verdict::Promote => "promote",
            Verdict::Rollback { .. } => "rollback",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }
}

/// Why there is no evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InconclusiveReason {
    /// The canary series has no sample for the interval.
    CanarySeriesMissing,
    /// The baseline series has no sample for the interval.
    BaselineSeriesMissing,
    /// The canary served no requests.
    NoCanaryTraffic,
    /// The baseline served no requests.
    NoBaselineTraffic,
    /// Latency is a gating metric but a track has no histogram for the interval.
    LatencyMissing,
    /// A gating extra metric has no sample for the interval on one track.
    ExtraMissing { metric: String },
    /// The canary's share of the requests is far from its weight: routing is broken.
    SampleRatioMismatch { observed: f64, expected: f64 },
    /// The analysis reached `max_intervals` without enough evidence either way.
    Undecided { intervals: usize },
}

impl std::fmt::Display for InconclusiveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InconclusiveReason::CanarySeriesMissing => {
                write!(f, "no canary metrics for the interval")
            }
            InconclusiveReason::BaselineSeriesMissing => {
                write!(f, "no baseline metrics for the interval")
            }
            InconclusiveReason::NoCanaryTraffic => write!(f, "the canary received no traffic"),
            InconclusiveReason::NoBaselineTraffic => write!(f, "the baseline received no traffic"),
            InconclusiveReason::LatencyMissing => {
                write!(f, "no latency histogram for the interval on one track")
            }
            InconclusiveReason::ExtraMissing { metric } => {
                write!(f, "no {metric} sample for the interval on one track")
            }
            InconclusiveReason::SampleRatioMismatch { observed, expected } => write!(
                f,
                "sample ratio mismatch: the canary received {:.2} % of requests, {:.2} % expected",
                observed * 100.0,
                expected * 100.0
            ),
            InconclusiveReason::Undecided { intervals } => write!(
                f,
                "no decision after {intervals} intervals: not enough evidence either way"
            ),
        }
    }
}

/// Which comparison a report is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricKind {
    /// Failed requests.
    Errors,
    /// Requests slower than `le` seconds (around the baseline's body quantile).
    Latency { le: f64 },
    /// Requests slower than `le` seconds (around the baseline's tail quantile).
    LatencyTail { le: f64 },
    /// A configured extra counter (`analysis.judge.extra.<name>`), per request.
    Extra { name: String },
}

impl std::fmt::Display for MetricKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricKind::Errors => write!(f, "error-rate"),
            MetricKind::Latency { le } => write!(f, "latency>{le}s"),
            MetricKind::LatencyTail { le } => write!(f, "latency-tail>{le}s"),
            MetricKind::Extra { name } => write!(f, "{name}"),
        }
    }
}

/// Where a metric stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricStatus {
    /// Evidence beyond the error budget that the canary is worse.
    Regression,
    /// Evidence that the canary is within the tolerance.
    WithinTolerance,
    /// Evidence that it is not grossly worse (below its gross tolerance), enough to advance an
    /// intermediate step, but not yet that it is within the tolerance.
    NotGrosslyWorse,
    /// Neither yet.
    NoEvidenceYet,
}

/// The statistics of one comparison, enough to explain the decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricReport {
    pub metric: MetricKind,
    pub gating: bool,
    /// Events (errors, slow requests) and requests on each track over the verified intervals.
    pub canary_events: u64,
    pub canary_requests: u64,
    pub baseline_events: u64,
    pub baseline_requests: u64,
    /// Within-interval (Mantel-Haenszel) ratio of canary to baseline event rates.
    pub ratio: Option<f64>,
    /// Intervals that carried events.
    pub intervals: usize,
    /// Estimated extra-binomial wobble (squared CV per track and interval).
    pub kappa: f64,
    /// The wobble the stable version's history showed before the rollout, when it had enough
    /// intervals to say: the prior `kappa` started from instead of the configured one.
    pub history_kappa: Option<f64>,
    /// log e-value of "canary worse" against its threshold `ln(m/alpha)`.
    pub log_evalue: f64,
    pub log_threshold: f64,
    /// z score of "canary worse than the rollback margin" at a fixed horizon (the last look
    /// rolls back when it exceeds `final_z`).
    pub margin_z: f64,
    /// z score of "canary worse at all" (ratio 1) from the whole-window rates, each track's
    /// variance from its own wobble ([`stats::pooled_log_ratio_z`]). Only the last look uses it,
    /// so it is 0 before `max_intervals` and with fewer than `min_intervals` verified
    /// intervals. The last look rolls back when it exceeds `final_z`.
    pub pooled_z: f64,
    /// The verified interval (1-based, within step `since_step`) from which the evidence of
    /// "canary worse" is strongest: 1 of step 1 for a regression from the start, later for one
    /// with a late onset.
    pub since: usize,
    /// The step (1-based) of `since`.
    pub since_step: usize,
    /// z score of "canary below the tolerance" (the last promotion needs it below `-promote_z`).
    pub tolerance_z: f64,
    /// z score of "canary below the gross tolerance" (an intermediate promotion needs it below
    /// `-promote_z`, unless the tolerance itself is met).
    pub gross_z: f64,
    /// z score of "canary worse at all" on the current step's intervals alone: a step after the
    /// first promotes only while it is below `promote_z`.
    pub step_z: f64,
    /// The same on the current step's last few intervals: a step after the first promotes only
    /// while it is below `promote_z` too (an onset just before the promotion).
    pub recent_z: f64,
    pub promote_z: f64,
    pub status: MetricStatus,
}

impl MetricReport {
    /// One line for a comment or commit message.
    pub fn summary(&self) -> String {
        let ratio = self
            .ratio
            .map(|r| format!("{r:.2}x"))
            .unwrap_or_else(|| "n/a".into());
        format!(
            "canary {}/{} vs baseline {}/{} over {} intervals, ratio {}, e-value {:.3e} \
             (threshold {:.0}), overdispersion {:.2}",
            self.canary_events,
            self.canary_requests,
            self.baseline_events,
            self.baseline_requests,
            self.intervals,
            ratio,
            self.log_evalue.exp(),
            self.log_threshold.exp(),
            self.kappa
        ) + &if self.since_step > 1 {
            format!(
                ", strongest from verified interval {} of step {} on",
                self.since, self.since_step
            )
        } else if self.since > 1 {
            format!(", strongest from verified interval {} on", self.since)
        } else {
            String::new()
        }
    }
}

/// A verdict with what led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The interval (1-based) this decision is about.
    pub interval: usize,
    pub verdict: Verdict,
    /// Verified intervals (both tracks present with traffic) so far, over every step judged.
    pub verified_intervals: usize,
    /// The steps the evidence spans (1 for a window judged alone).
    pub steps: usize,
    pub metrics: Vec<MetricReport>,
    /// Observed canary share of the requests over the verified intervals.
    pub canary_share: Option<f64>,
    /// Set by judges without per-metric reports (the references) to explain their verdict.
    pub note: Option<String>,
}

impl Decision {
    /// A one-line reason for the CLI and logs.
    pub fn reason(&self) -> String {
        if let Some(note) = &self.note {
            return note.clone();
        }
        match &self.verdict {
            Verdict::Continue => format!(
                "watching: {} verified intervals, no evidence either way yet",
                self.verified_intervals
            ),
            Verdict::Promote => {
                let promoting: Vec<&MetricReport> = self
                    .metrics
                    .iter()
                    .filter(|m| m.gating && !matches!(m.metric, MetricKind::LatencyTail { .. }))
                    .collect();
                let parts: Vec<String> = promoting
                    .iter()
                    .map(|m| {
                        let ratio = m
                            .ratio
                            .map(|r| format!("{r:.2}x"))
                            .unwrap_or_else(|| "n/a".into());
                        format!("{} ratio {ratio}", m.metric)
                    })
                    .collect();
                let all =
                    |ok: &dyn Fn(MetricStatus) -> bool| promoting.iter().all(|m| ok(m.status));
                let claim = if all(&|s| s == MetricStatus::WithinTolerance) {
                    "within tolerance"
                } else if all(&|s| {
                    matches!(
                        s,
                        MetricStatus::WithinTolerance | MetricStatus::NotGrosslyWorse
                    )
                }) {
                    "no gross harm"
                } else {
                    "no harm shown in the whole step"
                };
                let over = if self.steps > 1 {
                    format!(" over {} steps", self.steps)
                } else {
                    String::new()
                };
                format!(
                    "{claim} after {} verified intervals{over}: {}",
                    self.verified_intervals,
                    parts.join(", ")
                )
            }
            Verdict::Rollback { metric, evidence } => format!("{metric}: {evidence}"),
            Verdict::Inconclusive { reason, escalate } => {
                if *escalate {
                    format!("{reason} (pause and alert)")
                } else {
                    reason.to_string()
                }
            }
        }
    }
}

/// The data problem of one interval, if any.
fn data_problem(iv: &Interval) -> Option<InconclusiveReason> {
    match (&iv.baseline, &iv.canary) {
        (_, None) => Some(InconclusiveReason::CanarySeriesMissing),
        (None, _) => Some(InconclusiveReason::BaselineSeriesMissing),
        (_, Some(c)) if c.requests == 0 => Some(InconclusiveReason::NoCanaryTraffic),
        (Some(b), _) if b.requests == 0 => Some(InconclusiveReason::NoBaselineTraffic),
        _ => None,
    }
}

/// Why an interval gives no evidence for the gating metrics: missing series or traffic
/// ([`data_problem`]), or a gating latency histogram or extra metric absent on a track.
fn inconclusive_reason(
    iv: &Interval,
    cfg: &JudgeConfig,
    buckets: usize,
) -> Option<InconclusiveReason> {
    if let Some(problem) = data_problem(iv) {
        return Some(problem);
    }
    let (b, c) = verified(iv)?;
    if cfg.latency.mode == MetricMode::Gate
        && (!has_latency(b, buckets) || !has_latency(c, buckets))
    {
        return Some(InconclusiveReason::LatencyMissing);
    }
    cfg.extra
        .iter()
        .filter(|(_, m)| m.mode == MetricMode::Gate)
        .find(|(name, _)| !b.extra.contains_key(*name) || !c.extra.contains_key(*name))
        .map(|(name, _)| InconclusiveReason::ExtraMissing {
            metric: name.clone(),
        })
}

/// Both tracks of an interval when they can be compared.
fn verified(iv: &Interval) -> Option<(&TrackSample, &TrackSample)> {
    match (&iv.baseline, &iv.canary) {
        (Some(b), Some(c)) if b.requests > 0 && c.requests > 0 => Some((b, c)),
        _ => None,
    }
}

fn has_latency(s: &TrackSample, buckets: usize) -> bool {
    s.latency_buckets.len() == buckets && buckets > 1
}

/// What the judge sees at one look at a rollout: the stable version's history before the rollout
/// started, the canary steps already judged (whole), and the current step up to interval `t`.
/// The canary version is the same from the first step to the last, so the evidence of every
/// verified interval counts at every later look; each interval is compared within itself at its
/// own share of the traffic, so intervals of different weights mix without bias.
#[derive(Debug, Clone, Copy)]
pub struct Look<'a> {
    /// The stable version alone before the rollout (baseline samples; the canary is `None`).
    /// Empty when unknown: the configured wobble priors apply then.
    pub history: &'a [Interval],
    /// The canary steps already judged and left, oldest first.
    pub earlier: &'a [Window],
    /// The step being judged; its `canary_weight` is the weight the sample-ratio check expects.
    pub current: &'a Window,
    /// Intervals of the current step seen so far (`1..=current.intervals.len()`).
    pub t: usize,
    /// Promoting from this step sends all traffic to the canary: only then does a promotion need
    /// evidence that the canary is within the tolerance. Before it, a promotion only needs
    /// evidence that it is not grossly worse.
    pub last_step: bool,
    /// The plan's canary steps below 100 %: a regression's onset may fall anywhere in
    /// `planned_steps * max_intervals` intervals.
    pub planned_steps: usize,
}

impl<'a> Look<'a> {
    /// A single window judged alone: no history, no earlier step, and its promotion is the last.
    pub fn single(window: &'a Window, t: usize) -> Look<'a> {
        Look {
            history: &[],
            earlier: &[],
            current: window,
            t,
            last_step: true,
            planned_steps: 1,
        }
    }
}

/// One verified interval of the rollout: both tracks present with traffic, and its step.
#[derive(Clone, Copy)]
struct Row<'a> {
    step: usize,
    baseline: &'a TrackSample,
    canary: &'a TrackSample,
}

/// Judges the canary on `window.intervals[..t]` (the intervals seen so far; `t >= 1`), as a
/// rollout of that one step.
pub fn decide(window: &Window, t: usize, cfg: &JudgeConfig) -> Decision {
    decide_look(&Look::single(window, t), cfg)
}

/// Judges a rollout at one look: the evidence of every verified interval of every step so far,
/// the guardrails, data checks and sample ratio of the current step, and the promotion the step
/// needs (gross harm ruled out before the last step, the tolerance at the last).
pub fn decide_look(look: &Look<'_>, cfg: &JudgeConfig) -> Decision {
    let window = look.current;
    let t = look.t.clamp(1, window.intervals.len().max(1));
    let seen = &window.intervals[..t.min(window.intervals.len())];
    let buckets = window.latency_buckets_le.len() + 1;
    let step = look.earlier.len();
    let rows: Vec<Row<'_>> = look
        .earlier
        .iter()
        .enumerate()
        .flat_map(|(s, w)| w.intervals.iter().map(move |iv| (s, iv)))
        .chain(seen.iter().map(|iv| (step, iv)))
        .filter_map(|(step, iv)| {
            verified(iv).map(|(baseline, canary)| Row {
                step,
                baseline,
                canary,
            })
        })
        .collect();
    let pairs: Vec<(&TrackSample, &TrackSample)> = seen.iter().filter_map(verified).collect();
    let share = canary_share(&pairs);
    let mut decision = Decision {
        interval: t,
        verdict: Verdict::Continue,
        verified_intervals: rows.len(),
        steps: step + 1,
        metrics: Vec::new(),
        canary_share: share,
        note: None,
    };
    let Some(current) = seen.last() else {
        decision.verdict = Verdict::Inconclusive {
            reason: InconclusiveReason::CanarySeriesMissing,
            escalate: false,
        };
        return decision;
    };

    if let Some(rollback) = guardrail(current, &window.latency_buckets_le, cfg) {
        decision.verdict = rollback;
        return decision;
    }

    let last_look = t >= cfg.max_intervals as usize;
    decision.metrics = metric_reports(look, &rows, cfg, last_look);
    if let Some(m) = decision
        .metrics
        .iter()
        .find(|m| m.gating && m.status == MetricStatus::Regression)
    {
        decision.verdict = Verdict::Rollback {
            metric: m.metric.to_string(),
            evidence: m.summary(),
        };
        return decision;
    }

    if let Some(problem) = inconclusive_reason(current, cfg, buckets) {
        // Consecutive inconclusive intervals, whatever made each of them so, escalate: a gating
        // metric that never arrives must page someone as surely as a missing canary.
        let held = seen
            .iter()
            .rev()
            .take_while(|iv| inconclusive_reason(iv, cfg, buckets).is_some())
            .count();
        decision.verdict = Verdict::Inconclusive {
            reason: problem,
            escalate: held >= cfg.escalate_after_inconclusive as usize,
        };
        return decision;
    }
    if let Some(observed) = share
        && sample_ratio_mismatch(&pairs, observed, window.canary_weight, cfg)
    {
        decision.verdict = Verdict::Inconclusive {
            reason: InconclusiveReason::SampleRatioMismatch {
                observed,
                expected: window.canary_weight,
            },
            escalate: true,
        };
        return decision;
    }
    let gating: Vec<&MetricReport> = decision.metrics.iter().filter(|m| m.gating).collect();
    let promotable_gates = gating
        .iter()
        .filter(|m| !matches!(m.metric, MetricKind::LatencyTail { .. }))
        .count();
    let needs_latency = cfg.latency.mode == MetricMode::Gate;
    let has_latency_gate = gating
        .iter()
        .any(|m| matches!(m.metric, MetricKind::Latency { .. }));
    // Before the last step the question is only whether gross harm is ruled out: more traffic
    // is how the evidence for the last promotion is bought. The last needs the tolerance.
    let enough = |status: MetricStatus| match status {
        MetricStatus::WithinTolerance => true,
        MetricStatus::NotGrosslyWorse => !look.last_step,
        MetricStatus::Regression | MetricStatus::NoEvidenceYet => false,
    };
    // After the first step the evidence of earlier steps must not carry a step that looks
    // worse on its own.
    let step_looks_fine = |m: &MetricReport| {
        step == 0
            || matches!(m.metric, MetricKind::LatencyTail { .. })
            || (m.step_z < m.promote_z && m.recent_z < m.promote_z)
    };
    if pairs.len() >= cfg.min_intervals as usize
        && promotable_gates > 0
        && (!needs_latency || has_latency_gate)
        && gating.iter().all(|m| {
            (matches!(m.metric, MetricKind::LatencyTail { .. }) || enough(m.status))
                && step_looks_fine(m)
        })
    {
        decision.verdict = Verdict::Promote;
        return decision;
    }
    if last_look {
        // The last look is two fixed-horizon tests more, each at half of a second `alpha` split
        // across the gating tests and the plan's steps (a step that ends without a promotion
        // takes it once, and may then still advance below), so false rollbacks over the whole
        // rollout stay below 2 * alpha.
        let looks = gating.len().max(1) * look.planned_steps.max(1);
        let final_z = stats::normal_upper_quantile(cfg.alpha / 2.0 / looks as f64);
        let last_look = |m: &MetricReport| {
            if m.margin_z >= final_z {
                Some(format!(
                    "last look: within-interval z {:.2} against the rollback margin, limit {final_z:.2}",
                    m.margin_z
                ))
            } else if m.pooled_z >= final_z {
                Some(format!(
                    "last look: whole-window z {:.2} that the canary is worse at all, limit {final_z:.2}",
                    m.pooled_z
                ))
            } else {
                None
            }
        };
        if let Some((m, look)) = gating.iter().find_map(|m| last_look(m).map(|l| (m, l))) {
            decision.verdict = Verdict::Rollback {
                metric: m.metric.to_string(),
                evidence: format!("{} ({look})", m.summary()),
            };
            return decision;
        }
        // A step before the last that saw all its traffic without harm showing, and whose own
        // intervals do not lean worse, advances: more traffic is how the evidence is bought, and
        // the last promotion still needs the tolerance.
        if !look.last_step
            && pairs.len() >= cfg.min_intervals as usize
            && promotable_gates > 0
            && (!needs_latency || has_latency_gate)
            && gating
                .iter()
                .filter(|m| !matches!(m.metric, MetricKind::LatencyTail { .. }))
                .all(|m| m.step_z < m.promote_z)
        {
            decision.verdict = Verdict::Promote;
            return decision;
        }
        decision.verdict = Verdict::Inconclusive {
            reason: InconclusiveReason::Undecided { intervals: t },
            escalate: true,
        };
    }
    decision
}

fn canary_share(pairs: &[(&TrackSample, &TrackSample)]) -> Option<f64> {
    let c: u64 = pairs.iter().map(|(_, c)| c.requests).sum();
    let b: u64 = pairs.iter().map(|(b, _)| b.requests).sum();
    (c + b > 0).then(|| c as f64 / (c + b) as f64)
}

/// The observed share is both far from the weight in relative terms and statistically
/// distinguishable from it (so a few requests at low traffic do not trip it).
fn sample_ratio_mismatch(
    pairs: &[(&TrackSample, &TrackSample)],
    observed: f64,
    weight: f64,
    cfg: &JudgeConfig,
) -> bool {
    if !cfg.sample_ratio.enabled {
        return false;
    }
    let n: u64 = pairs.iter().map(|(b, c)| b.requests + c.requests).sum();
    let se = (weight * (1.0 - weight) / n as f64).sqrt();
    (observed / weight - 1.0).abs() > cfg.sample_ratio.tolerance
        && (observed - weight).abs() / se > cfg.sample_ratio.min_z
}

/// The guardrails on the current interval alone.
fn guardrail(iv: &Interval, le: &[f64], cfg: &JudgeConfig) -> Option<Verdict> {
    let g = &cfg.guardrails;
    let c = iv.canary.as_ref()?;
    if c.requests < g.min_requests.max(1) {
        return None;
    }
    let rate = c.errors as f64 / c.requests as f64;
    let fire = |metric: &str, evidence: String| {
        Some(Verdict::Rollback {
            metric: format!("guardrail:{metric}"),
            evidence,
        })
    };
    if let Some(max) = g.max_canary_error_rate
        && rate > max
    {
        return fire(
            "error-rate",
            format!(
                "canary error rate {:.2} % ({}/{}) above the {:.2} % limit in one interval",
                rate * 100.0,
                c.errors,
                c.requests,
                max * 100.0
            ),
        );
    }
    if let Some(min) = g.min_success_rate
        && 1.0 - rate < min
    {
        return fire(
            "success-rate",
            format!(
                "canary success rate {:.3} % below {:.3} %",
                (1.0 - rate) * 100.0,
                min * 100.0
            ),
        );
    }
    let b = iv.baseline.as_ref().filter(|b| b.requests > 0)?;
    let base_rate = b.errors as f64 / b.requests as f64;
    if let Some(max) = g.max_error_rate_increase
        && rate - base_rate > max
    {
        return fire(
            "error-rate-increase",
            format!(
                "canary error rate {:.2} % vs baseline {:.2} %: +{:.2} points, limit {:.2}",
                rate * 100.0,
                base_rate * 100.0,
                (rate - base_rate) * 100.0,
                max * 100.0
            ),
        );
    }
    if let Some(max) = g.max_p99_ratio
        && let (Some(cp), Some(bp)) = (
            stats::histogram_quantile(le, &c.latency_buckets, 0.99),
            stats::histogram_quantile(le, &b.latency_buckets, 0.99),
        )
        && bp > 0.0
        && cp / bp > max
    {
        return fire(
            "p99-latency",
            format!(
                "canary p99 {:.0} ms is {:.2}x the baseline's {:.0} ms, limit {max}x",
                cp * 1000.0,
                cp / bp,
                bp * 1000.0
            ),
        );
    }
    None
}

/// How many intervals of data the overdispersion prior is worth.
const PRIOR_WEIGHT: f64 = 4.0;
/// Intervals of history (with events) below which its wobble estimate is not trusted.
const MIN_HISTORY: usize = 20;
/// Events per history interval below which Poisson noise hides the wobble: the history's
/// estimate is then too noisy to replace the configured prior (it can come out as 0).
const MIN_HISTORY_EVENTS: f64 = 10.0;
/// Scale of the half-normal mixing density over the per-interval drift (in z units): tuned
/// for effects of about half a standard deviation per interval.
const MIXTURE_TAU: f64 = 0.6;
/// Weight of "worse from the first interval" in the change-point e-process; the rest is spread
/// evenly over later onsets up to `max_intervals` per planned step. Chosen on generated seeds 1-6
/// (0.5, 0.7, 0.8, 1.0 compared; 0.8 caught late onsets 1-3 intervals sooner and changed nothing
/// else but one x2 regression on one seed) and checked on seeds 7, 8, 2026 and the shared suite.
const FROM_START_WEIGHT: f64 = 0.8;
/// Weight of "worse from the start of a later step", shared by the plan's later steps: a
/// regression that more traffic brings out starts there.
const STEP_START_WEIGHT: f64 = 0.1;
/// The last intervals of a step whose own evidence can hold back its promotion.
const RECENT_INTERVALS: usize = 3;

struct Test {
    kind: MetricKind,
    mode: MetricMode,
    direction: Direction,
    tolerance: f64,
    gross: f64,
    margin: f64,
    prior: DispersionPrior,
    /// (canary events, canary requests, baseline events, baseline requests) per interval.
    rows: Vec<(u64, u64, u64, u64)>,
    /// The step of each row: rates are pooled within a step only.
    strata: Vec<usize>,
    /// (events, requests) per interval of the stable version's history.
    history: Vec<(u64, u64)>,
    /// What the history's wobble is worth, in intervals (`history_weight`).
    history_weight: f64,
    absolute_tolerance: Option<f64>,
    gross_absolute_tolerance: Option<f64>,
}

impl Test {
    /// The wobble prior: what the stable version's history says when it says enough, else the
    /// configured one.
    fn prior(&self) -> (DispersionPrior, Option<f64>) {
        let with_events = self.history.iter().filter(|r| r.1 > 0).count();
        let events = self.history.iter().map(|r| r.0).sum::<u64>() as f64;
        match stats::history_dispersion(&self.history) {
            Some(kappa)
                if with_events >= MIN_HISTORY
                    && events >= MIN_HISTORY_EVENTS * with_events as f64 =>
            {
                (
                    DispersionPrior {
                        kappa,
                        weight: self.history_weight,
                    },
                    Some(kappa),
                )
            }
            _ => (self.prior, None),
        }
    }
}

fn metric_reports(
    look: &Look<'_>,
    rows: &[Row<'_>],
    cfg: &JudgeConfig,
    last_look: bool,
) -> Vec<MetricReport> {
    let strata: Vec<usize> = rows.iter().map(|r| r.step).collect();
    // `history_weight: 0` ignores the history altogether.
    let history: Vec<&TrackSample> = look
        .history
        .iter()
        .filter(|_| cfg.history_weight > 0.0)
        .filter_map(|iv| iv.baseline.as_ref())
        .filter(|b| b.requests > 0)
        .collect();
    let mut tests = vec![Test {
        kind: MetricKind::Errors,
        mode: cfg.errors.mode,
        direction: cfg.errors.direction,
        tolerance: cfg.errors.tolerance,
        gross: cfg.errors.gross_tolerance,
        margin: cfg.errors.rollback_margin,
        prior: DispersionPrior {
            kappa: cfg.errors.dispersion_prior,
            weight: PRIOR_WEIGHT,
        },
        rows: rows
            .iter()
            .map(|r| {
                (
                    r.canary.errors,
                    r.canary.requests,
                    r.baseline.errors,
                    r.baseline.requests,
                )
            })
            .collect(),
        strata: strata.clone(),
        history: history.iter().map(|h| (h.errors, h.requests)).collect(),
        history_weight: cfg.history_weight,
        absolute_tolerance: Some(cfg.errors.absolute_tolerance),
        gross_absolute_tolerance: Some(cfg.errors.gross_absolute_tolerance),
    }];
    let le = &look.current.latency_buckets_le;
    let buckets = le.len() + 1;
    let lat: Vec<&Row<'_>> = rows
        .iter()
        .filter(|r| has_latency(r.baseline, buckets) && has_latency(r.canary, buckets))
        .collect();
    if !lat.is_empty() {
        // The bounds are chosen on the stable version's histograms: the history's and the
        // baseline's, never the canary's.
        let history_lat: Vec<&TrackSample> = history
            .iter()
            .copied()
            .filter(|h| has_latency(h, buckets))
            .collect();
        let mut base = vec![0u64; buckets];
        for b in lat
            .iter()
            .map(|r| r.baseline)
            .chain(history_lat.iter().copied())
        {
            for (acc, v) in base.iter_mut().zip(&b.latency_buckets) {
                *acc += v;
            }
        }
        let (body, tail) =
            latency_bounds(&base, cfg.latency.body_quantile, cfg.latency.tail_quantile);
        let above = |s: &TrackSample, k: usize| s.latency_buckets[k + 1..].iter().sum::<u64>();
        let total = |s: &TrackSample| s.latency_buckets.iter().sum::<u64>();
        let slow_rows = |k: usize| -> (Vec<Counts>, Vec<usize>) {
            lat.iter()
                .map(|r| {
                    let (b, c) = (r.baseline, r.canary);
                    ((above(c, k), total(c), above(b, k), total(b)), r.step)
                })
                .filter(|(r, _)| r.1 > 0 && r.3 > 0)
                .unzip()
        };
        // The body (slow share) and tail tests differ only in which bucket bound counts as slow.
        let latency_tests = [
            body.map(|k| (MetricKind::Latency { le: le[k] }, k)),
            tail.map(|k| (MetricKind::LatencyTail { le: le[k] }, k)),
        ];
        for (kind, k) in latency_tests.into_iter().flatten() {
            let (rows, strata) = slow_rows(k);
            tests.push(Test {
                kind,
                mode: cfg.latency.mode,
                direction: cfg.latency.direction,
                tolerance: cfg.latency.tolerance,
                gross: cfg.latency.gross_tolerance,
                margin: cfg.latency.rollback_margin,
                prior: DispersionPrior {
                    kappa: cfg.latency.dispersion_prior,
                    weight: PRIOR_WEIGHT,
                },
                rows,
                strata,
                history: history_lat
                    .iter()
                    .map(|h| (above(h, k), total(h)))
                    .collect(),
                history_weight: cfg.history_weight,
                absolute_tolerance: None,
                gross_absolute_tolerance: None,
            });
        }
    }
    for (name, m) in &cfg.extra {
        let (rows, strata) = rows
            .iter()
            .filter_map(|r| {
                Some((
                    (
                        *r.canary.extra.get(name)?,
                        r.canary.requests,
                        *r.baseline.extra.get(name)?,
                        r.baseline.requests,
                    ),
                    r.step,
                ))
            })
            .unzip();
        tests.push(Test {
            kind: MetricKind::Extra { name: name.clone() },
            mode: m.mode,
            direction: m.direction,
            tolerance: m.tolerance,
            gross: m.gross_tolerance,
            margin: m.rollback_margin,
            prior: DispersionPrior {
                kappa: m.dispersion_prior,
                weight: PRIOR_WEIGHT,
            },
            rows,
            strata,
            history: history
                .iter()
                .filter_map(|h| Some((*h.extra.get(name)?, h.requests)))
                .collect(),
            history_weight: cfg.history_weight,
            absolute_tolerance: None,
            gross_absolute_tolerance: None,
        });
    }
    let gating = tests
        .iter()
        .filter(|t| t.mode == MetricMode::Gate)
        .count()
        .max(1);
    let log_threshold = (gating as f64 / cfg.alpha).ln();
    let promote_z = stats::normal_upper_quantile(cfg.promote_alpha);
    let horizon = cfg.max_intervals as usize * look.planned_steps.max(1);
    tests
        .into_iter()
        .map(|t| {
            run_test(
                t,
                Thresholds {
                    log_threshold,
                    promote_z,
                    horizon,
                    planned_steps: look.planned_steps.max(1),
                    current_step: look.earlier.len(),
                    min_intervals: cfg.min_intervals as usize,
                },
                last_look,
            )
        })
        .collect()
}

/// Picks the bucket bounds (indices into `le`) nearest, in log share, to the baseline's body
/// and tail quantiles; the tail bound is strictly above the body bound.
fn latency_bounds(base: &[u64], body_q: f64, tail_q: f64) -> (Option<usize>, Option<usize>) {
    let total: u64 = base.iter().sum();
    if total == 0 {
        return (None, None);
    }
    let bounds = base.len() - 1;
    // share of baseline requests above bound k
    let above: Vec<f64> = (0..bounds)
        .map(|k| base[k + 1..].iter().sum::<u64>() as f64 / total as f64)
        .collect();
    let nearest = |target: f64, from: usize| -> Option<usize> {
        (from..bounds).filter(|&k| above[k] > 0.0).min_by(|&a, &b| {
            let da = (above[a].ln() - target.ln()).abs();
            let db = (above[b].ln() - target.ln()).abs();
            da.total_cmp(&db)
        })
    };
    let body = nearest(1.0 - body_q, 0);
    let tail = body.and_then(|b| nearest(1.0 - tail_q, b + 1));
    (body, tail)
}

/// The limits every test of one look is held to.
#[derive(Clone, Copy)]
struct Thresholds {
    log_threshold: f64,
    promote_z: f64,
    /// Intervals over which a regression's onset may fall.
    horizon: usize,
    /// Canary steps in the plan, and the (0-based) step being judged.
    planned_steps: usize,
    current_step: usize,
    min_intervals: usize,
}

fn run_test(t: Test, th: Thresholds, last_look: bool) -> MetricReport {
    // "Lower is worse": compare the complements' direction by flipping which side we test:
    // the canary's events being *fewer* than its share is the regression.
    let sign = match t.direction {
        Direction::HigherIsWorse => 1.0,
        Direction::LowerIsWorse => -1.0,
    };
    let (prior, history_kappa) = t.prior();
    let known = t
        .history
        .iter()
        .fold((0u64, 0u64), |a, r| (a.0 + r.0, a.1 + r.1));
    let counts = SplitCount::window_with(&t.rows, known);
    let kappa = stats::dispersion(&counts, prior);
    let flip = |r: f64| if sign > 0.0 { r } else { 1.0 / r };
    let (margin, tol_ratio, gross_ratio) = (flip(t.margin), flip(t.tolerance), flip(t.gross));
    let null = stats::drift(&counts, margin, kappa);
    let tol = stats::drift(&counts, tol_ratio, kappa);
    let gross = stats::drift(&counts, gross_ratio, kappa);
    let incs: Vec<(f64, f64)> = stats::increments(&counts, margin, kappa)
        .into_iter()
        .map(|(x, v)| (sign * x, v))
        .collect();
    let step_starts: Vec<usize> = (1..t.strata.len())
        .filter(|&i| t.strata[i] != t.strata[i - 1])
        .collect();
    let weights = stats::onset_weights(
        incs.len(),
        FROM_START_WEIGHT,
        th.horizon,
        (
            &step_starts,
            STEP_START_WEIGHT,
            th.planned_steps.saturating_sub(1),
        ),
    );
    let (log_evalue, start) = stats::log_changepoint_evalue_weighted(&incs, MIXTURE_TAU, &weights);
    // The current step alone: a step after the first promotes only while it shows no sign of
    // being worse than the baseline, so evidence from earlier steps cannot carry a regression
    // that started in this one.
    let current: Vec<SplitCount> = counts
        .iter()
        .zip(&t.strata)
        .filter(|(_, s)| **s == th.current_step)
        .map(|(c, _)| *c)
        .collect();
    let step_z = sign * stats::drift(&current, 1.0, kappa).z();
    let recent_z = sign
        * stats::drift(
            &current[current.len().saturating_sub(RECENT_INTERVALS)..],
            1.0,
            kappa,
        )
        .z();
    let tolerance_z = sign * tol.z();
    let gross_z = sign * gross.z();
    // The whole-window test runs only at the last look (not on every interval's hot path), on
    // the window's own wobble: the pessimistic prior exists for the first few intervals of the
    // sequential test and is not used here. Rates are pooled within a step only (a step's
    // intervals share one weight), and steps with fewer verified intervals than a promotion
    // needs are too few to estimate the wobble from.
    let pooled_z = if last_look {
        let own_wobble = DispersionPrior {
            kappa: t.prior.kappa,
            weight: 0.0,
        };
        sign * pooled_z_by_step(&t.rows, &t.strata, th.min_intervals, own_wobble)
    } else {
        0.0
    };
    let (ce, cr, be, br) = stats::totals(&t.rows);
    let below = |abs: Option<f64>| {
        abs.is_some_and(|abs| {
            sign > 0.0 && absolute_upper_bound(&t.rows, &t.strata, kappa, th.promote_z) < abs
        })
    };
    let status = if log_evalue >= th.log_threshold {
        MetricStatus::Regression
    } else if (null.intervals > 0 && tolerance_z <= -th.promote_z) || below(t.absolute_tolerance) {
        MetricStatus::WithinTolerance
    } else if (null.intervals > 0 && gross_z <= -th.promote_z) || below(t.gross_absolute_tolerance)
    {
        MetricStatus::NotGrosslyWorse
    } else {
        MetricStatus::NoEvidenceYet
    };
    // Where the strongest evidence starts, as (step, verified interval of that step), 1-based.
    let since_step = t.strata.get(start).copied().unwrap_or(0);
    let since = start + 1 - t.strata.iter().take_while(|s| **s < since_step).count();
    MetricReport {
        metric: t.kind,
        gating: t.mode == MetricMode::Gate,
        canary_events: ce,
        canary_requests: cr,
        baseline_events: be,
        baseline_requests: br,
        ratio: stats::rate_ratio(&counts),
        intervals: null.intervals,
        kappa,
        history_kappa,
        log_evalue,
        log_threshold: th.log_threshold,
        margin_z: sign * null.z(),
        pooled_z,
        since,
        since_step: since_step + 1,
        tolerance_z,
        gross_z,
        step_z,
        recent_z,
        promote_z: th.promote_z,
        status,
    }
}

/// The whole-window z of "the canary is worse at all", its log rate ratio pooled within each
/// step that has at least `min_rows` intervals and combined across steps by inverse variance
/// (pooling across steps would mix weights with whatever else changed between them).
fn pooled_z_by_step(
    rows: &[(u64, u64, u64, u64)],
    strata: &[usize],
    min_rows: usize,
    prior: DispersionPrior,
) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (step_rows, _) in by_step(rows, strata) {
        if step_rows.len() < min_rows.max(1) {
            continue;
        }
        if let Some((l, v)) = stats::pooled_log_ratio(&step_rows, 1.0, prior)
            && v > 0.0
        {
            num += l / v;
            den += 1.0 / v;
        }
    }
    if den > 0.0 { num / den.sqrt() } else { 0.0 }
}

/// One interval's (canary events, canary requests, baseline events, baseline requests).
type Counts = (u64, u64, u64, u64);

/// The rows of each step, in order, with the step.
fn by_step(rows: &[(u64, u64, u64, u64)], strata: &[usize]) -> Vec<(Vec<Counts>, usize)> {
    let mut out: Vec<(Vec<Counts>, usize)> = Vec::new();
    for (row, &step) in rows.iter().zip(strata) {
        match out.last_mut() {
            Some((v, s)) if *s == step => v.push(*row),
            _ => out.push((vec![*row], step)),
        }
    }
    out
}

/// Upper confidence bound of (canary rate - baseline rate): pooled within each step, with each
/// track's Poisson variance inflated by its interval-to-interval wobble (one pseudo-event keeps
/// a track with no events from claiming zero variance), and the steps combined by inverse
/// variance.
fn absolute_upper_bound(
    rows: &[(u64, u64, u64, u64)],
    strata: &[usize],
    kappa: f64,
    z: f64,
) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (step_rows, _) in by_step(rows, strata) {
        let (ce, cr, be, br) = stats::totals(&step_rows);
        if cr == 0 || br == 0 {
            continue;
        }
        let per = step_rows.len() as f64;
        let var = |e: u64, r: u64| {
            let e = e as f64 + 1.0;
            e * (1.0 + kappa * e / per) / (r as f64 * r as f64)
        };
        let v = var(ce, cr) + var(be, br);
        num += (ce as f64 / cr as f64 - be as f64 / br as f64) / v;
        den += 1.0 / v;
    }
    if den <= 0.0 {
        return f64::INFINITY;
    }
    num / den + z / den.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::settings::{GuardrailConfig, JudgeConfig};

    const LE: [f64; 4] = [0.05, 0.1, 0.25, 0.5];

    /// A track with `requests`, `errors` and a latency histogram with `slow` share above 0.1 s.
    fn track(requests: u64, errors: u64, slow: f64) -> TrackSample {
        let slow_n = (requests as f64 * slow).round() as u64;
        let fast = requests - slow_n;
        TrackSample {
            requests,
            errors,
            latency_buckets: vec![
                fast / 2,
                fast - fast / 2,
                slow_n * 9 / 10,
                slow_n - slow_n * 9 / 10,
                0,
            ],
            extra: Default::default(),
        }
    }

    /// Deterministic wobble so windows look like data without a random generator.
    fn wobble(i: usize) -> f64 {
        [1.0, 0.8, 1.2, 0.9, 1.1, 1.05, 0.95][i % 7]
    }

    fn window(n: usize, f: impl Fn(usize) -> Interval) -> Window {
        Window {
            step_seconds: 60,
            canary_weight: 0.1,
            latency_buckets_le: LE.to_vec(),
            intervals: (0..n).map(f).collect(),
        }
    }

    fn healthy(i: usize) -> Interval {
        let w = wobble(i);
        Interval {
            baseline: Some(track(9000, (45.0 * w) as u64, 0.2)),
            canary: Some(track(1000, (5.0 * wobble(i + 3)) as u64, 0.2)),
        }
    }

    fn replay_verdict(w: &Window, cfg: &JudgeConfig) -> Decision {
        crate::canary::replay(w, cfg)
    }

    #[test]
    fn a_healthy_canary_is_promoted_after_the_minimum_soak() {
        let cfg = JudgeConfig::default();
        let w = window(30, healthy);
        let d = replay_verdict(&w, &cfg);
        assert_eq!(d.verdict, Verdict::Promote, "{}", d.reason());
        assert!(d.interval >= cfg.min_intervals as usize);
        assert!(d.reason().contains("within tolerance"), "{}", d.reason());
        // never before the minimum soak, however clean the data
        for t in 1..cfg.min_intervals as usize {
            assert_ne!(decide(&w, t, &cfg).verdict, Verdict::Promote);
        }
    }

    #[test]
    fn an_error_regression_rolls_back_with_its_evidence() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            canary: Some(track(1000, (15.0 * wobble(i + 3)) as u64, 0.2)),
            ..healthy(i)
        });
        let d = replay_verdict(&w, &cfg);
        let Verdict::Rollback { metric, evidence } = &d.verdict else {
            panic!("expected a rollback, got {d:?}");
        };
        assert_eq!(metric, "error-rate");
        assert!(
            evidence.contains("ratio 3.") && evidence.contains("e-value"),
            "{evidence}"
        );
        // the conservative overdispersion prior costs a few intervals on a 3x regression
        assert!(d.interval <= 10, "took {} intervals", d.interval);
        let report = d
            .metrics
            .iter()
            .find(|m| m.metric == MetricKind::Errors)
            .unwrap();
        assert_eq!(report.status, MetricStatus::Regression);
    }

    #[test]
    fn a_regression_still_undecided_at_the_last_look_rolls_back_instead_of_staying_inconclusive() {
        let cfg = JudgeConfig::default();
        // 1.6x the errors: too little for the sequential e-value within 30 intervals, but a
        // clear excess at a fixed horizon
        let w = window(30, |i| Interval {
            canary: Some(track(1000, (8.0 * wobble(i + 3)) as u64, 0.2)),
            ..healthy(i)
        });
        for t in 1..30 {
            assert_eq!(decide(&w, t, &cfg).verdict, Verdict::Continue, "at {t}");
        }
        let d = decide(&w, 30, &cfg);
        let Verdict::Rollback { metric, evidence } = &d.verdict else {
            panic!("expected a rollback at the last look, got {d:?}");
        };
        assert_eq!(metric, "error-rate");
        assert!(evidence.contains("last look"), "{evidence}");
        // a healthy canary at its last look is not rolled back
        let healthy_window = window(30, healthy);
        assert_ne!(decide(&healthy_window, 30, &cfg).verdict.name(), "rollback");
    }

    /// A steady canary at 1.8x the error rate of a baseline that swings between 5 and 115
    /// errors a minute: within each interval the swing drowns the difference, over the whole
    /// window it does not. The last look's whole-window test rolls it back, and only there.
    #[test]
    fn a_quiet_canary_next_to_a_wobbly_baseline_rolls_back_on_the_whole_window() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            baseline: Some(track(9000, if i % 2 == 0 { 5 } else { 115 }, 0.2)),
            canary: Some(track(1000, 12, 0.2)),
        });
        for t in 1..30 {
            assert_ne!(decide(&w, t, &cfg).verdict.name(), "rollback", "at {t}");
        }
        let d = decide(&w, 30, &cfg);
        let errors = &d.metrics[0];
        let limit = stats::normal_upper_quantile(cfg.alpha / 2.0 / 3.0);
        assert!(
            errors.margin_z < limit && limit < errors.pooled_z,
            "{errors:?}"
        );
        let Verdict::Rollback { metric, evidence } = &d.verdict else {
            panic!("expected a rollback at the last look, got {d:?}");
        };
        assert_eq!(metric, "error-rate");
        assert!(evidence.contains("whole-window"), "{evidence}");
        // before `min_intervals` verified intervals the whole-window test is not taken
        let early = decide(&w, cfg.min_intervals as usize - 1, &cfg);
        assert_eq!(early.metrics[0].pooled_z, 0.0);
    }

    #[test]
    fn a_late_onset_is_judged_from_its_onset_and_says_so() {
        let cfg = JudgeConfig::default();
        // healthy for 14 intervals, then 4x the errors
        let w = window(30, |i| {
            if i < 14 {
                healthy(i)
            } else {
                Interval {
                    canary: Some(track(1000, (20.0 * wobble(i + 3)) as u64, 0.2)),
                    ..healthy(i)
                }
            }
        });
        let d = (15..=30)
            .map(|t| decide(&w, t, &cfg))
            .find(|d| d.verdict.name() == "rollback")
            .expect("the late onset is rolled back");
        assert!(d.interval <= 20, "took until interval {}", d.interval);
        let report = d
            .metrics
            .iter()
            .find(|m| m.metric == MetricKind::Errors)
            .unwrap();
        assert!((13..=16).contains(&report.since), "since {}", report.since);
        let Verdict::Rollback { evidence, .. } = &d.verdict else {
            unreachable!()
        };
        assert!(
            evidence.contains(&format!("from verified interval {} on", report.since)),
            "{evidence}"
        );
    }

    #[test]
    fn a_latency_regression_rolls_back() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            canary: Some(track(1000, (5.0 * wobble(i + 3)) as u64, 0.3)),
            ..healthy(i)
        });
        let d = replay_verdict(&w, &cfg);
        assert!(
            matches!(&d.verdict, Verdict::Rollback { metric, .. } if metric.starts_with("latency")),
            "{d:?}"
        );
    }

    #[test]
    fn shared_noise_hitting_both_tracks_is_not_a_regression() {
        // an incident multiplies errors tenfold on both tracks for a few intervals
        let cfg = JudgeConfig::default();
        let w = window(30, |i| {
            let burst = if (10..14).contains(&i) { 10 } else { 1 };
            Interval {
                baseline: Some(track(9000, (45.0 * wobble(i)) as u64 * burst, 0.2)),
                canary: Some(track(1000, (5.0 * wobble(i + 3)) as u64 * burst, 0.2)),
            }
        });
        let d = replay_verdict(&w, &cfg);
        assert_ne!(d.verdict.name(), "rollback", "{}", d.reason());
    }

    #[test]
    fn a_missing_canary_series_is_inconclusive_and_escalates() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            canary: None,
            ..healthy(i)
        });
        let d = replay_verdict(&w, &cfg);
        assert_eq!(
            d.verdict,
            Verdict::Inconclusive {
                reason: InconclusiveReason::CanarySeriesMissing,
                escalate: true
            }
        );
        // the first intervals are inconclusive without escalating yet
        let early = decide(&w, 1, &cfg);
        assert!(matches!(
            early.verdict,
            Verdict::Inconclusive {
                escalate: false,
                ..
            }
        ));
        let at = decide(&w, cfg.escalate_after_inconclusive as usize, &cfg);
        assert!(matches!(
            at.verdict,
            Verdict::Inconclusive { escalate: true, .. }
        ));
    }

    #[test]
    fn a_missing_baseline_is_inconclusive_even_if_the_canary_looks_fine() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            baseline: None,
            ..healthy(i)
        });
        let d = replay_verdict(&w, &cfg);
        assert!(matches!(
            d.verdict,
            Verdict::Inconclusive {
                reason: InconclusiveReason::BaselineSeriesMissing,
                ..
            }
        ));
    }

    #[test]
    fn no_canary_traffic_is_inconclusive_and_never_promotes() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| Interval {
            canary: Some(track(0, 0, 0.0)),
            ..healthy(i)
        });
        for t in 1..=30 {
            let d = decide(&w, t, &cfg);
            assert!(
                matches!(
                    d.verdict,
                    Verdict::Inconclusive {
                        reason: InconclusiveReason::NoCanaryTraffic,
                        ..
                    }
                ),
                "{t}: {d:?}"
            );
        }
    }

    #[test]
    fn gaps_in_the_middle_are_inconclusive_then_the_analysis_resumes() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| {
            if (3..6).contains(&i) {
                Interval {
                    canary: None,
                    ..healthy(i)
                }
            } else {
                healthy(i)
            }
        });
        assert!(matches!(
            decide(&w, 4, &cfg).verdict,
            Verdict::Inconclusive { .. }
        ));
        let d = replay_verdict(&w, &cfg);
        assert_eq!(d.verdict, Verdict::Promote);
        // soak counts verified intervals only
        assert!(
            d.interval >= cfg.min_intervals as usize + 3,
            "{}",
            d.interval
        );
    }

    #[test]
    fn the_error_guardrail_fires_within_one_interval() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| {
            if i == 0 {
                Interval {
                    canary: Some(track(1000, 300, 0.2)),
                    ..healthy(i)
                }
            } else {
                healthy(i)
            }
        });
        let d = decide(&w, 1, &cfg);
        let Verdict::Rollback { metric, evidence } = &d.verdict else {
            panic!("{d:?}");
        };
        assert_eq!(metric, "guardrail:error-rate");
        assert!(evidence.contains("30.00 %"), "{evidence}");
        // the guardrail needs a minimum of requests: 1 error in 3 requests is not a catastrophe
        let tiny = window(1, |_| Interval {
            baseline: Some(track(9000, 45, 0.2)),
            canary: Some(track(3, 1, 0.0)),
        });
        // (that share of traffic is a sample-ratio mismatch instead)
        let d = decide(&tiny, 1, &cfg);
        assert!(
            matches!(
                d.verdict,
                Verdict::Inconclusive {
                    reason: InconclusiveReason::SampleRatioMismatch { .. },
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn the_articles_relative_guardrails_are_selectable() {
        let cfg = JudgeConfig {
            guardrails: GuardrailConfig {
                max_error_rate_increase: Some(0.05),
                max_p99_ratio: Some(1.3),
                min_success_rate: Some(0.995),
                ..Default::default()
            },
            ..Default::default()
        };
        // 1 % errors: fails only the success-rate floor
        let w = window(1, |_| Interval {
            baseline: Some(track(9000, 90, 0.2)),
            canary: Some(track(1000, 10, 0.2)),
        });
        let d = decide(&w, 1, &cfg);
        assert!(
            matches!(&d.verdict, Verdict::Rollback { metric, .. } if metric == "guardrail:success-rate"),
            "{d:?}"
        );
        // p99 far above the baseline's
        let w = window(1, |_| Interval {
            baseline: Some(track(9000, 0, 0.02)),
            canary: Some(TrackSample {
                requests: 1000,
                errors: 0,
                latency_buckets: vec![400, 400, 100, 50, 50],
                extra: Default::default(),
            }),
        });
        let d = decide(&w, 1, &cfg);
        assert!(
            matches!(&d.verdict, Verdict::Rollback { metric, .. } if metric == "guardrail:p99-latency"),
            "{d:?}"
        );
        // default judge: no guardrail fires (the latency test may, on the evidence)
        let d = decide(&w, 1, &JudgeConfig::default());
        assert!(
            !matches!(&d.verdict, Verdict::Rollback { metric, .. } if metric.starts_with("guardrail")),
            "{d:?}"
        );
    }

    #[test]
    fn a_sample_ratio_mismatch_is_inconclusive_and_blocks_promotion() {
        let cfg = JudgeConfig::default();
        // weight 10 % but the canary gets about 5 %
        let w = window(30, |i| Interval {
            baseline: Some(track(9500, (47.0 * wobble(i)) as u64, 0.2)),
            canary: Some(track(500, (2.5 * wobble(i + 3)) as u64, 0.2)),
        });
        let d = replay_verdict(&w, &cfg);
        let Verdict::Inconclusive {
            reason: InconclusiveReason::SampleRatioMismatch { observed, expected },
            escalate: true,
        } = d.verdict
        else {
            panic!("{d:?}");
        };
        assert!((observed - 0.05).abs() < 0.001 && expected == 0.1);
        assert!(d.reason().contains("sample ratio mismatch"));
    }

    #[test]
    fn a_dry_run_metric_reports_but_does_not_decide() {
        let mut cfg = JudgeConfig::default();
        cfg.errors.mode = MetricMode::DryRun;
        let w = window(30, |i| Interval {
            canary: Some(track(1000, (15.0 * wobble(i + 3)) as u64, 0.2)),
            ..healthy(i)
        });
        let d = decide(&w, 30, &cfg);
        assert_ne!(d.verdict.name(), "rollback", "{}", d.reason());
        let report = d
            .metrics
            .iter()
            .find(|m| m.metric == MetricKind::Errors)
            .unwrap();
        assert!(!report.gating);
        assert_eq!(report.status, MetricStatus::Regression);
    }

    #[test]
    fn lower_is_worse_flips_the_direction() {
        let mut cfg = JudgeConfig::default();
        cfg.errors.direction = Direction::LowerIsWorse;
        let w = window(30, |i| Interval {
            canary: Some(track(1000, (15.0 * wobble(i + 3)) as u64, 0.2)),
            ..healthy(i)
        });
        assert_ne!(replay_verdict(&w, &cfg).verdict.name(), "rollback");
        let w = window(30, |i| Interval {
            canary: Some(track(1000, 0, 0.2)),
            ..healthy(i)
        });
        assert_eq!(replay_verdict(&w, &cfg).verdict.name(), "rollback");
    }

    /// A healthy interval whose tracks also count `orders` (successes: 20 % of requests on
    /// both tracks unless `canary_orders` says otherwise).
    fn with_orders(i: usize, canary_orders: Option<u64>) -> Interval {
        let mut iv = healthy(i);
        let count = |s: &mut TrackSample, n: Option<u64>| {
            if let Some(n) = n {
                s.extra.insert("orders".into(), n);
            }
        };
        let base = iv.baseline.as_mut().unwrap();
        let b = base.requests / 5 + (i % 3) as u64;
        count(base, Some(b));
        count(iv.canary.as_mut().unwrap(), canary_orders);
        iv
    }

    fn orders_config(direction: Direction, mode: MetricMode) -> JudgeConfig {
        let mut cfg = JudgeConfig::default();
        cfg.extra.insert(
            "orders".into(),
            crate::canary::settings::ExtraMetricConfig {
                direction,
                mode,
                ..Default::default()
            },
        );
        cfg
    }

    #[test]
    fn an_extra_metric_is_judged_per_request_in_its_direction() {
        let cfg = orders_config(Direction::LowerIsWorse, MetricMode::Gate);
        // the canary places half the orders per request: a regression of a success counter
        let w = window(30, |i| with_orders(i, Some(100)));
        let d = replay_verdict(&w, &cfg);
        let Verdict::Rollback { metric, evidence } = &d.verdict else {
            panic!("expected a rollback, got {d:?}");
        };
        assert_eq!(metric, "orders");
        assert!(evidence.contains("ratio 0.50x"), "{evidence}");
        // as many orders per request: promoted, with the extra metric within tolerance
        let w = window(30, |i| with_orders(i, Some(200 + (i % 2) as u64)));
        let d = replay_verdict(&w, &cfg);
        assert_eq!(d.verdict, Verdict::Promote, "{}", d.reason());
        let orders = d
            .metrics
            .iter()
            .find(|m| m.metric.to_string() == "orders")
            .unwrap();
        assert_eq!(orders.status, MetricStatus::WithinTolerance);
        // the same halving read as "higher is worse" is an improvement, not a regression
        let cfg = orders_config(Direction::HigherIsWorse, MetricMode::Gate);
        let w = window(30, |i| with_orders(i, Some(100)));
        assert_ne!(replay_verdict(&w, &cfg).verdict.name(), "rollback");
    }

    #[test]
    fn a_missing_gating_extra_metric_is_inconclusive_and_a_dry_run_one_does_not() {
        let w = window(8, |i| with_orders(i, None));
        let gate = orders_config(Direction::LowerIsWorse, MetricMode::Gate);
        for t in 1..=8 {
            let d = decide(&w, t, &gate);
            let Verdict::Inconclusive { reason, escalate } = &d.verdict else {
                panic!("expected inconclusive at {t}, got {d:?}");
            };
            assert_eq!(
                reason,
                &InconclusiveReason::ExtraMissing {
                    metric: "orders".into()
                }
            );
            assert_eq!(*escalate, t >= 3, "at {t}");
        }
        assert!(
            decide(&w, 1, &gate)
                .reason()
                .contains("no orders sample for the interval")
        );
        let dry = orders_config(Direction::LowerIsWorse, MetricMode::DryRun);
        let w = window(30, |i| with_orders(i, None));
        assert_eq!(replay_verdict(&w, &dry).verdict, Verdict::Promote);
    }

    #[test]
    fn missing_latency_histograms_are_inconclusive_when_latency_gates() {
        let cfg = JudgeConfig::default();
        let w = window(30, |i| {
            let mut iv = healthy(i);
            if let Some(c) = iv.canary.as_mut() {
                c.latency_buckets.clear();
            }
            iv
        });
        let d = replay_verdict(&w, &cfg);
        assert!(
            matches!(
                d.verdict,
                Verdict::Inconclusive {
                    reason: InconclusiveReason::LatencyMissing,
                    escalate: true,
                }
            ),
            "{d:?}"
        );
        // a histogram that never arrives escalates like a missing series
        assert!(matches!(
            decide(&w, 2, &cfg).verdict,
            Verdict::Inconclusive {
                escalate: false,
                ..
            }
        ));
        assert!(matches!(
            decide(&w, 3, &cfg).verdict,
            Verdict::Inconclusive { escalate: true, .. }
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn arb_track() -> impl Strategy<Value = Option<TrackSample>> {
            prop_oneof![
                1 => Just(None),
                6 => (0u64..3000, 0u64..=100, 0u64..=100).prop_map(|(requests, err_pct, slow_pct)| {
                    let errors = requests * err_pct / 1000;
                    let slow = requests * slow_pct / 100;
                    let fast = requests - slow;
                    Some(TrackSample {
                        requests,
                        errors,
                        latency_buckets: vec![fast / 2, fast - fast / 2, slow / 2, slow - slow / 2, 0],
                        extra: Default::default(),
                    })
                }),
            ]
        }

        fn arb_window() -> impl Strategy<Value = Window> {
            prop::collection::vec((arb_track(), arb_track()), 1..20).prop_map(|ivs| Window {
                step_seconds: 60,
                canary_weight: 0.1,
                latency_buckets_le: LE.to_vec(),
                intervals: ivs
                    .into_iter()
                    .map(|(baseline, canary)| Interval { baseline, canary })
                    .collect(),
            })
        }

        proptest! {
            /// Promotion only ever happens on verified data: the current interval has both
            /// tracks with traffic, and at least `min_intervals` verified intervals were seen.
            #[test]
            fn never_promotes_what_it_cannot_see(w in arb_window()) {
                let cfg = JudgeConfig::default();
                for t in 1..=w.intervals.len() {
                    let d = decide(&w, t, &cfg);
                    if d.verdict == Verdict::Promote {
                        prop_assert!(verified(&w.intervals[t - 1]).is_some());
                        prop_assert!(d.verified_intervals >= cfg.min_intervals as usize);
                    }
                    if let Verdict::Inconclusive { reason: InconclusiveReason::CanarySeriesMissing, .. } = d.verdict {
                        prop_assert!(w.intervals[t - 1].canary.is_none());
                    }
                    // pure: the same input gives the same decision
                    prop_assert_eq!(&d, &decide(&w, t, &cfg));
                }
            }
        }
    }

    /// Anytime validity across a rollout's steps: the judge's rollback e-process (the same
    /// increments, onset weights with each later step's start, mixture scale) run over 4000
    /// simulated null rollouts of 4 steps at 5, 10, 25 and 50 %, 30 intervals each and looked
    /// at after every one of the 120 intervals, ever crosses `1/alpha` in at most `alpha` of
    /// them: neither more steps nor more looks spend more than the budget. Expected events per
    /// interval change from step to step (2 to 40), as a rising weight and a quiet service do.
    #[test]
    fn the_rollout_e_process_is_anytime_valid_across_steps_and_looks() {
        use rand::{Rng, SeedableRng};
        const ALPHA: f64 = 0.05;
        let steps = [(0.05, 2.0), (0.1, 5.0), (0.25, 20.0), (0.5, 40.0)];
        let per_step = 30;
        let horizon = per_step * steps.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        // Knuth's Poisson sampler: the means here are small.
        let poisson = |rng: &mut rand::rngs::StdRng, mean: f64| {
            let (limit, mut k, mut p) = ((-mean).exp(), 0u64, 1.0);
            loop {
                p *= rng.random::<f64>();
                if p <= limit {
                    return k;
                }
                k += 1;
            }
        };
        let paths = 4000;
        let mut crossed = 0;
        for _ in 0..paths {
            let mut counts: Vec<SplitCount> = Vec::with_capacity(horizon);
            let mut starts: Vec<usize> = Vec::new();
            'path: for (k, &(share, mean)) in steps.iter().enumerate() {
                if k > 0 {
                    starts.push(counts.len());
                }
                for _ in 0..per_step {
                    let total = poisson(&mut rng, mean);
                    let canary = (0..total).filter(|_| rng.random::<f64>() < share).count();
                    counts.push(SplitCount {
                        canary: canary as u64,
                        total,
                        share,
                        expected_total: mean,
                    });
                    let incs = stats::increments(&counts, 1.0, 0.0);
                    let weights = stats::onset_weights(
                        incs.len(),
                        FROM_START_WEIGHT,
                        horizon,
                        (&starts, STEP_START_WEIGHT, steps.len() - 1),
                    );
                    let (log_e, _) =
                        stats::log_changepoint_evalue_weighted(&incs, MIXTURE_TAU, &weights);
                    if log_e >= (1.0 / ALPHA).ln() {
                        crossed += 1;
                        break 'path;
                    }
                }
            }
        }
        let rate = crossed as f64 / paths as f64;
        assert!(
            rate <= ALPHA,
            "crossed in {crossed} of {paths} null rollouts"
        );
        assert!(crossed > 0, "never crossed: the boundary is vacuous");
    }
}
