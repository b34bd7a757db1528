//! The Prometheus source against the real Prometheus server (the Debian `prometheus` package).
//!
//! The harness writes 30 minutes of known counters (requests by code, a latency histogram, a
//! baseline and a canary track) as OpenMetrics, turns them into TSDB blocks with
//! `promtool tsdb create-blocks-from openmetrics`, starts `prometheus` on a free loopback port
//! over that data directory, and reads windows through `PrometheusSource`: PromQL, HTTP, JSON and
//! `increase()` are all the real thing. Four services: `healthy` (canary as good as the baseline,
//! with a pod restart resetting its counters mid-window), `regressed` (canary 10x the errors and
//! slower), `vanished` (canary series stop at minute 20) and `flawless` (the canary never failed,
//! so no 5xx series exists: 0 errors, not missing data). Every track also counts failed
//! checkouts (1 % of its requests), read through an extra-metric query; a fifth service,
//! `checkout`, is healthy on errors and latency but fails 10x the checkouts. Expected numbers are
//! computed from the same plan that generated the series, not pasted.
//!
//! Without the Debian `prometheus` package it fails, naming the package (`support::tool`).

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::prometheus::{require_tools, start_prometheus};

use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::prometheus::{
    PromDuration, PrometheusSource, PrometheusSpec, QueryTemplates,
};
use deploybot::cli::analyze::{JudgeOutcome, judge_window};
use deploybot_core::canary::sample::{AnalysisTarget, MetricsSource, TrackSample, Window};
use deploybot_core::canary::settings::{ExtraMetricConfig, JudgeConfig};
use deploybot_core::clock::Clock as _;

const SCRAPE: i64 = 15;
const MINUTES: i64 = 30;
const LE: [&str; 6] = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
/// Share of requests per latency bucket (non-cumulative), in per mille.
const FAST: [u64; 6] = [500, 300, 150, 40, 10, 0];
const SLOW: [u64; 6] = [100, 200, 300, 250, 100, 50];

/// What one track of one service does in minute `m` (per scrape, i.e. per 15 s).
#[derive(Clone, Copy)]
struct Minute {
    requests: u64,
    errors: u64,
    latency: [u64; 6],
    failed_checkouts: u64,
}

/// The generating plan of one track: per minute, and optionally a restart and an end.
struct TrackPlan {
    service: &'static str,
    track: &'static str,
    minute: fn(i64) -> Minute,
    /// Counters restart from zero at this scrape (a pod restart).
    reset_at_minute: Option<i64>,
    /// No samples from this minute on (the target is gone).
    stop_at_minute: Option<i64>,
    /// Whether a `code="500"` series exists at all (a flawless pod never creates one).
    error_series: bool,
}

fn minute(requests: u64, errors: u64, shape: [u64; 6]) -> Minute {
    // Rounding leftovers go to the fastest bucket: put into +Inf they would give a small track a
    // heavier tail than a large one, and the judge rightly notices that.
    let mut latency = shape.map(|per_mille| requests * per_mille / 1000);
    latency[0] += requests - latency.iter().sum::<u64>();
    Minute {
        requests,
        errors,
        latency,
        failed_checkouts: requests / 100,
    }
}

/// The baseline of every service: about 1000 requests per scrape with a wobble, 0.5 % errors.
fn baseline(m: i64) -> Minute {
    minute(1000 + 40 * (m % 5) as u64, 5 + u64::from(m % 3 == 0), FAST)
}

/// A healthy canary: a tenth of the traffic, the same error rate and latency.
fn healthy_canary(m: i64) -> Minute {
    minute(100 + 4 * (m % 5) as u64, (m % 2) as u64, FAST)
}

/// A regressed canary: the same traffic, ten times the errors, slower.
fn regressed_canary(m: i64) -> Minute {
    minute(100 + 4 * (m % 5) as u64, 5, SLOW)
}

/// A canary that never failed a request: it has no `code="500"` series at all.
fn flawless_canary(m: i64) -> Minute {
    minute(100 + 4 * (m % 5) as u64, 0, FAST)
}

