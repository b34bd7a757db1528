//! Real git for the GitOps tests: a bare remote in a temp dir seeded with manifests through the
//! `git` CLI, helpers that commit as a human through a scratch clone, and a tiny `FileEdit`
//! (set the tag of one `image:` line) so these tests do not depend on the manifest editor.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use deploybot::adapters::gitops::repo::{GitAuth, Remote, RemoteUrl};
use deploybot::adapters::gitops::writer::{BranchLocks, Identity, Writer};
use deploybot::config::PushRetry;
use deploybot_core::duration::PromDuration;
use deploybot_core::gitops::commit_message::CommitInfo;
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::manifest::{EditError, Edited, ValueChange};

pub const BOT_EMAIL: &str = "deploybot@example.test";

/// Runs git in `cwd` with a fixed identity and no user or system config; panics on failure.
pub fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Alice Human")
        .env("GIT_AUTHOR_EMAIL", "alice@example.test")
        .env("GIT_COMMITTER_NAME", "Alice Human")
        .env("GIT_COMMITTER_EMAIL", "alice@example.test")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn deployment(name: &str, tag: &str) -> String {
    format!(
        "# {name}: managed by Argo CD\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  \
         name: {name}\nspec:\n  template:\n    spec:\n      containers:\n        - name: {name}\n          \
         image: ghcr.io/acme/{name}:{tag} # pinned by deploybot\n"
    )
}

/// A bare remote `remote.git` with branch `main` holding a few services.
pub struct GitFixture {
    pub dir: tempfile::TempDir,
    scratch: AtomicU32,
}

pub const SERVICES: &[&str] = &[
    "web", "api", "worker", "cart", "search", "mail", "auth", "feed",
];

impl GitFixture {
    pub fn new() -> GitFixture {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "--bare", "remote.git"]);
        let seed = dir.path().join("seed");
        git(dir.path(), &["init", "-q", "seed"]);
        for s in SERVICES {
            let p = seed.join("apps").join(s);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("deployment.yaml"), deployment(s, "1.0.0")).unwrap();
        }
        std::fs::write(seed.join("README.md"), "GitOps repo\n").unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "seed"]);
        git(&seed, &["push", "-q", "../remote.git", "main"]);
        GitFixture {
            dir,
            scratch: AtomicU32::new(0),
        }
    }

    pub fn remote_path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.remote_path().display())
    }

    /// Runs git against the bare remote.
    pub fn remote_git(&self, args: &[&str]) -> String {
        git(&self.remote_path(), args)
    }

    pub fn show(&self, rev: &str, path: &str) -> String {
        self.remote_git(&["show", &format!("{rev}:{path}")])
    }

    pub fn head(&self, branch: &str) -> String {
        self.remote_git(&["rev-parse", &format!("refs/heads/{branch}")])
            .trim()
            .to_string()
    }

    pub fn commit_count(&self, branch: &str) -> usize {
        self.remote_git(&["rev-list", "--count", branch])
            .trim()
            .parse()
            .unwrap()
    }

    /// Commits `content` to `path` on `branch` as Alice (through a fresh scratch clone) and
    /// pushes it; returns the new sha.
    pub fn human_commit(&self, branch: &str, path: &str, content: &str, message: &str) -> String {
        human_commit_at(
            &self.remote_path(),
            &self.dir.path().join(format!(
                "scratch-{}",
                self.scratch.fetch_add(1, Ordering::SeqCst)
            )),
            branch,
            path,
            content,
            message,
        )
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("data-{name}"))
    }

    /// A writer with small retry delays, its own data dir and its own locks (as if it ran in
    /// its own process).
    pub fn writer(&self, name: &str, url: &str, auth: GitAuth) -> Writer {
        writer_at(&self.data_dir(name), url, auth, BranchLocks::default())
    }
}

pub fn human_commit_at(
    remote: &Path,
    scratch: &Path,
    branch: &str,
    path: &str,
    content: &str,
    message: &str,
) -> String {
    let parent = scratch.parent().unwrap();
    git(
        parent,
        &[
            "clone",
            "-q",
            "--branch",
            branch,
            remote.to_str().unwrap(),
            scratch.to_str().unwrap(),
        ],
    );
    let file = scratch.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, content).unwrap();
    git(scratch, &["add", "-A"]);
    git(scratch, &["commit", "-q", "-m", message]);
    git(scratch, &["push", "-q", "origin", branch]);
    let sha = git(scratch, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::remove_dir_all(scratch).unwrap();
    sha
}

