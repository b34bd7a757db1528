//! Issue 17, "bounded under hostile or broken peers", against the real `deploybot serve`
//! process: what a client sees (answers, sockets closing), what the kernel sees (the server's
//! memory from `/proc/<pid>/status`, its open files) and what the store keeps. One test per
//! numbered item; the in-process ones (the worker's lanes, the alerts, the store's WAL) are in
//! `webhook.rs`, `rollout.rs` and `store.rs`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::serve::{Hanging, Options, Served, deliver, pull_request_opened};

const MIB: u64 = 1024 * 1024;

/// Reads until the server closes the connection (or `limit` passes); how long that took, and
/// what it answered.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// 17.1: forty uploads that declare 25 MiB, send 24 and stall, unsigned, hold no more than the
/// intake budget (64 MiB by default): the rest are refused with 503 as soon as they would
/// overdraw it. Before the budget, each held its 24 MiB (1 GB in all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_unauthenticated_uploads_hold_no_more_than_the_intake_budget() {
    let served = Served::start(Options::default());
    let before = served.memory_kib("VmRSS");
    let chunk = std::sync::Arc::new(vec![b'x'; MIB as usize]);
    let mut uploads = Vec::new();
    for i in 0..40 {
        let (port, chunk) = (served.port, std::sync::Arc::clone(&chunk));
        uploads.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let head = format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: ping\r\n\
                 X-GitHub-Delivery: stall-{i}\r\nContent-Length: {}\r\n\r\n",
                25 * MIB - 1
            );
            s.write_all(head.as_bytes()).await.unwrap();
            for _ in 0..24 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            s
        }));
    }
    let mut held = Vec::new();
    for u in uploads {
        held.push(u.await.unwrap());
    }
    // Everything sent is in (or refused); the uploads stall, their sockets open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut busy = 0;
    for s in &mut held {
        let (_, answer) = until_closed(s, Duration::from_millis(200)).await;
        busy += usize::from(answer.starts_with("HTTP/1.1 503"));
    }
    let peak = served.memory_kib("VmHWM");
    let grown = (peak.saturating_sub(before)) * 1024;
    eprintln!(
        "40 stalled uploads: RSS {} MiB before, peak {} MiB; {busy} refused with 503",
        before / 1024,
        peak / 1024
    );
    assert!(
        grown < 64 * MIB + 48 * MIB,
        "the server grew by {} MiB for 40 stalled uploads (budget 64 MiB)",
        grown / MIB
    );
    assert!(
        busy >= 36,
        "uploads past the budget are refused with 503, got {busy} of 40"
    );
    assert!(
        served
            .log()
            .contains("budget for bodies in flight is spent")
    );
}

/// 17.2: a half-sent request is closed within the header timeout, an idle keep-alive connection
/// too, and a body that stops arriving gets 408 within the body timeout. Before, a request sent
/// a byte a second stayed open for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_within_their_timeouts() {
    let served = Served::start(Options {
        server: vec!["header_timeout: 1s".into(), "body_timeout: 1s".into()],
        ..Options::default()
    });
    let connect = || TcpStream::connect(("127.0.0.1", served.port));

    let mut half = connect().await.unwrap();
    half.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (after, _) = until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(
        after < Duration::from_secs(3),
        "half-sent request open for {after:?}"
    );

    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (after, answer) = until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        after < Duration::from_secs(3),
        "idle keep-alive open for {after:?}"
    );

    let mut slow = connect().await.unwrap();
    slow.write_all(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: s\r\n\
          Content-Length: 100\r\n\r\n{\"zen\":",
    )
    .await
    .unwrap();
    let (after, answer) = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        after < Duration::from_secs(3),
        "slow body open for {after:?}"
    );
}

/// 17.2: a flood of idle connections holds at most `server.max_connections` of the server's
/// file handles (the rest wait in the kernel's backlog), and a delivery behind them is answered
/// once the idle ones time out. Before, 20,000 idle sockets used up the file handles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_holds_at_most_the_connection_cap() {
    let served = Served::start(Options {
        server: vec!["max_connections: 8".into(), "header_timeout: 2s".into()],
        ..Options::default()
    });
    let before = served.open_files();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            TcpStream::connect(("127.0.0.1", served.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = served.open_files();
    eprintln!("200 idle connections: {before} open files before, {during} during");
    assert!(
        during <= before + 8 + 2,
        "{during} open files with 200 idle connections ({before} before, cap 8)"
    );
    let started = Instant::now();
    let status = deliver(
        &served.url("/webhook"),
        "ping",
        "after-flood",
        br#"{"zen":"z"}"#,
    )
    .await;
    assert_eq!(status, 202);
    // Each round of 8 idle connections is closed after 2 s; the delivery waits its turn.
    assert!(started.elapsed() < Duration::from_secs(120));
    drop(idle);
}

/// The config of a service whose GitHub never answers.
fn hanging_github(github: &Hanging, timeout: &str) -> String {
    format!(
        "github:\n  api_url: http://127.0.0.1:{}\n  timeout: {timeout}\n\
         services:\n  - name: hello\n    app_repo: Codertocat/Hello-World\n",
        github.port
    )
}

/// 17.3 and 17.2: with a GitHub that never answers (and a timeout longer than the grace), a
/// SIGTERM ends the process within `server.shutdown_grace`, and the delivery in hand is still
/// queued for the next start. Before, SIGTERM waited for it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_while_github_hangs() {
    let github = Hanging::start();
    let mut served = Served::start(Options {
        server: vec!["shutdown_grace: 2s".into()],
        sections: hanging_github(&github, "10m"),
        ..Options::default()
    });
    let body = pull_request_opened("Codertocat/Hello-World", 2, 0);
    assert_eq!(
        deliver(&served.url("/webhook"), "pull_request", "hung-1", &body).await,
        202
    );
    served
        .wait_until("the worker asked GitHub", Duration::from_secs(10), || {
            github.connections() > 0
        })
        .await;
    let started = Instant::now();
    served.sigterm();
    let exited = served.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    assert!(exited.is_some(), "still running 15 s after SIGTERM");
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM (grace 2 s)"
    );
    let (status, _, _) = served.delivery("hung-1").expect("stored");
    assert_eq!(
        status, "pending",
        "abandoned, not lost: processed after the next start"
    );
}