/// A canary as good as the baseline on errors and latency that fails 10x the checkouts.
fn checkout_canary(m: i64) -> Minute {
    let healthy = healthy_canary(m);
    Minute {
        failed_checkouts: healthy.requests / 10,
        ..healthy
    }
}

fn plans() -> Vec<TrackPlan> {
    let plan = |service, track, minute| TrackPlan {
        service,
        track,
        minute,
        reset_at_minute: None,
        stop_at_minute: None,
        error_series: true,
    };
    vec![
        plan("healthy", "baseline", baseline),
        TrackPlan {
            reset_at_minute: Some(15),
            ..plan("healthy", "canary", healthy_canary)
        },
        plan("regressed", "baseline", baseline),
        plan("regressed", "canary", regressed_canary),
        plan("vanished", "baseline", baseline),
        TrackPlan {
            stop_at_minute: Some(20),
            ..plan("vanished", "canary", healthy_canary)
        },
        plan("flawless", "baseline", baseline),
        TrackPlan {
            error_series: false,
            ..plan("flawless", "canary", flawless_canary)
        },
        plan("checkout", "baseline", baseline),
        plan("checkout", "canary", checkout_canary),
    ]
}

/// The samples of one counter of one track: `(unix seconds, value)` every 15 s from `start`.
/// The scrape at `start + 60 m + 15 k` (k = 1..4) carries an increment of minute `m`.
fn counter(p: &TrackPlan, start: i64, per_scrape: impl Fn(Minute) -> u64) -> Vec<(i64, u64)> {
    let mut value = 12_345u64; // counters rarely start at zero in a long-running process
    let mut out = vec![(start, value)];
    for m in 0..MINUTES {
        if p.stop_at_minute.is_some_and(|s| m >= s) {
            break;
        }
        for k in 1..=4 {
            let inc = per_scrape((p.minute)(m));
            value = if p.reset_at_minute == Some(m) && k == 2 {
                inc // restarted from zero and served one scrape's worth since
            } else {
                value + inc
            };
            out.push((start + 60 * m + SCRAPE * k, value));
        }
    }
    out
}

fn openmetrics(start: i64) -> String {
    let mut s = String::from("# TYPE http_requests counter\n");
    for p in plans() {
        let labels = format!(
            r#"service="{}",namespace="shop",environment="production",track="{}""#,
            p.service, p.track
        );
        for (code, f) in [
            (
                "200",
                (|m: Minute| m.requests - m.errors) as fn(Minute) -> u64,
            ),
            ("500", |m: Minute| m.errors),
        ] {
            if code == "500" && !p.error_series {
                continue;
            }
            for (t, v) in counter(&p, start, f) {
                writeln!(
                    s,
                    r#"http_requests_total{{{labels},code="{code}"}} {v} {t}"#
                )
                .unwrap();
            }
        }
    }
    s.push_str("# TYPE http_request_duration_seconds histogram\n");
    for p in plans() {
        let labels = format!(
            r#"service="{}",namespace="shop",environment="production",track="{}""#,
            p.service, p.track
        );
        for (i, le) in LE.iter().enumerate() {
            for (t, v) in counter(&p, start, |m| m.latency[..=i].iter().sum()) {
                writeln!(
                    s,
                    r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}} {v} {t}"#
                )
                .unwrap();
            }
        }
    }
    s.push_str("# TYPE checkout_failures counter\n");
    for p in plans() {
        let labels = format!(
            r#"service="{}",namespace="shop",environment="production",track="{}""#,
            p.service, p.track
        );
        for (t, v) in counter(&p, start, |m| m.failed_checkouts) {
            writeln!(s, r#"checkout_failures_total{{{labels}}} {v} {t}"#).unwrap();
        }
    }
    s.push_str("# EOF\n");
    s
}

