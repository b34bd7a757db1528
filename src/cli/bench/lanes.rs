//! `deploybot bench lanes`: the emergency lane (issue 15.7). The time from a signed `/rollback`
//! delivery to its revert pushed, while pull-request assessments queued ahead of it wait on a
//! slow model, with the lanes `serve` runs and, in the same run, on a single FIFO line (the
//! worker before lanes).
//!
//! Real: the signed deliveries over HTTP, the intake and its listener, the store, the worker and
//! its scheduling, the model's HTTP round trip (a local server that answers after
//! `--llm-seconds`), and the revert (the GitOps writer reverting a bot commit and pushing it to
//! a bare repository). Standing in for the dispatcher: an assessment is the model call alone and
//! a `/rollback` is the revert alone, so what is measured is the wait in line, which is what the
//! lanes change.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{Notify, watch};

use crate::adapters::clock::SystemClock;
use crate::adapters::gitops::repo::{GitAuth, Remote, RemoteUrl};
use crate::adapters::gitops::writer::{BranchLocks, Identity, Writer};
use crate::adapters::store::{Store, StoredDelivery};
use crate::cli::bench::git::git;
use crate::shell::metrics::Metrics;
use crate::shell::webhook::intake::{Intake, router};
use crate::shell::webhook::worker::{self, Parts, Processed, Processor, Settings};
use deploybot_core::failure::Failure;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::event::Parsed;
use deploybot_core::webhook::signature;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Pull-request assessments queued ahead of the `/rollback`.
    #[arg(long, default_value_t = 50)]
    pub assessments: u64,
    /// Seconds the model takes to answer one assessment. The FIFO baseline takes about
    /// assessments x this.
    #[arg(long, default_value_t = 5.0)]
    pub llm_seconds: f64,
}

const SECRET: &str = "bench-secret";
const REPO: &str = "Codertocat/Hello-World";
/// The goal of issue 15.7.
const GOAL: Duration = Duration::from_secs(2);

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.llm_seconds.is_finite() && args.llm_seconds >= 0.0,
        "--llm-seconds must be a number of seconds"
    );
    let delay = Duration::from_secs_f64(args.llm_seconds);
    let model = slow_model(delay).await?;
    println!(
        "deploybot bench lanes: {} pull-request assessments queued against a model that answers \
         in {:.1} s, then a signed /rollback; time until its revert is pushed",
        args.assessments, args.llm_seconds
    );
    let config = config()?;
    let spec = &config.server.worker;
    let lanes = measure(Settings::from_spec(spec), &args, &model).await?;
    println!(
        "  lanes ({} workers, {} for commands):  {:>9.3} s",
        spec.workers,
        spec.command_workers,
        lanes.as_secs_f64()
    );
    let fifo = measure(Settings::fifo(spec), &args, &model).await?;
    println!(
        "  single FIFO (one at a time):         {:>9.3} s",
        fifo.as_secs_f64()
    );
    println!(
        "  FIFO / lanes: {:.0}x; goal under {} s: {}",
        fifo.as_secs_f64() / lanes.as_secs_f64().max(1e-6),
        GOAL.as_secs(),
        if lanes < GOAL { "met" } else { "MISSED" }
    );
    Ok(ExitCode::SUCCESS)
}

fn config() -> anyhow::Result<crate::config::Config> {
    Ok(crate::config::from_yaml(
        &format!("services:\n  - {{name: hello, app_repo: {REPO}}}\n"),
        Path::new("bench-lanes.yaml"),
    )?)
}

