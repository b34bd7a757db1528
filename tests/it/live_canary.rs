//! The canary judged live, in real time: a small exporter serves the counters of a canary and
//! its baseline, split as the committed HTTPRoute says, the real Prometheus scrapes it every
//! 500 ms, and a rollout of the demo's repository (`file://`) is judged through PromQL on
//! 2-second intervals (the sample-ratio check included). A healthy canary is
//! promoted and verified; after the exporter turns the canary bad (10 % errors), the next
//! rollout is reverted through git. Wall-clock time, about half a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deploybot::adapters::secrets::Secrets;
use deploybot::adapters::store::Store;
use deploybot::config::Config;
use deploybot::demo::workspace::Workspace;
use deploybot::shell::driver::{Clock, SystemClock};
use deploybot::shell::pipeline::{Gate, Pipeline, Release};
use deploybot::shell::runner::{LiveRunner, PrometheusWindows, RunnerParts};
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Phase, Rollout};

use crate::support::prometheus::{require_tools, start_scraping};

/// Counters that grow with wall time like a real service's: 8000 requests per second per
/// environment, split between the tracks as the committed HTTPRoute says (the test copies the
/// canary weight from git after every tick, as Argo CD and the mesh would apply it), with 1 %
/// errors everywhere, or 10 % on the canary once `turn_bad` was called.
#[derive(Clone, Default)]
struct Exporter {
    state: Arc<std::sync::Mutex<Counters>>,
    bad: Arc<AtomicBool>,
}

#[derive(Default)]
struct Counters {
    last: Option<Instant>,
    /// Canary share in percent, per environment (staging, production).
    share: [f64; 2],
    /// (requests, errors) per environment and track (baseline, canary).
    totals: [[(f64, f64); 2]; 2],
}

const ENVS: [&str; 2] = ["staging", "production"];

impl Exporter {
    fn set_share(&self, env: usize, percent: u8) {
        self.advance();
        self.state.lock().unwrap().share[env] = f64::from(percent);
    }

    /// Accrues traffic since the last call at the shares then in force.
    fn advance(&self) {
        let bad = self.bad.load(Ordering::SeqCst);
        let mut st = self.state.lock().unwrap();
        let now = Instant::now();
        let dt = st.last.map_or(0.0, |l| (now - l).as_secs_f64());
        st.last = Some(now);
        for env in 0..2 {
            let share = st.share[env] / 100.0;
            for (track, fraction) in [(0, 1.0 - share), (1, share)] {
                let requests = 8000.0 * fraction * dt;
                let error_rate = if track == 1 && bad { 0.10 } else { 0.01 };
                let t = &mut st.totals[env][track];
                t.0 += requests;
                t.1 += requests * error_rate;
            }
        }
    }

    fn render(&self) -> String {
        self.advance();
        let st = self.state.lock().unwrap();
        let mut out = String::from("# TYPE http_requests_total counter\n");
        for (e, env) in ENVS.iter().enumerate() {
            for (k, track) in ["baseline", "canary"].iter().enumerate() {
                let (requests, errors) = st.totals[e][k];
                for (code, v) in [("200", requests - errors), ("500", errors)] {
                    out.push_str(&format!(
                        "http_requests_total{{service=\"checkout\",environment=\"{env}\",track=\"{track}\",code=\"{code}\"}} {}\n",
                        v.floor()
                    ));
                }
            }
        }
        out
    }

    fn turn_bad(&self) {
        self.advance();
        self.bad.store(true, Ordering::SeqCst);
    }
}

