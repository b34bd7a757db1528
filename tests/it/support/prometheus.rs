//! A real Prometheus (the Debian `prometheus` package) for the tests: series written as
//! OpenMetrics, turned into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, and
//! a server started over them on a free loopback port, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tool;

/// A `prometheus` process over a temp data dir; killed when dropped, whatever the test did.
pub struct PrometheusServer {
    child: Option<Child>,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the real-Prometheus tests can run: `prometheus` and `promtool` (Debian package
/// prometheus) installed. Missing, the test fails, unless the opt-out of [`tool::require`] is
/// set: then this says so and answers false.
pub fn require_tools() -> bool {
    tool::require("prometheus", "prometheus").is_some()
        && tool::require("promtool", "prometheus").is_some()
}

/// The path of a Prometheus program, once [`require_tools`] said they are installed.
fn program(name: &str) -> PathBuf {
    tool::require(name, "prometheus").expect("checked by require_tools")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Imports `openmetrics` into a fresh data dir and starts Prometheus over it.
pub async fn start_prometheus(openmetrics: &str) -> PrometheusServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let input = dir.path().join("series.om");
    std::fs::write(&input, openmetrics).unwrap();
    let out = Command::new(program("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool create-blocks-from openmetrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No scrape jobs: the imported blocks are the only data.
    serve(dir, "global:\n  scrape_interval: 15s\n").await
}

/// Starts Prometheus with an empty data dir, scraping `target` (`host:port`, path `/metrics`)
/// every `interval` (e.g. `500ms`).
pub async fn start_scraping(target: &str, interval: &str) -> PrometheusServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
         scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n"
    );
    serve(dir, &config).await
}

/// Starts `prometheus` over `dir/data` with `config` on a free loopback port, once ready.
async fn serve(dir: tempfile::TempDir, config_text: &str) -> PrometheusServer {
    let data = dir.path().join("data");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, config_text).unwrap();
    let mut server = PrometheusServer {
        child: None,
        url: String::new(),
        _dir: dir,
    };
    let http = reqwest::Client::new();
    // The free port is only free until someone else takes it: a few fresh tries, then give up.
    for attempt in 1..=3 {
        let port = free_port();
        let log_path = server._dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(program("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        server.child = Some(child);
        server.url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", server.url)).send().await
                && r.status().is_success()
            {
                return server;
            }
            let exited = server.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                server.stop();
                if attempt < 3 && log.contains("address already in use") {
                    break;
                }
                panic!("prometheus did not become ready ({exited:?}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("every attempt either returned or panicked")
}