/// What the window of a track must hold for minute `m`: 4 scrapes' worth.
fn expected(plan: fn(i64) -> Minute, m: i64) -> TrackSample {
    let x = plan(m);
    TrackSample {
        requests: 4 * x.requests,
        errors: 4 * x.errors,
        latency_buckets: x.latency.iter().map(|n| 4 * n).collect(),
        extra: Default::default(),
    }
}

fn target(service: &str) -> AnalysisTarget {
    AnalysisTarget {
        service: service.into(),
        namespace: "shop".into(),
        environment: "production".into(),
    }
}

fn source(url: &str) -> PrometheusSource {
    source_with(url, PromDuration::from_secs(120), QueryTemplates::default())
}

fn source_with(
    url: &str,
    staleness_limit: PromDuration,
    templates: QueryTemplates,
) -> PrometheusSource {
    let config = PrometheusSpec {
        url: Some(deploybot::config::base_url(url).unwrap()),
        timeout: PromDuration::from_secs(5),
        retries: 2,
        backoff: PromDuration::from_millis(50),
        max_backoff: PromDuration::from_millis(100),
        staleness_limit,
        ..PrometheusSpec::default()
    };
    PrometheusSource::from_config(&config, None, templates)
        .unwrap()
        .with_canary_weight(100.0 / 1100.0)
}

/// Errors over requests of one track, over the intervals where both tracks have data.
fn error_ratio(w: &Window, canary: bool) -> f64 {
    let (mut e, mut r) = (0u64, 0u64);
    for i in &w.intervals {
        if let (Some(b), Some(c)) = (&i.baseline, &i.canary) {
            let s = if canary { c } else { b };
            e += s.errors;
            r += s.requests;
        }
    }
    assert!(r > 0, "no complete interval in the window");
    e as f64 / r as f64
}

/// Share of requests slower than 0.25 s, over the intervals where both tracks have data.
fn slow_share(w: &Window, canary: bool) -> f64 {
    let (mut slow, mut all) = (0u64, 0u64);
    for i in &w.intervals {
        if let (Some(b), Some(c)) = (&i.baseline, &i.canary) {
            let s = if canary { c } else { b };
            slow += s.latency_buckets[3..].iter().sum::<u64>();
            all += s.latency_buckets.iter().sum::<u64>();
        }
    }
    slow as f64 / all as f64
}

