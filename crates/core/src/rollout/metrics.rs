//! The rollout's metric history from what the judge read: a `canary::sample::Window` (counter
//! increments per interval and track) becomes [`MetricPoint`]s, per interval, of the error rate
//! and the p99 latency of canary and baseline. The shell records them after each metrics query
//! (`RolloutStore::record_metrics`); the status page and the PR comment draw them.
//!
//! Pure: no clock (the caller says when the window's last interval ended), no I/O. It does not
//! judge anything; the numbers are for people to look at, the judge keeps its own statistics.

use chrono::{DateTime, TimeDelta, Utc};

use super::plan::Weight;
use super::record::MetricPoint;
use crate::canary::sample::{TrackSample, Window};

/// Failed requests over requests in the interval, as a fraction (0..1).
pub const ERROR_RATE: &str = "error_rate";
/// The 99th percentile latency in seconds, read from the histogram buckets.
pub const P99_LATENCY: &str = "p99_latency_seconds";

/// One point per interval of `window` and per metric ([`ERROR_RATE`], then [`P99_LATENCY`] when
/// the window has latency buckets), the last interval ending at `end` and each interval
/// `window.step_seconds` long. A track without a sample, without requests or with inconsistent
/// counts gives `None` for that track: a gap in the chart, never a zero.
pub fn points_from_window(window: &Window, end: DateTime<Utc>, weight: Weight) -> Vec<MetricPoint> {
    let n = window.intervals.len();
    let step = i64::try_from(window.step_seconds).unwrap_or(i64::MAX / 1000);
    let le = &window.latency_buckets_le;
    let mut out = Vec::with_capacity(n * 2);
    for (i, interval) in window.intervals.iter().enumerate() {
        let back = (n - 1 - i) as i64;
        let at = end - TimeDelta::seconds(step.saturating_mul(back));
        let point = |metric: &str, f: &dyn Fn(&TrackSample) -> Option<f64>| MetricPoint {
            at,
            weight,
            metric: metric.to_string(),
            canary: interval.canary.as_ref().and_then(f),
            baseline: interval.baseline.as_ref().and_then(f),
        };
        out.push(point(ERROR_RATE, &error_rate));
        if !le.is_empty() {
            out.push(point(P99_LATENCY, &|s| {
                p99_upper_bound(le, &s.latency_buckets)
            }));
        }
    }
    out
}

/// Errors over requests; `None` without requests, or when there are more errors than requests
/// (counters scraped at different moments: not a number to show).
fn error_rate(s: &TrackSample) -> Option<f64> {
    (s.requests > 0 && s.errors <= s.requests).then(|| s.errors as f64 / s.requests as f64)
}