/// 17.3 and 17.7: a GitHub call that hangs fails after `github.timeout`, transiently (the
/// delivery waits for its retry), and an unrelated delivery queued behind it is processed at
/// once. Before, one pull request stayed in progress for 15+ minutes and the queue behind it
/// stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_github_fails_one_delivery_transiently_and_stalls_nothing() {
    let github = Hanging::start();
    let served = Served::start(Options {
        server: vec![
            "delivery_retry: {max_attempts: 3, initial_backoff: 30s, max_backoff: 30s}".into(),
        ],
        sections: hanging_github(&github, "1s"),
        ..Options::default()
    });
    let body = pull_request_opened("Codertocat/Hello-World", 2, 0);
    assert_eq!(
        deliver(&served.url("/webhook"), "pull_request", "slow-pr", &body).await,
        202
    );
    served
        .wait_until("the worker asked GitHub", Duration::from_secs(10), || {
            github.connections() > 0
        })
        .await;
    let ping = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let sent = Instant::now();
    assert_eq!(
        deliver(&served.url("/webhook"), "ping", "ping-behind", ping).await,
        202
    );
    served
        .wait_until("the ping processed", Duration::from_secs(5), || {
            served
                .delivery("ping-behind")
                .is_some_and(|(s, _, _)| s == "done")
        })
        .await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    let metrics = reqwest::get(served.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("deploybot_deliveries_processed_total{outcome=\"done\"} 1"),
        "{metrics}"
    );
    served
        .wait_until(
            "the hung call timed out and waits for its retry",
            Duration::from_secs(10),
            || {
                served
                    .delivery("slow-pr")
                    .is_some_and(|(s, attempts, detail)| {
                        s == "pending"
                            && attempts == 1
                            && detail.is_some_and(|d| d.contains("did not answer within"))
                    })
            },
        )
        .await;
}

/// Sends `n` signed `pull_request` deliveries of about `size` bytes, four at a time.
async fn flood_with_pull_requests(served: &Served, n: u64, size: usize) {
    let url = served.url("/webhook");
    for batch in (0..n).collect::<Vec<_>>().chunks(4) {
        let sends = batch.iter().map(|i| {
            let body = pull_request_opened("Codertocat/Hello-World", 100 + i, size);
            let url = url.clone();
            async move { deliver(&url, "pull_request", &format!("big-{i}"), &body).await }
        });
        for status in futures_util::future::join_all(sends).await {
            assert_eq!(status, 202);
        }
    }
}

