//! The status page in a real browser: a store seeded through its own API (a rollout created,
//! driven by `step` and saved transition by transition, its judge windows recorded as metric
//! points), the page router served on a loopback port, and Debian's headless Chromium loading
//! it: the DOM it builds must show the rollout and its charts, and the screenshot must exist.
//!
//! Chromium is required (`support::tool`): CI installs it (`.ci/run`), and a machine without it
//! fails this test naming the package rather than passing without having looked.

use crate::support::rollout::t;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deploybot::adapters::store::Store;
use deploybot_core::canary::sample::{Interval, TrackSample, Window};
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::metrics::points_from_window;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{
    Input, Observation, Outcome, Phase, Progress, Release, Rollout, Settings, Step, Trigger,
    Weight, step,
};

const LE: [f64; 5] = [0.05, 0.1, 0.25, 0.5, 1.0];
/// What a finished, rolled-back rollout's page must not let through.
const EVIL: &str = "<script>document.title='pwned'</script>";

fn trigger(id: &str, service: &str, message: &str) -> Trigger {
    let base = crate::support::rollout::trigger(id, service, "production");
    Trigger {
        release: Release {
            previous_tag: "sha-1111111".into(),
            changed_files: vec!["db/migrations/0042_orders.sql".into()],
            commit_message: message.into(),
            commit_sha: Some("9f8e7d6c5b4a39281706f5e4d3c2b1a098765432".into()),
            ..base.release
        },
        ..base
    }
}

/// Steps `r` with `input` at `at`, saves the transition, and insists it was accepted.
fn apply(store: &Store, r: Rollout, input: Input, at: i64) -> Rollout {
    let tr = step(&r, input.clone(), t(at));
    assert_ne!(
        tr.outcome,
        Outcome::Rejected,
        "{input:?} at {at}: {}",
        tr.note
    );
    store.save(&r, &input, &tr).unwrap();
    tr.next
}

/// A window of `rates.len()` intervals of `step` seconds: canary and baseline error rates per
/// interval and latency buckets whose p99 lands on the given bucket index.
fn window(rates: &[(f64, Option<f64>)], canary_p99: usize) -> Window {
    let track = |rate: f64, p99: usize| TrackSample {
        requests: 2000,
        errors: (rate * 2000.0).round() as u64,
        latency_buckets: (0..=LE.len())
            .map(|i| match i {
                0 => 1900,
                i if i == p99 => 100,
                _ => 0,
            })
            .collect(),
        extra: Default::default(),
    };
    Window {
        step_seconds: 30,
        canary_weight: 0.1,
        latency_buckets_le: LE.to_vec(),
        intervals: rates
            .iter()
            .map(|(c, b)| Interval {
                canary: Some(track(*c, canary_p99)),
                baseline: b.map(|b| track(b, 2)),
            })
            .collect(),
    }
}

/// The known rollout: 10 % healthy and promoted, 25 % regressing and rolled back, reverted.
/// And a second one, still live, of another service.
fn seed(store: &Store) -> (String, String) {
    let settings = Settings {
        bake_secs: 120,
        analysis_interval_secs: 60,
        ..Settings::default()
    };
    let id = "pr-42-production".to_string();
    let mut r = Rollout::new(
        trigger(
            &id,
            "checkout",
            &format!("Add orders index {EVIL}\n\nSplits the orders table."),
        ),
        settings.clone(),
        t(0),
    );
    store.create(&r, "@alice").unwrap();
    r = apply(
        store,
        r,
        Input::Assessed {
            risk_score: 0.62,
            strategy: Strategy::Canary10,
            approval_required: false,
        },
        10,
    );
    let w10 = Weight::new(10).unwrap();
    r = apply(
        store,
        r,
        Input::Committed {
            sha: "a1b2c3d".into(),
            weight: w10,
        },
        20,
    );
    r = apply(
        store,
        r,
        Input::Synced {
            revision: "a1b2c3d".into(),
        },
        60,
    );
    r = apply(store, r, Input::judged(Observation::Continue), 120);
    r = apply(store, r, Input::judged(Observation::Continue), 180);
    // Healthy at 10 %, one baseline scrape missing.
    let healthy = window(
        &[
            (0.004, Some(0.005)),
            (0.006, Some(0.005)),
            (0.005, None),
            (0.004, Some(0.006)),
            (0.005, Some(0.004)),
            (0.006, Some(0.005)),
        ],
        2,
    );
    store
        .record_metrics(&id, &points_from_window(&healthy, t(240), w10))
        .unwrap();
    r = apply(store, r, Input::judged(Observation::Promote), 240);
    let Some(Step {
        weight: next,
        progress: Progress::Committing { .. },
    }) = r.step().cloned()
    else {
        panic!("promote did not commit the next step: {:?}", r.state);
    };
    r = apply(
        store,
        r,
        Input::Committed {
            sha: "e4f5a6b".into(),
            weight: next,
        },
        250,
    );
    r = apply(
        store,
        r,
        Input::Synced {
            revision: "e4f5a6b".into(),
        },
        300,
    );
    r = apply(store, r, Input::judged(Observation::Continue), 360);
    r = apply(store, r, Input::judged(Observation::Continue), 420);
    let regressing = window(
        &[
            (0.008, Some(0.005)),
            (0.012, Some(0.004)),
            (0.019, Some(0.005)),
            (0.027, Some(0.006)),
            (0.036, Some(0.005)),
            (0.044, Some(0.005)),
        ],
        4,
    );
    store
        .record_metrics(&id, &points_from_window(&regressing, t(480), next))
        .unwrap();
    r = apply(
        store,
        r,
        Input::judged(Observation::Rollback {
            metric: "error_rate".into(),
            evidence: "canary 4.4% vs baseline 0.5% (e-value 212)".into(),
        }),
        480,
    );
    r = apply(
        store,
        r,
        Input::Reverted {
            sha: "f00dbee".into(),
        },
        490,
    );
    assert_eq!(r.phase(), Phase::RolledBack);

    let live_id = "pr-7-production".to_string();
    let live = Rollout::new(
        trigger(&live_id, "cart", "Bump the HTTP client"),
        settings,
        t(400),
    );
    store.create(&live, "@bob").unwrap();
    apply(
        store,
        live,
        Input::Assessed {
            risk_score: 0.2,
            strategy: Strategy::Canary5,
            approval_required: false,
        },
        410,
    );
    (id, live_id)
}