pub fn fast_retry() -> PushRetry {
    PushRetry {
        max_attempts: 10,
        initial_backoff: PromDuration::from_millis(5),
        multiplier: 1.5,
        max_backoff: PromDuration::from_millis(40),
    }
}

pub fn writer_at(data_dir: &Path, url: &str, auth: GitAuth, locks: BranchLocks) -> Writer {
    writer_with(data_dir, url, auth, locks, fast_retry())
}

pub fn writer_with(
    data_dir: &Path,
    url: &str,
    auth: GitAuth,
    locks: BranchLocks,
    retry: PushRetry,
) -> Writer {
    Writer::open(
        data_dir,
        Remote {
            url: RemoteUrl::parse(url).unwrap(),
            auth,
        },
        Identity {
            name: "deploybot".into(),
            email: BOT_EMAIL.into(),
        },
        retry,
        locks,
    )
    .unwrap()
}

pub fn info(service: &str, summary: &str) -> CommitInfo {
    CommitInfo {
        summary: summary.into(),
        deploy_id: format!("d-{service}-1"),
        service: service.into(),
        environment: "staging".into(),
        step: Some("promote".into()),
        weight: None,
        image: Some(format!("ghcr.io/acme/{service}:2.0.0")),
        risk_score: Some(12),
        source_pr: Some(format!("acme/{service}#7")),
    }
}

/// Sets the tag of the `image: ghcr.io/acme/<service>:TAG` line, keeping the rest of the line.
#[derive(Debug, Clone)]
pub struct SetTag {
    pub path: String,
    pub image: String,
    pub tag: String,
}

impl SetTag {
    pub fn service(service: &str, tag: &str) -> SetTag {
        SetTag {
            path: format!("apps/{service}/deployment.yaml"),
            image: format!("ghcr.io/acme/{service}"),
            tag: tag.into(),
        }
    }

    pub fn boxed(self) -> Vec<Arc<dyn FileEdit>> {
        vec![Arc::new(self)]
    }
}

impl FileEdit for SetTag {
    fn path(&self) -> &str {
        &self.path
    }

    fn apply(&self, text: &str) -> Result<Edited, EditError> {
        let needle = format!("image: {}:", self.image);
        let mut changes = Vec::new();
        let mut out = String::new();
        for (i, line) in text.split_inclusive('\n').enumerate() {
            match line.find(&needle) {
                Some(at) => {
                    let start = at + needle.len();
                    let end = line[start..]
                        .find(|c: char| c.is_whitespace())
                        .map(|e| start + e)
                        .unwrap_or(line.len());
                    let old = &line[start..end];
                    if old != self.tag {
                        changes.push(ValueChange {
                            location: format!("image {}", self.image),
                            line: i + 1,
                            old: old.to_string(),
                            new: self.tag.clone(),
                        });
                    }
                    out.push_str(&line[..start]);
                    out.push_str(&self.tag);
                    out.push_str(&line[end..]);
                }
                None => out.push_str(line),
            }
        }
        if changes.is_empty() && !text.contains(&needle) {
            return Err(EditError::Invalid {
                path: self.path.clone(),
                message: format!("no image {} found", self.image),
            });
        }
        // The writer never prints a diff: no splices are needed.
        Ok(Edited {
            text: out,
            changes,
            splices: Vec::new(),
        })
    }
}

/// Wraps an edit and runs `before` on the first `times` applications: a way to make another
/// writer win the race exactly between our fetch and our push.
pub struct Interfere {
    pub inner: SetTag,
    pub times: u32,
    pub calls: AtomicU32,
    pub before: Box<dyn Fn(u32) + Send + Sync>,
}

impl FileEdit for Interfere {
    fn path(&self) -> &str {
        self.inner.path()
    }

    fn apply(&self, text: &str) -> Result<Edited, EditError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.times {
            (self.before)(n);
        }
        self.inner.apply(text)
    }
}
