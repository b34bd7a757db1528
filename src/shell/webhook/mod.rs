//! The GitHub webhook intake: verify the signature, parse the event, persist the delivery, answer
//! 202, and process it later from the durable queue.
//!
//! The path of a delivery: `listen` (bounded connections) -> `intake` (HTTP: cap, budget,
//! verify, parse, route, place in a lane, store, answer) -> the store's `deliveries` table ->
//! `worker` (lanes, per-key order, retries off the line, dead letters, crash-safe) -> `dispatch`
//! (executes the route: which concept acts on it). What a delivery means is decided once, by the
//! pure `deploybot_core::webhook::route`; where it waits, by `deploybot_core::webhook::lane`.

use crate::config::Config;
use deploybot_core::webhook::route::Repos;

pub mod dispatch;
pub mod intake;
pub mod listen;
pub mod server;
pub mod worker;

/// The repositories the routing knows, read from the config: each service's `app_repo`, every
/// GitOps repository on GitHub (`Config::gitops_repos_on_github`: `gitops.github_repo` and each
/// environment's own), and `github.bot_login`.
pub fn repos(config: &Config) -> Repos {
    let repos = config
        .services
        .iter()
        .fold(Repos::new(&config.github.bot_login), |r, s| {
            r.with_app(s.app_repo.to_string(), &s.name)
        });
    config
        .gitops_repos_on_github()
        .into_iter()
        .fold(repos, |r, g| r.with_gitops(g.to_string()))
}
