//! `deploybot demo`: the real pipeline on embedded defaults, with no network and no account.
//!
//! It creates a workspace (a bare GitOps repository with staging and production overlays, the
//! config, a data directory), assesses two real changes with the policy, and ships each through
//! the real rollout state machine, the real GitOps writer (commits and pushes to the bare
//! repository), the real judge and the real store. What is not real: metrics come from a replay
//! (a healthy canary for the first change, a regressed one for the second), there is no GitHub
//! (comments are printed instead), no Argo CD (a settle time instead), and time is a virtual
//! clock, so a 30-minute rollout takes seconds.
//!
//! It exits 0 when everything behaved as designed (healthy promoted through every environment,
//! regression reverted in the first), non-zero with the reason otherwise.

pub mod workspace;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::adapters::scenario;
use crate::adapters::store::Store;
use crate::config::Config;
use crate::shell::driver::Clock;
use crate::shell::pipeline::{Gate, Pipeline, Release};
use crate::shell::runner::{LiveRunner, RunnerParts, WindowSource};
use deploybot_core::canary::sample::Window;
use deploybot_core::canary::scenario::Truth;
use deploybot_core::failure::Failure;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Phase, Revert, Rollout};
use workspace::Workspace;

/// The two changes the demo ships, as `git format-patch` output.
const CHANGES: &[(&str, &str)] = &[
    (
        "01-cart-coupon-message.patch",
        include_str!("../../demo/changes/01-cart-coupon-message.patch"),
    ),
    (
        "02-orders-currency-migration.patch",
        include_str!("../../demo/changes/02-orders-currency-migration.patch"),
    ),
];

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Workspace directory (created; must be new or empty). Default: a new temporary directory,
    /// kept after the demo so it can be inspected.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Replay file for the canary metrics of each change, in order (repeat the flag; the format
    /// of fixtures/canary-bench/scenarios). Its `truth` says what the demo expects: promote,
    /// rollback or hold. Default: a healthy canary, then one with 5x the baseline's errors.
    #[arg(long = "scenario", value_name = "FILE")]
    pub scenarios: Vec<PathBuf>,
    /// Virtual seconds per tick of the rollout loop (1 to 600).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=600))]
    pub tick_seconds: i64,
    /// Also serve the status page (and GET /api/rollouts) on this address, e.g. 127.0.0.1:8080,
    /// during the demo and after it until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
    /// Real milliseconds to wait per tick, to watch the rollouts move on the status page.
    #[arg(long, default_value_t = 0)]
    pub pace_ms: u64,
}

/// A clock the demo moves by hand.
#[derive(Debug, Clone)]
pub struct VirtualClock(Arc<AtomicI64>);

impl VirtualClock {
    pub fn starting_at(t: DateTime<Utc>) -> Self {
        VirtualClock(Arc::new(AtomicI64::new(t.timestamp_millis())))
    }

