//! Canary judgement: a pure, statistical judge of canary against baseline ([`judge`], built on
//! [`stats`]), its settings ([`settings`]), the reference judges it is measured against
//! ([`reference`]), the replay source of recorded scenarios ([`scenario`]), a generator of
//! fresh scenarios ([`generate`]), the PromQL templates a live source runs ([`query`]) and the
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

pub use judge::{Decision, InconclusiveReason, MetricReport, Verdict};
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