/// 17.5: forty queued 6 MiB deliveries, picked up after a restart by a worker whose GitHub hangs,
/// take no more memory than the worker's budget (16 MiB here) allows. Before, the worker loaded
/// 32 payloads at once: 927 MB within a second of a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_payloads_are_loaded_within_the_worker_budget() {
    let github = Hanging::start();
    let served = Served::start(Options {
        server: vec![
            "max_body_bytes: 8388608".into(),
            "worker_budget_bytes: 16777216".into(),
        ],
        sections: hanging_github(&github, "10m"),
        ..Options::default()
    });
    flood_with_pull_requests(&served, 40, 6 * MIB as usize).await;
    let served = served.restart();
    let before = served.memory_kib("VmRSS");
    served
        .wait_until("the worker asked GitHub", Duration::from_secs(10), || {
            github.connections() > 0
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = served.memory_kib("VmHWM");
    eprintln!(
        "40 queued 6 MiB deliveries after a restart: RSS {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    let grown = peak.saturating_sub(before) * 1024;
    assert!(
        grown < 16 * MIB * 4,
        "the worker grew by {} MiB with 40 queued 6 MiB deliveries (budget 16 MiB)",
        grown / MIB
    );
}

/// 17.10: a signed payload whose repository name holds a line break writes one log line, with
/// the break escaped; before, it wrote a raw, forged line in text logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_cannot_forge_a_log_line() {
    let served = Served::start(Options::default());
    let body = serde_json::to_vec(&serde_json::json!({
        "zen": "z",
        "hook_id": 1,
        "repository": {"full_name": "evil/x\nINFO deploybot: FORGED rollout approved"},
    }))
    .unwrap();
    assert_eq!(
        deliver(&served.url("/webhook"), "ping", "forge-1", &body).await,
        202
    );
    served
        .wait_until("the delivery logged", Duration::from_secs(5), || {
            served.log().contains("forge-1")
        })
        .await;
    let log = served.log();
    assert!(
        !log.lines().any(|l| l.starts_with("INFO deploybot: FORGED")),
        "a payload wrote its own line:\n{log}"
    );
    assert!(log.contains("evil/x\\nINFO deploybot: FORGED"), "{log}");
}

/// Mounts a tmpfs of `size` at a new directory; unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it (it needs root, or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// 17.8: on a full disk `/readyz` turns 503 (the pod leaves the Service) and deliveries get 503;
/// once there is room again, both recover. Before, `/readyz` stayed 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_service_unready_until_there_is_room() {
    let tmpfs = Tmpfs::mount("16m");
    let served = Served::start(Options {
        server: vec![
            "max_body_bytes: 1048576".into(),
            "intake_budget_bytes: 4194304".into(),
            "worker_budget_bytes: 4194304".into(),
        ],
        data_dir: Some(tmpfs.0.path().join("data")),
        ..Options::default()
    });
    let client = reqwest::Client::new();
    let ready = || async {
        client
            .get(served.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    // Fill the volume, then let the last write fail.
    let junk = tmpfs.0.path().join("junk");
    let mut f = std::fs::File::create(&junk).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ready().await, 503, "a full disk is not ready");
    let body = pull_request_opened("Codertocat/Hello-World", 7, 200 * 1024);
    assert_eq!(
        deliver(&served.url("/webhook"), "pull_request", "full-1", &body).await,
        503,
        "a delivery that cannot be stored gets 503, so GitHub records the failure"
    );
    std::fs::remove_file(&junk).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ready().await, 200, "ready again once there is room");
    assert_eq!(
        deliver(&served.url("/webhook"), "pull_request", "full-2", &body).await,
        202
    );
}

/// 17.11: `deploybot judge` refuses a scenario whose latency bucket bounds are not increasing
/// (before, it was judged on the wrong threshold) and one too long to replay (a replay judges
/// every prefix: 50,000 steps took a minute).
#[test]
fn the_judge_refuses_scenarios_it_cannot_judge_safely() {
    let fixture =
        crate::support::fixtures_dir().join("canary-bench/scenarios/healthy-ramp-00.json");
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let judge = |name: &str, v: &serde_json::Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .arg("judge")
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = judge("ok.json", &base);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut reversed = base.clone();
    let bounds: Vec<f64> = serde_json::from_value(base["latency_buckets_le"].clone()).unwrap();
    assert!(bounds.len() >= 2, "the fixture has latency buckets");
    let mut backwards = bounds.clone();
    backwards.reverse();
    reversed["latency_buckets_le"] = backwards.into();
    let out = judge("reversed.json", &reversed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("latency_buckets_le must increase"), "{err}");

    let steps = deploybot::adapters::scenario::MAX_STEPS + 1;
    let mut long = base.clone();
    long["steps"] = steps.into();
    for track in ["baseline", "canary"] {
        for field in ["requests", "errors", "latency_buckets"] {
            let first = base[track][field][0].clone();
            long[track][field] = vec![first; steps].into();
        }
    }
    let out = judge("long.json", &long);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("more than the 2880 a replay accepts"), "{err}");
}

/// `deploybot bench soak` drives a real `serve` with a broken GitHub and reports what must stay
/// flat, then stops it with SIGTERM within its grace.
#[test]
fn the_soak_benchmark_runs() {
    let stdout = crate::support::deploybot_ok(&[
        "bench",
        "soak",
        "--minutes",
        "0.1",
        "--every",
        "2",
        "--rate",
        "20",
    ]);
    for needle in ["RSS MiB", "open files", "WAL max", "SIGTERM: exited in"] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

/// 17.3, git over the network: `deploybot rollout start` against a GitOps remote that accepts
/// and never answers fails the fetch within `gitops.timeout`, transiently (the step is retried
/// later). Before, only `serve` applied the timeout and the command hung forever.
#[test]
fn a_hanging_git_remote_fails_the_cli_within_the_gitops_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["demo", "--dir"])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let remote = Hanging::start();
    let config = ws.join("deploybot.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text
        .find("  repo_url:")
        .expect("the demo config names its remote");
    let end = start + text[start..].find('\n').unwrap();
    let text = format!(
        "{}  repo_url: \"http://127.0.0.1:{}/gitops.git\"\n  timeout: 2s{}",
        &text[..start],
        remote.port,
        &text[end..]
    );
    std::fs::write(&config, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["rollout", "start", "--config"])
        .arg(&config)
        .args(["checkout", "2.0.0"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(exited.is_some(), "still running after 30 s: {stderr}");
    assert!(remote.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(
        stderr.contains("timed out") && stderr.contains("transient=true"),
        "{stderr}"
    );
}
