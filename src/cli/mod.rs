//! The command line: one readable `match` over what the user asked for. `main` only maps the
//! result to an exit code and prints the error chain.

pub mod analyze;
pub mod bench;
pub mod deliveries;
pub mod judge;
pub mod manifest;
pub mod operate;
pub mod risk;
pub mod rollouts;
pub mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// deploybot: decides how each change ships, ships it through git, and takes it back when
/// production says no.
#[derive(Debug, Parser)]
#[command(name = "deploybot", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DEPLOYBOT_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ship two changes through the real pipeline on a local GitOps repository, with replayed
    /// metrics and a virtual clock: no network, no account, no API key. Exits 0 when the
    /// healthy change is promoted and the regression reverted.
    Demo(crate::demo::DemoArgs),
    /// Run the service: receive GitHub webhooks and process them from the durable queue.
    ///
    /// Refuses to start without a webhook secret (server.webhook_secret_env or _file), and when
    /// any secret the config references cannot be read (each one is named).
    /// Log verbosity follows RUST_LOG (default: info).
    Serve {
        /// Path of the YAML config file (see examples/deploybot.yaml).
        #[arg(long, short, env = "DEPLOYBOT_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print the effective config (secrets appear only as references).
    ///
    /// Also checks that every secret the config references can be read here, as `serve` will:
    /// a missing one is a problem like any other. Where the secrets are not mounted (CI, a
    /// laptop), pass --shape-only. Deprecated keys are printed as warnings (stderr) and the
    /// effective config uses their replacements. Exits 0 when valid, 1 with every problem listed
    /// (each naming its key, the value and the fix) otherwise.
    CheckConfig {
        /// Path of the YAML config file.
        file: PathBuf,
        /// Check everything but whether the referenced secrets can be read.
        #[arg(long)]
        shape_only: bool,
    },
    /// Edit manifests in place, preserving every byte the edit does not own.
    #[command(subcommand)]
    Manifest(crate::cli::manifest::ManifestCommand),
    /// Assess the risk of a diff or a pull request and print the strategy.
    Assess(crate::cli::risk::AssessArgs),
    /// Replay canary scenarios through the judge and print each verdict.
    Judge(crate::cli::judge::JudgeArgs),
    /// Run the judge on live Prometheus data for one service and environment.
    Analyze(crate::cli::analyze::AnalyzeArgs),
    /// Show rollouts: the live ones, then the most recent, with phase, traffic and evidence.
    Status(crate::cli::rollouts::StatusArgs),
    /// Print the audit trail of a service's rollouts: every input, decision and effect.
    History(crate::cli::rollouts::HistoryArgs),
    /// Start or steer rollouts: start SERVICE TAG, promote, pause, resume, rollback, hold,
    /// unhold, release. Exit 3 when the rollout refused the command (the reason is printed).
    #[command(subcommand)]
    Rollout(crate::cli::operate::RolloutCommand),
    /// Failed webhook deliveries (the dead letters): list them, replay them.
    #[command(subcommand)]
    Deliveries(crate::cli::deliveries::DeliveriesCommand),
    /// The store's upkeep: prune by store.retention.
    #[command(subcommand)]
    Store(crate::cli::deliveries::StoreCommand),
    /// Benchmarks that print ratios against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Signed webhook deliveries through the real router against HMAC + one durable insert.
    Webhook(crate::cli::bench::webhook::BenchArgs),
    /// One image-tag edit, commit and push: the git2 writer against the git CLI.
    Git(crate::cli::bench::git::BenchArgs),
    /// Score the configured judge and the reference judges on a scenario directory.
    Canary(crate::cli::bench::canary::BenchArgs),
    /// One risk assessment without the model (parse, policy, prompt) against a line count.
    Risk(crate::cli::bench::risk::BenchArgs),
    /// The emergency lane: a signed /rollback to its revert pushed, while assessments wait on a
    /// slow model, with lanes and on a single FIFO.
    Lanes(crate::cli::bench::lanes::BenchArgs),
    /// Sustained signed load on a real `serve` with a broken GitHub: memory, open files,
    /// database and WAL over time.
    Soak(crate::cli::bench::soak::BenchArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        // Benchmarks and the demo print their own story; logs only for trouble.
        Command::Bench(_) => "warn",
        Command::Demo(_) => "error",
        _ => "info",
    };
    crate::cli::telemetry::init(cli.log_format, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // `serve` returns at its grace deadline with work abandoned (a git call blocked on a peer,
    // say): do not wait for it a second time here.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// Runs one command; errors carry their context chain for the user.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = crate::config::load(&config).context("refusing to start")?;
            crate::shell::webhook::server::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file, shape_only } => {
            let secrets: &dyn crate::config::SecretPresence = if shape_only {
                &crate::config::ShapeOnly
            } else {
                &crate::adapters::secrets::Present
            };
            check_config(&file, secrets)
        }
        Command::Manifest(cmd) => crate::cli::manifest::run(cmd).await,
        Command::Assess(args) => crate::cli::risk::run(args).await,
        Command::Judge(args) => crate::cli::judge::run(args).await,
        Command::Analyze(args) => crate::cli::analyze::run(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Rollout(cmd) => crate::cli::operate::run(cmd).await,
        Command::Status(args) => crate::cli::rollouts::status(args).await,
        Command::History(args) => crate::cli::rollouts::history(args).await,
        Command::Deliveries(cmd) => crate::cli::deliveries::deliveries(cmd).await,
        Command::Store(cmd) => crate::cli::deliveries::store(cmd).await,
        Command::Bench(BenchCommand::Webhook(args)) => crate::cli::bench::webhook::run(args).await,
        Command::Bench(BenchCommand::Git(args)) => crate::cli::bench::git::run(args).await,
        Command::Bench(BenchCommand::Canary(args)) => crate::cli::bench::canary::run(args).await,
        Command::Bench(BenchCommand::Risk(args)) => crate::cli::bench::risk::run(args).await,
        Command::Bench(BenchCommand::Lanes(args)) => crate::cli::bench::lanes::run(args).await,
        Command::Bench(BenchCommand::Soak(args)) => crate::cli::bench::soak::run(args).await,
    }
}

/// `check-config`: the effective config on stdout, warnings and the verdict on stderr.
fn check_config(
    file: &std::path::Path,
    secrets: &dyn crate::config::SecretPresence,
) -> anyhow::Result<ExitCode> {
    match crate::config::check(file, secrets) {
        Ok((raw, resolved)) => {
            print!("{}", raw.effective().to_yaml());
            for w in &resolved.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!("{}: valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
