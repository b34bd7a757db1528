//! [`PrometheusSource`]: the [`MetricsSource`] that reads a canary [`Window`] from Prometheus.
//!
//! Per track it runs the `requests`, `errors`, `latency` and `last_sample` templates as range
//! queries whose step is the interval, so the point at `t` is the counter increase over
//! `(t - interval, t]`. Counter resets are handled by PromQL's `increase()` (per series, before
//! `sum`), which never goes negative; this source only rounds the extrapolated increase to whole
//! requests. What the source cannot trust it reports as missing (`None`), never as zero:
//! - a step with no point (scrape gap, series absent, partial result), `NaN` or an infinity;
//! - a negative increase (a template using `delta()` on a counter that reset);
//! - requests present but errors absent (the errors template must return 0 for "no errors");
//! - a track whose newest sample is older than `staleness_limit` at the interval's end.
//!
//! Latency buckets are reported per bucket (not cumulative) in the order of
//! [`Window::latency_buckets_le`] plus `+Inf`; a step missing any bucket has unknown latency (an
//! empty list), not a partial histogram.

use std::collections::BTreeMap;

use crate::adapters::prometheus::api::{PrometheusClient, QueryResult, Range, Series};
use crate::adapters::prometheus::{PrometheusSpec, QueryTemplates};
use deploybot_core::canary::query::{self, Bindings};
use deploybot_core::canary::sample::{
    AnalysisTarget, Interval, MetricsSource, TrackSample, Window,
};
use deploybot_core::duration::PromDuration;
use deploybot_core::failure::Failure;
use deploybot_core::secret::Secret;

/// Reads canary windows of one service's analysis from one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    client: PrometheusClient,
    templates: QueryTemplates,
    staleness_limit: PromDuration,
    canary_weight: Option<f64>,
}

/// The query results of one track over the window's steps.
struct TrackSeries {
    requests: QueryResult,
    errors: QueryResult,
    latency: Option<QueryResult>,
    last_sample: Option<QueryResult>,
    extra: Vec<(String, QueryResult)>,
}

impl PrometheusSource {
    pub fn new(
        client: PrometheusClient,
        templates: QueryTemplates,
        config: &PrometheusSpec,
    ) -> Self {
        PrometheusSource {
            client,
            templates,
            staleness_limit: config.staleness_limit,
            canary_weight: None,
        }
    }

    /// A source for one service's templates on the configured server; `token` is the bearer
    /// token read at start-up.
    pub fn from_config(
        config: &PrometheusSpec,
        token: Option<Secret>,
        templates: QueryTemplates,
    ) -> Result<Self, String> {
        Ok(Self::new(
            PrometheusClient::from_config(config, token)?,
            templates,
            config,
        ))
    }

    /// The share of traffic the canary should get (the committed weight), written into every
    /// window for the judge's sample-ratio check. Without it the window carries the observed
    /// share, which makes that check vacuous: callers that know the weight must set it.
    pub fn with_canary_weight(mut self, weight: f64) -> Self {
        self.canary_weight = Some(weight);
        self
    }

    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    async fn range(
        &self,
        name: &str,
        template_text: &str,
        bindings: &Bindings<'_>,
        range: Range,
    ) -> Result<QueryResult, Failure> {
        let promql = query::render(template_text, bindings);
        tracing::debug!(query = name, track = bindings.track, promql = %promql, "querying Prometheus");
        self.client
            .query_range(&promql, range)
            .await
            .map_err(|e| e.context(format_args!("{name} query of track {}", bindings.track)))
    }