    pub fn advance(&self, seconds: i64) -> DateTime<Utc> {
        self.0.fetch_add(seconds * 1000, Ordering::SeqCst);
        self.now()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// Metrics replayed from one recorded window per image tag: each canary step sees the recording
/// from its start, as if every step had the same traffic (so do the earlier steps the judge
/// re-reads, and the history before the rollout, whose baseline is all the judge reads of it). The replay's own canary share is kept,
/// so the judge's sample-ratio check sees the split that was recorded.
pub struct ReplayWindows {
    by_tag: Vec<(String, Window)>,
}

impl ReplayWindows {
    /// Replays `window` for the rollouts of each image tag.
    pub fn new(by_tag: Vec<(String, Window)>) -> Self {
        ReplayWindows { by_tag }
    }
}

impl WindowSource for ReplayWindows {
    async fn window(
        &self,
        rollout: &Rollout,
        start: i64,
        end: i64,
        step_secs: u64,
    ) -> Result<Window, Failure> {
        let recorded = self
            .by_tag
            .iter()
            .find(|(tag, _)| *tag == rollout.image_tag())
            .map(|(_, w)| w)
            .ok_or_else(|| {
                Failure::transient(
                    "replaying metrics",
                    format!("no replay for {}", rollout.image_tag()),
                )
            })?;
        if step_secs != recorded.step_seconds {
            return Err(Failure::permanent(
                "replaying metrics",
                format!(
                    "the replay has {}s intervals, the rollout asks for {step_secs}s",
                    recorded.step_seconds
                ),
            ));
        }
        let n = usize::try_from((end - start).max(0) / step_secs as i64).unwrap_or(0);
        Ok(Window {
            intervals: recorded.intervals.iter().take(n).cloned().collect(),
            ..recorded.clone()
        })
    }
}

/// One change to ship and the replay its canary gets.
struct Shipment {
    change_name: String,
    change: deploybot_core::risk::Change,
    tag: String,
    scenario_name: String,
    window: Window,
    truth: Truth,
}

fn default_scenarios() -> Vec<(String, Window, Truth)> {
    [("healthy-flat", 7), ("errors-x5.0", 11)]
        .iter()
        .filter_map(|(family, seed)| {
            deploybot_core::canary::generate::suite(1, *seed)
                .into_iter()
                .find(|g| g.family == *family)
                .map(|g| (g.scenario.name, g.scenario.window, g.truth))
        })
        .collect()
}

fn load_scenarios(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Window, Truth)>> {
    paths
        .iter()
        .map(|p| {
            let s = scenario::load(p).with_context(|| format!("reading {}", p.display()))?;
            let truth = scenario::load_labels(p)
                .map(|l| l.truth)
                .unwrap_or(Truth::Promote);
            Ok((s.name, s.window, truth))
        })
        .collect()
}

/// What the demo expected of one change and what happened.
struct Outcome {
    line: String,
    as_designed: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("deploybot-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep(),
    };
    let ws = Workspace::create(&root)?;
    let config = Arc::new(crate::config::from_yaml(
        &ws.config_text(),
        &ws.config_path,
    )?);
    std::fs::create_dir_all(&ws.data_dir)?;
    let store = Store::open(&config.store.database_path())?;

    let scenarios = if args.scenarios.is_empty() {
        default_scenarios()
    } else {
        load_scenarios(&args.scenarios)?
    };
    let policy = &config.risk.policy;
    let thresholds = config.risk.thresholds;
    let shipments: Vec<Shipment> = scenarios
        .into_iter()
        .enumerate()
        .map(|(i, (scenario_name, window, truth))| {
            let (name, text) = CHANGES[i % CHANGES.len()];
            let mut change = deploybot_core::risk::diff::parse_unified_diff(text)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
                .into_change();
            // `git format-patch` carries the title and author in mail headers.
            for line in text.lines().take_while(|l| !l.is_empty()) {
                if let Some(subject) = line.strip_prefix("Subject: ") {
                    let title = match subject.strip_prefix("[PATCH") {
                        Some(rest) => rest.split_once("] ").map_or(rest, |(_, t)| t),
                        None => subject,
                    };
                    change.title = title.to_string();
                } else if let Some(from) = line.strip_prefix("From: ") {
                    change.author = Some(from.split(" <").next().unwrap_or(from).to_string());
                }
            }
            Ok(Shipment {
                change_name: name.to_string(),
                change,
                tag: format!("1.5.{i}"),
                scenario_name,
                window,
                truth,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let clock = VirtualClock::starting_at(
        DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")?.with_timezone(&Utc),
    );
    let windows = ReplayWindows::new(
        shipments
            .iter()
            .map(|s| (s.tag.clone(), s.window.clone()))
            .collect(),
    );
    let runner = LiveRunner::new(RunnerParts::offline(
        config.clone(),
        store.clone(),
        windows,
        Arc::new(clock.clone()),
    ));
    let pipeline = Pipeline::new(config.clone(), store.clone(), runner);
    let view = View::new(std::io::stdout().is_terminal());
    let server = match args.serve {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            // Pages are dated by the wall clock: "rendered at" is when a person loaded the page,
            // even while the rollouts on it run on the demo's virtual time.
            let app = crate::shell::status_page::page_router(
                store.clone(),
                Arc::new(crate::adapters::clock::SystemClock),
            )
            .merge(crate::shell::status_api::api_router(store.clone()));
            println!("  status page   http://{}/", listener.local_addr()?);
            Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ))
        }
        None => None,
    };

    println!("deploybot demo");
    println!("  workspace     {}", ws.root.display());
    println!(
        "  gitops repo   {} (bare, branch main)",
        ws.gitops.display()
    );
    println!("  config        {}", ws.config_path.display());
    println!();

    let mut outcomes = Vec::new();
    for (i, s) in shipments.iter().enumerate() {
        let a = policy.assess(&s.change, &thresholds);
        let gate = Gate::from_assessment(&a);
        println!("change {}: {} ({})", i + 1, s.change.title, s.change_name);
        println!(
            "  risk {:.2} ({}) -> {}{}; canary metrics replayed from {}",
            a.risk_score,
            a.tier.as_str(),
            a.recommended_strategy.as_str(),
            if a.requires_manual_approval {
                ", approval required"
            } else {
                ""
            },
            s.scenario_name
        );
        for f in a.risk_factors.iter().take(3) {
            println!("    {:.2} {}", f.weight, f.summary);
        }
        let release = Release {
            service: "checkout".into(),
            image_tag: s.tag.clone(),
            previous_tag: "1.4.2".into(),
            changed_files: s.change.files.iter().map(|f| f.path.clone()).collect(),
            commit_message: s.change.title.clone(),
            author: s.change.author.clone().unwrap_or_default(),
            pull_request: None,
            commit_sha: None,
        };
        pipeline
            .start(&release, gate, None, "demo", clock.now())
            .await?;
        let started = clock.now();
        let mut ticks = 0;
        loop {
            if args.pace_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(args.pace_ms)).await;
            }
            let now = clock.advance(args.tick_seconds);
            pipeline.tick(now).await?;
            ticks += 1;
            let mine: Vec<Rollout> = store
                .recent(Some("checkout"), 50)?
                .into_iter()
                .filter(|r| r.image_tag() == s.tag)
                .collect();
            view.show(&mine, now);
            if settled(&config, &mine) || ticks > 2000 {
                break;
            }
        }
        view.finish();
        let mine: Vec<Rollout> = store
            .recent(Some("checkout"), 50)?
            .into_iter()
            .filter(|r| r.image_tag() == s.tag)
            .collect();
        let virtual_minutes = (clock.now() - started).num_minutes();
        let o = judge_outcome(&config, s, &mine, virtual_minutes);
        println!("  {}\n", o.line);
        outcomes.push(o);
        // A rollback holds the service; the next change is a new decision by a human.
        for env in ["staging", "production"] {
            crate::adapters::store::holds::release(&store, "checkout", env)?;
        }
    }

    print_summary(&ws, &outcomes)?;
    let code = if outcomes.iter().all(|o| o.as_designed) {
        println!("\nThe demo behaved as designed.");
        ExitCode::SUCCESS
    } else {
        println!("\nThe demo did NOT behave as designed: see the lines marked UNEXPECTED above.");
        ExitCode::from(1)
    };
    if let Some(server) = server {
        println!("Still serving the status page; Ctrl-C to stop.");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            r = server => { r??; }
        }
    }
    Ok(code)
}

