//! The evidence behind the canary judge's latest decision, accumulated over every step of the
//! rollout, in the plain terms the status comment and page show: how many intervals were
//! verified over how many steps, and for each metric the canary-to-baseline ratio and how far
//! the rollback evidence has gone towards its threshold.
//!
//! The judge's [`Decision`] holds more (z scores, overdispersion); this keeps what a person
//! reading a PR needs to see why the rollout waits, advances or reverts, and is stored with the
//! rollout's latest snapshot so it survives a restart.

use serde::{Deserialize, Serialize};

use crate::canary::judge::{Decision, MetricStatus};

/// What the judge's latest decision rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Intervals with traffic on both tracks, over every step judged so far.
    pub verified_intervals: usize,
    /// The steps the evidence spans (it carries across steps: the canary version is the same).
    pub steps: usize,
    /// Observed canary share of the requests over the verified intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_share: Option<f64>,
    pub metrics: Vec<MetricEvidence>,
}

/// One metric's comparison, canary against baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    /// `error-rate`, `latency>0.25s`, an extra counter's name.
    pub metric: String,
    /// Whether the metric decides promotions (tails and non-gating extras only roll back).
    pub gating: bool,
    pub status: Standing,
    /// Canary rate over baseline rate (within-interval), when both tracks had events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The e-value of "canary worse" and the threshold at which it rolls back.
    pub evalue: f64,
    pub threshold: f64,
    pub canary_events: u64,
    pub canary_requests: u64,
    pub baseline_events: u64,
    pub baseline_requests: u64,
}

/// Where a metric stands, as the judge's [`MetricStatus`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Regression,
    WithinTolerance,
    NotGrosslyWorse,
    NoEvidenceYet,
}

impl Standing {
    fn words(self) -> &'static str {
        match self {
            Standing::Regression => "regression",
            Standing::WithinTolerance => "within tolerance",
            Standing::NotGrosslyWorse => "no gross harm",
            Standing::NoEvidenceYet => "no evidence either way yet",
        }
    }
}

impl From<MetricStatus> for Standing {
    fn from(s: MetricStatus) -> Standing {
        match s {
            MetricStatus::Regression => Standing::Regression,
            MetricStatus::WithinTolerance => Standing::WithinTolerance,
            MetricStatus::NotGrosslyWorse => Standing::NotGrosslyWorse,
            MetricStatus::NoEvidenceYet => Standing::NoEvidenceYet,
        }
    }
}

impl Evidence {
    /// The evidence of a canary judge's decision; `None` for a decision without per-metric
    /// reports (the reference judges, a guardrail), which has nothing accumulated to show.
    pub fn of(decision: &Decision) -> Option<Evidence> {
        if decision.metrics.is_empty() {
            return None;
        }
        Some(Evidence {
            verified_intervals: decision.verified_intervals,
            steps: decision.steps,
            canary_share: decision.canary_share,
            metrics: decision
                .metrics
                .iter()
                .map(|m| MetricEvidence {
                    metric: m.metric.to_string(),
                    gating: m.gating,
                    status: m.status.into(),
                    ratio: m.ratio.filter(|r| r.is_finite()),
                    evalue: finite(m.log_evalue.exp()),
                    threshold: finite(m.log_threshold.exp()),
                    canary_events: m.canary_events,
                    canary_requests: m.canary_requests,
                    baseline_events: m.baseline_events,
                    baseline_requests: m.baseline_requests,
                })
                .collect(),
        })
    }

    /// One line for the header of the evidence: how much was verified, over how many steps.
    pub fn headline(&self) -> String {
        let steps = match self.steps {
            0 | 1 => "this step".to_string(),
            n => format!("{n} steps"),
        };
        let share = self
            .canary_share
            .map(|s| format!(", canary share {:.1} %", s * 100.0))
            .unwrap_or_default();
        format!(
            "{} verified interval{} over {steps}{share}",
            self.verified_intervals,
            if self.verified_intervals == 1 {
                ""
            } else {
                "s"
            }
        )
    }

    /// One line per metric: the ratio, the rollback evidence against its threshold, the
    /// standing, and the counts behind them.
    pub fn metric_lines(&self) -> Vec<String> {
        self.metrics
            .iter()
            .map(|m| {
                let ratio = m
                    .ratio
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_else(|| "ratio n/a".into());
                format!(
                    "{}{}: {ratio}, rollback evidence {} of {} ({}; canary {}/{}, baseline {}/{})",
                    m.metric,
                    if m.gating { "" } else { " (rollback only)" },
                    short(m.evalue),
                    short(m.threshold),
                    m.status.words(),
                    m.canary_events,
                    m.canary_requests,
                    m.baseline_events,
                    m.baseline_requests
                )
            })
            .collect()
    }
}

