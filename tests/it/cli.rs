//! The binary as a user meets it: `--help`, `--version`, `check-config`, and `serve` refusing to
//! run without a webhook secret.

use std::process::Command;

fn deploybot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deploybot.yaml").to_string()
}

#[test]
fn help_and_version() {
    let out = deploybot().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve",
        "check-config",
        "manifest",
        "assess",
        "judge",
        "bench",
    ] {
        assert!(text.contains(cmd), "--help lists {cmd}:\n{text}");
    }
    let out = deploybot().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = deploybot().args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("webhook secret"));
}

#[test]
fn check_config_prints_references_never_values() {
    let out = deploybot()
        .args(["check-config", &example()])
        .env("DEPLOYBOT_WEBHOOK_SECRET", "super-secret-value")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("webhook_secret_env: DEPLOYBOT_WEBHOOK_SECRET"),
        "{stdout}"
    );
    assert!(!stdout.contains("super-secret-value"));
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "server:\n  webhook_path: nope\n  max_body_bytes: 0\n").unwrap();
    let out = deploybot()
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.webhook_path"), "{stderr}");
    assert!(stderr.contains("server.max_body_bytes"), "{stderr}");
    std::fs::write(&bad, "servr: {}\n").unwrap();
    let out = deploybot()
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("servr"));
}

#[test]
fn check_config_reports_missing_secrets_unless_shape_only_and_warns_on_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "server:\n  webhook_secret_env: DEPLOYBOT_TEST_UNSET_9120\nllm:\n  timeout_ms: 5000\n",
    )
    .unwrap();
    let out = deploybot()
        .args(["check-config", cfg.to_str().unwrap()])
        .env_remove("DEPLOYBOT_TEST_UNSET_9120")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.webhook_secret_env (DEPLOYBOT_TEST_UNSET_9120): environment variable DEPLOYBOT_TEST_UNSET_9120 is not set"),
        "{stderr}"
    );
    let out = deploybot()
        .args(["check-config", "--shape-only", cfg.to_str().unwrap()])
        .env_remove("DEPLOYBOT_TEST_UNSET_9120")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: llm.timeout_ms: deprecated; write llm.timeout: 5s instead"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("timeout: 5s") && !stdout.contains("timeout_ms"),
        "{stdout}"
    );
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let out = deploybot()
        .args(["serve", "--config", &example()])
        .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("DEPLOYBOT_WEBHOOK_SECRET"), "{stderr}");
}

/// The documented run command, for real: `serve` on the example config (moved to free ports
/// and a temp data dir) answers health and a signed ping, serves the rollout API on the admin
/// listener and not on the webhook's (issue 15.9), and stops cleanly on SIGTERM.
#[test]
fn serve_accepts_a_signed_ping_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("c.yaml");
    let example = std::fs::read_to_string(example()).unwrap();
    let text = example
        .replace(
            "listen: 127.0.0.1:8080",
            &format!("listen: 127.0.0.1:{port}"),
        )
        .replace(
            "admin_listen: 127.0.0.1:9090",
            &format!("admin_listen: 127.0.0.1:{admin_port}"),
        )
        .replace(
            "data_dir: ./deploybot-data",
            &format!("data_dir: {}", dir.path().join("data").display()),
        )
        .replace(
            "webhook_secret_env: DEPLOYBOT_WEBHOOK_SECRET",
            "webhook_secret_env: T_SECRET",
        );
    assert_ne!(text, example);
    assert!(text.contains(&format!("listen: 127.0.0.1:{port}")));
    assert!(text.contains("webhook_secret_env: T_SECRET"));
    std::fs::write(&cfg, text).unwrap();
    let child = deploybot()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("T_SECRET", "s3cret")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let body = br#"{"zen":"Design for failure.","hook_id":7}"#;
        let resp = client
            .post(format!("http://127.0.0.1:{port}/webhook"))
            .header("x-github-event", "ping")
            .header("x-github-delivery", "cli-ping-1")
            .header(
                "x-hub-signature-256",
                deploybot_core::webhook::signature::sign(b"s3cret", body),
            )
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let api = client
            .get(format!("http://127.0.0.1:{admin_port}/api/rollouts"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            api.status().as_u16(),
            200,
            "serve mounts the rollout API on the admin listener"
        );
        for path in ["/api/rollouts", "/metrics", "/"] {
            let public = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                public.status().as_u16(),
                404,
                "{path} is not served on the webhook listener"
            );
        }
        resp.status().as_u16()
    });
    assert_eq!(ok, 202);
    // SIGTERM: graceful stop, exit 0.
    unsafe_kill(child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cli-ping-1"),
        "log lines carry the delivery id: {stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "the secret never reaches the logs"
    );
}

fn unsafe_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The App's key is a secret like any other: `check-config` shows its reference only, and a
/// key that is not one makes `serve` refuse to start without quoting it.
#[test]
fn check_config_and_serve_never_show_the_app_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server:\n  webhook_secret_env: DEPLOYBOT_TEST_HOOK_7731\n  listen: 127.0.0.1:0\n  \
             admin_listen: 127.0.0.2:0\nstore:\n  data_dir: {}\ngithub:\n  app_id: 5\n  \
             private_key_env: DEPLOYBOT_TEST_APP_KEY_7731\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let pem = std::fs::read_to_string(crate::github_app::key("test-app.pem")).unwrap();
    let out = deploybot()
        .args(["check-config", cfg.to_str().unwrap()])
        .env("DEPLOYBOT_TEST_HOOK_7731", "hook")
        .env("DEPLOYBOT_TEST_APP_KEY_7731", &pem)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("private_key_env: DEPLOYBOT_TEST_APP_KEY_7731"),
        "{all}"
    );
    let key_line = pem.lines().nth(1).unwrap();
    assert!(
        !all.contains("PRIVATE KEY") && !all.contains(key_line),
        "{all}"
    );

    let out = deploybot()
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("DEPLOYBOT_TEST_HOOK_7731", "hook")
        .env("DEPLOYBOT_TEST_APP_KEY_7731", "not-a-key-but-secret-words")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to start") && stderr.contains("not an RSA private key"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-words"), "{stderr}");
}