/// Runs headless Chromium (`browser`) with `args` then `url`; returns its stdout. Bounded in time.
async fn chromium(browser: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("chromium {args:?} {url}: no answer within 90 s"))
        .unwrap_or_else(|e| panic!("starting {}: {e}", browser.display()));
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("chromium prints UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_seeded_rollout_with_its_charts() {
    let Some(browser) = crate::support::tool::require("chromium", "chromium") else {
        return; // missing, and opted out of failing: said so on stderr
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("deploybot.sqlite3")).unwrap();
    let (id, live_id) = seed(&store);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = deploybot::shell::status_page::page_router(
        store.clone(),
        Arc::new(deploybot::adapters::clock::SystemClock),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The headers keep the page inert; an unknown id is a 404 page, not an error.
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{base}/rollouts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let res = http
        .get(format!("{base}/rollouts/no-such%3Cb%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("no-such&lt;b&gt;") && !body.contains("<b>"),
        "{body}"
    );

    let profile = dir.path().join("chromium-profile");

    // The index: the live rollout under "In progress", the finished one under "Recent".
    let dom = chromium(
        &browser,
        &profile,
        &["--dump-dom".into()],
        &format!("{base}/"),
    )
    .await;
    let in_progress = dom.find("In progress").expect("In progress section");
    let recent = dom.find("Recent").expect("Recent section");
    let cart = dom
        .find(&format!("href=\"/rollouts/{live_id}\""))
        .expect("live rollout listed");
    let checkout = dom
        .find(&format!("href=\"/rollouts/{id}\""))
        .expect("finished rollout listed");
    assert!(
        in_progress < cart && cart < recent && recent < checkout,
        "{dom}"
    );
    assert!(dom.contains("phase-rolled_back"), "{dom}");

    // The rollout page as the browser built it.
    let url = format!("{base}/rollouts/{id}");
    let dom = chromium(&browser, &profile, &["--dump-dom".into()], &url).await;
    assert!(dom.contains("checkout → production"), "{dom}");
    assert!(dom.contains("rolled_back"), "{dom}");
    assert!(dom.contains("canary 4.4% vs baseline 0.5%"), "{dom}");
    assert!(
        dom.contains("<code>9f8e7d6c5b4a</code>"),
        "app commit: {dom}"
    );
    // The commit message's script is text on the page, not an element.
    assert!(
        !dom.contains("<script"),
        "a script element reached the DOM:\n{dom}"
    );
    assert!(dom.contains("Add orders index &lt;script&gt;"), "{dom}");
    // Two charts (error rate, p99 latency), each with canary and baseline lines and the marks.
    assert_eq!(dom.matches("<svg").count(), 2, "{dom}");
    let polylines = dom.matches("<polyline points=\"").count();
    assert!(polylines >= 4, "{polylines} polylines:\n{dom}");
    assert!(dom.contains(">rollback (error_rate)<"), "{dom}");
    assert!(dom.contains(">promote<"), "{dom}");
    // The revert came 10 s after the rollback: its label would overlap, its line and tooltip stay.
    assert!(dom.contains("10:08:10 revert</title>"), "{dom}");
    // The timeline holds every audit row of this rollout.
    let rows = store
        .history("checkout")
        .unwrap()
        .into_iter()
        .filter(|e| e.rollout_id == id)
        .count();
    assert_eq!(dom.matches("<td class=\"nowrap mono\">").count(), rows);

    // And a screenshot of it.
    let png: PathBuf = dir.path().join("status-page.png");
    chromium(
        &browser,
        &profile,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
        ],
        &url,
    )
    .await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    // A near-blank 1280x2000 page is about 12 KB of PNG; text and two charts are far more.
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("DEPLOYBOT_SCREENSHOT_DIR") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join("status-page.png")).unwrap();
        // For people looking: the index too.
        let index = Path::new(&keep).join("status-index.png");
        chromium(
            &browser,
            &profile,
            &[
                format!("--screenshot={}", index.display()),
                "--window-size=1280,900".into(),
            ],
            &format!("{base}/"),
        )
        .await;
    }
    server.abort();
}