/// The canary weight the HTTPRoute of `env` carries on `main`.
fn committed_weight(gitops: &std::path::Path, env: &str) -> u8 {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(gitops)
        .args([
            "show",
            &format!("main:apps/checkout/overlays/{env}/httproute.yaml"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("# deploybot: canary weight"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|w| w.parse().ok())
        .unwrap()
}

async fn start_exporter() -> (String, Exporter) {
    let exporter = Exporter::default();
    let e = exporter.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let e = e.clone();
            async move { e.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, exporter)
}

fn config(ws: &Workspace, prometheus: &str) -> Config {
    let sel = r#"service="{{service}}",environment="{{environment}}",track="{{track}}""#;
    let analysis = format!(
        r#"    analysis:
      judge:
        min_intervals: 3
        # This synthetic service has no interval-to-interval wobble; the default prior (a real
        # service's, worth four intervals) would make promotion take a minute of real time.
        errors:
          dispersion_prior: 0.02
        latency:
          mode: dry-run
      queries:
        requests: 'sum(increase(http_requests_total{{{sel}}}[{{{{interval}}}}]))'
        errors: 'sum(increase(http_requests_total{{{sel},code=~"5.."}}[{{{{interval}}}}])) or 0 * sum(increase(http_requests_total{{{sel}}}[{{{{interval}}}}]))'
        latency: null
        last_sample: 'max(timestamp(http_requests_total{{{sel}}}))'
    rollout:
      canary_plan: [25, 100]
      bake: 0s
      analysis_interval: 2s
      verification: 4s
      max_inconclusive_intervals: 3
"#
    );
    let text = ws.config_text();
    let (head, _) = text.split_once("    rollout:\n").unwrap();
    let text = format!("{head}{analysis}")
        .replace("  settle_time: 1m", "  settle_time: 1s")
        .replace(
            "store:\n",
            &format!("prometheus:\n  url: {prometheus}\n  retries: 1\n  backoff: 50ms\n  max_backoff: 100ms\n\nstore:\n"),
        );
    // Resolving is the validity check: any problem is an error here.
    deploybot::config::from_yaml(&text, &ws.config_path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Starts `release` in staging and ticks (copying the committed weights into the exporter)
/// until `done` holds for its rollout, for at most a minute.
async fn ship_until(
    pipeline: &Pipeline<LiveRunner<PrometheusWindows>>,
    (exporter, gitops): (&Exporter, &std::path::Path),
    release: &Release,
    what: &str,
    done: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let gate = Gate {
        risk_score: 0.5,
        strategy: Strategy::Canary25,
        approval_required: false,
    };
    let id = &pipeline
        .start(release, gate, Some("staging"), "t", SystemClock.now())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        pipeline.tick(SystemClock.now()).await.unwrap();
        for (e, env) in ENVS.iter().enumerate() {
            exporter.set_share(e, committed_weight(gitops, env));
        }
        let r = pipeline.store().get(id).unwrap().unwrap();
        if done(&r) {
            return r;
        }
    }
    panic!(
        "{what}: not within 60 s: {:#?}",
        pipeline.store().get(id).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scraped_canary_is_promoted_healthy_and_reverted_bad() {
    if !require_tools() {
        return; // missing, and opted out of failing: said so on stderr
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("deploybot::shell::runner=info")
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::create(&tmp.path().join("ws")).unwrap();
    let (target, exporter) = start_exporter().await;
    let prometheus = start_scraping(&target, "500ms").await;
    let config = Arc::new(config(&ws, &prometheus.url));
    std::fs::create_dir_all(&ws.data_dir).unwrap();
    let store = Store::open(&config.store.database_path()).unwrap();
    let runner = LiveRunner::new(RunnerParts::offline(
        config.clone(),
        store.clone(),
        PrometheusWindows::new(config.clone(), &Secrets::none()),
        Arc::new(SystemClock),
    ));
    let pipeline = Pipeline::new(config.clone(), store, runner);
    let release = |tag: &str| Release {
        service: "checkout".into(),
        image_tag: tag.into(),
        previous_tag: String::new(),
        changed_files: vec![],
        commit_message: format!("ship {tag}"),
        author: "dana".into(),
        pull_request: None,
        commit_sha: None,
    };
    // Let Prometheus collect a few scrapes first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let r = ship_until(
        &pipeline,
        (&exporter, &ws.gitops),
        &release("1.5.0"),
        "healthy canary complete",
        |r| r.phase() == Phase::Complete,
    )
    .await;
    assert_eq!(r.commits.len(), 2, "25 %, then 100 %: {r:#?}");
    assert!(
        matches!(
            r.latest.as_ref().map(|s| &s.observation),
            Some(deploybot_core::rollout::Observation::Promote)
        ),
        "{r:#?}"
    );

    exporter.turn_bad();
    let r = ship_until(
        &pipeline,
        (&exporter, &ws.gitops),
        &release("1.6.0"),
        "bad canary reverted",
        |r| r.reverted_as().is_some(),
    )
    .await;
    assert_eq!(r.phase(), Phase::RolledBack);
    assert_eq!(
        r.commits.len(),
        1,
        "never promoted past its first step: {r:#?}"
    );
    let evidence = &r.rollback().unwrap().0.evidence;
    assert!(evidence.contains("canary"), "{evidence}");
    assert!(exporter.bad.load(Ordering::SeqCst));
    let log = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&ws.gitops)
        .args(["log", "-1", "--format=%B", "main"])
        .output()
        .unwrap();
    let newest = String::from_utf8_lossy(&log.stdout);
    assert!(
        newest.contains("Revert") && newest.contains("Evidence: canary"),
        "{newest}"
    );
}
