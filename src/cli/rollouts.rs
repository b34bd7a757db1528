//! `deploybot status` and `deploybot history`: rollouts and their audit trail, read from the
//! store, printed for people (or as JSON with `--json`).
//!
//! Read-only: these commands never create a database or move a rollout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::adapters::store::{Location, Store};
use crate::config::{Config, StoreSpec};
use deploybot_core::rollout::input::Effect;
use deploybot_core::rollout::record::Rollout;
use deploybot_core::rollout::store::{AuditEvent, RolloutStore};
pub use deploybot_core::rollout::summary::render_rollout;
use deploybot_core::rollout::view::RolloutView;

/// Where the store is: a data directory, or the config file that names one.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreLocation {
    /// Data directory holding deploybot.sqlite3.
    #[arg(long, conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// Config file whose store.data_dir is used (default data dir: ./deploybot-data).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

impl StoreLocation {
    /// The store section this location names (the defaults with `--data-dir`).
    pub(crate) fn spec(&self) -> anyhow::Result<StoreSpec> {
        Ok(match (&self.data_dir, &self.config) {
            (Some(dir), _) => StoreSpec {
                data_dir: dir.clone(),
                postgres: None,
                retention: Default::default(),
            },
            (None, Some(file)) => crate::config::load_shape(file)?.store,
            (None, None) => Config::default().store,
        })
    }

    /// Opens the existing store; refuses to create an empty one where the user mistyped a path.
    pub(crate) fn open(&self) -> anyhow::Result<Store> {
        let spec = self.spec()?;
        if let Some(pg) = &spec.postgres {
            use crate::adapters::secrets::Resolve as _;
            let password = match &pg.password {
                Some(r) => Some(
                    r.resolve()
                        .map_err(|e| anyhow::anyhow!("store.password: {e}"))?,
                ),
                None => None,
            };
            return Ok(Store::open_at(&Location::of(&spec, password))?);
        }
        let path = spec.database_path();
        if !path.is_file() {
            anyhow::bail!(
                "no deploybot database at {} (pass --data-dir or --config)",
                path.display()
            );
        }
        Store::open(&path).with_context(|| format!("opening {}", path.display()))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only this service's rollouts.
    pub service: Option<String>,
    #[command(flatten)]
    pub store: StoreLocation,
    /// How many recent rollouts to show besides the live ones.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Print JSON (the stored records) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    pub service: String,
    #[command(flatten)]
    pub store: StoreLocation,
    /// Print JSON (the audit events) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `deploybot status [SERVICE]`: live rollouts first, then the most recent others.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let service = args.service.as_deref();
    let mut rollouts: Vec<Rollout> = store
        .live()
        .context("reading live rollouts")?
        .into_iter()
        .filter(|r| service.is_none_or(|s| r.service() == s))
        .collect();
    for r in store
        .recent(service, args.limit)
        .context("reading recent rollouts")?
    {
        if !rollouts.iter().any(|x| x.deploy_id == r.deploy_id) {
            rollouts.push(r);
        }
    }
    if args.json {
        let views: Vec<RolloutView> = rollouts.iter().map(RolloutView::of).collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else if rollouts.is_empty() {
        println!(
            "no rollouts{}",
            service.map(|s| format!(" for {s}")).unwrap_or_default()
        );
    } else {
        for r in &rollouts {
            print!("{}", render_rollout(r));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `deploybot history SERVICE`: every recorded input, oldest first.
pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let events = store
        .history(&args.service)
        .with_context(|| format!("reading the history of {}", args.service))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else if events.is_empty() {
        println!("no history for {}", args.service);
    } else {
        for e in &events {
            println!("{}", render_event(e));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One audit event on one line: when, which rollout, who, what, the decision, the phase after,
/// the effects asked for, and the note.
pub fn render_event(e: &AuditEvent) -> String {
    let effects: Vec<String> = e.effects.iter().map(effect_label).collect();
    let effects = if effects.is_empty() {
        String::new()
    } else {
        format!(" -> {}", effects.join(", "))
    };
    format!(
        "{}  {}  {:<10} {:<18} {:<9} {:<19} {}{effects}",
        e.at.to_rfc3339(),
        e.rollout_id,
        e.actor,
        e.cause,
        e.decision,
        e.phase,
        e.note
    )
}

fn effect_label(e: &Effect) -> String {
    match e {
        Effect::CommitStep { weight, .. } => format!("commit {weight}"),
        Effect::OpenApprovalPr { weight, .. } => format!("open approval PR ({weight})"),
        Effect::MergeApprovalPr { head: Some(head) } => format!("merge approval PR at {head}"),
        Effect::MergeApprovalPr { head: None } => "merge approval PR".into(),
        Effect::Revert {
            deploy_id,
            commits,
            find,
            merges,
            ..
        } => {
            let mut what: Vec<String> = commits.iter().chain(merges).cloned().collect();
            // Its own commits found on the branch go without saying; a superseded one's do not.
            what.extend(
                find.iter()
                    .filter(|id| *id != deploy_id)
                    .map(|id| format!("{id}'s commits")),
            );
            format!("revert {}", what.join(" "))
        }
        Effect::CloseApprovalPr { why } => format!("close approval PR ({})", why.kind()),
        Effect::Comment { .. } => "comment".into(),
        Effect::Label { name } => format!("label {name}"),
        Effect::SetStatus { state, .. } => format!("status {state:?}").to_lowercase(),
        Effect::QueryMetrics { window_secs } => format!("query metrics ({window_secs}s)"),
        Effect::WaitForSync { revision, .. } => format!("wait for sync of {revision}"),
        Effect::Notify { level, .. } => format!("notify {level:?}").to_lowercase(),
        Effect::HoldService { .. } => "hold service".into(),
        Effect::ReleaseService => "release service".into(),
    }
}
