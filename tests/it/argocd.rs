//! Argo CD: the adapter against a fake Argo CD API held to Argo CD's own API description
//! (`support::fake_argocd`), and the rollout's wait on a GitOps branch shared with others, on
//! the demo's real bare repository: a third writer's later commit carries deploybot's step (the
//! rollout proceeds, to completion while a third writer commits before every sync), a human's
//! overwrite of deploybot's value does not (the rollout pauses and
//! alerts, naming the file and the value), and environments read their own Argo CD and
//! Prometheus.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deploybot::adapters::argocd::{ArgoCdClient, ArgoCdServers};
use deploybot::adapters::secrets::Secrets;
use deploybot::adapters::store::Store;
use deploybot::config::Config;
use deploybot::demo::workspace::Workspace;
use deploybot::demo::{ReplayWindows, VirtualClock};
use deploybot::shell::driver::Clock;
use deploybot::shell::pipeline::{Gate, Pipeline, Release};
use deploybot::shell::runner::{LiveRunner, PrometheusWindows, RunnerParts};
use deploybot_core::gitops::live::{Liveness, liveness};
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::input::Effect;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Phase, Rollout};
use deploybot_core::secret::Secret;

use crate::support::fake_argocd::{self, App, FakeArgoCd, healthy, synced_at};

const REV: &str = "9f1c2e7d4b3a59e8c1d2f3a4b5c6d7e8f9a0b1c2";

/// The fake with one scripted Application, `checkout-production`.
async fn script(responses: Vec<(u16, String)>) -> FakeArgoCd {
    fake_argocd::serve(
        "argo-t0ken",
        vec![(
            "checkout-production",
            App::Script {
                responses,
                served: 0,
            },
        )],
    )
    .await
}