/// Whether a release has nothing more to do: every rollout of it is terminal or paused, and a
/// completed one has no next environment left to start.
fn settled(config: &Config, rollouts: &[Rollout]) -> bool {
    if rollouts.is_empty() {
        return false;
    }
    let stuck = |r: &Rollout| r.phase().is_terminal() || matches!(r.phase(), Phase::Paused { .. });
    if !rollouts.iter().all(|r| stuck(r) && !r.revert_owed()) {
        return false;
    }
    let envs: Vec<&str> = config.services[0]
        .environments()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let last = envs.last().copied();
    // Completed everywhere, or stopped before the last environment.
    rollouts.iter().any(|r| r.phase() != Phase::Complete)
        || rollouts.iter().any(|r| Some(r.environment()) == last)
}

fn judge_outcome(config: &Config, s: &Shipment, rollouts: &[Rollout], minutes: i64) -> Outcome {
    let envs: Vec<&str> = config.services[0]
        .environments()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let all_complete = envs.iter().all(|e| {
        rollouts
            .iter()
            .any(|r| r.environment() == *e && r.phase() == Phase::Complete)
    });
    let rolled_back = rollouts
        .iter()
        .find(|r| matches!(r.rollback(), Some((_, Some(Revert::Done { .. })))));
    let paused = rollouts
        .iter()
        .find(|r| matches!(r.phase(), Phase::Paused { .. }));
    let promoted_anywhere_unverified = matches!(s.truth, Truth::Unverifiable) && all_complete;
    let (what, as_designed) = if all_complete {
        (
            format!(
                "promoted through {} in {minutes} virtual minutes",
                envs.join(" -> ")
            ),
            s.truth == Truth::Promote,
        )
    } else if let Some(r) = rolled_back {
        let (v, _) = r.rollback().expect("checked above");
        (
            format!(
                "rolled back in {} at {} after {minutes} virtual minutes: {} ({})",
                r.environment(),
                r.traffic(),
                v.reason,
                v.evidence
            ),
            s.truth == Truth::Rollback,
        )
    } else if let Some(r) = paused {
        (
            format!("paused in {}: {}", r.environment(), r.phase()),
            s.truth == Truth::Unverifiable,
        )
    } else {
        ("did not settle".to_string(), false)
    };
    let expected = match s.truth {
        Truth::Promote => "expected: promote",
        Truth::Rollback => "expected: rollback",
        Truth::Unverifiable => "expected: unverifiable, never promote",
    };
    Outcome {
        line: format!(
            "{} {what} [{expected}]",
            if as_designed && !promoted_anywhere_unverified {
                "OK"
            } else {
                "UNEXPECTED"
            }
        ),
        as_designed: as_designed && !promoted_anywhere_unverified,
    }
}

