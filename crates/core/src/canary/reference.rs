//! The reference judges deploybot's judge is measured against, implemented faithfully to what
//! they are (including their blind spots, which is the point of measuring them):
//! - the article's loop (the article deploybot started from, *Building a Deployment Agent: CI/CD Orchestration with AI-Powered Decision Making*;
//!   docs/decisions.md): every 5 intervals a one-sided Mann-Whitney U test on per-interval error
//!   rates and p99 latencies of the last 15 intervals, rollback if p < 0.05, promote if both
//!   p > 0.3, and after the third check the loop ends and the rollout proceeds (promotes);
//! - fixed thresholds per interval like Flagger's defaults: canary error rate > 1 % or p99 >
//!   500 ms fails a check, missing data fails a check, 2 failed checks roll back, 10 checks
//!   promote;
//! - a 15-interval fixed horizon like Kayenta: per metric a Mann-Whitney test at 95 % plus a
//!   25 % mean-ratio tolerance, insufficient data fails.
//!
//! Like the main judge they are pure functions of the window so far.

use super::judge::{Decision, InconclusiveReason, Verdict};
use super::sample::{TrackSample, Window};
use super::stats::{self, mann_whitney_greater};

fn decision(t: usize, verdict: Verdict, note: String) -> Decision {
    Decision {
        interval: t,
        verdict,
        verified_intervals: 0,
        steps: 1,
        metrics: Vec::new(),
        canary_share: None,
        note: Some(note),
    }
}

fn rollback(t: usize, metric: &str, evidence: String) -> Decision {
    decision(
        t,
        Verdict::Rollback {
            metric: metric.into(),
            evidence: evidence.clone(),
        },
        format!("{metric}: {evidence}"),
    )
}

fn error_rate(s: &TrackSample) -> f64 {
    // 0/0 is NaN on purpose: PromQL's rate ratio is NaN without traffic too.
    s.errors as f64 / s.requests as f64
}

fn p99(s: &TrackSample, le: &[f64]) -> f64 {
    stats::histogram_quantile(le, &s.latency_buckets, 0.99).unwrap_or(f64::NAN)
}

/// Per-interval values of one track; missing samples are absent points (a range query has no
/// point there), NaN values stay (the article's numpy code would carry them).
fn series(
    w: &Window,
    range: std::ops::Range<usize>,
    canary: bool,
    f: impl Fn(&TrackSample) -> f64,
) -> Vec<f64> {
    w.intervals[range]
        .iter()
        .filter_map(|iv| {
            if canary {
                iv.canary.as_ref()
            } else {
                iv.baseline.as_ref()
            }
        })
        .map(f)
        .collect()
}

/// The article's `CanaryAnalyzer` loop.
pub fn article_mann_whitney(w: &Window, t: usize) -> Decision {
    const EVERY: usize = 5;
    const LOOKBACK: usize = 15;
    const CHECKS: usize = 3;
    if t == 0 || !t.is_multiple_of(EVERY) || t > EVERY * CHECKS {
        return decision(t, Verdict::Continue, "waiting for the next check".into());
    }
    let range = t.saturating_sub(LOOKBACK)..t;
    let le = &w.latency_buckets_le;
    let test = |f: &dyn Fn(&TrackSample) -> f64| {
        let c = series(w, range.clone(), true, f);
        let b = series(w, range.clone(), false, f);
        mann_whitney_greater(&c, &b).map(|r| r.p)
    };
    let err_p = test(&error_rate);
    let lat_p = test(&|s| p99(s, le));
    // NaN (scipy's answer for empty or NaN input) compares false both ways.
    let err = err_p.unwrap_or(f64::NAN);
    let lat = lat_p.unwrap_or(f64::NAN);
    if err < 0.05 || lat < 0.05 {
        let metric = if err < 0.05 {
            "error-rate"
        } else {
            "p99-latency"
        };
        return rollback(
            t,
            metric,
            format!(
                "Mann-Whitney p = {err:.4} (errors), {lat:.4} (p99) at check {}",
                t / EVERY
            ),
        );
    }
    if (err > 0.3 && lat > 0.3) || t == EVERY * CHECKS {
        return decision(
            t,
            Verdict::Promote,
            format!(
                "Mann-Whitney p = {err:.4} (errors), {lat:.4} (p99) at check {}{}",
                t / EVERY,
                if err > 0.3 && lat > 0.3 {
                    ""
                } else {
                    ": the loop ended, the article proceeds to full rollout"
                }
            ),
        );
    }
    decision(
        t,
        Verdict::Continue,
        format!("Mann-Whitney p = {err:.4} (errors), {lat:.4} (p99): inconclusive"),
    )
}