/// One run on a fresh store and GitOps repository: the assessments, then the `/rollback`.
async fn measure(settings: Settings, args: &BenchArgs, model: &str) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let (writer, bad) = gitops(dir.path())?;
    let config = Arc::new(config()?);
    let store = Store::open(&dir.path().join("deploybot.sqlite3"))?;
    let wake = Arc::new(Notify::new());
    let app = router(Arc::new(Intake::new(
        Arc::clone(&config),
        Secret::new(SECRET),
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::clone(&wake),
        Arc::new(SystemClock),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    let limits = config.server.limits.clone();
    let server = tokio::spawn(async move {
        crate::shell::webhook::listen::serve(
            listener,
            app,
            &limits,
            stopped.clone(),
            Duration::ZERO,
        )
        .await;
    });
    let processor = Arc::new(Bench {
        http: reqwest::Client::new(),
        model: model.to_string(),
        writer,
        bad: bad.clone(),
        reverted: Mutex::new(None),
        done: Notify::new(),
    });
    let parts = Parts {
        metrics: Arc::new(Metrics::default()),
        wake,
        clock: Arc::new(SystemClock),
        settings,
    };
    let work = tokio::spawn(worker::run(
        store.clone(),
        Arc::clone(&processor),
        parts,
        stop.subscribe(),
    ));

    let client = reqwest::Client::new();
    for n in 0..args.assessments {
        deliver(
            &client,
            &url,
            "pull_request",
            &format!("assess-{n}"),
            &pull_request(1000 + n)?,
        )
        .await?;
    }
    let done = processor.done.notified();
    let sent = Instant::now();
    deliver(&client, &url, "issue_comment", "rollback", &rollback(7)?).await?;
    let deadline =
        Duration::from_secs_f64(args.llm_seconds * (args.assessments + 1) as f64 + 120.0);
    tokio::time::timeout(deadline, done)
        .await
        .context("the /rollback was never acted on")?;
    let at = processor
        .reverted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .context("no revert recorded")?;
    // The assessments still waiting are not what is measured.
    let _ = stop.send(true);
    work.abort();
    server.abort();
    anyhow::ensure!(
        remote_tip(dir.path())? != bad,
        "the remote still has the commit to revert at its tip"
    );
    Ok(at.duration_since(sent))
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    event: &str,
    id: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let resp = client
        .post(url)
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            signature::sign(SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .with_context(|| format!("delivering {id}"))?;
    anyhow::ensure!(resp.status().as_u16() == 202, "{id}: {}", resp.status());
    Ok(())
}

/// A real `pull_request.opened` payload for pull request `number`.
fn pull_request(number: u64) -> anyhow::Result<Vec<u8>> {
    let base = include_str!("../../../fixtures/github-webhooks/pull_request/opened.payload.json");
    let mut v: serde_json::Value = serde_json::from_str(base)?;
    v["number"] = number.into();
    v["pull_request"]["number"] = number.into();
    Ok(serde_json::to_vec(&v)?)
}

/// A real `issue_comment.created` payload: `/rollback` on pull request `number`.
fn rollback(number: u64) -> anyhow::Result<Vec<u8>> {
    let base = include_str!("../../../fixtures/github-webhooks/issue_comment/created.payload.json");
    let mut v: serde_json::Value = serde_json::from_str(base)?;
    v["issue"]["number"] = number.into();
    v["issue"]["pull_request"] = serde_json::json!({"url": "https://api.github.com/pulls/1"});
    v["comment"]["body"] = "/rollback".into();
    Ok(serde_json::to_vec(&v)?)
}

/// An OpenAI-style endpoint that answers after `delay`; its URL.
async fn slow_model(delay: Duration) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            tokio::time::sleep(delay).await;
            r#"{"choices":[{"message":{"role":"assistant","content":"{}"}}]}"#
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// A bare GitOps repository whose tip is a bot commit (the release to roll back), and the
/// writer that reverts it; the tip's sha.
fn gitops(dir: &Path) -> anyhow::Result<(Writer, String)> {
    let remote = dir.join("gitops.git");
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    git(
        dir,
        &["init", "--quiet", "--bare", "-b", "main", "gitops.git"],
    )?;
    git(&work, &["init", "--quiet", "-b", "main"])?;
    for tag in ["v1", "v2"] {
        std::fs::write(
            work.join("deploy.yaml"),
            format!("kind: Deployment\nimage: ghcr.io/acme/shop:{tag}\n"),
        )?;
        git(&work, &["add", "deploy.yaml"])?;
        git(&work, &["commit", "--quiet", "-m", tag])?;
    }
    let remote_path = remote.to_str().context("a non-UTF-8 temp dir")?;
    git(&work, &["push", "--quiet", remote_path, "main"])?;
    let bad = remote_tip(dir)?;
    let writer = Writer::open(
        &dir.join("data"),
        Remote {
            url: RemoteUrl::parse(&format!("file://{remote_path}")).map_err(anyhow::Error::msg)?,
            auth: GitAuth::None,
        },
        // The identity the bench's git commits carry: the commits are the bot's.
        Identity {
            name: "bench".into(),
            email: "bench@bench.invalid".into(),
        },
        crate::config::Config::default().gitops.retry,
        BranchLocks::default(),
    )?;
    Ok((writer, bad))
}

fn remote_tip(dir: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args(["--git-dir", "gitops.git", "rev-parse", "main"])
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "reading the remote's main");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Assessments wait on the model; the `/rollback` reverts the release and pushes.
struct Bench {
    http: reqwest::Client,
    model: String,
    writer: Writer,
    bad: String,
    reverted: Mutex<Option<Instant>>,
    done: Notify,
}

impl Processor for Bench {
    async fn process(&self, d: &StoredDelivery, _parsed: &Parsed) -> Result<Processed, Failure> {
        match d.event.as_str() {
            "pull_request" => {
                let doing = "asking the model";
                self.http
                    .post(&self.model)
                    .json(&serde_json::json!({"model": "bench", "messages": []}))
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| Failure::transient(doing, e.to_string()))?;
                Ok(Processed::Done("assessed".into()))
            }
            "issue_comment" => {
                self.writer
                    .revert("main", &self.bad, "/rollback")
                    .await
                    .map_err(|e| Failure::permanent("reverting the release", e.to_string()))?;
                *self.reverted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                self.done.notify_one();
                Ok(Processed::Done("reverted".into()))
            }
            other => Ok(Processed::Ignored(format!(
                "{other}: not part of the bench"
            ))),
        }
    }
}
