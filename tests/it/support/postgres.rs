//! A private PostgreSQL for the test binary, never a shared system instance: Debian's `initdb`
//! and `postgres` (package `postgresql`) on a temporary directory and a free port, started once
//! for the whole binary, with a fresh database per test. Password authentication over TCP, so the
//! store's password path is the one exercised.
//!
//! When the tests run as root (CI does), the server runs as the `postgres` user, which PostgreSQL
//! requires, on a directory handed to it. The server is stopped when the test process ends: a
//! shell beside it waits on a pipe whose other end only this process holds, and its end of file
//! stops the server and removes the directory. No static destructor is needed, so a test run
//! that panics or is interrupted leaves no server behind either.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use deploybot::adapters::store::pg::PgOptions;
use deploybot_core::secret::Secret;

use super::tool;

/// The superuser the tests connect as, and its password.
const USER: &str = "deploybot";
const PASSWORD: &str = "test-password-not-a-secret";

/// The running cluster.
pub struct Cluster {
    port: u16,
    bin: PathBuf,
    /// The supervisor's stdin: closed when this process ends, which stops the server.
    _stop: Mutex<ChildStdin>,
}

/// One test's database.
pub struct Database {
    pub url: String,
}

impl Database {
    /// How the store reaches it: the URL without a password, the password beside it.
    /// Each call names another replica.
    pub fn options(&self) -> PgOptions {
        static REPLICA: AtomicU32 = AtomicU32::new(0);
        PgOptions {
            url: self.url.clone(),
            password: Some(Secret::new(PASSWORD)),
            connections: 4,
            replica: format!("replica-{}", REPLICA.fetch_add(1, Ordering::Relaxed)),
            answer_within: deploybot::adapters::store::pg::ANSWER_WITHIN,
        }
    }

    /// Drops the database under its connections (`dropdb --force`): PostgreSQL gone, for a test
    /// of what the store does then.
    pub fn drop_now(&self) {
        let cluster = CLUSTER
            .get()
            .and_then(|c| c.as_ref().ok())
            .and_then(Option::as_ref)
            .expect("a database exists only on a started cluster");
        run(Command::new(cluster.bin.join("dropdb"))
            .args([
                "--force",
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port.to_string(),
                "-U",
                USER,
            ])
            .arg(self.url.rsplit('/').next().expect("the database's name"))
            .env("PGPASSWORD", PASSWORD));
    }

    /// The password, for a config file's `store.password_file`.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }
}

/// Started once; a start that failed fails every test that asks, with its message, rather than
/// being tried again by each.
static CLUSTER: OnceLock<Result<Option<Cluster>, String>> = OnceLock::new();

/// A fresh, empty database on the binary's cluster (started on first use). `None` only when
/// PostgreSQL is missing and `DEPLOYBOT_TEST_ALLOW_MISSING_TOOLS=1`; otherwise a missing
/// PostgreSQL fails the test naming the package.
pub fn database() -> Option<Database> {
    let started = CLUSTER.get_or_init(|| {
        std::panic::catch_unwind(start).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    let cluster = match started {
        Ok(cluster) => cluster.as_ref()?,
        Err(e) => panic!("the private PostgreSQL did not start: {e}"),
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new(cluster.bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            USER,
            &name,
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("running createdb");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Database {
        url: format!("postgres://{USER}@127.0.0.1:{}/{name}", cluster.port),
    })
}

fn start() -> Option<Cluster> {
    let initdb = tool::require("initdb", "postgresql")?;
    // Through any symlink on PATH, to the directory that holds the server's other programs.
    let initdb = std::fs::canonicalize(&initdb).expect("resolving initdb's path");
    let bin = initdb.parent().expect("initdb's directory").to_path_buf();
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("deploybot-pg-")
        .tempdir()
        .expect("creating the cluster's directory")
        .keep();
    std::fs::write(dir.join("pwfile"), format!("{PASSWORD}\n")).unwrap();
    if root {
        // PostgreSQL refuses to run as root: the directory becomes the postgres user's.
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir));
    }
    let as_server = |program: &Path| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.current_dir(&dir);
        c
    };
    run(as_server(&initdb)
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", dir.join("pwfile").display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync"]));
    let port = free_port();
    // The supervisor: the server in the background, then a read that returns only when this
    // process has ended (its end of the pipe closed), then a fast shutdown and the cleanup.
    let script = r#"
        "$0" -D "$1/data" -p "$2" -k "$1" -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=300 >"$1/server.log" 2>&1 &
        pg=$!
        read _
        kill -INT "$pg"
        wait "$pg"
        rm -rf "$1"
    "#;
    let mut supervisor = as_server(Path::new("sh"))
        .arg("-c")
        .arg(script)
        .arg(bin.join("postgres"))
        .arg(&dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting the PostgreSQL supervisor");
    let stop = supervisor.stdin.take().expect("the supervisor's stdin");
    let started = Instant::now();
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "PostgreSQL did not start within 30 s: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Dropping the handle leaves the supervisor running; the pipe is what stops it.
    drop(supervisor);
    let _ = writeln!(
        std::io::stderr(),
        "private PostgreSQL on 127.0.0.1:{port} ({}), up in {} ms",
        dir.display(),
        started.elapsed().as_millis()
    );
    Some(Cluster {
        port,
        bin,
        _stop: Mutex::new(stop),
    })
}

/// Whether this process runs as root (then the server must run as another user).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
