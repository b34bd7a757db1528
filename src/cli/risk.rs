//! `deploybot assess`: assess a unified diff (file or stdin) or a pull request (through the GitHub
//! API) and print the result, readable or as one JSON object.
//!
//! It only wires inputs to `shell::assess` and formats the answer; it decides nothing itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::adapters::secrets::Secrets;
use crate::config::{Config, SecretKey};
use deploybot_core::risk::{Assessment, FactorSource};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["diff", "repo"])))]
pub struct AssessArgs {
    /// Unified diff to assess (`git diff` / `git show` output); `-` reads stdin.
    #[arg(long, value_name = "FILE|-")]
    pub diff: Option<String>,
    /// Pull request repository (`OWNER/NAME`), assessed through the GitHub API (needs --pr).
    #[arg(long, value_name = "OWNER/NAME", requires = "pr")]
    pub repo: Option<String>,
    /// Pull request number (with --repo).
    #[arg(long, requires = "repo")]
    pub pr: Option<u64>,
    /// With --repo/--pr: also post the comment, labels and commit status on the pull request.
    #[arg(long, requires = "repo")]
    pub publish: bool,
    /// Config file (risk, llm, github and store sections); without it the built-in policy decides.
    #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Use the thresholds of this configured service.
    #[arg(long)]
    pub service: Option<String>,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: AssessArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => crate::config::load_shape(path)?,
        None => Config::default(),
    };
    // Only the secrets this run uses: the model's key, and the token for a pull request.
    let wanted: &[SecretKey] = if args.diff.is_some() {
        &[SecretKey::LlmApiKey]
    } else if args.publish {
        // Publishing records the assessment in the store.
        &[
            SecretKey::LlmApiKey,
            SecretKey::GithubToken,
            SecretKey::GithubAppKey,
            SecretKey::StorePassword,
        ]
    } else {
        &[
            SecretKey::LlmApiKey,
            SecretKey::GithubToken,
            SecretKey::GithubAppKey,
        ]
    };
    let secrets =
        Secrets::read(&config, wanted).map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let assessment = if let Some(diff) = &args.diff {
        let text = read_diff(diff)?;
        crate::shell::assess::assess_diff(&config, &secrets, args.service.as_deref(), &text).await?
    } else {
        let repo = args
            .repo
            .as_deref()
            .expect("clap requires --repo or --diff");
        let pr = args.pr.expect("clap requires --pr with --repo");
        crate::shell::assess::assess_pr_from_cli(&config, &secrets, repo, pr, args.publish).await?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&assessment)?);
    } else {
        print!("{}", summary(&assessment));
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest diff `assess` reads: far beyond any pull request GitHub shows (it stops at 20,000
/// lines), and what the assessment's memory is bounded by.
pub const MAX_DIFF_BYTES: usize = 64 * 1024 * 1024;

fn read_diff(arg: &str) -> anyhow::Result<String> {
    let bytes = crate::adapters::input::read(std::path::Path::new(arg), MAX_DIFF_BYTES)
        .context("reading the diff")?;
    // Diffs may carry bytes of any encoding; the structure is ASCII, so lossy is safe here.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The readable summary.
pub fn summary(a: &Assessment) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "risk score  {:.3} ({})", a.risk_score, a.tier.as_str());
    let _ = writeln!(
        s,
        "strategy    {} (first step: {}% of traffic)",
        a.recommended_strategy,
        a.recommended_strategy.first_weight()
    );
    let _ = writeln!(
        s,
        "approval    {}",
        if a.requires_manual_approval {
            "required"
        } else {
            "not required"
        }
    );
    let _ = writeln!(s, "source      {}", source_name(a));
    if let Some(m) = &a.model {
        let _ = writeln!(
            s,
            "model       {m} (prompt {})",
            a.prompt_version.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s, "factors:");
    if a.risk_factors.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for f in &a.risk_factors {
        let src = match f.source {
            FactorSource::Policy => "policy",
            FactorSource::Llm => "llm",
        };
        let _ = writeln!(
            s,
            "  - [{src}] {} {:.3}: {}",
            f.category.as_str(),
            f.weight,
            f.summary
        );
        for path in f.files.iter().take(10) {
            let _ = writeln!(s, "      {path}");
        }
        if f.files.len() > 10 {
            let _ = writeln!(s, "      ... and {} more", f.files.len() - 10);
        }
    }
    if let Some(r) = &a.rationale {
        let _ = writeln!(s, "rationale:\n  {}", r.replace('\n', "\n  "));
    }
    s
}

fn source_name(a: &Assessment) -> &'static str {
    match a.source {
        deploybot_core::risk::AssessmentSource::Policy => "policy",
        deploybot_core::risk::AssessmentSource::Llm => "llm",
        deploybot_core::risk::AssessmentSource::Both => "both",
    }
}
