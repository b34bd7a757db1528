//! `deploybot bench git`: the git2 writer against the git CLI, on a generated GitOps repository
//! in a local bare remote (`file://`).
//!
//! One change is "set one image tag, commit, push". It is timed three ways in the same run, in
//! interleaved rounds: the writer (fetch, edit in memory, commit, push from a warm bare clone),
//! a warm CLI checkout (`git pull --ff-only`, edit, `git commit -a`, `git push`) and
//! clone-per-change as shell-based tools do it (`git clone --depth 1`, edit, `git commit`,
//! `git push`). Medians are printed as ratios, and the writer and the warm checkout are timed
//! again on a repository a tenth the size to show how each grows. It measures git, not the
//! manifest editor: the edit is a plain tag-line replacement.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::Write;

use crate::adapters::clock::SystemClock;
use crate::adapters::gitops::repo::{GitAuth, Remote, RemoteUrl};
use crate::adapters::gitops::writer::{BranchLocks, Identity, Writer};
use deploybot_core::clock::Clock as _;
use deploybot_core::gitops::commit_message::CommitInfo;
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::manifest::{EditError, Edited, ValueChange};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Files in the large repository (10 manifests per service).
    #[arg(long, default_value_t = 20_000)]
    pub files: usize,
    /// Files in the small repository, to show growth with size.
    #[arg(long, default_value_t = 2_000)]
    pub small_files: usize,
    /// Commits of history in each generated repository.
    #[arg(long, default_value_t = 2_000)]
    pub commits: usize,
    /// Timed changes per method (the writer and the warm checkout).
    #[arg(long, default_value_t = 9)]
    pub runs: usize,
    /// Timed changes for clone-per-change (each one clones the whole repository).
    #[arg(long, default_value_t = 3)]
    pub clone_runs: usize,
    /// Work directory (default: a fresh directory under the system temp dir, removed after).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.files >= 10 && args.small_files >= 10,
        "--files and --small-files must be >= 10"
    );
    anyhow::ensure!(
        args.runs >= 1 && args.commits >= 1,
        "--runs and --commits must be >= 1"
    );
    let (work, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "deploybot-bench-git-{}-{}",
                std::process::id(),
                SystemClock.now().timestamp_millis()
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&work)?;
    let result = bench(&args, &work).await;
    if remove {
        let _ = std::fs::remove_dir_all(&work);
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: &BenchArgs, work: &Path) -> anyhow::Result<()> {
    println!(
        "deploybot bench git: one image-tag edit + commit + push to a local bare remote (file://)"
    );
    println!(
        "repositories: {} and {} files, {} commits each; {} runs per method ({} for clone-per-change)\n",
        args.small_files, args.files, args.commits, args.runs, args.clone_runs
    );

    let small = Fixture::generate(work, "small", args.small_files, args.commits)?;
    let large = Fixture::generate(work, "large", args.files, args.commits)?;

    let small_t = measure(&small, work, args.runs, 0).await?;
    let large_t = measure(&large, work, args.runs, args.clone_runs).await?;

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let w = median(&large_t.writer);
    let warm = median(&large_t.warm);
    println!(
        "{} files, {} commits (median of runs):",
        args.files, args.commits
    );
    println!(
        "  {:<52} {:>10}",
        "git2 writer (fetch, edit, commit, push)",
        ms(w)
    );
    println!(
        "  {:<52} {:>10}   writer is {:.1}x faster",
        "git CLI, warm checkout (pull, edit, commit -a, push)",
        ms(warm),
        ratio(warm, w)
    );
    if !large_t.clone.is_empty() {
        let c = median(&large_t.clone);
        println!(
            "  {:<52} {:>10}   writer is {:.0}x faster",
            "git CLI, clone --depth 1 per change",
            ms(c),
            ratio(c, w)
        );
    }
    let sw = median(&small_t.writer);
    let swarm = median(&small_t.warm);
    println!(
        "\ngrowth from {} to {} files ({}x the files):",
        args.small_files,
        args.files,
        args.files / args.small_files.max(1)
    );
    println!(
        "  {:<52} {:>10} -> {:>10}   x{:.2}",
        "git2 writer",
        ms(sw),
        ms(w),
        ratio(w, sw)
    );
    println!(
        "  {:<52} {:>10} -> {:>10}   x{:.2}",
        "git CLI, warm checkout",
        ms(swarm),
        ms(warm),
        ratio(warm, swarm)
    );
    println!(
        "\n(first fetch into the writer's empty bare clone, not timed above: {} small, {} large)",
        ms(small_t.first_fetch),
        ms(large_t.first_fetch)
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

struct Timings {
    writer: Vec<Duration>,
    warm: Vec<Duration>,
    clone: Vec<Duration>,
    first_fetch: Duration,
}

/// Interleaved rounds so that load on the machine hits every method alike.
async fn measure(
    fx: &Fixture,
    work: &Path,
    runs: usize,
    clone_runs: usize,
) -> anyhow::Result<Timings> {
    let url = format!("file://{}", fx.remote.display());
    let remote = Remote {
        url: RemoteUrl::parse(&url).map_err(anyhow::Error::msg)?,
        auth: GitAuth::None,
    };
    let writer = Writer::open(
        &work.join(format!("data-{}", fx.name)),
        remote,
        Identity {
            name: "deploybot".into(),
            email: "deploybot@bench.invalid".into(),
        },
        crate::config::Config::default().gitops.retry,
        BranchLocks::default(),
    )?;
    // Warm-up: the first write fills the empty bare clone.
    let t = Instant::now();
    write_once(fx, &writer, 0, "warmup").await?;
    let first_fetch = t.elapsed();

    let warm_dir = work.join(format!("warm-{}", fx.name));
    git(work, &["clone", "-q", &url, path_str(&warm_dir)?])?;

    let mut out = Timings {
        writer: Vec::new(),
        warm: Vec::new(),
        clone: Vec::new(),
        first_fetch,
    };
    for round in 1..=runs {
        let t = Instant::now();
        write_once(fx, &writer, round, "git2").await?;
        out.writer.push(t.elapsed());

        let t = Instant::now();
        git(&warm_dir, &["pull", "-q", "--ff-only"])?;
        cli_edit(fx, &warm_dir, round, "warm")?;
        git(
            &warm_dir,
            &["commit", "-q", "-a", "-m", "bench: warm checkout"],
        )?;
        git(&warm_dir, &["push", "-q", "origin", "main"])?;
        out.warm.push(t.elapsed());

        if round <= clone_runs {
            let dir = work.join(format!("clone-{}-{round}", fx.name));
            let t = Instant::now();
            git(
                work,
                &["clone", "-q", "--depth", "1", &url, path_str(&dir)?],
            )?;
            cli_edit(fx, &dir, round, "clone")?;
            git(
                &dir,
                &["commit", "-q", "-a", "-m", "bench: clone per change"],
            )?;
            git(&dir, &["push", "-q", "origin", "main"])?;
            out.clone.push(t.elapsed());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(out)
}

async fn write_once(fx: &Fixture, w: &Writer, round: usize, who: &str) -> anyhow::Result<()> {
    let service = fx.service_for(round, who);
    let edit = ImageLineEdit {
        path: fx.deployment_path(service),
        image: image(service),
        tag: format!("{who}-{round}"),
    };
    let info = CommitInfo {
        summary: format!("bench {who} {round}"),
        deploy_id: format!("bench-{round}"),
        service: format!("svc-{service:05}"),
        environment: "bench".into(),
        ..CommitInfo::default()
    };
    let out = w
        .write("main", vec![Arc::new(edit) as Arc<dyn FileEdit>], info)
        .await?;
    anyhow::ensure!(
        matches!(out, crate::adapters::gitops::WriteOutcome::Committed { .. }),
        "bench write made no commit"
    );
    Ok(())
}

fn cli_edit(fx: &Fixture, checkout: &Path, round: usize, who: &str) -> anyhow::Result<()> {
    let service = fx.service_for(round, who);
    let path = checkout.join(fx.deployment_path(service));
    let text = std::fs::read_to_string(&path)?;
    let edit = ImageLineEdit {
        path: String::new(),
        image: image(service),
        tag: format!("{who}-{round}"),
    };
    let edited = edit.apply(&text).map_err(anyhow::Error::msg)?;
    std::fs::write(&path, edited.text)?;
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", p.display()))
}

/// Runs the git CLI with a fixed identity and no user config.
pub(super) fn git(cwd: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@bench.invalid",
        ])
        .args(args)
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "git {} in {}: {}",
        args.join(" "),
        cwd.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn image(service: usize) -> String {
    format!("registry.example.com/shop/svc-{service:05}")
}

const KINDS: [&str; 10] = [
    "deployment",
    "service",
    "configmap",
    "hpa",
    "pdb",
    "serviceaccount",
    "networkpolicy",
    "ingress",
    "servicemonitor",
    "kustomization",
];

/// A generated GitOps repository: `apps/team-TT/svc-NNNNN/<kind>.yaml`, 10 files a service,
/// 100 services a team, in a bare remote built with `git fast-import`.
struct Fixture {
    name: String,
    remote: PathBuf,
    services: usize,
}

impl Fixture {
    fn generate(work: &Path, name: &str, files: usize, commits: usize) -> anyhow::Result<Fixture> {
        let t = Instant::now();
        let remote = work.join(format!("{name}.git"));
        git(
            work,
            &["init", "-q", "--bare", "-b", "main", path_str(&remote)?],
        )?;
        let fx = Fixture {
            name: name.to_string(),
            remote,
            services: files / KINDS.len(),
        };
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .env("GIT_DIR", &fx.remote)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        {
            let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("piped stdin"));
            let mut when = 1_700_000_000u64;
            let mut commit = |out: &mut dyn Write, msg: &str, files: &[(String, String)]| {
                when += 60;
                let mut s = format!(
                    "commit refs/heads/main\nauthor Gen <gen@bench.invalid> {when} +0000\n\
                     committer Gen <gen@bench.invalid> {when} +0000\ndata {}\n{msg}\n",
                    msg.len()
                );
                for (path, content) in files {
                    s.push_str(&format!(
                        "M 100644 inline {path}\ndata {}\n{content}\n",
                        content.len()
                    ));
                }
                out.write_all(s.as_bytes())
            };
            let mut all = Vec::with_capacity(fx.services * KINDS.len());
            for svc in 0..fx.services {
                for kind in KINDS {
                    all.push((fx.path(svc, kind), manifest(svc, kind, "1.0.0")));
                }
            }
            commit(&mut stdin, "initial import", &all)?;
            for i in 1..commits {
                let svc = (i * 7919) % fx.services;
                let files = [(
                    fx.deployment_path(svc),
                    manifest(svc, "deployment", &format!("1.{}.0", i)),
                )];
                commit(
                    &mut stdin,
                    &format!("svc-{svc:05}: release 1.{i}.0"),
                    &files,
                )?;
            }
            stdin.flush()?;
        }
        let status = child.wait()?;
        anyhow::ensure!(
            status.success(),
            "git fast-import failed for the {name} repository"
        );
        println!(
            "generated {name}: {} files, {commits} commits in {:.1} s",
            fx.services * KINDS.len(),
            t.elapsed().as_secs_f64()
        );
        Ok(fx)
    }

    fn path(&self, service: usize, kind: &str) -> String {
        format!(
            "apps/team-{:02}/svc-{service:05}/{kind}.yaml",
            service / 100
        )
    }

    fn deployment_path(&self, service: usize) -> String {
        self.path(service, "deployment")
    }

    /// A different service per method and round, so no two changes touch the same file.
    fn service_for(&self, round: usize, who: &str) -> usize {
        let salt = who.bytes().map(usize::from).sum::<usize>();
        (round * 104_729 + salt * 31) % self.services
    }
}

fn manifest(svc: usize, kind: &str, tag: &str) -> String {
    let name = format!("svc-{svc:05}");
    match kind {
        "deployment" => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    \
             app: {name}\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: {name}\n  \
             template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      \
             containers:\n        - name: app\n          image: {}:{tag} # deploybot\n          \
             ports:\n            - containerPort: 8080\n",
            image(svc)
        ),
        other => format!(
            "# {other} of {name}\napiVersion: v1\nkind: {other}\nmetadata:\n  name: {name}\n  \
             labels:\n    app: {name}\n    team: team-{:02}\n",
            svc / 100
        ),
    }
}

/// Sets the tag on the `image: <image>:TAG` line.
struct ImageLineEdit {
    path: String,
    image: String,
    tag: String,
}

impl FileEdit for ImageLineEdit {
    fn path(&self) -> &str {
        &self.path
    }

    fn apply(&self, text: &str) -> Result<Edited, EditError> {
        let needle = format!("image: {}:", self.image);
        let Some(at) = text.find(&needle) else {
            return Err(EditError::Invalid {
                path: self.path.clone(),
                message: format!("no image {}", self.image),
            });
        };
        let start = at + needle.len();
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |e| start + e);
        let old = &text[start..end];
        let changes = if old == self.tag {
            Vec::new()
        } else {
            vec![ValueChange {
                location: format!("image {}", self.image),
                line: text[..start].matches('\n').count() + 1,
                old: old.to_string(),
                new: self.tag.clone(),
            }]
        };
        Ok(Edited {
            text: format!("{}{}{}", &text[..start], self.tag, &text[end..]),
            splices: vec![deploybot_core::manifest::yaml::Splice {
                start,
                end,
                with: self.tag.clone(),
            }],
            changes,
        })
    }
}
