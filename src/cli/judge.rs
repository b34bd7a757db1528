//! `deploybot judge`: replay recorded scenarios through the configured judge and print, per
//! scenario, the final decision, the interval it was reached at and why. Reads only what a live
//! judge would see (the answer key in a scenario file is never parsed here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use deploybot_core::canary::scenario::Scenario;
use deploybot_core::canary::{JudgeConfig, replay};

#[derive(Debug, clap::Args)]
pub struct JudgeArgs {
    /// A deploybot config file (the judge of `--service`, or of the first service) or a file
    /// holding only the judge settings (`services[].analysis.judge`). Defaults apply without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// With a deploybot config: the service whose judge settings to use.
    #[arg(long)]
    pub service: Option<String>,
    /// One JSON object per line: `scenario`, `decision`, `step`, `reason`.
    #[arg(long)]
    pub json: bool,
    /// Scenario files (`deploybot-canary-scenario/1`).
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

pub async fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => load_judge_config(path, args.service.as_deref())?,
        None => JudgeConfig::default(),
    };
    let mut out = std::io::stdout().lock();
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
