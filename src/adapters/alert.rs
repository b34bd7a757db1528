//! Alerts: how a rollout's `Notify` effect reaches people. Always a log line at the notice's
//! level; optionally a Slack-compatible incoming webhook (`{"text": ...}`, which Slack,
//! Mattermost, Rocket.Chat and Google Chat accept).
//!
//! The webhook URL carries its own credential, so it is held as a `Secret` and never logged.
//! Deliberately not here: the PR comment (the GitHub adapter's) and the `/metrics` counter (the
//! metrics module's).

use std::time::Duration;

use deploybot_core::failure::Failure;
use deploybot_core::rollout::comment::notice_text;
use deploybot_core::rollout::{Level, Notice};
use deploybot_core::secret::Secret;

/// The `alerts:` config section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Environment variable holding a Slack-compatible incoming-webhook URL (the URL is the
    /// credential). Unset: alerts are log lines (and PR comments) only.
    pub webhook_url_env: Option<String>,
    /// File holding the webhook URL.
    pub webhook_url_file: Option<std::path::PathBuf>,
    pub timeout: deploybot_core::duration::PromDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url_env: None,
            webhook_url_file: None,
            timeout: deploybot_core::duration::PromDuration::from_secs(10),
        }
    }
}

impl AlertsConfig {
    pub fn webhook_ref(&self) -> Result<Option<deploybot_core::secret::SecretRef>, String> {
        deploybot_core::secret::SecretRef::from_pair(
            "alerts.webhook_url",
            self.webhook_url_env.as_ref(),
            self.webhook_url_file.as_ref(),
        )
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = self.webhook_ref() {
            problems.push(e);
        }
        if self.timeout.is_zero() {
            problems.push("alerts.timeout: must be greater than 0".into());
        }
    }
}

/// What a failed delivery was doing.
const DOING: &str = "posting the alert webhook";

/// The alert sink: a log line, plus the webhook when one is configured.
pub struct Alerts {
    webhook: Option<Secret>,
    http: reqwest::Client,
}

/// The text of an alert about `rollout` (e.g. `checkout/production d-1`).
pub fn alert_text(subject: &str, level: Level, notice: &Notice) -> String {
    let tag = match level {
        Level::Info => "info",
        Level::Warn => "warning",
        Level::Critical => "CRITICAL",
    };
    format!("[deploybot {tag}] {subject}: {}", notice_text(notice))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_names_level_subject_and_notice() {
        assert_eq!(
            alert_text(
                "checkout/production d-1",
                Level::Warn,
                &Notice::Paused {
                    reason: "metrics unavailable: connection refused".into()
                }
            ),
            "[deploybot warning] checkout/production d-1: Paused: metrics unavailable: \
             connection refused. Nothing will be promoted until someone comments `/resume`."
        );
    }
}
