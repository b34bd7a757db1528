//! Alerts: how a rollout's `Notify` effect reaches people. Always a log line at the notice's
//! level; optionally a Slack-compatible incoming webhook (`{"text": ...}`, which Slack,
//! Mattermost, Rocket.Chat and Google Chat accept).
//!
//! The webhook URL carries its own credential, so it is held as a `Secret` and never logged.
//! Deliberately not here: the alert's text (`rollout::comment::alert_text`, from
//! `templates/alert.txt`), the PR comment (the GitHub adapter's) and the `/metrics` counter (the
//! metrics module's).

use std::time::Duration;

use deploybot_core::rollout::comment::alert_text;
use deploybot_core::rollout::{Level, Notice};
use deploybot_core::secret::Secret;

/// Why an alert was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("posting the alert webhook: {message}")]
pub struct AlertError {
    pub message: String,
    /// 5xx, 429 and connection errors are worth retrying.
    pub transient: bool,
}

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
    pub async fn send(
        &self,
        subject: &str,
        level: Level,
        notice: &Notice,
    ) -> Result<(), AlertError> {
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
            .map_err(|e| AlertError {
                message: if e.is_timeout() {
                    "timed out".into()
                } else {
                    "could not connect".into()
                },
                transient: true,
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AlertError {
                message: format!("HTTP {status}"),
                transient: status.is_server_error() || status.as_u16() == 429,
            })
        }
    }
}