fn client(url: &str, token: &str) -> ArgoCdClient {
    ArgoCdClient::new(url, Secret::new(token), Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn a_pushed_revision_goes_from_out_of_sync_to_live() {
    let out_of_sync = healthy()
        .replace(r#""status": "Synced""#, r#""status": "OutOfSync""#)
        .replace(REV, "0000000000000000000000000000000000000000");
    let progressing = healthy().replace(r#""status": "Healthy""#, r#""status": "Progressing""#);
    let fake = script(vec![
        (200, out_of_sync),
        (200, progressing),
        (200, healthy()),
    ])
    .await;
    let argo = client(&fake.url, "argo-t0ken");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let app = argo
            .application("checkout-production", seen.is_empty())
            .await
            .unwrap();
        seen.push(match liveness(&app, REV, &[], &[]) {
            Liveness::Live { .. } => "live".to_string(),
            Liveness::Waiting(why) => format!("waiting: {why}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            format!(
                "waiting: application is at 0000000000000000000000000000000000000000 (OutOfSync), which does not contain {REV} yet"
            ),
            format!("waiting: {REV} is synced but Progressing"),
            "live".to_string(),
        ]
    );
    assert_eq!(
        fake.requests_for("checkout-production"),
        [
            "checkout-production?refresh=normal",
            "checkout-production?",
            "checkout-production?"
        ],
        "refresh asked once"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn errors_are_classified_and_never_show_the_token() {
    let url = script(vec![(503, "upstream connect error".into())])
        .await
        .url;
    let err = client(&url, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");

    let wrong = client(&url, "wrong-secret-value");
    let err = wrong
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains("wrong-secret-value"));

    let err = client(&url, "argo-t0ken")
        .application("nope", false)
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("not found"), "{err}");

    let url = script(vec![(200, "<html>sign in</html>".into())]).await.url;
    let err = client(&url, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an Application"), "{err}");

    // Nothing listening: a connection error is transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&dead, "argo-t0ken")
        .application("checkout-production", false)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// Runs git in `dir` with a fixed identity, failing the test on an error.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Other Writer",
            "-c",
            "user.email=other@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Someone else's commit on the demo repository's `main`: `edit` changes a clone, which is
/// pushed. Its SHA.
fn commit_as_other(
    ws: &Workspace,
    scratch: &Path,
    message: &str,
    edit: impl FnOnce(&Path),
) -> String {
    let clone = scratch.join(format!("other-{}", message.len()));
    let _ = std::fs::remove_dir_all(&clone);
    git(
        scratch,
        &[
            "clone",
            "-q",
            &ws.gitops.display().to_string(),
            &clone.display().to_string(),
        ],
    );
    edit(&clone);
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", message]);
    git(&clone, &["push", "-q", "origin", "HEAD:main"]);
    git(&clone, &["rev-parse", "HEAD"])
}

fn tip(ws: &Workspace) -> String {
    git(&ws.gitops, &["rev-parse", "main"])
}

/// The demo's config with Argo CD at `argocd` (token in `token_file`), and `extra` YAML added
/// under the production environment.
fn config(ws: &Workspace, argocd: &str, token_file: &Path, production: &str) -> Config {
    let text = ws
        .config_text()
        .replace(
            "  settle_time: 1m",
            &format!(
                "  url: {argocd}\n  token_file: {}\n  settle_time: 1m",
                token_file.display()
            ),
        )
        .replace(
            "      - name: production\n",
            &format!("      - name: production\n{production}"),
        );
    deploybot::config::from_yaml(&text, &ws.config_path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The generated healthy canary the demo replays (one-minute intervals, as the demo's config).
fn healthy_window() -> deploybot_core::canary::sample::Window {
    deploybot_core::canary::generate::suite(1, 7)
        .into_iter()
        .find(|g| g.family == "healthy-flat")
        .unwrap()
        .scenario
        .window
}

struct World {
    _tmp: tempfile::TempDir,
    scratch: std::path::PathBuf,
    ws: Workspace,
    config: Arc<Config>,
    clock: VirtualClock,
    pipeline: Pipeline<LiveRunner<ReplayWindows>>,
}

impl World {
    fn new(argocd: &FakeArgoCd, production: impl FnOnce(&Path) -> String) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&tmp.path().join("ws")).unwrap();
        let scratch = tmp.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let token = tmp.path().join("argocd-token");
        std::fs::write(&token, format!("{}\n", argocd.state.lock().unwrap().token)).unwrap();
        let extra = production(tmp.path());
        let clock = VirtualClock::starting_at(deploybot_core::rollout::testing::t(0));
        let config = Arc::new(config(&ws, &argocd.url, &token, &extra));
        std::fs::create_dir_all(&ws.data_dir).unwrap();
        let store = Store::open(&config.store.database_path()).unwrap();
        let mut parts = RunnerParts::offline(
            config.clone(),
            store.clone(),
            // A healthy canary, so that a rollout whose steps go live goes on to the next.
            ReplayWindows::new(vec![("1.5.0".into(), healthy_window())]),
            Arc::new(clock.clone()),
        );
        parts.argocd = ArgoCdServers::from_config(
            &config,
            Some(&Secret::new(argocd.state.lock().unwrap().token.clone())),
        )
        .unwrap();
        let pipeline = Pipeline::new(config.clone(), store, LiveRunner::new(parts));
        World {
            _tmp: tmp,
            scratch,
            ws,
            config,
            clock,
            pipeline,
        }
    }

    async fn start(&self, tag: &str, env: &str) -> String {
        let release = Release {
            service: "checkout".into(),
            image_tag: tag.into(),
            previous_tag: String::new(),
            changed_files: vec![],
            commit_message: format!("ship {tag}"),
            author: "dana".into(),
            pull_request: None,
            commit_sha: None,
        };
        let gate = Gate {
            risk_score: 0.5,
            strategy: Strategy::Canary25,
            approval_required: false,
        };
        self.pipeline
            .start(&release, gate, Some(env), "t", self.clock.now())
            .await
            .unwrap()
    }

    async fn tick(&self) {
        let now = self.clock.advance(30);
        self.pipeline.tick(now).await.unwrap();
    }

    fn rollout(&self, id: &str) -> Rollout {
        self.pipeline.store().get(id).unwrap().unwrap()
    }

    /// The inputs the rollout `id` took, by name, and the effects they asked for.
    fn trail(&self, id: &str) -> Vec<(String, Vec<Effect>)> {
        self.pipeline
            .store()
            .history("checkout")
            .unwrap()
            .into_iter()
            .filter(|e| e.rollout_id == id)
            .map(|e| (e.cause, e.effects))
            .collect()
    }
}

/// The demo with Argo CD, whose `checkout-staging` reports the initial commit (without
/// deploybot's step) synced and healthy until the test switches it to the branch tip; that
/// commit's SHA.
async fn staging_held_at_the_initial_commit() -> (FakeArgoCd, World, String) {
    let fake = fake_argocd::serve("argo-t0ken", vec![]).await;
    let w = World::new(&fake, |_| String::new());
    let initial = tip(&w.ws);
    let held = App::Script {
        responses: vec![(200, synced_at("checkout-staging", &initial))],
        served: 0,
    };
    fake.state
        .lock()
        .unwrap()
        .apps
        .insert("checkout-staging".into(), held);
    (fake, w, initial)
}

fn report_tip(fake: &FakeArgoCd, name: &str, ws: &Workspace) {
    fake.state.lock().unwrap().apps.insert(
        name.into(),
        App::Tip {
            git_dir: ws.gitops.clone(),
            branch: "main".into(),
            third_writer: None,
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_commit_of_a_third_writer_carries_the_step_and_the_rollout_proceeds() {
    let (fake, w, initial) = staging_held_at_the_initial_commit().await;

    let id = w.start("1.5.0", "staging").await;
    let ours = w.rollout(&id).commits[0].sha.clone();
    assert_ne!(ours, initial, "deploybot committed its first step");
    w.tick().await;
    assert!(
        w.trail(&id).iter().all(|(cause, _)| cause != "synced"),
        "not live while Argo CD is at a commit without the step: {:#?}",
        w.trail(&id)
    );

    // A third writer commits an unrelated service's file after deploybot's commit; Argo CD
    // syncs the branch tip, which contains deploybot's commit.
    let theirs = commit_as_other(&w.ws, &w.scratch, "payments: 2 replicas", |dir| {
        std::fs::create_dir_all(dir.join("apps/payments")).unwrap();
        std::fs::write(dir.join("apps/payments/replicas.yaml"), "replicas: 2\n").unwrap();
    });
    assert_ne!(theirs, ours);
    report_tip(&fake, "checkout-staging", &w.ws);
    w.tick().await;

    let trail = w.trail(&id);
    assert!(
        trail.iter().any(|(cause, _)| cause == "synced"),
        "the tip carries the step, so the step is live: {trail:#?}"
    );
    assert!(
        !trail
            .iter()
            .any(|(cause, _)| cause == "overwritten" || cause == "sync_failed"),
        "{trail:#?}"
    );
    assert!(
        fake.requests_for("checkout-staging").len() >= 2,
        "{:?}",
        fake.requests_for("checkout-staging")
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_rollout_completes_while_a_third_writer_commits_before_every_sync() {
    let fake = fake_argocd::serve("argo-t0ken", vec![]).await;
    let w = World::new(&fake, |_| String::new());
    let clone = w.scratch.join("third-writer");
    git(
        &w.scratch,
        &[
            "clone",
            "-q",
            &w.ws.gitops.display().to_string(),
            &clone.display().to_string(),
        ],
    );
    fake.state.lock().unwrap().apps.insert(
        "checkout-staging".into(),
        App::Tip {
            git_dir: w.ws.gitops.clone(),
            branch: "main".into(),
            third_writer: Some(clone),
        },
    );
    let id = w.start("1.5.0", "staging").await;
    for _ in 0..400 {
        if w.rollout(&id).phase() == Phase::Complete {
            break;
        }
        w.tick().await;
    }
    let r = w.rollout(&id);
    assert_eq!(r.phase(), Phase::Complete, "{r:#?}\n{:#?}", w.trail(&id));
    // Every step went live on a later commit than deploybot's: the third writer's, made before
    // each read of the Application.
    let synced = w.trail(&id).iter().filter(|(c, _)| c == "synced").count();
    assert_eq!(synced, r.commits.len(), "{:#?}", w.trail(&id));
    let authors = git(&w.ws.gitops, &["log", "--format=%an", "main"]);
    let theirs = authors.lines().filter(|a| *a == "Third Writer").count();
    assert!(
        theirs >= r.commits.len(),
        "{theirs} third-writer commits:\n{authors}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_overwrite_of_the_steps_value_pauses_and_alerts_naming_file_and_value() {
    let (fake, w, _) = staging_held_at_the_initial_commit().await;
    let id = w.start("1.5.0", "staging").await;
    let file = "apps/checkout/overlays/staging/deployment-canary.yaml";

    // A person puts another image on deploybot's canary after deploybot's commit.
    commit_as_other(&w.ws, &w.scratch, "canary: back to 1.4.2 by hand", |dir| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("checkout:1.5.0"), "{text}");
        std::fs::write(&path, text.replace("checkout:1.5.0", "checkout:1.4.2")).unwrap();
    });
    report_tip(&fake, "checkout-staging", &w.ws);
    w.tick().await;

    let r = w.rollout(&id);
    assert!(matches!(r.phase(), Phase::Paused { .. }), "{r:#?}");
    let trail = w.trail(&id);
    let (_, effects) = trail
        .iter()
        .find(|(cause, _)| cause == "overwritten")
        .unwrap_or_else(|| panic!("no overwrite in {trail:#?}"));
    let alert = effects
        .iter()
        .find_map(|e| match e {
            Effect::Notify { notice, .. } => Some(format!("{notice:?}")),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no alert among {effects:#?}"));
    for needle in [file, "1.4.2", "1.5.0", "overwritten"] {
        assert!(
            alert.contains(needle),
            "{needle:?} not in the alert: {alert}"
        );
    }
    assert!(
        !trail
            .iter()
            .any(|(cause, _)| cause == "synced" || cause == "reverted"),
        "someone else's version is neither judged nor reverted: {trail:#?}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// The same overwrite after the step went live: found before the next judgement, it pauses the
/// rollout instead of judging someone else's version under deploybot's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_under_the_analysis_pauses_before_the_next_judgement() {
    let fake = fake_argocd::serve("argo-t0ken", vec![]).await;
    let w = World::new(&fake, |_| String::new());
    report_tip(&fake, "checkout-staging", &w.ws);
    let id = w.start("1.5.0", "staging").await;
    let judged = |w: &World| {
        w.trail(&id)
            .iter()
            .filter(|(cause, _)| cause.starts_with("judged"))
            .count()
    };
    for _ in 0..40 {
        if judged(&w) >= 2 {
            break;
        }
        w.tick().await;
    }
    let before = judged(&w);
    assert!(before >= 2, "never judged: {:#?}", w.trail(&id));
    let file = "apps/checkout/overlays/staging/deployment-canary.yaml";
    commit_as_other(&w.ws, &w.scratch, "canary: back to 1.4.2 by hand", |dir| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("checkout:1.5.0", "checkout:1.4.2")).unwrap();
    });
    for _ in 0..6 {
        w.tick().await;
    }
    let r = w.rollout(&id);
    assert!(matches!(r.phase(), Phase::Paused { .. }), "{r:#?}");
    let trail = w.trail(&id);
    let at = trail
        .iter()
        .position(|(cause, _)| cause == "overwritten")
        .unwrap_or_else(|| panic!("no overwrite in {trail:#?}"));
    assert!(
        trail[at..]
            .iter()
            .all(|(cause, _)| !cause.starts_with("judged")),
        "nothing is judged after the overwrite: {trail:#?}"
    );
    assert_eq!(judged(&w), before, "{trail:#?}");
    let alert = format!("{:?}", trail[at].1);
    for needle in [file, "1.4.2", "1.5.0", "is not judged"] {
        assert!(alert.contains(needle), "{needle:?} not in {alert}");
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_read_their_own_argo_cd_and_prometheus() {
    let shared = fake_argocd::serve("shared-t0ken", vec![]).await;
    let production = fake_argocd::serve("prod-t0ken", vec![]).await;
    let prod_url = production.url.clone();
    let w = World::new(&shared, |dir| {
        let token = dir.join("prod-argocd-token");
        std::fs::write(&token, "prod-t0ken").unwrap();
        format!(
            "        argocd:\n          url: {prod_url}\n          token_file: {}\n          \
             application: \"prod-{{service}}\"\n        prometheus:\n          url: \
             http://prometheus.production.internal:9090\n",
            token.display()
        )
    });
    report_tip(&shared, "checkout-staging", &w.ws);
    report_tip(&production, "prod-checkout", &w.ws);

    let staging = w.start("1.5.0", "staging").await;
    let prod = w.start("1.5.0", "production").await;
    w.tick().await;

    assert!(!shared.requests_for("checkout-staging").is_empty());
    assert!(!production.requests_for("prod-checkout").is_empty());
    for (fake, other) in [
        (&shared, "prod-checkout"),
        (&production, "checkout-staging"),
    ] {
        assert!(
            fake.requests_for(other).is_empty(),
            "{other} asked of the wrong server"
        );
        assert!(fake.requests_for("checkout-production").is_empty());
    }
    for id in [&staging, &prod] {
        assert!(
            w.trail(id).iter().any(|(cause, _)| cause == "synced"),
            "{id}: {:#?}",
            w.trail(id)
        );
    }
    assert!(shared.violations().is_empty() && production.violations().is_empty());

    // Prometheus: production judges from its own server, staging from prometheus.url (unset
    // in the demo: no client, a clear refusal).
    let windows = PrometheusWindows::new(w.config.clone(), &Secrets::none());
    let own = windows.client_for(&w.rollout(&prod)).unwrap();
    assert_eq!(
        own.url().as_str(),
        "http://prometheus.production.internal:9090/"
    );
    let err = windows.client_for(&w.rollout(&staging)).unwrap_err();
    assert!(err.to_string().contains("prometheus.url"), "{err}");
}

#[test]
fn an_environments_own_argo_cd_needs_its_own_token_and_a_good_template() {
    let yaml = |extra: &str| {
        format!(
            "argocd:\n  url: https://argocd.example.com\n  token_env: ARGO_SHARED\n\
             services:\n  - name: checkout\n    app_repo: acme/checkout\n    image: ghcr.io/acme/checkout\n\
             \x20   environments:\n      - name: production\n        repo_url: https://github.com/acme/gitops.git\n\
             {extra}"
        )
    };
    let problems = |extra: &str| {
        let raw = deploybot_core::config::RawConfig::from_yaml(&yaml(extra)).unwrap();
        match deploybot_core::config::resolve(&raw, &deploybot_core::config::ShapeOnly) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let key = "services[0].environments[0]";
    let p = problems("        argocd:\n          url: https://argocd.prod.example.com\n");
    assert!(
        p.contains(&format!(
            "{key}.argocd.token_env or {key}.argocd.token_file: required"
        )),
        "{p}"
    );
    let p = problems("        argocd:\n          application: \"{team}-{service}\"\n");
    assert!(
        p.contains(&format!("{key}.argocd.application: only")),
        "{p}"
    );
    let p = problems("        prometheus:\n          url: ftp://prom\n");
    assert!(p.contains(&format!("{key}.prometheus.url")), "{p}");
    assert_eq!(
        problems("        argocd:\n          application: \"{service}-prod\"\n"),
        ""
    );
}
