//! The judge's settings (`services[].analysis.judge`): which judge decides, its error budget,
//! tolerances, soak time, guardrails and per-metric behaviour, with defaults chosen on the
//! benchmark (see docs/canary.md) and validation messages that name the full key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The judge and its settings, per service (`services[].analysis.judge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// Which judge decides.
    pub method: JudgeMethod,
    /// Error budget for rolling back a canary that is not worse, over the whole analysis
    /// (anytime-valid), split evenly across the gating tests. The last look at `max_intervals`
    /// spends it once more on a fixed-horizon test.
    pub alpha: f64,
    /// Chance accepted of promoting a canary that is worse than the tolerance, per look.
    pub promote_alpha: f64,
    /// Verified intervals needed before a promotion.
    pub min_intervals: u32,
    /// The last look: a canary clearly worse than the rollback margin at this fixed horizon
    /// rolls back; otherwise the undecided analysis stops, inconclusive, with an alert.
    pub max_intervals: u32,
    /// Consecutive inconclusive intervals after which the verdict escalates (pause and alert).
    pub escalate_after_inconclusive: u32,
    /// How many intervals of data the wobble of the stable version's history before a rollout
    /// is worth as the prior of each metric's wobble (replacing the `dispersion_prior`s); 0
    /// ignores the history.
    pub history_weight: f64,
    /// Deprecated spelling of `escalate_after_inconclusive` (a "hold" is a held service now);
    /// [`JudgeConfig::renamed`] moves it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalate_after_holds: Option<u32>,
    /// The error-rate comparison.
    pub errors: ErrorMetricConfig,
    /// The latency comparison (from histogram buckets).
    pub latency: LatencyMetricConfig,
    /// Catastrophe limits that act within one interval.
    pub guardrails: GuardrailConfig,
    /// The check that the canary gets the share of traffic git says it should.
    pub sample_ratio: SampleRatioConfig,
    /// Further count metrics, compared per request like the error rate, by name; each needs a
    /// query of the same name in `analysis.queries.extra`.
    pub extra: BTreeMap<String, ExtraMetricConfig>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            method: JudgeMethod::Sequential,
            alpha: 0.005,
            promote_alpha: 0.05,
            min_intervals: 6,
            max_intervals: 30,
            escalate_after_inconclusive: 3,
            history_weight: 20.0,
            escalate_after_holds: None,
            errors: ErrorMetricConfig::default(),
            latency: LatencyMetricConfig::default(),
            guardrails: GuardrailConfig::default(),
            sample_ratio: SampleRatioConfig::default(),
            extra: BTreeMap::new(),
        }
    }
}

/// Which judge decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeMethod {
    /// deploybot's sequential within-interval judge.
    Sequential,
    /// Reference: the loop of the article deploybot started from (docs/decisions.md names it):
    /// Mann-Whitney every 5 intervals, 3 checks.
    ArticleMannWhitney,
    /// Reference: fixed thresholds per interval, like Flagger's defaults.
    FixedThresholds,
    /// Reference: a 15-interval fixed horizon Mann-Whitney with 25 % tolerance, like Kayenta.
    FixedHorizonMannWhitney,
}

impl JudgeMethod {
    pub const ALL: [JudgeMethod; 4] = [
        JudgeMethod::Sequential,
        JudgeMethod::ArticleMannWhitney,
        JudgeMethod::FixedThresholds,
        JudgeMethod::FixedHorizonMannWhitney,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JudgeMethod::Sequential => "sequential",
            JudgeMethod::ArticleMannWhitney => "article-mann-whitney",
            JudgeMethod::FixedThresholds => "fixed-thresholds",
            JudgeMethod::FixedHorizonMannWhitney => "fixed-horizon-mann-whitney",
        }
    }
}

/// Whether a metric can decide or is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricMode {
    Gate,
    DryRun,
}

/// Which way a metric gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    HigherIsWorse,
    LowerIsWorse,
}

/// The error-rate comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorMetricConfig {
    pub mode: MetricMode,
    pub direction: Direction,
    /// Practical-equivalence margin: a promotion needs evidence that the canary's error rate is
    /// below `tolerance` times the baseline's.
    pub tolerance: f64,
    /// ... or that it exceeds the baseline's by less than this many errors per request.
    pub absolute_tolerance: f64,
    /// Gross harm: a step before the last advances once the evidence shows the canary's error
    /// rate below this many times the baseline's ...
    pub gross_tolerance: f64,
    /// ... or above it by less than this many errors per request.
    pub gross_absolute_tolerance: f64,
    /// The rollback test's null: the canary counts as worse only beyond this ratio.
    pub rollback_margin: f64,
    /// Prior squared coefficient of variation of each track's error rate from one interval
    /// to the next (worth 4 intervals of data; the data then take over). The stable version's
    /// history, when the judge has it, replaces it.
    pub dispersion_prior: f64,
}

