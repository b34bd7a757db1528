//! Canary judgement: a pure, statistical judge of canary against baseline ([`judge`], built on
//! [`stats`]) that judges one window or a whole rollout (its evidence carried from step to step,
//! its wobble prior taken from the stable version's history), its settings ([`settings`]), the
//! reference judges it is measured against ([`reference`]), the replay source of recorded
//! scenarios and rollouts ([`scenario`], [`replay_rollout`]), a generator of fresh scenarios and
//! rollouts ([`generate`]), the PromQL templates a live source runs ([`query`]) and the
//! rendering of a decision for comments and commits ([`render`]). Nothing here talks to
//! Prometheus or reads a file: sources produce a [`sample::Window`], judges consume it. The
//! Prometheus source, `deploybot judge` and `deploybot bench canary` are the root package's.

pub mod generate;
pub mod judge;
pub mod query;
pub mod reference;
pub mod render;
pub mod sample;
pub mod scenario;
pub mod settings;
pub mod stats;

pub use judge::{Decision, InconclusiveReason, Look, MetricReport, Verdict};
pub use settings::{JudgeConfig, JudgeMethod};

use sample::Window;

/// What [`is_metric_name`] allows, for the error messages that refuse a name.
pub const METRIC_NAME_RULE: &str = "a metric name is letters, digits, '_' and '-'";

/// Names of extra metrics appear in config keys, metric labels and reports: letters, digits,
/// `_` and `-` only.
pub fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Runs the configured judge on the first `t` intervals of `window`.
pub fn judge(window: &Window, t: usize, config: &JudgeConfig) -> Decision {
    let t = t.clamp(1, window.intervals.len().max(1));
    if window.intervals.is_empty() {
        return judge::decide(window, t, config);
    }
    match config.method {
        JudgeMethod::Sequential => judge::decide(window, t, config),
        JudgeMethod::ArticleMannWhitney => reference::article_mann_whitney(window, t),
        JudgeMethod::FixedThresholds => reference::fixed_thresholds(window, t),
        JudgeMethod::FixedHorizonMannWhitney => reference::fixed_horizon_mann_whitney(window, t),
    }
}

/// Runs the configured judge at one look at a rollout. deploybot's judge sees the whole rollout
/// (history, earlier steps, the current step); the reference judges are per-step judges and see
/// the current step alone, as they would if applied step after step.
pub fn judge_look(look: &Look<'_>, config: &JudgeConfig) -> Decision {
    let window = look.current;
    let t = look.t.clamp(1, window.intervals.len().max(1));
    if window.intervals.is_empty() || config.method == JudgeMethod::Sequential {
        return judge::decide_look(look, config);
    }
    judge(window, t, config)
}

/// How a replayed rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutOutcome {
    /// Promoted from the last canary step: the whole service goes to the new version.
    Complete,
    Rollback,
    /// A human must look: the judge escalated, or a step ended without a decision.
    Paused,
}

impl RolloutOutcome {
    /// `complete`, `rollback` or `paused`.
    pub fn name(self) -> &'static str {
        match self {
            RolloutOutcome::Complete => "complete",
            RolloutOutcome::Rollback => "rollback",
            RolloutOutcome::Paused => "paused",
        }
    }
}

/// A rollout replayed step after step, and where it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutReplay {
    pub outcome: RolloutOutcome,
    /// The step (1-based) of the outcome.
    pub step: usize,
    /// The interval (1-based) of that step at which it happened.
    pub interval: usize,
    /// Intervals judged in all, over every step.
    pub minutes: usize,
    /// The canary's weight and the intervals it ran at each step reached, in order.
    pub exposure: Vec<(f64, usize)>,
    /// The decision behind the outcome.
    pub decision: Decision,
}

/// Replays a recorded rollout as `../shared/canary-bench/ROLLOUTS.md` describes: at step `k` the
/// judge decides after each interval, seeing the history and the steps before it; a promotion
/// moves to the next step (or completes after the last), a rollback ends it, and an escalation
/// or a step's last interval without a decision pauses it. Of an earlier step the judge sees the
/// intervals up to its promotion, as a live rollout would: ROLLOUTS.md allows every recorded
/// interval, but after a promotion the canary no longer runs at that weight.
pub fn replay_rollout(history: &Window, steps: &[Window], config: &JudgeConfig) -> RolloutReplay {
    let mut minutes = 0;
    let mut exposure = Vec::with_capacity(steps.len());
    let mut earlier: Vec<Window> = Vec::with_capacity(steps.len());
    for (k, current) in steps.iter().enumerate() {
        let look = |t| Look {
            history: &history.intervals,
            earlier: &earlier,
            current,
            t,
            last_step: k + 1 == steps.len(),
            planned_steps: steps.len(),
        };
        let n = current.intervals.len().max(1);
        let mut last = None;
        for t in 1..=n {
            let d = judge_look(&look(t), config);
            let outcome = match &d.verdict {
                Verdict::Promote if k + 1 == steps.len() => Some(RolloutOutcome::Complete),
                Verdict::Promote => {
                    minutes += t;
                    exposure.push((current.canary_weight, t));
                    last = None;
                    earlier.push(Window {
                        intervals: current.intervals[..t.min(current.intervals.len())].to_vec(),
                        ..current.clone()
                    });
                    break;
                }
                Verdict::Rollback { .. } => Some(RolloutOutcome::Rollback),
                Verdict::Inconclusive { escalate: true, .. } => Some(RolloutOutcome::Paused),
                Verdict::Continue | Verdict::Inconclusive { .. } => None,
            };
            if let Some(outcome) = outcome {
                exposure.push((current.canary_weight, t));
                return RolloutReplay {
                    outcome,
                    step: k + 1,
                    interval: t,
                    minutes: minutes + t,
                    exposure,
                    decision: d,
                };
            }
            last = Some(d);
        }
        if let Some(d) = last {
            exposure.push((current.canary_weight, n));
            return RolloutReplay {
                outcome: RolloutOutcome::Paused,
                step: k + 1,
                interval: n,
                minutes: minutes + n,
                exposure,
                decision: d,
            };
        }
    }
    let empty = Window {
        step_seconds: history.step_seconds,
        canary_weight: 0.0,
        latency_buckets_le: history.latency_buckets_le.clone(),
        intervals: Vec::new(),
    };
    RolloutReplay {
        outcome: RolloutOutcome::Paused,
        step: 1,
        interval: 1,
        minutes,
        exposure,
        decision: judge::decide(&empty, 1, config),
    }
}

/// The outcome of replaying a whole window interval by interval: the first decision other than
/// `Continue` is final; without one the last interval's decision stands (inconclusive).
pub fn replay(window: &Window, config: &JudgeConfig) -> Decision {
    let n = window.intervals.len();
    let mut last = None;
    for t in 1..=n {
        let d = judge(window, t, config);
        match d.verdict {
            Verdict::Continue | Verdict::Inconclusive { .. } => last = Some(d),
            _ => return d,
        }
    }
    match last {
        Some(d) if matches!(d.verdict, Verdict::Inconclusive { .. }) => d,
        Some(d) => Decision {
            verdict: Verdict::Inconclusive {
                reason: InconclusiveReason::Undecided { intervals: n },
                escalate: true,
            },
            note: None,
            ..d
        },
        None => judge::decide(window, 1, config),
    }
}
