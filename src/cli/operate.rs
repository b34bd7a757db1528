//! `deploybot rollout ...`: the operator's hands on the pipeline. `start` ships a tag to a
//! service (the CLI twin of a merged PR or `/deploy`), the others steer one rollout the way PR
//! commands do (`/promote`, `/pause`, `/resume`, `/rollback`, `/hold`, `/hold cancel`), and
//! `release` lifts the hold a rollback left on a service.
//!
//! These run in their own process against the same store and GitOps repository as `serve`:
//! the store refuses a transition computed from a stale record, and git pushes never force, so
//! the two cannot overwrite each other. `serve`'s loop carries on from whatever this did.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::adapters::secrets::Secrets;
use crate::adapters::store::{Location, Store};
use crate::config::{Config, SecretKey};
use crate::shell::driver::{Clock, SystemClock};
use crate::shell::pipeline::{Gate, Pipeline, Release};
use crate::shell::runner::{LiveRunner, PrometheusWindows, RunnerParts};
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::input::{Command, Input};
use deploybot_core::rollout::step::Outcome;
use deploybot_core::rollout::store::RolloutStore;

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Ship TAG of SERVICE: a new rollout in the first environment (or --env), superseding the
    /// live one there (refused while one is live if the service says `on_new_version: queue`,
    /// and while the service is held there). Performs the first step now; `serve` carries the
    /// rollout on.
    Start {
        #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
        config: PathBuf,
        service: String,
        tag: String,
        /// Environment (default: the service's first).
        #[arg(long)]
        env: Option<String>,
        /// How to ship: direct, canary_25, canary_10 or canary_5 (what a risk assessment
        /// would pick; the operator takes that responsibility here).
        #[arg(long, default_value = "canary_5", value_parser = parse_strategy)]
        strategy: Strategy,
        /// Require an approval PR even where the environment does not.
        #[arg(long)]
        approval: bool,
    },
    /// Skip the rest of the current step's bake (advances on the judge's next Promote).
    Promote(Steer),
    /// Stop where it is; nothing is promoted until `resume`.
    Pause(Steer),
    /// Carry on after a pause (the current step's bake starts again).
    Resume(Steer),
    /// Revert the rollout's commits now and hold the service.
    Rollback(Steer),
    /// Emergency stop; only `unhold` lifts it.
    Hold(Steer),
    /// Lift an emergency hold (`/hold cancel`).
    Unhold(Steer),
    /// Let SERVICE be deployed to ENV again after a rollback held it.
    Release {
        #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
        config: PathBuf,
        service: String,
        env: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct Steer {
    #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
    pub config: PathBuf,
    /// The rollout (its deploy id, as `deploybot status` shows it).
    pub deploy_id: String,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "direct" => Ok(Strategy::Direct),
        "canary_25" => Ok(Strategy::Canary25),
        "canary_10" => Ok(Strategy::Canary10),
        "canary_5" => Ok(Strategy::Canary5),
        other => Err(format!(
            "{other:?}: expected direct, canary_25, canary_10 or canary_5"
        )),
    }
}

fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    format!("cli:{user}")
}

type LivePipeline = Pipeline<LiveRunner<PrometheusWindows>>;