fn print_summary(ws: &Workspace, outcomes: &[Outcome]) -> anyhow::Result<()> {
    println!("summary");
    for (i, o) in outcomes.iter().enumerate() {
        println!("  change {}: {}", i + 1, o.line);
    }
    println!("\ngit log of the GitOps repository (newest first):\n");
    let repo = git2::Repository::open_bare(&ws.gitops)?;
    let mut walk = repo.revwalk()?;
    walk.push_ref("refs/heads/main")?;
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        println!(
            "commit {}\nAuthor: {} <{}>\n",
            c.id(),
            c.author().name().unwrap_or("?"),
            c.author().email().unwrap_or("?")
        );
        for line in c.message().unwrap_or("").lines() {
            println!("    {line}");
        }
        println!();
    }
    let exe = "deploybot";
    println!("inspect it yourself:");
    println!("  git -C {} log -p main", ws.gitops.display());
    println!("  {exe} status --data-dir {}", ws.data_dir.display());
    println!(
        "  {exe} history --data-dir {} checkout",
        ws.data_dir.display()
    );
    Ok(())
}

/// Progress output: a redrawn line per tick on a terminal, and a permanent line per phase
/// change either way (so a log file reads as a story).
struct View {
    tty: bool,
    seen: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl View {
    fn new(tty: bool) -> Self {
        View {
            tty,
            seen: Default::default(),
        }
    }

    fn show(&self, rollouts: &[Rollout], now: DateTime<Utc>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let clock = now.format("%H:%M");
        for r in rollouts.iter().rev() {
            let state = format!("{} {}", r.phase(), r.traffic());
            if seen.get(&r.deploy_id) != Some(&state) {
                if self.tty {
                    print!("\r\x1b[2K");
                }
                let evidence = r
                    .latest
                    .as_ref()
                    .map(|s| format!(" | judge: {}", observation_text(&s.observation)))
                    .unwrap_or_default();
                println!(
                    "  [{clock}] {:<10} {:<28} traffic {:>4}{evidence}",
                    r.environment(),
                    r.phase().to_string(),
                    r.traffic().to_string()
                );
                seen.insert(r.deploy_id.clone(), state);
            }
        }
        if self.tty
            && let Some(r) = rollouts.first()
        {
            let evidence = r
                .latest
                .as_ref()
                .map(|s| observation_text(&s.observation))
                .unwrap_or_else(|| "waiting for the first interval".into());
            print!(
                "\r\x1b[2K  [{clock}] {} {} {}: {evidence}",
                r.environment(),
                r.phase(),
                r.traffic()
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
    }

    fn finish(&self) {
        if self.tty {
            print!("\r\x1b[2K");
        }
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn observation_text(o: &deploybot_core::rollout::Observation) -> String {
    use deploybot_core::rollout::Observation as O;
    match o {
        O::Continue => "continue".into(),
        O::Promote => "promote".into(),
        O::Rollback { metric, evidence } => format!("rollback ({metric}: {evidence})"),
        O::Inconclusive { reason, .. } => format!("inconclusive ({reason})"),
    }
}
