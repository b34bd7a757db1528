//! `deploybot analyze`: read one service's canary window from Prometheus, print the per-interval
//! table (requests, errors, error rate and a p99 estimate per track) and the judge's verdict.
//!
//! It does not decide anything itself: the verdict comes from [`judge_window`], the one place
//! where this command (and the real-Prometheus test) call the canary judge.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::adapters::clock::SystemClock;
use crate::adapters::prometheus::{PromDuration, PrometheusClient, PrometheusSource};
use crate::adapters::secrets::Secrets;
use crate::config::SecretKey;
use deploybot_core::canary::JudgeConfig;
use deploybot_core::canary::sample::{AnalysisTarget, MetricsSource, TrackSample, Window};
use deploybot_core::clock::Clock as _;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Path of the YAML config file.
    #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
    pub config: PathBuf,
    /// Service name (services[].name).
    #[arg(long)]
    pub service: String,
    /// Environment name (services[].environments[].name).
    #[arg(long)]
    pub env: String,
    /// How far back the window reaches (Prometheus duration: 30m, 1h).
    #[arg(long, default_value = "30m")]
    pub since: PromDuration,
    /// Length of one interval; the window is cut into intervals of this length.
    #[arg(long, default_value = "1m")]
    pub interval: PromDuration,
    /// The canary's committed share of traffic (0..1), for the sample-ratio check. Without it the
    /// observed share is used, and that check cannot catch broken routing.
    #[arg(long)]
    pub canary_weight: Option<f64>,
    /// End of the window as unix seconds (default: now), to look at a past rollout.
    #[arg(long)]
    pub until: Option<i64>,
}

/// What the judge made of a window, in terms this command can print.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeOutcome {
    /// `rollback`, `promote`, `inconclusive` or `continue`.
    pub decision: String,
    /// The 0-based interval at which it was reached.
    pub interval: Option<usize>,
    pub reason: String,
}

