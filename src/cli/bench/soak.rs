//! `deploybot bench soak`: sustained signed load on a real `deploybot serve` (this binary, as a
//! child process) whose GitHub is broken, sampling what must stay flat (issue 17): the
//! process's resident memory (`/proc/<pid>/status`), its open files (`/proc/<pid>/fd`), the
//! database and its write-ahead log, and the queue depth.
//!
//! The load: signed pings, and every `--pr-every`th delivery a pull request, which the worker
//! takes to GitHub; GitHub answers every other request with a 502 and lets the rest hang past
//! `github.timeout`, so assessments fail transiently, are retried off the line and end as dead
//! letters. One delivery in ten is unauthenticated, with a random event name (a 401 that must
//! not grow the metrics). The database grows with the deliveries `store.retention` keeps; the
//! rest should not grow with time.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;

use deploybot_core::webhook::signature;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Minutes of sustained load.
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Deliveries sent per second.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Every this many deliveries, one is a pull request (it goes to the broken GitHub).
    #[arg(long, default_value_t = 100)]
    pub pr_every: u64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 15)]
    pub every: u64,
}

const SECRET: &str = "bench-soak-secret";
const REPO: &str = "Codertocat/Hello-World";

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.rate > 0 && args.pr_every > 0 && args.every > 0,
        "--minutes, --rate, --pr-every and --every must be positive"
    );
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let (github, github_calls) = broken_github().await?;
    let (port, admin) = (free_port()?, free_port()?);
    let data = dir.path().join("data");
    let config = dir.path().join("deploybot.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
             webhook_secret_env: DEPLOYBOT_BENCH_SECRET\n  delivery_retry:\n    \
             max_attempts: 3\n    initial_backoff: 1s\n    max_backoff: 4s\n\
             github:\n  api_url: {github}\n  timeout: 2s\n\
             store:\n  data_dir: {}\n\
             services:\n  - name: hello\n    app_repo: {REPO}\n",
            data.display()
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("DEPLOYBOT_BENCH_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting deploybot serve")?;
    let pid = child.id();
    let result = soak(&args, pid, port, admin, &data).await;
    // SIGTERM, as Kubernetes stops it: the exit is bounded by server.shutdown_grace.
    let stopping = Instant::now();
    // SAFETY: `pid` is our own child, not yet waited for, so the id is still its.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = child.wait()?;
    println!(
        "  SIGTERM: exited in {:.2} s ({status})",
        stopping.elapsed().as_secs_f64()
    );
    println!(
        "  GitHub answered {} requests (each a 502 or a hang)",
        github_calls.load(Ordering::Relaxed)
    );
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn soak(
    args: &BenchArgs,
    pid: u32,
    port: u16,
    admin: u16,
    data: &Path,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&http, &base).await?;
    println!(
        "deploybot bench soak: {:.1} min at {} deliveries/s (1 in {} a pull request to a GitHub \
         that fails or hangs, 1 in 10 unauthenticated), pid {pid}",
        args.minutes, args.rate, args.pr_every
    );
    println!(
        "  {:>6} {:>8} {:>8} {:>6} {:>8} {:>6} {:>8} {:>8}",
        "t (s)", "sent", "refused", "queue", "RSS MiB", "files", "DB MiB", "WAL MiB"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(Semaphore::new(256));
    let webhook = format!("{base}/webhook");
    let ping = include_bytes!("../../../fixtures/github-webhooks/ping/payload.json").to_vec();
    let pr = include_str!("../../../fixtures/github-webhooks/pull_request/opened.payload.json");
    let pr: serde_json::Value = serde_json::from_str(pr)?;

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut next_sample = Duration::ZERO;
    let mut samples: Vec<Sample> = Vec::new();
    let mut i: u64 = 0;
    while started.elapsed() < total {
        if started.elapsed() >= next_sample {
            let s = sample(&http, admin, pid, data).await?;
            println!(
                "  {:>6.0} {:>8} {:>8} {:>6} {:>8.1} {:>6} {:>8.1} {:>8.1}",
                started.elapsed().as_secs_f64(),
                sent.load(Ordering::Relaxed),
                refused.load(Ordering::Relaxed),
                s.queue.map_or("?".to_string(), |q| q.to_string()),
                mib(s.rss),
                s.files,
                mib(s.db),
                mib(s.wal)
            );
            samples.push(s);
            next_sample += Duration::from_secs(args.every);
        }
        tick.tick().await;
        i += 1;
        let (event, body, signed) = if i % 10 == 1 {
            (format!("evt-{i:x}"), ping.clone(), false)
        } else if i.is_multiple_of(args.pr_every) {
            let mut v = pr.clone();
            v["number"] = i.into();
            v["pull_request"]["number"] = i.into();
            ("pull_request".to_string(), serde_json::to_vec(&v)?, true)
        } else {
            ("ping".to_string(), ping.clone(), true)
        };
        let permit = Arc::clone(&inflight).acquire_owned().await?;
        let (http, url) = (http.clone(), webhook.clone());
        let (sent, refused) = (Arc::clone(&sent), Arc::clone(&refused));
        tokio::spawn(async move {
            let _permit = permit;
            let signature = if signed {
                signature::sign(SECRET.as_bytes(), &body)
            } else {
                "sha256=0000".to_string()
            };
            let answer = http
                .post(&url)
                .header("x-github-event", event)
                .header("x-github-delivery", format!("soak-{i}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            sent.fetch_add(1, Ordering::Relaxed);
            // A signed delivery not accepted (503, a dropped connection) is what GitHub would
            // record as failed.
            if signed && !answer.is_ok_and(|r| r.status().as_u16() == 202) {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    samples.push(sample(&http, admin, pid, data).await?);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let max = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    println!(
        "  RSS {:.1} -> {:.1} MiB (max {:.1}); open files {} -> {} (max {}); WAL max {:.1} MiB; \
         DB {:.1} -> {:.1} MiB ({:.0} bytes per delivery sent, kept by store.retention); \
         signed deliveries refused: {}",
        mib(first.rss),
        mib(last.rss),
        mib(max(|s| s.rss)),
        first.files,
        last.files,
        max(|s| s.files),
        mib(max(|s| s.wal)),
        mib(first.db),
        mib(last.db),
        last.db.saturating_sub(first.db) as f64 / sent.load(Ordering::Relaxed).max(1) as f64,
        refused.load(Ordering::Relaxed)
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: u64,
    files: u64,
    db: u64,
    wal: u64,
    queue: Option<u64>,
}

async fn sample(
    http: &reqwest::Client,
    admin: u16,
    pid: u32,
    data: &Path,
) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the server's /proc status (has it exited?)")?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let files = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let db = data.join("deploybot.sqlite3");
    let wal = crate::adapters::store::maintenance::wal_path(&db);
    let queue = match http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
    {
        Ok(r) => r.text().await.ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("deploybot_queue_depth "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        }),
        Err(_) => None,
    };
    Ok(Sample {
        rss,
        files,
        db: size(db),
        wal: size(wal),
        queue,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("deploybot serve did not answer /healthz within a minute")
}

/// A GitHub API that answers every other request with a 502 and lets the others hang for ten
/// seconds (past the `github.timeout` of 2 s the server is given); its base URL and the count
/// of requests it got.
async fn broken_github() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().fallback(move || {
        let calls = Arc::clone(&calls);
        async move {
            if calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            (axum::http::StatusCode::BAD_GATEWAY, "broken on purpose\n")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, counted))
}
