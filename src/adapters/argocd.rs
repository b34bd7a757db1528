//! Argo CD: reads an Application's sync and health over the Argo CD API and decides whether a
//! pushed revision is live (synced and healthy), still on its way, or failed.
//!
//! `sync_progress` is the pure decision; `ArgoCdClient` is the HTTP adapter (bearer token,
//! optional refresh request). Errors become the core's `Failure`, transient (5xx, 429, timeouts,
//! connection) or permanent (401, 403, 404, a body that is not an Application). No reqwest or
//! JSON types leave this module. A `WaitForSync` effect reads the Application once per tick
//! (`shell::runner`), so a wait never blocks the loop; `wait_until_live`, a blocking poll, is
//! not used by the rollout. Deliberately not
//! here: syncing or rolling back through Argo CD (deploybot rolls back through git, and Argo CD
//! refuses its own rollback while auto-sync is on).

use std::time::Duration;

use serde::Deserialize;

use deploybot_core::config::ArgoCdSpec;
use deploybot_core::failure::Failure;
use deploybot_core::secret::Secret;

/// What deploybot needs from an Application's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppStatus {
    /// `Synced`, `OutOfSync` or `Unknown`.
    pub sync_status: String,
    /// The revision(s) the Application is synced to (several for multi-source apps).
    pub revisions: Vec<String>,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub health: String,
    pub health_message: Option<String>,
    /// The last operation's phase (`Running`, `Succeeded`, `Failed`, `Error`, ...), its message
    /// and the revision it synced.
    pub operation_phase: Option<String>,
    pub operation_message: Option<String>,
    pub operation_revision: Option<String>,
}

/// Where a pushed revision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// Synced to the revision and healthy: the analysis window may open.
    Live,
    /// Not yet; says what it is waiting for.
    Waiting(String),
    /// The sync of this revision failed or the app is degraded on it.
    Failed(String),
}

/// Decides whether `revision` is live according to `app`.
pub fn sync_progress(app: &AppStatus, revision: &str) -> SyncProgress {
    let on_revision = app.revisions.iter().any(|r| r == revision);
    let operation_on_revision = app.operation_revision.as_deref() == Some(revision);
    if operation_on_revision && matches!(app.operation_phase.as_deref(), Some("Failed" | "Error")) {
        return SyncProgress::Failed(format!(
            "sync of {revision} {}: {}",
            app.operation_phase
                .as_deref()
                .unwrap_or_default()
                .to_lowercase(),
            app.operation_message.as_deref().unwrap_or("no message")
        ));
    }
    if !on_revision {
        return SyncProgress::Waiting(format!(
            "application is at {} ({}), not yet at {revision}",
            app.revisions
                .first()
                .map(String::as_str)
                .unwrap_or("no revision"),
            app.sync_status
        ));
    }
    if app.sync_status != "Synced" {
        return SyncProgress::Waiting(format!("{revision} is {}", app.sync_status));
    }
    match app.health.as_str() {
        "Healthy" => SyncProgress::Live,
        "Degraded" | "Missing" => SyncProgress::Failed(format!(
            "{} on {revision}: {}",
            app.health,
            app.health_message.as_deref().unwrap_or("no message")
        )),
        other => SyncProgress::Waiting(format!("{revision} is synced but {other}")),
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
    /// The client the `argocd` section configures; `token` is the `argocd.token` read at
    /// start-up. `None` without `argocd.url` (commits then settle for `settle_time`).
    pub fn from_config(
        config: &ArgoCdSpec,
        token: Option<&Secret>,
    ) -> Result<Option<Self>, String> {
        let Some(server) = &config.server else {
            return Ok(None);
        };
        let token = token.ok_or_else(|| {
            format!(
                "argocd.url is set but {} was not read at start-up",
                deploybot_core::config::SecretKey::ArgoCdToken.written(&server.token)
            )
        })?;
        ArgoCdClient::new(
            server.url.as_str(),
            token.clone(),
            config.timeout.as_duration(),
        )
        .map(Some)
    }

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

/// How waiting for a revision ended when it did not go live.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("{0}")]
    Failed(String),
    #[error("not live within {waited:?}: {last}")]
    TimedOut { waited: Duration, last: String },
    /// A permanent API error (a transient one is retried until the deadline).
    #[error(transparent)]
    Api(Failure),
}

impl ArgoCdClient {
    /// Polls `app` every `poll` until `revision` is live, fails, or `within` has passed. Asks
    /// Argo CD to refresh on the first read. Transient API errors are retried until the
    /// deadline; the last one is reported if it is reached.
    pub async fn wait_until_live(
        &self,
        app: &str,
        revision: &str,
        within: Duration,
        poll: Duration,
    ) -> Result<(), WaitError> {
        let start = tokio::time::Instant::now();
        let mut first = true;
        loop {
            let last = match self.application(app, first).await {
                Ok(status) => match sync_progress(&status, revision) {
                    SyncProgress::Live => return Ok(()),
                    SyncProgress::Failed(why) => return Err(WaitError::Failed(why)),
                    SyncProgress::Waiting(why) => why,
                },
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => return Err(WaitError::Api(e)),
            };
            first = false;
            if start.elapsed() + poll > within {
                return Err(WaitError::TimedOut {
                    waited: within,
                    last,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(sync_progress(&app, REV), SyncProgress::Live);
    }

    #[test]
    fn progress_table() {
        let base = fixture();
        let with = |f: &dyn Fn(&mut AppStatus)| {
            let mut a = base.clone();
            f(&mut a);
            a
        };
        let cases: Vec<(&str, AppStatus, &str, &str)> = vec![
            ("another revision", base.clone(), "abc", "waiting"),
            (
                "out of sync",
                with(&|a| a.sync_status = "OutOfSync".into()),
                REV,
                "waiting",
            ),
            (
                "progressing",
                with(&|a| a.health = "Progressing".into()),
                REV,
                "waiting",
            ),
            (
                "degraded",
                with(&|a| {
                    a.health = "Degraded".into();
                    a.health_message = Some("Deployment exceeded its progress deadline".into());
                }),
                REV,
                "failed",
            ),
            (
                "sync operation failed",
                with(&|a| {
                    a.revisions = vec!["old".into()];
                    a.operation_phase = Some("Failed".into());
                    a.operation_message = Some("one or more objects failed to apply".into());
                }),
                REV,
                "failed",
            ),
            (
                "an old failed operation does not fail a new revision",
                with(&|a| {
                    a.revisions = vec!["old".into()];
                    a.operation_phase = Some("Failed".into());
                    a.operation_revision = Some("old".into());
                }),
                REV,
                "waiting",
            ),
            (
                "multi-source",
                with(&|a| a.revisions = vec!["helm-1.2.3".into(), REV.into()]),
                REV,
                "live",
            ),
        ];
        for (name, app, revision, want) in cases {
            let got = match sync_progress(&app, revision) {
                SyncProgress::Live => "live",
                SyncProgress::Waiting(_) => "waiting",
                SyncProgress::Failed(_) => "failed",
            };
            assert_eq!(got, want, "{name}: {:?}", sync_progress(&app, revision));
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse_application(b"<html>login</html>").unwrap_err();
        assert!(err.contains("expected value"), "{err}");
    }
}