/// Runs the canary judge over `window` interval by interval: the first decision other than
/// continue is final, as in a live rollout.
pub fn judge_window(window: &Window, config: &JudgeConfig) -> JudgeOutcome {
    let decision = deploybot_core::canary::replay(window, config);
    JudgeOutcome {
        decision: decision.verdict.name().to_string(),
        interval: decision.interval.checked_sub(1),
        reason: decision.reason(),
    }
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config::load_shape(&args.config)?;
    let secrets = Secrets::read(&config, &[SecretKey::PrometheusBearerToken])
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let service = config.service(&args.service).with_context(|| {
        let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        format!(
            "no service {:?} in {} (known: {})",
            args.service,
            args.config.display(),
            known.join(", ")
        )
    })?;
    let Some(env) = service.environment(&args.env) else {
        let known: Vec<&str> = service
            .environments()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        anyhow::bail!(
            "service {:?} has no environment {:?} (known: {})",
            service.name,
            args.env,
            known.join(", ")
        );
    };
    if let Some(w) = args.canary_weight
        && !(0.0..=1.0).contains(&w)
    {
        anyhow::bail!("--canary-weight: must be between 0 and 1, got {w}");
    }
    let step = args.interval.as_millis() / 1000;
    if step == 0 || !args.interval.as_millis().is_multiple_of(1000) {
        anyhow::bail!(
            "--interval: must be a whole number of seconds, at least 1s, got {}",
            args.interval
        );
    }
    if args.since.as_millis() < args.interval.as_millis() {
        anyhow::bail!(
            "--since ({}) must cover at least one --interval ({})",
            args.since,
            args.interval
        );
    }
    // The environment's own Prometheus, if it names one, else prometheus.url.
    let client = PrometheusClient::for_environment(
        &config,
        &service.name,
        env,
        secrets.get(SecretKey::PrometheusBearerToken).cloned(),
    )
    .map_err(anyhow::Error::msg)?;
    let mut source =
        PrometheusSource::new(client, service.analysis.queries.clone(), &config.prometheus);
    if let Some(w) = args.canary_weight {
        source = source.with_canary_weight(w);
    }
    let now = match args.until {
        Some(t) => t,
        None => SystemClock.now().timestamp(),
    };
    let step_i = step as i64;
    // Whole intervals only: a half-finished last interval would look like a traffic drop.
    let end = now / step_i * step_i;
    let start = end - (args.since.as_millis() / 1000) as i64;
    let target = AnalysisTarget {
        service: service.name.clone(),
        namespace: service.namespace.clone(),
        environment: args.env.clone(),
    };
    let window = source
        .window(&target, start, end, step)
        .await
        .with_context(|| {
            format!(
                "reading the canary window of {} in {} from {}",
                service.name,
                args.env,
                source.client().url()
            )
        })?;
    let outcome = judge_window(&window, &service.analysis.judge);
    print!(
        "{}",
        render(
            &target,
            start,
            &window,
            &outcome,
            args.canary_weight.is_some()
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// The report `analyze` prints: a header, one row per interval, the verdict.
pub fn render(
    target: &AnalysisTarget,
    start_unix: i64,
    window: &Window,
    outcome: &JudgeOutcome,
    weight_given: bool,
) -> String {
    let mut out = format!(
        "{} in {} (namespace {}): {} intervals of {}s from {}\n",
        target.service,
        target.environment,
        target.namespace,
        window.intervals.len(),
        window.step_seconds,
        utc(start_unix)
    );
    if weight_given {
        out.push_str(&format!("canary weight: {:.3}\n", window.canary_weight));
    } else {
        out.push_str(&format!(
            "canary weight: not given, observed share {:.3} used (sample-ratio check not meaningful)\n",
            window.canary_weight
        ));
    }
    // Extra metrics get one column each, baseline/canary counts, only when there are any.
    let extras: std::collections::BTreeSet<&String> = window
        .intervals
        .iter()
        .flat_map(|iv| [&iv.baseline, &iv.canary])
        .flatten()
        .flat_map(|s| s.extra.keys())
        .collect();
    let extra_header: String = extras
        .iter()
        .map(|name| format!(" | {:>15}", format!("{name} b/c")))
        .collect();
    out.push_str(&format!(
        "{:<9} | {:>10} {:>7} {:>7} {:>8} | {:>10} {:>7} {:>7} {:>8}{extra_header}\n",
        "end (UTC)", "base req", "errors", "err %", "p99", "canary req", "errors", "err %", "p99"
    ));
    let step = i64::try_from(window.step_seconds).unwrap_or(i64::MAX);
    for (i, interval) in window.intervals.iter().enumerate() {
        let end = start_unix + step * (i as i64 + 1);
        let count = |s: &Option<TrackSample>, name: &str| {
            s.as_ref()
                .and_then(|s| s.extra.get(name))
                .map_or("-".to_string(), u64::to_string)
        };
        let extra_cells: String = extras
            .iter()
            .map(|name| {
                let pair = format!(
                    "{}/{}",
                    count(&interval.baseline, name),
                    count(&interval.canary, name)
                );
                format!(" | {pair:>15}")
            })
            .collect();
        out.push_str(&format!(
            "{:<9} | {} | {}{extra_cells}\n",
            utc(end),
            cells(interval.baseline.as_ref(), &window.latency_buckets_le),
            cells(interval.canary.as_ref(), &window.latency_buckets_le)
        ));
    }
    let JudgeOutcome {
        decision,
        interval,
        reason,
    } = outcome;
    match interval {
        Some(i) => out.push_str(&format!(
            "verdict: {decision} at interval {} ({reason})\n",
            i + 1
        )),
        None => out.push_str(&format!("verdict: {decision} ({reason})\n")),
    }
    out
}

fn cells(sample: Option<&TrackSample>, le: &[f64]) -> String {
    let Some(s) = sample else {
        return format!("{:>10} {:>7} {:>7} {:>8}", "missing", "-", "-", "-");
    };
    let rate = if s.requests == 0 {
        "-".to_string()
    } else {
        format!("{:.2}", 100.0 * s.errors as f64 / s.requests as f64)
    };
    let p99 = match quantile(0.99, &s.latency_buckets, le) {
        Some(Quantile::Within(v)) => seconds(v),
        Some(Quantile::Above(v)) => format!(">{}", seconds(v)),
        None => "-".into(),
    };
    format!("{:>10} {:>7} {:>7} {:>8}", s.requests, s.errors, rate, p99)
}

fn seconds(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0}ms", v * 1000.0)
    } else {
        format!("{v:.2}s")
    }
}

fn utc(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// A quantile estimated from a histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantile {
    /// Inside a finite bucket, interpolated linearly as `histogram_quantile` does.
    Within(f64),
    /// In the `+Inf` bucket: only known to exceed the largest finite bound.
    Above(f64),
}

/// The `q` quantile of per-bucket counts (`le` bounds plus `+Inf`), like PromQL's
/// `histogram_quantile` (the first bucket starts at 0). `None` without latency data or requests.
pub fn quantile(q: f64, buckets: &[u64], le: &[f64]) -> Option<Quantile> {
    if buckets.len() != le.len() + 1 {
        return None;
    }
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if (below + n) as f64 >= rank && n > 0 {
            let Some(&upper) = le.get(i) else {
                return Some(Quantile::Above(le.last().copied().unwrap_or(0.0)));
            };
            let lower = if i == 0 { 0.0 } else { le[i - 1] };
            return Some(Quantile::Within(
                lower + (upper - lower) * (rank - below as f64) / n as f64,
            ));
        }
        below += n;
    }
    Some(Quantile::Above(le.last().copied().unwrap_or(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::canary::sample::Interval;

    #[test]
    fn quantile_interpolates_like_histogram_quantile() {
        let le = [0.1, 0.5, 1.0];
        // 100 requests: 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1]. p99 is rank 99, the
        // 9th of 10 in the last finite bucket: 0.5 + 0.5 * 9/10.
        assert_eq!(
            quantile(0.99, &[50, 40, 10, 0], &le),
            Some(Quantile::Within(0.95))
        );
        assert_eq!(
            quantile(0.5, &[50, 40, 10, 0], &le),
            Some(Quantile::Within(0.1))
        );
        assert_eq!(
            quantile(0.99, &[50, 40, 8, 2], &le),
            Some(Quantile::Above(1.0))
        );
        assert_eq!(quantile(0.99, &[0, 0, 0, 0], &le), None);
        assert_eq!(quantile(0.99, &[], &le), None);
    }

    #[test]
    fn report_shows_missing_as_missing_and_the_judge_inconclusive() {
        let sample = |r, e| TrackSample {
            requests: r,
            errors: e,
            latency_buckets: vec![r - 2, 1, 1],
            extra: Default::default(),
        };
        let window = Window {
            step_seconds: 60,
            canary_weight: 0.1,
            latency_buckets_le: vec![0.1, 0.5],
            intervals: vec![
                Interval {
                    baseline: Some(sample(1000, 5)),
                    canary: Some(sample(100, 1)),
                },
                Interval {
                    baseline: Some(sample(980, 4)),
                    canary: None,
                },
            ],
        };
        let target = AnalysisTarget {
            service: "checkout".into(),
            namespace: "shop".into(),
            environment: "production".into(),
        };
        let text = render(
            &target,
            1_700_000_040,
            &window,
            &judge_window(&window, &JudgeConfig::default()),
            true,
        );
        let golden = include_str!("../../fixtures/prometheus/analyze-report.txt");
        assert_eq!(text, golden, "got:\n{text}");
        let verdict = JudgeOutcome {
            decision: "rollback".into(),
            interval: Some(1),
            reason: "errors: canary 5.0 % vs baseline 0.5 %".into(),
        };
        let text = render(&target, 1_700_000_040, &window, &verdict, false);
        assert!(
            text.contains("verdict: rollback at interval 2 (errors: canary"),
            "{text}"
        );
        assert!(text.contains("observed share"), "{text}");
        // extra metrics get a column of baseline/canary counts, "-" where missing
        let mut with_orders = window.clone();
        for (iv, (b, c)) in with_orders
            .intervals
            .iter_mut()
            .zip([(Some(200), Some(18)), (Some(190), None)])
        {
            for (s, n) in [(&mut iv.baseline, b), (&mut iv.canary, c)] {
                if let (Some(s), Some(n)) = (s.as_mut(), n) {
                    s.extra.insert("orders".into(), n);
                }
            }
        }
        let text = render(&target, 1_700_000_040, &with_orders, &verdict, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].ends_with(" |      orders b/c"), "{text}");
        assert!(lines[3].ends_with(" |          200/18"), "{text}");
        assert!(lines[4].ends_with(" |           190/-"), "{text}");
    }

    /// Runs `analyze` with a config whose Prometheus URL points nowhere: every case below must
    /// fail on its input before any request is sent.
    async fn analyze_error(yaml: &str, f: impl FnOnce(&mut AnalyzeArgs)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut args = AnalyzeArgs {
            config,
            service: "checkout".into(),
            env: "production".into(),
            since: PromDuration::from_secs(1800),
            interval: PromDuration::from_secs(60),
            canary_weight: None,
            until: Some(1_700_000_000),
        };
        f(&mut args);
        format!("{:#}", run(args).await.unwrap_err())
    }

    const CONFIG: &str = "prometheus:\n  url: http://127.0.0.1:1\ngitops:\n  repo_url: https://example.invalid/g.git\nservices:\n  - name: checkout\n    app_repo: o/checkout\n    image: ghcr.io/o/checkout\n    environments:\n      - name: production\n";

    #[tokio::test]
    async fn bad_arguments_are_named_before_any_query() {
        let e = analyze_error(CONFIG, |a| a.service = "cart".into()).await;
        assert!(
            e.contains("no service \"cart\"") && e.contains("known: checkout"),
            "{e}"
        );
        let e = analyze_error(CONFIG, |a| a.env = "prod".into()).await;
        assert!(
            e.contains("no environment \"prod\"") && e.contains("known: production"),
            "{e}"
        );
        let e = analyze_error(CONFIG, |a| a.canary_weight = Some(5.0)).await;
        assert!(e.contains("--canary-weight"), "{e}");
        let e = analyze_error(CONFIG, |a| a.since = PromDuration::from_secs(30)).await;
        assert!(e.contains("--since"), "{e}");
        let e = analyze_error(CONFIG, |a| a.interval = PromDuration::from_millis(1500)).await;
        assert!(e.contains("--interval"), "{e}");
        let no_url = CONFIG.replace("prometheus:\n  url: http://127.0.0.1:1\n", "");
        let e = analyze_error(&no_url, |_| {}).await;
        assert!(e.contains("prometheus.url: not set"), "{e}");
    }

    #[tokio::test]
    async fn an_environment_is_analysed_on_its_own_prometheus() {
        // Nothing listens on either port; the error names the server that was asked.
        let own = CONFIG
            .replace(
                "      - name: production\n",
                "      - name: production\n        prometheus:\n          url: http://127.0.0.1:2/prom\n",
            )
            .replace("  url: http://127.0.0.1:1\n", "  url: http://127.0.0.1:1\n  retries: 0\n");
        let e = analyze_error(&own, |_| {}).await;
        assert!(e.contains("127.0.0.1:2/prom"), "{e}");
        assert!(!e.contains("127.0.0.1:1"), "{e}");
        let no_top = own.replace("  url: http://127.0.0.1:1\n", "");
        let e = analyze_error(&no_top, |_| {}).await;
        assert!(e.contains("127.0.0.1:2/prom"), "{e}");
    }
}