    async fn track(
        &self,
        target: &AnalysisTarget,
        track: &str,
        range: Range,
    ) -> Result<TrackSeries, Failure> {
        let b = Bindings {
            service: &target.service,
            namespace: &target.namespace,
            environment: &target.environment,
            track,
            interval: PromDuration::from_secs(range.step_seconds),
        };
        let t = &self.templates;
        let latency = async {
            match &t.latency {
                Some(q) => self.range("latency", q, &b, range).await.map(Some),
                None => Ok(None),
            }
        };
        let last_sample = async {
            match &t.last_sample {
                Some(q) => self.range("last_sample", q, &b, range).await.map(Some),
                None => Ok(None),
            }
        };
        // Extra metrics are few; one after another, alongside the four queries above.
        let extra = async {
            let mut out = Vec::with_capacity(t.extra.len());
            for (name, q) in &t.extra {
                out.push((
                    name.clone(),
                    self.range(&format!("extra.{name}"), q, &b, range).await?,
                ));
            }
            Ok::<_, Failure>(out)
        };
        let (requests, errors, latency, last_sample, extra) = tokio::try_join!(
            self.range("requests", &t.requests, &b, range),
            self.range("errors", &t.errors, &b, range),
            latency,
            last_sample,
            extra,
        )?;
        Ok(TrackSeries {
            requests,
            errors,
            latency,
            last_sample,
            extra,
        })
    }
}

impl MetricsSource for PrometheusSource {
    async fn window(
        &self,
        target: &AnalysisTarget,
        start_unix: i64,
        end_unix: i64,
        step_seconds: u64,
    ) -> Result<Window, Failure> {
        if step_seconds == 0 {
            return Err(unusable("interval of 0 seconds".into()));
        }
        let step = i64::try_from(step_seconds)
            .map_err(|_| unusable(format!("interval of {step_seconds}s")))?;
        let count = usize::try_from((end_unix - start_unix).max(0) / step).unwrap_or(0);
        if count == 0 {
            return Ok(Window {
                step_seconds,
                canary_weight: self.canary_weight.unwrap_or(0.0),
                latency_buckets_le: Vec::new(),
                intervals: Vec::new(),
            });
        }
        // The point at `t` covers (t - step, t]: the first interval ends at start + step.
        let range = Range {
            start: start_unix + step,
            end: start_unix + step * count as i64,
            step_seconds,
        };
        let (baseline, canary) = tokio::try_join!(
            self.track(target, &self.templates.baseline_track, range),
            self.track(target, &self.templates.canary_track, range),
        )?;
        let steps = Steps {
            first_ms: range.start * 1000,
            step_ms: step * 1000,
            count,
        };
        let policy = Assembly {
            steps,
            staleness_ms: i64::try_from(self.staleness_limit.as_millis()).unwrap_or(i64::MAX),
        };
        let le = policy.bucket_bounds(&[&baseline, &canary])?;
        let baseline = policy.samples(&baseline, &le, &self.templates.baseline_track)?;
        let canary = policy.samples(&canary, &le, &self.templates.canary_track)?;
        let canary_weight = self
            .canary_weight
            .unwrap_or_else(|| observed_canary_share(&baseline, &canary));
        Ok(Window {
            step_seconds,
            canary_weight,
            latency_buckets_le: le,
            intervals: baseline
                .into_iter()
                .zip(canary)
                .map(|(baseline, canary)| Interval { baseline, canary })
                .collect(),
        })
    }
}

/// The evaluation times of a window: `first_ms`, `first_ms + step_ms`, ... (`count` of them).
#[derive(Debug, Clone, Copy)]
struct Steps {
    first_ms: i64,
    step_ms: i64,
    count: usize,
}

impl Steps {
    /// The step a point belongs to; points between or outside the steps are ignored.
    fn index(&self, t_ms: i64) -> Option<usize> {
        let offset = t_ms - self.first_ms;
        if offset < 0 || offset % self.step_ms != 0 {
            return None;
        }
        let i = usize::try_from(offset / self.step_ms).ok()?;
        (i < self.count).then_some(i)
    }

    fn end_ms(&self, i: usize) -> i64 {
        self.first_ms + self.step_ms * i as i64
    }

    /// The values of one series laid out per step; steps without a point are `None`.
    fn layout(&self, series: &Series) -> Vec<Option<f64>> {
        let mut out = vec![None; self.count];
        for p in &series.points {
            if let Some(i) = self.index(p.t_ms) {
                out[i] = Some(p.value);
            }
        }
        out
    }
}

/// Turns query results into samples under the missing-data policy of this module.
struct Assembly {
    steps: Steps,
    staleness_ms: i64,
}