impl Default for ErrorMetricConfig {
    fn default() -> Self {
        ErrorMetricConfig {
            mode: MetricMode::Gate,
            direction: Direction::HigherIsWorse,
            tolerance: 1.3,
            absolute_tolerance: 0.001,
            gross_tolerance: 2.0,
            gross_absolute_tolerance: 0.005,
            rollback_margin: 1.15,
            dispersion_prior: 1.0,
        }
    }
}

/// A configured extra metric: a counter of events (failed checkouts, retries, orders placed)
/// whose rate per request is compared like the error rate. `lower-is-worse` suits counters of
/// successes, where a canary with fewer of them per request is the regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtraMetricConfig {
    pub mode: MetricMode,
    pub direction: Direction,
    /// A promotion needs evidence that the canary's rate is within this ratio of the baseline's.
    pub tolerance: f64,
    /// Gross harm: a step before the last advances once the evidence shows the canary's rate
    /// within this ratio of the baseline's.
    pub gross_tolerance: f64,
    /// The rollback test's null: the canary counts as worse only beyond this ratio.
    pub rollback_margin: f64,
    /// Prior squared CV of each track's rate from one interval to the next.
    pub dispersion_prior: f64,
}

impl Default for ExtraMetricConfig {
    fn default() -> Self {
        let errors = ErrorMetricConfig::default();
        ExtraMetricConfig {
            mode: MetricMode::Gate,
            direction: Direction::HigherIsWorse,
            tolerance: errors.tolerance,
            gross_tolerance: errors.gross_tolerance,
            rollback_margin: errors.rollback_margin,
            dispersion_prior: errors.dispersion_prior,
        }
    }
}

/// The latency comparison: the share of requests slower than a bucket bound chosen from the
/// baseline's histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyMetricConfig {
    pub mode: MetricMode,
    pub direction: Direction,
    /// A promotion needs evidence that the canary's share of requests slower than the body
    /// bound is below `tolerance` times the baseline's.
    pub tolerance: f64,
    /// Gross harm: a step before the last advances once the evidence shows the canary's slow
    /// share below this many times the baseline's.
    pub gross_tolerance: f64,
    /// Baseline quantile whose nearest bucket bound splits "slow" from "fast" (the body test).
    pub body_quantile: f64,
    /// Baseline quantile whose nearest higher bucket bound is the tail test's bound.
    pub tail_quantile: f64,
    /// The rollback test's null: the canary counts as worse only beyond this ratio.
    pub rollback_margin: f64,
    /// Prior squared coefficient of variation of each track's slow share per interval.
    pub dispersion_prior: f64,
}

impl Default for LatencyMetricConfig {
    fn default() -> Self {
        LatencyMetricConfig {
            mode: MetricMode::Gate,
            direction: Direction::HigherIsWorse,
            tolerance: 1.2,
            gross_tolerance: 1.4,
            body_quantile: 0.75,
            tail_quantile: 0.99,
            rollback_margin: 1.0,
            dispersion_prior: 0.002,
        }
    }
}

/// Limits that roll back within one interval, without statistics. The relative ones are the
/// article's thresholds; they are off unless set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailConfig {
    /// Canary error rate above which it rolls back at once.
    pub max_canary_error_rate: Option<f64>,
    /// Canary error rate minus the baseline's above which it rolls back (article: 0.05).
    pub max_error_rate_increase: Option<f64>,
    /// Canary p99 over the baseline's above which it rolls back (article: 1.3).
    pub max_p99_ratio: Option<f64>,
    /// Canary success rate below which it rolls back (article: 0.995).
    pub min_success_rate: Option<f64>,
    /// Canary requests an interval needs before a guardrail may act on it.
    pub min_requests: u64,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        GuardrailConfig {
            max_canary_error_rate: Some(0.2),
            max_error_rate_increase: None,
            max_p99_ratio: None,
            min_success_rate: None,
            min_requests: 20,
        }
    }
}

/// The sample-ratio check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleRatioConfig {
    pub enabled: bool,
    /// Relative deviation of the observed canary share from the weight that counts as broken
    /// routing (0.2: a 10 % weight must see between 8 % and 12 %) ...
    pub tolerance: f64,
    /// ... when it is also this many standard errors away (so low traffic does not flag).
    pub min_z: f64,
}

impl Default for SampleRatioConfig {
    fn default() -> Self {
        SampleRatioConfig {
            enabled: true,
            tolerance: 0.2,
            min_z: 4.0,
        }
    }
}