/// The pipeline `serve` would run, without GitHub when no token is configured (comments and
/// labels are then only logged). The secrets it uses are read now; each one that cannot be is
/// named, and nothing runs.
fn pipeline(config_path: &std::path::Path) -> anyhow::Result<(LivePipeline, Arc<Config>)> {
    let config = Arc::new(crate::config::load_shape(config_path)?);
    let secrets = Secrets::read(
        &config,
        &[
            SecretKey::GithubToken,
            SecretKey::GithubAppKey,
            SecretKey::GitopsToken,
            SecretKey::PrometheusBearerToken,
            SecretKey::ArgoCdToken,
            SecretKey::StorePassword,
        ],
    )
    .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let location = Location::of(
        &config.store,
        secrets.get(SecretKey::StorePassword).cloned(),
    );
    let store = Store::open_at(&location).context("opening the store")?;
    // Before any git operation: without it a remote that stops answering holds the command
    // forever (only `serve` set it).
    crate::adapters::gitops::set_network_timeout(config.gitops.timeout.as_duration());
    let tokens = crate::adapters::github_auth::from_config(&config.github, Arc::new(SystemClock))
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let github = if config.github.authenticated() {
        Some(Arc::new(
            crate::adapters::github::GithubRest::with_tokens(
                config.github.api_base(),
                Arc::clone(&tokens),
            )
            .context("setting up the GitHub client")?
            .with_timeout(config.github.timeout.as_duration()),
        ) as Arc<dyn deploybot_core::github::Github>)
    } else {
        None
    };
    let argocd = crate::adapters::argocd::ArgoCdServers::from_config(
        &config,
        secrets.get(SecretKey::ArgoCdToken),
    )
    .map_err(anyhow::Error::msg)?;
    let mut parts = RunnerParts::offline(
        Arc::clone(&config),
        store.clone(),
        PrometheusWindows::new(Arc::clone(&config), &secrets),
        Arc::new(SystemClock),
    );
    parts.gitops = crate::shell::runner::gitops_writers(
        &config,
        crate::adapters::github_auth::for_gitops(&config, &tokens)
            .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?,
    );
    parts.github = github;
    parts.github_authenticated = config.github.authenticated();
    parts.argocd = argocd;
    let runner = LiveRunner::new(parts);
    Ok((Pipeline::new(Arc::clone(&config), store, runner), config))
}

pub async fn run(cmd: RolloutCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let (steer, command) = match cmd {
        RolloutCommand::Start {
            config,
            service,
            tag,
            env,
            strategy,
            approval,
        } => {
            let (pipeline, _) = pipeline(&config)?;
            let release = Release {
                service,
                image_tag: tag,
                previous_tag: String::new(),
                changed_files: Vec::new(),
                commit_message: format!("started by {}", operator()),
                author: operator(),
                pull_request: None,
                commit_sha: None,
            };
            let gate = Gate {
                // The operator chose the strategy; the score only records that no assessment ran.
                risk_score: 0.0,
                strategy,
                approval_required: approval,
            };
            let id = pipeline
                .start(&release, gate, env.as_deref(), &operator(), now)
                .await?;
            let r = pipeline
                .store()
                .get(&id)?
                .context("the rollout just started")?;
            println!("{}", crate::cli::rollouts::render_rollout(&r).trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCommand::Release {
            config,
            service,
            env,
        } => {
            let (pipeline, _) = pipeline(&config)?;
            let released =
                crate::adapters::store::holds::release(pipeline.store(), &service, &env)?;
            println!(
                "{service}/{env}: {}",
                if released {
                    "released; it can be deployed again"
                } else {
                    "was not held"
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCommand::Promote(s) => (s, Command::Promote),
        RolloutCommand::Pause(s) => (s, Command::Pause),
        RolloutCommand::Resume(s) => (s, Command::Resume),
        RolloutCommand::Rollback(s) => (s, Command::Rollback),
        RolloutCommand::Hold(s) => (s, Command::Hold),
        RolloutCommand::Unhold(s) => (s, Command::HoldCancel),
    };
    let (pipeline, _) = pipeline(&steer.config)?;
    if pipeline.store().get(&steer.deploy_id)?.is_none() {
        anyhow::bail!("no rollout {:?} (see `deploybot status`)", steer.deploy_id);
    }
    let input = Input::Command {
        cmd: command,
        by: operator(),
    };
    let transitions = pipeline.feed(&steer.deploy_id, input, now).await?;
    let first = transitions.first().context("no transition")?;
    println!("{}: {}", command.as_str(), first.note);
    if let Some(r) = pipeline.store().get(&steer.deploy_id)? {
        println!("{}", crate::cli::rollouts::render_rollout(&r).trim_end());
    }
    Ok(if first.outcome == Outcome::Rejected {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