impl Assembly {
    /// The single series of an aggregated query laid out per step (all `None` when empty).
    fn single(
        &self,
        name: &str,
        track: &str,
        r: &QueryResult,
    ) -> Result<Vec<Option<f64>>, Failure> {
        match r.series.as_slice() {
            [] => Ok(vec![None; self.steps.count]),
            [one] => Ok(self.steps.layout(one)),
            many => Err(unusable(format!(
                "{name} query of track {track} returned {} series (labels {:?}, ...); \
                 the template must aggregate to one series, e.g. with sum(...)",
                many.len(),
                many[0].labels
            ))),
        }
    }

    /// The finite `le` bounds seen in either track's latency result, ascending.
    fn bucket_bounds(&self, tracks: &[&TrackSeries]) -> Result<Vec<f64>, Failure> {
        let mut bounds: Vec<f64> = Vec::new();
        for t in tracks {
            let Some(latency) = &t.latency else { continue };
            for s in &latency.series {
                let le = le_of(s)?;
                if le.is_finite() && !bounds.contains(&le) {
                    bounds.push(le);
                }
            }
        }
        bounds.sort_by(f64::total_cmp);
        Ok(bounds)
    }

    fn samples(
        &self,
        t: &TrackSeries,
        le: &[f64],
        track: &str,
    ) -> Result<Vec<Option<TrackSample>>, Failure> {
        let requests = self.single("requests", track, &t.requests)?;
        let errors = self.single("errors", track, &t.errors)?;
        let last_sample = match &t.last_sample {
            Some(r) => Some(self.single("last_sample", track, r)?),
            None => None,
        };
        let latency = match &t.latency {
            Some(r) => Some(self.cumulative_buckets(r, le)?),
            None => None,
        };
        let extra = t
            .extra
            .iter()
            .map(|(name, r)| Ok((name, self.single(&format!("extra.{name}"), track, r)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        let mut out = Vec::with_capacity(self.steps.count);
        for i in 0..self.steps.count {
            let stale = last_sample.as_ref().is_some_and(|ts| match ts[i] {
                Some(newest) if newest.is_finite() => {
                    self.steps.end_ms(i) - (newest * 1000.0).round() as i64 > self.staleness_ms
                }
                _ => true,
            });
            let (Some(requests), Some(errors)) =
                (requests[i].and_then(count), errors[i].and_then(count))
            else {
                out.push(None);
                continue;
            };
            if stale {
                tracing::debug!(
                    track,
                    step = i,
                    "stale series: interval reported as missing"
                );
                out.push(None);
                continue;
            }
            out.push(Some(TrackSample {
                requests,
                // increase() extrapolates each series separately, so errors can exceed requests
                // by a fraction that rounds up; more errors than requests is never real.
                errors: errors.min(requests),
                latency_buckets: latency
                    .as_ref()
                    .and_then(|steps| steps[i].as_deref().map(per_bucket))
                    .unwrap_or_default(),
                // a missing or unusable extra point leaves that metric without a sample
                extra: extra
                    .iter()
                    .filter_map(|(name, steps)| Some(((*name).clone(), steps[i].and_then(count)?)))
                    .collect(),
            }));
        }
        Ok(out)
    }

    /// Per step, the cumulative counts in the order of `le` plus `+Inf`, or `None` when any
    /// bucket is missing or unusable at that step.
    fn cumulative_buckets(
        &self,
        r: &QueryResult,
        le: &[f64],
    ) -> Result<Vec<Option<Vec<u64>>>, Failure> {
        let mut by_bound: BTreeMap<usize, Vec<Option<f64>>> = BTreeMap::new();
        for s in &r.series {
            let bound = le_of(s)?;
            let slot = if bound.is_infinite() {
                le.len()
            } else {
                le.iter().position(|b| *b == bound).unwrap_or(le.len())
            };
            // Two series with one `le` means the template did not aggregate `by (le)`.
            if by_bound.insert(slot, self.steps.layout(s)).is_some() {
                return Err(unusable(format!(
                    "latency query returned several series with le={bound}; \
                     the template must aggregate with sum by (le) (...)"
                )));
            }
        }
        if by_bound.is_empty() {
            return Ok(vec![None; self.steps.count]);
        }
        Ok((0..self.steps.count)
            .map(|i| {
                (0..=le.len())
                    .map(|slot| by_bound.get(&slot).and_then(|v| v[i]).and_then(count))
                    .collect::<Option<Vec<u64>>>()
            })
            .collect())
    }
}

fn le_of(s: &Series) -> Result<f64, Failure> {
    let text = s.labels.get("le").ok_or_else(|| {
        unusable(format!(
            "latency query returned a series without an `le` label ({:?}); \
             the template must keep it, e.g. sum by (le) (...)",
            s.labels
        ))
    })?;
    crate::adapters::prometheus::api::parse_value(text)
        .map_err(|e| unusable(format!("latency series le={text:?}: {e}")))
}

/// What Prometheus answered cannot be read as a window (a template that does not aggregate, a
/// bucket without `le`): the query is wrong, so asking again will not help.
fn unusable(cause: String) -> Failure {
    Failure::permanent("reading the canary window", cause)
}

/// A counter increment as a whole count, or `None` when it is not one: `NaN`, infinite, or
/// negative beyond floating-point noise (a reset seen through `delta()` or a bad template).
fn count(v: f64) -> Option<u64> {
    if !v.is_finite() || v < -0.5 {
        if v.is_finite() {
            tracing::warn!(
                value = v,
                "negative counter increase reported as missing; use increase() in the template"
            );
        }
        return None;
    }
    Some(v.max(0.0).round() as u64)
}

/// Cumulative `le` counts to per-bucket counts. Separately extrapolated buckets can dip below the
/// bucket before them; a running maximum keeps every count non-negative and the total intact.
fn per_bucket(cumulative: &[u64]) -> Vec<u64> {
    let mut previous = 0;
    cumulative
        .iter()
        .map(|&c| {
            let c = c.max(previous);
            let n = c - previous;
            previous = c;
            n
        })
        .collect()
}

/// The canary's share of all requests over the window's complete intervals.
fn observed_canary_share(baseline: &[Option<TrackSample>], canary: &[Option<TrackSample>]) -> f64 {
    let (mut b, mut c) = (0u64, 0u64);
    for (bs, cs) in baseline.iter().zip(canary) {
        if let (Some(bs), Some(cs)) = (bs, cs) {
            b += bs.requests;
            c += cs.requests;
        }
    }
    if b + c == 0 {
        0.0
    } else {
        c as f64 / (b + c) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::prometheus::fake::{FakePrometheus, Labels, Reply, matrix};

    const T0: i64 = 1_700_000_000;

    fn target() -> AnalysisTarget {
        AnalysisTarget {
            service: "checkout".into(),
            namespace: "shop".into(),
            environment: "production".into(),
        }
    }

    /// Which default template a request came from, and for which track.
    fn kind(q: &str) -> (&'static str, &'static str) {
        let track = if q.contains(r#"track="canary""#) {
            "canary"
        } else {
            "baseline"
        };
        let kind = if q.contains("timestamp(") {
            "last_sample"
        } else if q.contains("_bucket") {
            "latency"
        } else if q.contains("code=~") {
            "errors"
        } else {
            "requests"
        };
        (kind, track)
    }

    fn at(i: i64) -> i64 {
        T0 + 60 * i
    }

    /// One series per `(labels, values at interval ends 1..=3)`.
    fn series3(series: &[(Labels<'_>, [i64; 3])]) -> String {
        let texts: Vec<Vec<String>> = series
            .iter()
            .map(|(_, v)| v.iter().map(i64::to_string).collect())
            .collect();
        let rows: Vec<(Labels<'_>, Vec<(i64, &str)>)> = series
            .iter()
            .zip(&texts)
            .map(|((labels, _), t)| {
                (
                    *labels,
                    (0..3).map(|i| (at(i as i64 + 1), t[i].as_str())).collect(),
                )
            })
            .collect();
        matrix(&rows)
    }

    /// A healthy answer for every query: 3 intervals, canary with a tenth of the traffic.
    fn healthy(kind: &str, track: &str) -> String {
        let k = if track == "canary" { 1 } else { 10 };
        let v = |a: i64, b: i64, c: i64| [a * k, b * k, c * k];
        match kind {
            "requests" => series3(&[(&[], v(100, 110, 90))]),
            "errors" => series3(&[(&[], v(1, 0, 2))]),
            // Cumulative, as Prometheus stores them, and deliberately out of `le` order.
            "latency" => series3(&[
                (&[("le", "+Inf")], v(100, 110, 90)),
                (&[("le", "0.5")], v(95, 100, 88)),
                (&[("le", "0.1")], v(60, 70, 50)),
            ]),
            _ => series3(&[(&[], [at(1) - 10, at(2) - 10, at(3) - 10])]),
        }
    }

    async fn window_with(
        script: impl Fn(&str, &str) -> Option<String> + Send + Sync + 'static,
    ) -> (Result<Window, Failure>, FakePrometheus) {
        let fake = FakePrometheus::start(move |seen, _| {
            let (k, t) = kind(&seen.params["query"]);
            Reply::ok(script(k, t).unwrap_or_else(|| healthy(k, t)))
        })
        .await;
        let source =
            PrometheusSource::new(fake.client(), QueryTemplates::default(), &fake.config())
                .with_canary_weight(0.1);
        let w = source.window(&target(), T0, T0 + 180, 60).await;
        (w, fake)
    }

    #[tokio::test]
    async fn healthy_window_has_counts_and_per_bucket_latency() {
        let (w, fake) = window_with(|_, _| None).await;
        let w = w.unwrap();
        assert_eq!(w.step_seconds, 60);
        assert_eq!(w.canary_weight, 0.1);
        assert_eq!(w.latency_buckets_le, vec![0.1, 0.5]);
        assert_eq!(w.intervals.len(), 3);
        let c0 = w.intervals[0].canary.as_ref().unwrap();
        assert_eq!((c0.requests, c0.errors), (100, 1));
        assert_eq!(c0.latency_buckets, vec![60, 35, 5]);
        let b2 = w.intervals[2].baseline.as_ref().unwrap();
        assert_eq!((b2.requests, b2.errors), (900, 20));
        assert_eq!(b2.latency_buckets, vec![500, 380, 20]);
        // 4 templates x 2 tracks, each a range query over the 3 interval ends.
        let seen = fake.requests();
        assert_eq!(seen.len(), 8);
        for s in &seen {
            assert_eq!(s.path, "/api/v1/query_range");
            assert_eq!(s.params["start"], at(1).to_string());
            assert_eq!(s.params["end"], at(3).to_string());
            assert_eq!(s.params["step"], "60s");
            assert!(s.params["query"].contains(r#"service="checkout",namespace="shop""#));
        }
        assert!(seen.iter().any(|s| s.params["query"].contains("[1m]")));
    }

    #[tokio::test]
    async fn a_missing_step_is_missing_for_that_interval_only() {
        let (w, _) = window_with(|k, t| {
            (k == "requests" && t == "canary")
                .then(|| matrix(&[(&[], vec![(at(1), "100"), (at(3), "90")])]))
        })
        .await;
        let w = w.unwrap();
        assert!(w.intervals[0].canary.is_some());
        assert_eq!(w.intervals[1].canary, None);
        assert!(w.intervals[1].baseline.is_some());
        assert!(w.intervals[2].canary.is_some());
    }

    #[tokio::test]
    async fn nan_and_negative_increases_are_missing_not_zero() {
        let (w, _) = window_with(|k, t| match (k, t) {
            ("requests", "canary") => Some(matrix(&[(
                &[],
                vec![(at(1), "NaN"), (at(2), "-250"), (at(3), "+Inf")],
            )])),
            _ => None,
        })
        .await;
        let w = w.unwrap();
        assert!(w.intervals.iter().all(|i| i.canary.is_none()));
        assert!(w.intervals.iter().all(|i| i.baseline.is_some()));
    }

    #[tokio::test]
    async fn empty_results_are_missing_not_zero() {
        let (w, _) = window_with(|_, t| (t == "canary").then(|| matrix(&[]))).await;
        let w = w.unwrap();
        assert_eq!(w.intervals.len(), 3);
        assert!(
            w.intervals
                .iter()
                .all(|i| i.canary.is_none() && i.baseline.is_some())
        );
    }

    #[tokio::test]
    async fn errors_absent_while_requests_present_is_missing() {
        let (w, _) =
            window_with(|k, t| (k == "errors" && t == "canary").then(|| matrix(&[]))).await;
        assert!(w.unwrap().intervals.iter().all(|i| i.canary.is_none()));
    }

    #[tokio::test]
    async fn stale_series_is_missing() {
        // The canary's newest sample stopped advancing 5 minutes before the window's end.
        let (w, _) = window_with(|k, t| {
            (k == "last_sample" && t == "canary").then(|| {
                let stuck = (at(3) - 300).to_string();
                matrix(&[(
                    &[],
                    vec![(at(1), "1700000000"), (at(2), &stuck), (at(3), &stuck)],
                )])
            })
        })
        .await;
        let w = w.unwrap();
        assert!(w.intervals[0].canary.is_some());
        assert_eq!(w.intervals[1].canary, None);
        assert_eq!(w.intervals[2].canary, None);
    }

    #[tokio::test]
    async fn missing_latency_bucket_makes_latency_unknown_not_partial() {
        let (w, _) = window_with(|k, t| {
            (k == "latency" && t == "canary").then(|| {
                matrix(&[
                    (
                        &[("le", "+Inf")],
                        vec![(at(1), "100"), (at(2), "110"), (at(3), "90")],
                    ),
                    (&[("le", "0.5")], vec![(at(1), "95"), (at(3), "88")]),
                    (
                        &[("le", "0.1")],
                        vec![(at(1), "60"), (at(2), "70"), (at(3), "50")],
                    ),
                ])
            })
        })
        .await;
        let w = w.unwrap();
        let c1 = w.intervals[1].canary.as_ref().unwrap();
        assert_eq!(c1.requests, 110);
        assert!(c1.latency_buckets.is_empty());
        assert_eq!(
            w.intervals[0].canary.as_ref().unwrap().latency_buckets,
            vec![60, 35, 5]
        );
    }

    #[tokio::test]
    async fn unaggregated_template_is_a_permanent_error_naming_the_fix() {
        let (w, _) = window_with(|k, t| {
            (k == "requests" && t == "baseline").then(|| {
                matrix(&[
                    (&[("pod", "a")], vec![(at(1), "1")]),
                    (&[("pod", "b")], vec![(at(1), "1")]),
                ])
            })
        })
        .await;
        let e = w.unwrap_err();
        assert!(!e.is_transient(), "expected permanent, got {e:?}");
        let m = e.to_string();
        assert!(m.contains("2 series") && m.contains("sum("), "{m}");
    }

    #[tokio::test]
    async fn bad_query_fails_the_window_with_the_template_named() {
        let fake = FakePrometheus::start(|seen, _| {
            if seen.params["query"].contains("code=~") {
                Reply::status(
                    400,
                    r#"{"status":"error","errorType":"bad_data","error":"invalid parameter"}"#,
                )
            } else {
                Reply::ok(matrix(&[]))
            }
        })
        .await;
        let source =
            PrometheusSource::new(fake.client(), QueryTemplates::default(), &fake.config());
        let e = source
            .window(&target(), T0, T0 + 180, 60)
            .await
            .unwrap_err();
        assert!(
            !e.is_transient() && e.to_string().contains("errors query of track"),
            "{e:?}"
        );
    }

    #[test]
    fn cumulative_buckets_become_per_bucket_counts() {
        assert_eq!(per_bucket(&[10, 30, 30, 45]), vec![10, 20, 0, 15]);
        // A dip from separate extrapolation never yields a negative or wrapped count.
        assert_eq!(per_bucket(&[10, 9, 12]), vec![10, 0, 2]);
    }

    #[test]
    fn counts_reject_what_is_not_a_count() {
        assert_eq!(count(59.99999), Some(60));
        assert_eq!(count(-1e-9), Some(0));
        assert_eq!(count(-300.0), None);
        assert_eq!(count(f64::NAN), None);
        assert_eq!(count(f64::INFINITY), None);
    }

    #[test]
    fn steps_index_only_exact_evaluation_times() {
        let s = Steps {
            first_ms: 60_000,
            step_ms: 60_000,
            count: 3,
        };
        assert_eq!(s.index(60_000), Some(0));
        assert_eq!(s.index(180_000), Some(2));
        assert_eq!(s.index(240_000), None);
        assert_eq!(s.index(90_000), None);
        assert_eq!(s.index(0), None);
    }
}