impl JudgeConfig {
    /// Moves a deprecated `escalate_after_holds` (under `key`) into
    /// `escalate_after_inconclusive`; the warning to show, or the problem when both disagree.
    pub fn renamed(&mut self, key: &str) -> Result<Option<crate::deprecated::Warning>, String> {
        let (v, warning) = crate::deprecated::renamed(
            &format!("{key}.escalate_after_holds"),
            &format!("{key}.escalate_after_inconclusive"),
            self.escalate_after_holds.take(),
            self.escalate_after_inconclusive,
            JudgeConfig::default().escalate_after_inconclusive,
        )?;
        self.escalate_after_inconclusive = v;
        Ok(warning)
    }

    /// Every problem, each naming its full key under `key`.
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        let mut open01 = |name: &str, v: f64| {
            if !(v > 0.0 && v < 1.0) {
                problems.push(format!(
                    "{key}.{name}: {v} must be between 0 and 1 (exclusive)"
                ));
            }
        };
        open01("alpha", self.alpha);
        open01("promote_alpha", self.promote_alpha);
        open01("latency.body_quantile", self.latency.body_quantile);
        open01("latency.tail_quantile", self.latency.tail_quantile);
        if let Some(v) = self.guardrails.max_canary_error_rate {
            open01("guardrails.max_canary_error_rate", v);
        }
        if let Some(v) = self.guardrails.max_error_rate_increase {
            open01("guardrails.max_error_rate_increase", v);
        }
        if let Some(v) = self.guardrails.min_success_rate {
            open01("guardrails.min_success_rate", v);
        }
        if self.latency.tail_quantile <= self.latency.body_quantile {
            problems.push(format!(
                "{key}.latency.tail_quantile: {} must be above latency.body_quantile {}",
                self.latency.tail_quantile, self.latency.body_quantile
            ));
        }
        for name in self.extra.keys().filter(|n| !super::is_metric_name(n)) {
            problems.push(format!("{key}.extra.{name}: {}", super::METRIC_NAME_RULE));
        }
        let extra_ratios = self.extra.iter().flat_map(|(name, m)| {
            [
                (format!("extra.{name}.tolerance"), m.tolerance),
                (format!("extra.{name}.gross_tolerance"), m.gross_tolerance),
                (format!("extra.{name}.rollback_margin"), m.rollback_margin),
            ]
        });
        let extra_gross = self.extra.iter().map(|(name, m)| {
            (
                format!("extra.{name}.gross_tolerance"),
                m.gross_tolerance,
                format!("extra.{name}.tolerance"),
                m.tolerance,
            )
        });
        // Gross harm is at least the harm the last promotion tolerates.
        for (name, gross, tolerance_name, tolerance) in [
            (
                "errors.gross_tolerance".to_string(),
                self.errors.gross_tolerance,
                "errors.tolerance".to_string(),
                self.errors.tolerance,
            ),
            (
                "errors.gross_absolute_tolerance".to_string(),
                self.errors.gross_absolute_tolerance,
                "errors.absolute_tolerance".to_string(),
                self.errors.absolute_tolerance,
            ),
            (
                "latency.gross_tolerance".to_string(),
                self.latency.gross_tolerance,
                "latency.tolerance".to_string(),
                self.latency.tolerance,
            ),
        ]
        .into_iter()
        .chain(extra_gross)
        {
            if gross < tolerance {
                problems.push(format!(
                    "{key}.{name}: {gross} must be at least {tolerance_name} {tolerance}"
                ));
            }
        }
        let extra_priors = self
            .extra
            .iter()
            .map(|(name, m)| (format!("extra.{name}.dispersion_prior"), m.dispersion_prior));
        for (name, v) in [
            ("errors.tolerance".to_string(), self.errors.tolerance),
            ("latency.tolerance".to_string(), self.latency.tolerance),
            (
                "errors.gross_tolerance".to_string(),
                self.errors.gross_tolerance,
            ),
            (
                "latency.gross_tolerance".to_string(),
                self.latency.gross_tolerance,
            ),
            (
                "errors.rollback_margin".to_string(),
                self.errors.rollback_margin,
            ),
            (
                "latency.rollback_margin".to_string(),
                self.latency.rollback_margin,
            ),
        ]
        .into_iter()
        .chain(extra_ratios)
        {
            if !(v >= 1.0 && v.is_finite()) {
                problems.push(format!(
                    "{key}.{name}: {v} must be at least 1 (a ratio canary/baseline)"
                ));
            }
        }
        for (name, v) in [
            ("absolute_tolerance", self.errors.absolute_tolerance),
            (
                "gross_absolute_tolerance",
                self.errors.gross_absolute_tolerance,
            ),
        ] {
            if !(0.0..1.0).contains(&v) {
                problems.push(format!("{key}.errors.{name}: {v} must be in [0, 1)"));
            }
        }
        for (name, v) in [
            (
                "errors.dispersion_prior".to_string(),
                self.errors.dispersion_prior,
            ),
            (
                "latency.dispersion_prior".to_string(),
                self.latency.dispersion_prior,
            ),
        ]
        .into_iter()
        .chain(extra_priors)
        {
            if !(v >= 0.0 && v.is_finite()) {
                problems.push(format!("{key}.{name}: {v} must be 0 or more"));
            }
        }
        if let Some(v) = self.guardrails.max_p99_ratio
            && !(v > 1.0 && v.is_finite())
        {
            problems.push(format!(
                "{key}.guardrails.max_p99_ratio: {v} must be above 1"
            ));
        }
        if !(self.history_weight >= 0.0 && self.history_weight.is_finite()) {
            problems.push(format!(
                "{key}.history_weight: {} must be 0 or more",
                self.history_weight
            ));
        }
        if self.min_intervals == 0 {
            problems.push(format!("{key}.min_intervals: must be at least 1"));
        }
        if self.max_intervals < self.min_intervals {
            problems.push(format!(
                "{key}.max_intervals: {} is below min_intervals {}",
                self.max_intervals, self.min_intervals
            ));
        }
        if self.escalate_after_inconclusive == 0 {
            problems.push(format!(
                "{key}.escalate_after_inconclusive: must be at least 1"
            ));
        }
        if !(self.sample_ratio.tolerance > 0.0 && self.sample_ratio.min_z > 0.0) {
            problems.push(format!(
                "{key}.sample_ratio: tolerance and min_z must be positive"
            ));
        }
        if self.errors.mode == MetricMode::DryRun
            && self.latency.mode == MetricMode::DryRun
            && self.extra.values().all(|m| m.mode == MetricMode::DryRun)
        {
            problems.push(format!(
                "{key}: errors.mode, latency.mode and every extra metric are dry-run: nothing would gate"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_yaml_round_trips() {
        let mut p = Vec::new();
        JudgeConfig::default().validate("services[0].analysis.judge", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let c: JudgeConfig = yaml_serde::from_str(
            "method: article-mann-whitney\nerrors: {tolerance: 1.2, mode: dry-run}\n",
        )
        .unwrap();
        assert_eq!(c.method, JudgeMethod::ArticleMannWhitney);
        assert_eq!(c.errors.tolerance, 1.2);
        assert_eq!(c.errors.mode, MetricMode::DryRun);
        assert_eq!(c.latency, LatencyMetricConfig::default());
    }

    #[test]
    fn unknown_keys_and_methods_are_rejected() {
        assert!(yaml_serde::from_str::<JudgeConfig>("alpah: 0.1\n").is_err());
        assert!(yaml_serde::from_str::<JudgeConfig>("method: magic\n").is_err());
    }

    #[test]
    fn problems_name_the_full_key() {
        let c = JudgeConfig {
            alpha: 1.5,
            min_intervals: 40,
            errors: ErrorMetricConfig {
                tolerance: 0.9,
                mode: MetricMode::DryRun,
                ..Default::default()
            },
            latency: LatencyMetricConfig {
                mode: MetricMode::DryRun,
                tail_quantile: 0.5,
                ..Default::default()
            },
            guardrails: GuardrailConfig {
                max_p99_ratio: Some(0.5),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut p = Vec::new();
        c.validate("services[2].analysis.judge", &mut p);
        let all = p.join("\n");
        for needle in [
            "services[2].analysis.judge.alpha",
            "services[2].analysis.judge.errors.tolerance",
            "services[2].analysis.judge.latency.tail_quantile",
            "services[2].analysis.judge.guardrails.max_p99_ratio",
            "services[2].analysis.judge.max_intervals",
            "nothing would gate",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
        let c: JudgeConfig = yaml_serde::from_str(
            "extra:\n  orders:\n    direction: lower-is-worse\n    tolerance: 0.5\n  \"bad name\": {}\n",
        )
        .unwrap();
        assert_eq!(c.extra["orders"].direction, Direction::LowerIsWorse);
        assert_eq!(c.extra["orders"].rollback_margin, 1.15);
        let mut p = Vec::new();
        c.validate("services[0].analysis.judge", &mut p);
        let all = p.join("\n");
        assert!(
            all.contains(
                "services[0].analysis.judge.extra.orders.tolerance: 0.5 must be at least 1"
            ),
            "{all}"
        );
        assert!(
            all.contains("services[0].analysis.judge.extra.bad name: a metric name"),
            "{all}"
        );
        let unknown = yaml_serde::from_str::<JudgeConfig>("extra:\n  orders:\n    margin: 2\n");
        assert!(unknown.is_err());
    }
}
