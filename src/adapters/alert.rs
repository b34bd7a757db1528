//! Alerts: how a rollout's `Notify` effect reaches people. Always a log line at the notice's
//! level; optionally a Slack-compatible incoming webhook (`{"text": ...}`, which Slack,
//! Mattermost, Rocket.Chat and Google Chat accept).
//!
//! The webhook URL carries its own credential, so it is held as a `Secret` and never logged.
//! Deliberately not here: the alert's text (`rollout::comment::alert_text`, from
//! `templates/alert.txt`), the PR comment (the GitHub adapter's) and the `/metrics` counter (the
//! metrics module's).

use std::time::Duration;

use deploybot_core::failure::Failure;
use deploybot_core::rollout::comment::alert_text;
use deploybot_core::rollout::{Level, Notice};
use deploybot_core::secret::Secret;

/// What a failed delivery was doing.
const DOING: &str = "posting the alert webhook";

/// The alert sink: a log line, plus the webhook when one is configured.
pub struct Alerts {
    webhook: Option<Secret>,
    http: reqwest::Client,
}

impl Alerts {
    pub fn new(webhook: Option<Secret>, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the alert HTTP client: {e}"))?;
        Ok(Alerts { webhook, http })
    }

    /// Alerts that are log lines only (no webhook, so no HTTP client is needed).
    pub fn log_only() -> Self {
        Alerts {
            webhook: None,
            http: reqwest::Client::new(),
        }
    }

    /// Logs the alert and posts it to the webhook, if any.
    pub async fn send(&self, subject: &str, level: Level, notice: &Notice) -> Result<(), Failure> {
        let text = alert_text(subject, level, notice);
        match level {
            Level::Info => tracing::info!(alert = %text),
            Level::Warn | Level::Critical => tracing::warn!(alert = %text),
        }
        let Some(url) = &self.webhook else {
            return Ok(());
        };
        let resp = self
            .http
            .post(url.expose())
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            // reqwest errors include the URL; the URL is the secret, so it is left out.
            .map_err(|e| {
                Failure::transient(
                    DOING,
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "could not connect"
                    },
                )
            })?;
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(()),
            // The alert sink's one classification: 5xx and 429 may pass later.
            s if s.is_server_error() || s.as_u16() == 429 => {
                Err(Failure::transient(DOING, format!("HTTP {s}")))
            }
            s => Err(Failure::permanent(DOING, format!("HTTP {s}"))),
        }
    }
}
