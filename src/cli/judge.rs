//! `deploybot judge`: replay recorded scenarios through the configured judge and print, per
//! scenario, the final decision, the interval it was reached at and why; with `--rollout`, replay
//! whole recorded rollouts step after step and print where each ended. Reads only what a live
//! judge would see (the answer key in a scenario file is never parsed here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use deploybot_core::canary::scenario::{RolloutScenario, Scenario};
use deploybot_core::canary::{JudgeConfig, replay, replay_rollout};

#[derive(Debug, clap::Args)]
pub struct JudgeArgs {
    /// A deploybot config file (the judge of `--service`, or of the first service) or a file
    /// holding only the judge settings (`services[].analysis.judge`). Defaults apply without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// With a deploybot config: the service whose judge settings to use.
    #[arg(long)]
    pub service: Option<String>,
    /// One JSON object per line: `scenario`, `decision`, `step`, `reason`; with `--rollout`,
    /// `scenario`, `outcome`, `step`, `interval`, `minutes`.
    #[arg(long)]
    pub json: bool,
    /// The files are whole rollouts (`deploybot-canary-rollout/1`): replay each step after step
    /// and print where it ended (complete, rollback or paused), at which step and interval, and
    /// the minutes judged in all.
    #[arg(long)]
    pub rollout: bool,
    /// Scenario files (`deploybot-canary-scenario/1`), or rollout files with `--rollout`.
    #[arg(required = true)]
    pub scenarios: Vec<PathBuf>,
}

/// Loads judge settings from either a whole deploybot config or a bare judge section.
pub fn load_judge_config(path: &Path, service: Option<&str>) -> anyhow::Result<JudgeConfig> {
    let text =
        crate::adapters::input::read_text(path, 1024 * 1024).context("reading judge config")?;
    let value: yaml_serde::Value = yaml_serde::from_str(&text)
        .with_context(|| format!("parsing judge config {}", path.display()))?;
    let is_full = value
        .as_mapping()
        .is_some_and(|m| m.contains_key("services") || m.contains_key("server"));
    if is_full {
        let config = crate::config::from_yaml(&text, path)?;
        let svc = match service {
            Some(name) => config
                .service(name)
                .with_context(|| format!("{}: no service named {name:?}", path.display()))?,
            None => config
                .services
                .first()
                .with_context(|| format!("{}: no services configured", path.display()))?,
        };
        return Ok(svc.analysis.judge.clone());
    }
    let mut judge: JudgeConfig = if text.trim().is_empty() {
        JudgeConfig::default()
    } else {
        yaml_serde::from_str(&text)
            .with_context(|| format!("parsing judge config {}", path.display()))?
    };
    let mut problems = Vec::new();
    match judge.renamed("judge") {
        Ok(Some((key, message))) => eprintln!("warning: {}: {key}: {message}", path.display()),
        Ok(None) => {}
        Err(problem) => problems.push(problem),
    }
    judge.validate("judge", &mut problems);
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid judge config {}:\n  - {}",
            path.display(),
            problems.join("\n  - ")
        );
    }
    Ok(judge)
}

/// One scenario's outcome as printed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub decision: String,
    pub step: usize,
    pub reason: String,
}

/// Replays one scenario to its final decision.
pub fn outcome(scenario: &Scenario, config: &JudgeConfig) -> Outcome {
    let d = replay(&scenario.window, config);
    Outcome {
        scenario: scenario.name.clone(),
        decision: d.verdict.name().to_string(),
        step: d.interval,
        reason: d.reason(),
    }
}

/// One rollout's outcome as printed with `--rollout --json` (the keys in this order).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutLine {
    pub scenario: String,
    /// `complete`, `rollback` or `paused`.
    pub outcome: String,
    /// The step (1-based) of the outcome.
    pub step: usize,
    /// The interval (1-based) of that step.
    pub interval: usize,
    /// Intervals judged in all, over every step.
    pub minutes: usize,
    /// Why (not printed in the JSON line).
    #[serde(skip)]
    pub reason: String,
}

/// Replays one rollout step after step to its outcome.
pub fn rollout_outcome(rollout: &RolloutScenario, config: &JudgeConfig) -> RolloutLine {
    let r = replay_rollout(&rollout.history, &rollout.steps, config);
    RolloutLine {
        scenario: rollout.name.clone(),
        outcome: r.outcome.name().to_string(),
        step: r.step,
        interval: r.interval,
        minutes: r.minutes,
        reason: r.decision.reason(),
    }
}

/// The readable table of `--rollout` without `--json`.
fn rollout_table(lines: &[RolloutLine]) -> String {
    let width = lines
        .iter()
        .map(|l| l.scenario.len())
        .max()
        .unwrap_or(0)
        .max("rollout".len());
    let mut out = format!(
        "{:<width$}  {:<8}  {:>4}  {:>8}  {:>7}  why\n",
        "rollout", "outcome", "step", "interval", "minutes"
    );
    for l in lines {
        out += &format!(
            "{:<width$}  {:<8}  {:>4}  {:>8}  {:>7}  {}\n",
            l.scenario, l.outcome, l.step, l.interval, l.minutes, l.reason
        );
    }
    out
}

pub async fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => load_judge_config(path, args.service.as_deref())?,
        None => JudgeConfig::default(),
    };
    let mut out = std::io::stdout().lock();
    if args.rollout {
        let mut lines = Vec::with_capacity(args.scenarios.len());
        for path in &args.scenarios {
            let rollout = crate::adapters::scenario::load_rollout(path)?;
            let line = rollout_outcome(&rollout, &config);
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            lines.push(line);
        }
        if !args.json {
            write!(out, "{}", rollout_table(&lines))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    for path in &args.scenarios {
        let scenario = crate::adapters::scenario::load(path)?;
        let o = outcome(&scenario, &config);
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&o)?)?;
        } else {
            writeln!(
                out,
                "{}: {} at step {}: {}",
                o.scenario, o.decision, o.step, o.reason
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
