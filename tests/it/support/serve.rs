//! `deploybot serve` as a separate process, for the tests that must see what a client or the
//! kernel sees: its memory (`/proc/<pid>/status`), its open files, its sockets closing, its exit
//! on SIGTERM. Each instance gets free ports, its own data directory and the test secret.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The webhook secret every instance is started with.
pub const SECRET: &str = "serve-test-secret";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `deploybot serve`; killed when dropped.
pub struct Served {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub data_dir: PathBuf,
    config: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

/// What an instance is started with: lines added to `server:` and other sections as YAML.
#[derive(Default, Clone)]
pub struct Options {
    pub server: Vec<String>,
    pub sections: String,
    /// Another data directory than a fresh temporary one (a restart, a tmpfs).
    pub data_dir: Option<PathBuf>,
    pub json_logs: bool,
}

impl Served {
    pub fn start(options: Options) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let (port, admin) = (free_port(), free_port());
        let mut server = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
             webhook_secret_env: T_SERVE_SECRET\n"
        );
        for line in &options.server {
            server.push_str(&format!("  {line}\n"));
        }
        let config = dir.path().join("deploybot.yaml");
        std::fs::write(
            &config,
            format!(
                "{server}store:\n  data_dir: {}\n{}",
                data_dir.display(),
                options.sections
            ),
        )
        .unwrap();
        let mut served = Served::spawn(&config, port, admin, data_dir, options.json_logs);
        served._dir = Some(dir);
        served
    }

    /// The same config and data directory again (after a kill).
    pub fn restart(mut self) -> Served {
        self.kill();
        let dir = self._dir.take();
        let mut again = Served::spawn(
            &self.config,
            self.port,
            self.admin,
            self.data_dir.clone(),
            false,
        );
        again._dir = dir;
        again
    }

    fn spawn(config: &Path, port: u16, admin: u16, data_dir: PathBuf, json: bool) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(["serve", "--config", &config.display().to_string()])
            .env("T_SERVE_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env("DEPLOYBOT_LOG_FORMAT", if json { "json" } else { "text" })
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let served = Served {
            child,
            port,
            admin,
            data_dir,
            config: config.to_path_buf(),
            log,
            _dir: None,
        };
        served.wait_healthy();
        served
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status` in KiB: `VmRSS` now, `VmHWM` the peak.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Waits at most `within` for it to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The store's database, read-only, beside the running process.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data_dir.join("deploybot.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// `(status, attempts, detail)` of a stored delivery.
    pub fn delivery(&self, id: &str) -> Option<(String, i64, Option<String>)> {
        use rusqlite::OptionalExtension as _;
        self.db()
            .query_row(
                "SELECT status, attempts, detail FROM deliveries WHERE delivery_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .unwrap()
    }

    /// Waits until `check` holds, or fails with `what` and the log after `within`.
    pub async fn wait_until(&self, what: &str, within: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Posts a signed delivery as GitHub sends it; the answer's status.
pub async fn deliver(url: &str, event: &str, id: &str, body: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            deploybot_core::webhook::signature::sign(SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A real `pull_request.opened` payload from `repo`, numbered `number`, its body padded to about
/// `pad` bytes (the shape is GitHub's; deploybot never reads the PR's body).
pub fn pull_request_opened(repo: &str, number: u64, pad: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(
        super::fixtures_dir().join("github-webhooks/pull_request/opened.payload.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["repository"]["full_name"] = repo.into();
    v["number"] = number.into();
    v["pull_request"]["number"] = number.into();
    v["pull_request"]["body"] = "x".repeat(pad).into();
    serde_json::to_vec(&v).unwrap()
}

/// A TCP server that accepts connections and never answers: a peer that hangs. Counts the
/// connections it got.
pub struct Hanging {
    pub port: u16,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hanging {
    pub fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
        Hanging { port, accepted }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
