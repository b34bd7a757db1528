//! Argo CD: reads an Application's sync, health and last operation over the Argo CD API, into
//! the core's `AppStatus`; whether deploybot's step is live is the core's decision
//! (`deploybot_core::gitops::live`), because on a shared branch it needs the GitOps repository too.
//!
//! `ArgoCdClient` is the HTTP adapter (bearer token, optional refresh request), one per Argo CD
//! server (environments may name their own). Errors become the core's `Failure`, transient (5xx,
//! 429, timeouts, connection) or permanent (401, 403, 404, a body that is not an Application).
//! No reqwest or JSON types leave this module. A `WaitForSync` effect reads the Application once
//! per tick (`shell::runner`), so a wait never blocks the loop. Deliberately not here: syncing or
//! rolling back through Argo CD (deploybot rolls back through git, and Argo CD refuses its own
//! rollback while auto-sync is on).

use std::time::Duration;

use serde::Deserialize;

use std::collections::HashMap;

use crate::adapters::secrets::Resolve;
use deploybot_core::config::{ArgoCdServer, Config, SecretKey};
use deploybot_core::failure::Failure;
pub use deploybot_core::gitops::live::AppStatus;
use deploybot_core::secret::Secret;

/// One client per Argo CD server the config names: `argocd.url`'s and each environment's own
/// (`services[].environments[].argocd.url`), built once at start-up.
#[derive(Default)]
pub struct ArgoCdServers {
    /// By [`server_key`]: an environment naming the top-level server again shares its client.
    clients: HashMap<String, ArgoCdClient>,
}

fn server_key(server: &ArgoCdServer) -> String {
    // The reference (a variable name or a path), never the token.
    format!("{} {:?}", server.url, server.token)
}

impl ArgoCdServers {
    /// The clients `config` needs. `top_token` is `argocd.token`, read at start-up; an
    /// environment's own token is read now. Empty without any Argo CD URL (commits then settle
    /// for `argocd.settle_time`).
    pub fn from_config(config: &Config, top_token: Option<&Secret>) -> Result<Self, String> {
        let timeout = config.argocd.timeout.as_duration();
        let mut clients = HashMap::new();
        if let Some(server) = &config.argocd.server {
            let token = top_token.ok_or_else(|| {
                format!(
                    "argocd.url is set but {} was not read at start-up",
                    SecretKey::ArgoCdToken.written(&server.token)
                )
            })?;
            let client = ArgoCdClient::new(server.url.as_str(), token.clone(), timeout)?;
            clients.insert(server_key(server), client);
        }
        let own = config
            .services
            .iter()
            .flat_map(|s| s.environments().iter().map(move |e| (s, e)));
        for (service, env) in own {
            let Some(server) = &env.argocd else { continue };
            if clients.contains_key(&server_key(server)) {
                continue;
            }
            let token = server.token.resolve().map_err(|e| {
                format!(
                    "the Argo CD token of {}/{} ({}): {e}",
                    service.name, env.name, server.url
                )
            })?;
            let client = ArgoCdClient::new(server.url.as_str(), token, timeout)?;
            clients.insert(server_key(server), client);
        }
        Ok(ArgoCdServers { clients })
    }

    /// Servers by hand (tests): each client under the server it talks to.
    pub fn of(clients: Vec<(ArgoCdServer, ArgoCdClient)>) -> Self {
        ArgoCdServers {
            clients: clients
                .into_iter()
                .map(|(s, c)| (server_key(&s), c))
                .collect(),
        }
    }

    /// No Argo CD at all.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client of `server`, built by [`ArgoCdServers::from_config`].
    pub fn client(&self, server: &ArgoCdServer) -> Option<&ArgoCdClient> {
        self.clients.get(&server_key(server))
    }
}

/// The Argo CD API adapter.
pub struct ArgoCdClient {
    base_url: String,
    token: Secret,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct WireApp {
    #[serde(default)]
    status: WireStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    #[serde(default)]
    sync: WireSync,
    #[serde(default)]
    health: WireHealth,
    operation_state: Option<WireOperation>,
}

#[derive(Deserialize, Default)]
struct WireSync {
    #[serde(default)]
    status: String,
    revision: Option<String>,
    #[serde(default)]
    revisions: Vec<String>,
}

#[derive(Deserialize, Default)]
struct WireHealth {
    #[serde(default)]
    status: String,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOperation {
    phase: Option<String>,
    message: Option<String>,
    sync_result: Option<WireSyncResult>,
}

#[derive(Deserialize)]
struct WireSyncResult {
    revision: Option<String>,
}

/// Parses a `GET /api/v1/applications/{name}` body.
pub fn parse_application(body: &[u8]) -> Result<AppStatus, String> {
    let app: WireApp = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let s = app.status;
    let mut revisions = s.sync.revisions;
    if let Some(r) = s.sync.revision {
        revisions.insert(0, r);
    }
    let (operation_phase, operation_message, operation_revision) = match s.operation_state {
        Some(op) => (
            op.phase,
            op.message,
            op.sync_result.and_then(|r| r.revision),
        ),
        None => (None, None, None),
    };
    Ok(AppStatus {
        sync_status: s.sync.status,
        revisions,
        health: s.health.status,
        health_message: s.health.message,
        operation_phase,
        operation_message,
        operation_revision,
    })
}

impl ArgoCdClient {
    /// A client for the Argo CD server at `base_url` (e.g. `https://argocd.example.com`).
    pub fn new(base_url: &str, token: Secret, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the Argo CD HTTP client: {e}"))?;
        Ok(ArgoCdClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// Reads application `app`; with `refresh`, asks Argo CD to re-read git first (it otherwise
    /// polls only every three minutes).
    ///
    /// Argo CD's one classification: 5xx, 429, timeouts and connection errors are transient;
    /// a bad token, no such application or a body that is not an Application are permanent.
    pub async fn application(&self, app: &str, refresh: bool) -> Result<AppStatus, Failure> {
        let doing = format!("reading Argo CD application {app}");
        let transient = |message: String| Failure::transient(doing.as_str(), message);
        let permanent = |message: String| Failure::permanent(doing.as_str(), message);
        let mut req = self
            .http
            .get(format!("{}/api/v1/applications/{app}", self.base_url))
            .bearer_auth(self.token.expose());
        if refresh {
            req = req.query(&[("refresh", "normal")]);
        }
        let resp = req.send().await.map_err(|e| transient(e.to_string()))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transient(e.to_string()))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(format!("HTTP {status}")));
        }
        if !status.is_success() {
            let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(permanent(format!("HTTP {status}: {detail}")));
        }
        parse_application(&body).map_err(|e| permanent(format!("not an Application: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::gitops::live::{Liveness, liveness};

    const REV: &str = "9f1c2e7d4b3a59e8c1d2f3a4b5c6d7e8f9a0b1c2";

    fn fixture() -> AppStatus {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/argocd/application-synced-healthy.json"
        ))
        .unwrap();
        parse_application(&body).unwrap()
    }

    #[test]
    fn the_fixture_parses_into_a_live_revision() {
        let app = fixture();
        assert_eq!(app.sync_status, "Synced");
        assert_eq!(app.revisions, [REV]);
        assert_eq!(app.health, "Healthy");
        assert_eq!(app.operation_phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            liveness(&app, REV, &[], &[]),
            Liveness::Live {
                revision: REV.into()
            }
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse_application(b"<html>login</html>").unwrap_err();
        assert!(err.contains("expected value"), "{err}");
    }
}