#[tokio::test]
async fn real_prometheus_windows_show_healthy_regressed_and_vanished_canaries() {
    if !require_tools() {
        return; // missing, and opted out of failing: said so on stderr
    }
    let now = SystemClock.now().timestamp();
    // Recent data (inside the default retention), aligned to whole minutes.
    let end = now / 60 * 60 - 120;
    let start = end - 60 * MINUTES;
    let mut server = start_prometheus(&openmetrics(start)).await;
    let source = source(&server.url);

    // Healthy: every interval of both tracks, exactly as generated, through the pod restart.
    let healthy = source
        .window(&target("healthy"), start, end, 60)
        .await
        .unwrap();
    assert_eq!(healthy.intervals.len(), MINUTES as usize);
    assert_eq!(healthy.latency_buckets_le, vec![0.05, 0.1, 0.25, 0.5, 1.0]);
    for (m, interval) in healthy.intervals.iter().enumerate() {
        let m = m as i64;
        assert_eq!(
            interval.baseline.as_ref(),
            Some(&expected(baseline, m)),
            "healthy baseline, minute {m}"
        );
        assert_eq!(
            interval.canary.as_ref(),
            Some(&expected(healthy_canary, m)),
            "healthy canary, minute {m} (the counters reset in minute 15: no negative or huge increase)"
        );
    }

    // Regressed: the canary's error rate is 10x the baseline's and its latency is worse.
    let regressed = source
        .window(&target("regressed"), start, end, 60)
        .await
        .unwrap();
    assert!(
        regressed
            .intervals
            .iter()
            .all(|i| i.baseline.is_some() && i.canary.is_some())
    );
    let (hb, hc) = (error_ratio(&healthy, false), error_ratio(&healthy, true));
    let (rb, rc) = (
        error_ratio(&regressed, false),
        error_ratio(&regressed, true),
    );
    assert!(
        (0.5..2.0).contains(&(hc / hb)),
        "healthy: canary {hc} vs baseline {hb}"
    );
    assert!(rc > 5.0 * rb, "regressed: canary {rc} vs baseline {rb}");
    assert!(slow_share(&regressed, true) > 3.0 * slow_share(&regressed, false));
    assert!((slow_share(&healthy, true) - slow_share(&healthy, false)).abs() < 0.01);

    // Vanished: the canary's series stop after minute 19; later intervals are missing, not zero.
    let vanished = source
        .window(&target("vanished"), start, end, 60)
        .await
        .unwrap();
    for (m, interval) in vanished.intervals.iter().enumerate() {
        assert!(interval.baseline.is_some(), "vanished baseline, minute {m}");
        if m < 20 {
            assert_eq!(
                interval.canary.as_ref(),
                Some(&expected(healthy_canary, m as i64))
            );
        } else {
            assert_eq!(
                interval.canary, None,
                "vanished canary, minute {m}: must be missing"
            );
        }
    }

    // Staleness: with 7-minute intervals, the one in which the canary's series end (minute 20
    // of 21) still holds 6 minutes of samples, and increase() extrapolates them into a plausible
    // but short count. The staleness check (newest sample 60 s old > 30 s limit) reports it
    // missing; without the check the short count would pass for data.
    let strict = source_with(
        &server.url,
        PromDuration::from_secs(30),
        QueryTemplates::default(),
    );
    let sevens = strict
        .window(&target("vanished"), start, start + 4 * 420, 420)
        .await
        .unwrap();
    let canary: Vec<bool> = sevens
        .intervals
        .iter()
        .map(|i| i.canary.is_some())
        .collect();
    assert_eq!(canary, vec![true, true, false, false]);
    assert!(sevens.intervals.iter().all(|i| i.baseline.is_some()));
    let unchecked = QueryTemplates {
        last_sample: None,
        ..QueryTemplates::default()
    };
    let lax = source_with(&server.url, PromDuration::from_secs(30), unchecked);
    let sevens = lax
        .window(&target("vanished"), start, start + 4 * 420, 420)
        .await
        .unwrap();
    let short = sevens.intervals[2]
        .canary
        .as_ref()
        .expect("increase() extrapolates 6 of 7 minutes");
    let full: u64 = (14..21).map(|m| expected(healthy_canary, m).requests).sum();
    assert!(short.requests < full, "{} < {full}", short.requests);

    // Flawless: no 5xx series exists, and the default errors template reads that as 0 errors
    // (not as missing data) because the canary did serve requests.
    let flawless = source
        .window(&target("flawless"), start, end, 60)
        .await
        .unwrap();
    for (m, interval) in flawless.intervals.iter().enumerate() {
        assert_eq!(
            interval.canary.as_ref(),
            Some(&expected(flawless_canary, m as i64)),
            "flawless canary, minute {m}"
        );
    }

    // The judge, through the same function `deploybot analyze` uses.
    for (window, must_roll_back) in [(&healthy, false), (&regressed, true)] {
        let JudgeOutcome {
            decision, reason, ..
        } = judge_window(window, &Default::default());
        assert_eq!(
            decision == "rollback",
            must_roll_back,
            "{decision}: {reason}"
        );
    }

    // An extra metric: failed checkouts per request, queried by a template of its own and
    // judged like the error rate. `checkout` is healthy on errors and latency; only the extra
    // metric can roll it back.
    let checkouts = r#"sum(increase(checkout_failures_total{service="{{service}}",namespace="{{namespace}}",track="{{track}}"}[{{interval}}]))"#;
    let with_extra = source_with(
        &server.url,
        PromDuration::from_secs(120),
        QueryTemplates {
            extra: [("failed_checkouts".to_string(), checkouts.to_string())].into(),
            ..QueryTemplates::default()
        },
    );
    let judge_extra = JudgeConfig {
        extra: [("failed_checkouts".to_string(), ExtraMetricConfig::default())].into(),
        ..JudgeConfig::default()
    };
    for (service, canary_plan, must_roll_back) in [
        ("healthy", healthy_canary as fn(i64) -> Minute, false),
        ("checkout", checkout_canary, true),
    ] {
        let w = with_extra
            .window(&target(service), start, end, 60)
            .await
            .unwrap();
        for (m, interval) in w.intervals.iter().enumerate() {
            let (b, c) = (
                interval.baseline.as_ref().unwrap(),
                interval.canary.as_ref().unwrap(),
            );
            assert_eq!(
                c.extra.get("failed_checkouts"),
                Some(&(4 * canary_plan(m as i64).failed_checkouts)),
                "{service} canary, minute {m}"
            );
            assert_eq!(
                b.extra.get("failed_checkouts"),
                Some(&(4 * baseline(m as i64).failed_checkouts))
            );
        }
        let outcome = judge_window(&w, &judge_extra);
        assert_eq!(
            outcome.decision == "rollback",
            must_roll_back,
            "{service}: {} {}",
            outcome.decision,
            outcome.reason
        );
        if must_roll_back {
            assert!(
                outcome.reason.contains("failed_checkouts"),
                "{}",
                outcome.reason
            );
            // with the default judge (no extra metric) the same canary is not rolled back
            assert_ne!(
                judge_window(&w, &JudgeConfig::default()).decision,
                "rollback"
            );
        }
    }

    // Instant query and a bad query against the real server.
    let client = source.client();
    let newest = client
        .query(
            r#"max(timestamp(http_requests_total{service="healthy"}))"#,
            end,
        )
        .await
        .unwrap();
    assert_eq!(newest.series[0].points[0].value, end as f64);
    let bad = client
        .query("sum(http_requests_total{", end)
        .await
        .unwrap_err();
    assert!(
        !bad.is_transient() && bad.to_string().contains("bad_data"),
        "{bad:?}"
    );

    // `deploybot analyze` end to end: the binary, a config file, the real server.
    let report = analyze(&server.url, "regressed", end);
    assert_eq!(
        report.lines().filter(|l| l.contains(" | ")).count(),
        1 + MINUTES as usize,
        "{report}"
    );
    assert!(report.contains("canary weight: 0.091"), "{report}");
    assert!(report.contains("verdict: rollback"), "{report}");
    // Minute 0 of the regressed canary: 416 requests, 20 errors (4.81 %).
    assert!(report.contains("416      20    4.81"), "{report}");

    // Prometheus stopped: unavailable after the bounded retries, not zeros and not a hang.
    server.stop();
    let started = Instant::now();
    let down = tokio::time::timeout(
        Duration::from_secs(20),
        source.window(&target("healthy"), start, end, 60),
    )
    .await
    .expect("the source must give up after its bounded retries");
    assert!(
        matches!(&down, Err(f) if f.is_transient() && f.to_string().contains("3 attempts")),
        "{down:?}"
    );
    eprintln!(
        "prometheus down: reported unavailable after {:?}",
        started.elapsed()
    );
}

/// Runs `deploybot analyze` for `service` over the 30 minutes before `end`; returns stdout.
fn analyze(url: &str, service: &str, end: i64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploybot.yaml");
    let mut yaml = format!(
        "prometheus:\n  url: {url}\n  retries: 1\n  backoff: 50ms\ngitops:\n  repo_url: https://example.invalid/gitops.git\nservices:\n"
    );
    for name in ["healthy", "regressed"] {
        writeln!(
            yaml,
            "  - name: {name}\n    app_repo: example-org/{name}\n    namespace: shop\n    image: ghcr.io/example-org/{name}\n    environments:\n      - name: production"
        )
        .unwrap();
    }
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .arg("analyze")
        .arg("--config")
        .arg(&config)
        .args([
            "--service",
            service,
            "--env",
            "production",
            "--since",
            "30m",
        ])
        .args(["--canary-weight", "0.0909", "--until", &end.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "deploybot analyze failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