/// e-values span many orders of magnitude: two significant digits say enough.
fn short(x: f64) -> String {
    if x >= 1000.0 || (x > 0.0 && x < 0.01) {
        format!("{x:.1e}")
    } else if x >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// JSON has no infinity: a saturated e-value is stored as the largest finite one.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else if x > 0.0 {
        f64::MAX
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::judge::{Verdict, decide};
    use crate::canary::sample::{Interval, TrackSample, Window};
    use crate::canary::settings::JudgeConfig;

    fn track(requests: u64, errors: u64) -> TrackSample {
        TrackSample {
            requests,
            errors,
            latency_buckets: Vec::new(),
            extra: Default::default(),
        }
    }

    /// Ten intervals of a 10 % canary failing `canary_errors` of 1,000 requests against the
    /// baseline's 45 of 9,000 (0.5 %).
    fn window(canary_errors: u64) -> Window {
        Window {
            step_seconds: 60,
            canary_weight: 0.1,
            latency_buckets_le: Vec::new(),
            intervals: (0..10)
                .map(|_| Interval {
                    baseline: Some(track(9000, 45)),
                    canary: Some(track(1000, canary_errors)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_regression_shows_its_ratio_counts_and_evidence_past_the_threshold() {
        let d = decide(&window(20), 10, &JudgeConfig::default());
        assert!(matches!(d.verdict, Verdict::Rollback { .. }), "{d:?}");
        let e = Evidence::of(&d).expect("the canary judge reports its metrics");
        assert_eq!(e.verified_intervals, d.verified_intervals);
        let errors = &e.metrics[0];
        assert_eq!(errors.metric, "error-rate");
        assert_eq!(errors.status, Standing::Regression);
        assert_eq!(
            (errors.canary_events, errors.canary_requests),
            (
                20 * e.verified_intervals as u64,
                1000 * e.verified_intervals as u64
            )
        );
        let ratio = errors.ratio.unwrap();
        assert!((3.9..4.1).contains(&ratio), "{ratio}");
        assert!(errors.evalue >= errors.threshold, "{errors:?}");
        let line = &e.metric_lines()[0];
        assert!(
            line.starts_with("error-rate: 4.00x, rollback evidence "),
            "{line}"
        );
        assert!(line.contains("(regression; canary 200/10000"), "{line}");
    }

    #[test]
    fn a_healthy_canary_shows_evidence_far_below_the_threshold() {
        let d = decide(&window(5), 10, &JudgeConfig::default());
        let e = Evidence::of(&d).unwrap();
        let errors = &e.metrics[0];
        assert_ne!(errors.status, Standing::Regression);
        assert!(errors.evalue < errors.threshold, "{errors:?}");
        assert_eq!(
            e.headline(),
            format!(
                "{} verified intervals over this step, canary share 10.0 %",
                e.verified_intervals
            )
        );
    }

    #[test]
    fn a_decision_without_reports_has_no_evidence_to_show() {
        let mut d = decide(&window(5), 10, &JudgeConfig::default());
        d.metrics.clear();
        assert_eq!(Evidence::of(&d), None);
    }

    #[test]
    fn evidence_survives_json_and_a_saturated_evalue_stays_finite() {
        let mut d = decide(&window(20), 10, &JudgeConfig::default());
        d.metrics[0].log_evalue = f64::INFINITY;
        let e = Evidence::of(&d).unwrap();
        let back: Evidence = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.metrics[0].evalue, f64::MAX);
    }

    /// The store saves a rollout only if the stored JSON still equals the record it read
    /// (optimistic concurrency, compared as text), so the evidence's floats, as the judge
    /// computes them, must come back from JSON to the very same text.
    #[test]
    fn evidence_floats_come_back_from_json_as_the_same_text() {
        let mut e = Evidence::of(&decide(&window(20), 10, &JudgeConfig::default())).unwrap();
        for (i, x) in [
            0.4092066860773787,
            199.99999999999991,
            0.1 + 0.2,
            1.0 / 3.0,
            f64::MAX,
            2.2250738585072014e-308,
        ]
        .into_iter()
        .enumerate()
        {
            e.metrics[0].evalue = x;
            e.metrics[0].threshold = x * 0.7;
            e.canary_share = Some(x / (i as f64 + 3.0));
            let text = serde_json::to_string(&e).unwrap();
            let back: Evidence = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }

    #[test]
    fn short_numbers_keep_two_significant_digits() {
        assert_eq!(short(0.4123), "0.41");
        assert_eq!(short(40.0), "40");
        assert_eq!(short(123_456.0), "1.2e5");
        assert_eq!(short(0.0001234), "1.2e-4");
    }
}

#[cfg(test)]
mod shown {
    use super::tests_support::rollback_with_evidence;
    use crate::rollout::comment::status_comment;
    use crate::rollout::input::{Effect, Input};
    use crate::rollout::page::render_rollout;
    use crate::rollout::record::{Rollout, Settings};
    use crate::rollout::step;
    use crate::rollout::testing::{rolled_back_at_25, t, trigger};

    /// `d-7` rolled back at 25 % by a judgement carrying evidence (or not), and its last notice.
    fn rolled_back(with_evidence: bool) -> (Rollout, Option<crate::rollout::Notice>) {
        let mut inputs: Vec<Input> = rolled_back_at_25("canary 4.0 % vs baseline 0.4 %");
        if with_evidence {
            *inputs.last_mut().unwrap() = rollback_with_evidence();
        }
        let mut r = Rollout::new(
            trigger("d-7", "checkout", "production"),
            Settings::default(),
            t(0),
        );
        let mut notice = None;
        for (i, input) in inputs.into_iter().enumerate() {
            let tr = step(&r, input, t(700 * i as i64));
            for e in tr.effects {
                if let Effect::Comment { notice: n } = e {
                    notice = Some(n);
                }
            }
            r = tr.next;
        }
        (r, notice)
    }

    #[test]
    fn the_status_comment_and_page_show_the_evidence_the_rollout_kept() {
        let (r, notice) = rolled_back(true);
        let e = r
            .latest
            .as_ref()
            .and_then(|s| s.evidence.as_ref())
            .expect("kept");
        let comment = status_comment(&r, &notice.unwrap());
        let judge_row = comment
            .lines()
            .find(|l| l.starts_with("| Judge |"))
            .expect("a Judge row");
        assert!(
            judge_row.contains(&format!("<br>{}<br>", e.headline())),
            "{judge_row}"
        );
        assert!(judge_row.contains("<br>error-rate: "), "{judge_row}");
        assert!(judge_row.contains("(regression; canary "), "{judge_row}");
        let page = render_rollout(&r, &[], &[], t(3000));
        assert!(page.contains("<dt>Evidence</dt>"), "{page}");
        assert!(page.contains("<li>error-rate: "), "{page}");

        // Without evidence (a verification, an older record) the row is the one line it was.
        let (r, notice) = rolled_back(false);
        let comment = status_comment(&r, &notice.unwrap());
        let judge_row = comment
            .lines()
            .find(|l| l.starts_with("| Judge |"))
            .unwrap();
        assert!(!judge_row.contains("<br>"), "{judge_row}");
        assert!(!render_rollout(&r, &[], &[], t(3000)).contains("<dt>Evidence</dt>"));
    }
}

#[cfg(test)]
mod stored {
    use super::tests_support::rollback_with_evidence;
    use crate::rollout::input::{Input, Judgement};
    use crate::rollout::record::Observation;

    #[test]
    fn a_judged_input_is_stored_flat_and_rows_without_evidence_still_read() {
        let old: Input = serde_json::from_str(r#"{"type":"judged","kind":"continue"}"#).unwrap();
        assert_eq!(old, Input::judged(Observation::Continue));
        let held: Input = serde_json::from_str(
            r#"{"type":"judged","kind":"hold","reason":"no traffic","escalate":true}"#,
        )
        .unwrap();
        assert_eq!(
            held,
            Input::judged(Observation::Inconclusive {
                reason: "no traffic".into(),
                escalate: true
            })
        );
        let input = rollback_with_evidence();
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["type"], "judged");
        assert_eq!(json["kind"], "rollback");
        assert_eq!(json["accumulated"]["metrics"][0]["metric"], "error-rate");
        assert_eq!(json["evidence"], "canary 4.0 % vs baseline 0.4 %");
        let back: Input = serde_json::from_value(json).unwrap();
        assert_eq!(back, input);
        let Input::Judged(Judgement { accumulated, .. }) = back else {
            unreachable!()
        };
        assert!(accumulated.is_some());
    }
}

/// A judged rollback carrying a real decision's evidence, for the tests of the rollout modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::Evidence;
    use crate::canary::judge::decide;
    use crate::canary::sample::{Interval, TrackSample, Window};
    use crate::canary::settings::JudgeConfig;
    use crate::rollout::input::{Input, Judgement};
    use crate::rollout::record::Observation;

    pub(crate) fn rollback_with_evidence() -> Input {
        let track = |requests, errors| TrackSample {
            requests,
            errors,
            latency_buckets: Vec::new(),
            extra: Default::default(),
        };
        let window = Window {
            step_seconds: 60,
            canary_weight: 0.25,
            latency_buckets_le: Vec::new(),
            intervals: (0..10)
                .map(|_| Interval {
                    baseline: Some(track(7500, 30)),
                    canary: Some(track(2500, 100)),
                })
                .collect(),
        };
        let d = decide(&window, 10, &JudgeConfig::default());
        Input::Judged(Judgement {
            observation: Observation::Rollback {
                metric: "error-rate".into(),
                evidence: "canary 4.0 % vs baseline 0.4 %".into(),
            },
            accumulated: Evidence::of(&d),
        })
    }
}