/// The upper bound of the first bucket by which 99 % of the requests are counted. Conservative
/// (the true p99 is at most this), and exact on the bucket grid the service itself declares.
/// A p99 in the `+Inf` bucket reports the highest finite bound, as Prometheus'
/// `histogram_quantile` does. `None` without observations or with a bucket count that does not
/// match the bounds.
fn p99_upper_bound(le: &[f64], counts: &[u64]) -> Option<f64> {
    if le.is_empty() || counts.len() != le.len() + 1 {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut cumulative = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        cumulative += c;
        // Integer comparison: cumulative / total >= 0.99 without rounding surprises.
        if u128::from(cumulative) * 100 >= u128::from(total) * 99 {
            return Some(le[i.min(le.len() - 1)]);
        }
    }
    Some(le[le.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::sample::Interval;

    const LE: [f64; 3] = [0.1, 0.25, 1.0];

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + TimeDelta::seconds(s)
    }

    fn track(requests: u64, errors: u64, buckets: &[u64]) -> Option<TrackSample> {
        Some(TrackSample {
            requests,
            errors,
            latency_buckets: buckets.to_vec(),
            extra: Default::default(),
        })
    }

    fn find<'a>(points: &'a [MetricPoint], at: i64, metric: &str) -> &'a MetricPoint {
        points
            .iter()
            .find(|p| p.at == t(at) && p.metric == metric)
            .unwrap_or_else(|| panic!("no {metric} at {at}: {points:?}"))
    }

    #[test]
    fn each_interval_gives_error_rate_and_p99_per_track_ending_at_end() {
        let w = Weight::new(25).unwrap();
        let window = Window {
            step_seconds: 60,
            canary_weight: 0.25,
            latency_buckets_le: LE.to_vec(),
            intervals: vec![
                Interval {
                    // 100 requests: 98 under 0.1 s, 1 more under 0.25 s -> the 99th is at 0.25.
                    canary: track(100, 2, &[98, 1, 1, 0]),
                    // 1000 requests, all fast.
                    baseline: track(1000, 1, &[1000, 0, 0, 0]),
                },
                Interval {
                    // The slowest 2 % are beyond the last bound: reported at the highest bound.
                    canary: track(100, 0, &[90, 8, 0, 2]),
                    baseline: None,
                },
                Interval {
                    // No requests, and latency unknown.
                    canary: track(0, 0, &[0, 0, 0, 0]),
                    baseline: track(50, 0, &[]),
                },
            ],
        };
        let points = points_from_window(&window, t(180), w);
        assert_eq!(points.len(), 6);
        assert!(points.iter().all(|p| p.weight == w));
        let ordered: Vec<(DateTime<Utc>, &str)> =
            points.iter().map(|p| (p.at, p.metric.as_str())).collect();
        assert_eq!(
            ordered,
            [
                (t(60), ERROR_RATE),
                (t(60), P99_LATENCY),
                (t(120), ERROR_RATE),
                (t(120), P99_LATENCY),
                (t(180), ERROR_RATE),
                (t(180), P99_LATENCY),
            ]
        );
        let e = find(&points, 60, ERROR_RATE);
        assert_eq!((e.canary, e.baseline), (Some(0.02), Some(0.001)));
        let l = find(&points, 60, P99_LATENCY);
        assert_eq!((l.canary, l.baseline), (Some(0.25), Some(0.1)));
        let e = find(&points, 120, ERROR_RATE);
        assert_eq!((e.canary, e.baseline), (Some(0.0), None));
        let l = find(&points, 120, P99_LATENCY);
        assert_eq!((l.canary, l.baseline), (Some(1.0), None));
        let e = find(&points, 180, ERROR_RATE);
        assert_eq!((e.canary, e.baseline), (None, Some(0.0)));
        let l = find(&points, 180, P99_LATENCY);
        assert_eq!((l.canary, l.baseline), (None, None));
    }

    #[test]
    fn p99_is_the_bound_of_the_bucket_reaching_99_percent() {
        // Exactly 99 of 100 in the first bucket: that bucket reaches 99 %.
        assert_eq!(p99_upper_bound(&LE, &[99, 1, 0, 0]), Some(0.1));
        // 98.9 %: not yet.
        assert_eq!(p99_upper_bound(&LE, &[989, 11, 0, 0]), Some(0.25));
        assert_eq!(p99_upper_bound(&LE, &[0, 0, 5, 0]), Some(1.0));
        assert_eq!(p99_upper_bound(&LE, &[0, 0, 0, 5]), Some(1.0));
        assert_eq!(p99_upper_bound(&LE, &[0, 0, 0, 0]), None);
        // Counts that do not match the bounds are not guessed at.
        assert_eq!(p99_upper_bound(&LE, &[5, 5]), None);
        assert_eq!(p99_upper_bound(&[], &[5]), None);
    }

    #[test]
    fn inconsistent_counts_and_windows_without_latency() {
        let window = Window {
            step_seconds: 30,
            canary_weight: 0.1,
            latency_buckets_le: vec![],
            intervals: vec![Interval {
                canary: track(10, 11, &[]),
                baseline: track(10, 10, &[]),
            }],
        };
        let points = points_from_window(&window, t(0), Weight::new(10).unwrap());
        // Without bounds there is no latency metric at all, not a row of gaps.
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].metric, ERROR_RATE);
        assert_eq!((points[0].canary, points[0].baseline), (None, Some(1.0)));
        assert!(
            points_from_window(
                &Window {
                    intervals: vec![],
                    ..window
                },
                t(0),
                Weight::ZERO
            )
            .is_empty()
        );
    }
}
