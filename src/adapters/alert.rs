//! Alerts: how a rollout's `Notify` effect reaches people. Always a log line at the notice's
//! level; optionally a Slack-compatible incoming webhook (`{"text": ...}`, which Slack,
//! Mattermost, Rocket.Chat and Google Chat accept), posted in the background with retries and
//! at most once per `alerts.repeat_after` for the same text.
//!
//! The webhook URL carries its own credential, so it is held as a `Secret` and never logged.
//! Deliberately not here: the alert's text (`rollout::comment::alert_text`, from
//! `templates/alert.txt`), the PR comment (the GitHub adapter's) and the `/metrics` counter (the
//! metrics module's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploybot_core::config::AlertsSpec;
use deploybot_core::failure::Failure;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::rollout::comment::alert_text;
use deploybot_core::rollout::{Level, Notice};
use deploybot_core::secret::Secret;

use crate::adapters::retry::retry;

/// What a failed delivery was doing.
const DOING: &str = "posting the alert webhook";

/// The alert sink: a log line, plus the webhook when one is configured.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    webhook: Option<Secret>,
    http: reqwest::Client,
    /// `alerts.retries` more tries of a post that failed transiently, waits doubling.
    retry: RetryPolicy,
    /// `alerts.repeat_after`: the same alert text is posted once within it.
    repeat_after: Duration,
    /// When each alert text (by hash) was last posted.
    posted: Mutex<HashMap<u64, Instant>>,
}

impl Alerts {
    pub fn new(webhook: Option<Secret>, spec: &AlertsSpec) -> Result<Self, String> {
        let timeout = spec.timeout.as_duration();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the alert HTTP client: {e}"))?;
        Ok(Alerts {
            inner: Arc::new(Inner {
                webhook,
                http,
                retry: spec.retry(),
                repeat_after: spec.repeat_after.as_duration(),
                posted: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Alerts that are log lines only (no webhook, so no HTTP client is needed).
    pub fn log_only() -> Self {
        Alerts {
            inner: Arc::new(Inner {
                webhook: None,
                http: reqwest::Client::new(),
                retry: RetryPolicy::doubling(1, Duration::ZERO, Duration::ZERO),
                repeat_after: Duration::ZERO,
                posted: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Logs the alert and, unless the same alert was posted within `alerts.repeat_after` (one
    /// page per incident, not one per tick), posts it to the webhook in the background with
    /// retries: a slow or failing alert sink never holds a rollout. A post that fails for good
    /// is logged.
    pub fn send(&self, subject: &str, level: Level, notice: &Notice) {
        let text = alert_text(subject, level, notice);
        match level {
            Level::Info => tracing::info!(alert = %text),
            Level::Warn | Level::Critical => tracing::warn!(alert = %text),
        }
        if self.inner.webhook.is_none() || !self.first_in_window(&text) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.post(&text).await {
                tracing::warn!("alert not delivered: {e}");
            }
        });
    }

    /// Whether `text` was not posted within the repeat window; records it as posted now.
    fn first_in_window(&self, text: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let key = h.finish();
        let window = self.inner.repeat_after;
        let mut posted = self.inner.posted.lock().unwrap_or_else(|p| p.into_inner());
        posted.retain(|_, at| at.elapsed() < window);
        if posted.contains_key(&key) {
            tracing::debug!("alert already posted within alerts.repeat_after; not posted again");
            return false;
        }
        posted.insert(key, Instant::now());
        true
    }

    /// Posts `text` to the webhook (if any), retrying transient failures as `alerts.retries`
    /// says; the last failure when it gives up.
    pub async fn post(&self, text: &str) -> Result<(), Failure> {
        let Some(url) = &self.inner.webhook else {
            return Ok(());
        };
        retry(&self.inner.retry, tokio::time::sleep, |_| {
            self.post_once(url, text)
        })
        .await
    }

    async fn post_once(&self, url: &Secret, text: &str) -> Result<(), Failure> {
        let resp = self
            .inner
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
