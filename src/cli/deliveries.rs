//! `deploybot deliveries` and `deploybot store prune`: the dead-letter state and the retention of
//! the delivery queue, from the command line. They work on the store while `serve` runs (SQLite
//! takes a second connection; `serve` picks a replayed delivery up within five seconds).

use std::process::ExitCode;

use crate::adapters::clock::SystemClock;
use crate::adapters::store::maintenance::Replay;
use crate::cli::rollouts::StoreLocation;
use deploybot_core::clock::Clock as _;

#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List failed deliveries (the dead letters: a permanent error, or retries exhausted),
    /// oldest first, with why each failed.
    List {
        #[command(flatten)]
        store: StoreLocation,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queue failed deliveries again, as if they had just arrived (their attempts start over).
    /// Exit 3 when one of them could not be replayed (the reason is printed).
    Replay {
        /// Delivery ids (X-GitHub-Delivery), as `deploybot deliveries list` prints them.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        store: StoreLocation,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Apply store.retention now (serve does it every hour): empty old payloads, delete old
    /// ignored and processed deliveries. Pending deliveries are never touched.
    Prune {
        #[command(flatten)]
        store: StoreLocation,
    },
}

/// Exit code when a replay was refused.
pub const EXIT_NOT_REPLAYED: u8 = 3;

pub async fn deliveries(cmd: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeliveriesCommand::List { store, limit } => {
            let dead = store.open()?.dead_letters(limit)?;
            if dead.is_empty() {
                println!("no failed deliveries");
            }
            for d in dead {
                let what = match &d.action {
                    Some(a) => format!("{}.{a}", d.event),
                    None => d.event.clone(),
                };
                println!(
                    "{}  {}  {}  {}  attempts {}  {} bytes{}\n    {}",
                    d.delivery_id,
                    d.received_at,
                    what,
                    d.repository.as_deref().unwrap_or("-"),
                    d.attempts,
                    d.bytes,
                    if d.bytes == 0 {
                        " (payload pruned: cannot be replayed)"
                    } else {
                        ""
                    },
                    crate::cli::telemetry::escape_controls(d.detail.as_deref().unwrap_or("")),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeliveriesCommand::Replay { ids, store } => {
            let store = store.open()?;
            let mut refused = false;
            for id in ids {
                let why = match store.replay(&id)? {
                    Replay::Requeued => {
                        println!("{id}: queued again");
                        continue;
                    }
                    Replay::Unknown => "no delivery has this id".to_string(),
                    Replay::NotFailed(status) => {
                        format!("it is {}, not failed", status.as_str())
                    }
                    Replay::NoPayload => {
                        "its payload was pruned (store.retention.payloads)".to_string()
                    }
                };
                refused = true;
                eprintln!("{id}: not replayed: {why}");
            }
            Ok(if refused {
                ExitCode::from(EXIT_NOT_REPLAYED)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

pub async fn store(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Prune { store } => {
            let retention = store.spec()?.retention;
            let opened = store.open()?;
            let before = opened.sizes();
            let p = opened.prune(SystemClock.now(), &retention)?;
            let after = opened.sizes();
            println!(
                "emptied {} payloads, deleted {} ignored and {} processed deliveries \
                 (database {} bytes, its log {} -> {} bytes; freed pages are reused)",
                p.payloads, p.ignored, p.deliveries, after.database, before.wal, after.wal
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