/// Flagger-like fixed thresholds on the canary alone.
pub fn fixed_thresholds(w: &Window, t: usize) -> Decision {
    const MAX_ERROR_RATE: f64 = 0.01;
    const MAX_P99: f64 = 0.5;
    const FAILED_CHECKS: usize = 2;
    const CHECKS_TO_PROMOTE: usize = 10;
    let le = &w.latency_buckets_le;
    let mut failed = 0;
    for (i, iv) in w.intervals[..t].iter().enumerate() {
        // An empty or NaN query result counts as a failed check, as in Flagger.
        let failure = match &iv.canary {
            None => Some("no canary data".to_string()),
            Some(c) => {
                let (e, p) = (error_rate(c), p99(c, le));
                // NaN fails too, hence "not within" rather than "above"
                let within = |v: f64, max: f64| v.partial_cmp(&max).is_some_and(|o| o.is_le());
                if !within(e, MAX_ERROR_RATE) {
                    Some(format!("error rate {:.2} % above 1 %", e * 100.0))
                } else if !within(p, MAX_P99) {
                    Some(format!("p99 {:.0} ms above 500 ms", p * 1000.0))
                } else {
                    None
                }
            }
        };
        if let Some(f) = failure {
            failed += 1;
            if failed >= FAILED_CHECKS {
                return rollback(
                    i + 1,
                    "threshold",
                    format!("{failed} failed checks, last at check {}: {f}", i + 1),
                );
            }
        }
    }
    if t >= CHECKS_TO_PROMOTE {
        return decision(
            t,
            Verdict::Promote,
            format!("{t} checks with {failed} failure(s) below the limit of {FAILED_CHECKS}"),
        );
    }
    decision(t, Verdict::Continue, format!("{t} checks, {failed} failed"))
}

/// Kayenta-like fixed horizon.
pub fn fixed_horizon_mann_whitney(w: &Window, t: usize) -> Decision {
    const HORIZON: usize = 15;
    const TOLERANCE: f64 = 1.25;
    const MIN_POINTS: usize = 10;
    if t < HORIZON {
        return decision(
            t,
            Verdict::Continue,
            format!("collecting {t}/{HORIZON} intervals"),
        );
    }
    if t > HORIZON {
        return decision(
            t,
            Verdict::Inconclusive {
                reason: InconclusiveReason::Undecided { intervals: t },
                escalate: true,
            },
            "the fixed horizon has passed".into(),
        );
    }
    let le = &w.latency_buckets_le;
    type Extract<'a> = &'a dyn Fn(&TrackSample) -> f64;
    let metrics: [(&str, Extract); 2] = [
        ("error-rate", &error_rate),
        ("p99-latency", &|s| p99(s, le)),
    ];
    let mut notes = Vec::new();
    for (name, f) in metrics {
        let clean = |canary: bool| -> Vec<f64> {
            series(w, 0..HORIZON, canary, f)
                .into_iter()
                .filter(|v| v.is_finite())
                .collect()
        };
        let (c, b) = (clean(true), clean(false));
        if c.len() < MIN_POINTS || b.len() < MIN_POINTS {
            return rollback(
                t,
                name,
                format!(
                    "insufficient data: {} canary and {} baseline points of {HORIZON}",
                    c.len(),
                    b.len()
                ),
            );
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mc, mb) = (mean(&c), mean(&b));
        let ratio = if mb > 0.0 {
            mc / mb
        } else if mc > 0.0 {
            f64::INFINITY
        } else {
            1.0
        };
        let p = mann_whitney_greater(&c, &b).map(|r| r.p).unwrap_or(1.0);
        // 95 % confidence on the canary-worse side (one-sided 5 %).
        if p < 0.05 && ratio > TOLERANCE {
            return rollback(
                t,
                name,
                format!("Mann-Whitney p = {p:.4}, mean ratio {ratio:.2} above {TOLERANCE}"),
            );
        }
        notes.push(format!("{name} p = {p:.3}, ratio {ratio:.2}"));
    }
    decision(t, Verdict::Promote, format!("passed: {}", notes.join("; ")))
}
