//! The HTTP side of the intake: `POST <webhook_path>`, `/healthz`, `/readyz`, `/metrics`.
//!
//! A delivery is verified, parsed and stored durably before it is answered, and is never
//! processed here: the worker reads it back from the store. Nothing in this file answers 500:
//! bad input is a 4xx with a reason, a store failure a 503.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tracing::{Instrument, info, warn};

use crate::adapters::store::{DeliveryQueue, DeliveryStatus, Inserted, NewDelivery};
use crate::config::Config;
use crate::shell::metrics::Metrics;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::{event, signature};

/// Everything the intake needs; shared by all requests.
pub struct Intake<Q> {
    pub config: Arc<Config>,
    pub secret: Secret,
    pub queue: Q,
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when a delivery was queued, so it does not wait for its next poll.
    pub wake: Arc<Notify>,
}

/// The router with every route the `serve` listener exposes.
pub fn router<Q: DeliveryQueue + Clone>(intake: Arc<Intake<Q>>) -> Router {
    let path = intake.config.server.webhook_path.clone();
    Router::new()
        .route(&path, post(receive::<Q>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<Q>))
        .route("/metrics", get(metrics::<Q>))
        // The handler enforces the configured cap itself while streaming; axum's default 2 MB
        // limit must not cut in first.
        .layer(DefaultBodyLimit::disable())
        .with_state(intake)
}

async fn ready<Q: DeliveryQueue>(State(intake): State<Arc<Intake<Q>>>) -> Response {
    match intake.queue.ping() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            warn!(error = %e, "readiness probe: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

async fn metrics<Q: DeliveryQueue>(State(intake): State<Arc<Intake<Q>>>) -> Response {
    let depth = intake.queue.pending_count().ok();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        intake.metrics.render(depth),
    )
        .into_response()
}

/// The JSON answer to a delivery: `{"status": ..., "reason": ...}`.
fn answer(status: StatusCode, outcome: &str, reason: Option<&str>) -> Response {
    let body = match reason {
        Some(r) => serde_json::json!({ "status": outcome, "reason": r }),
        None => serde_json::json!({ "status": outcome }),
    };
    (status, axum::Json(body)).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitHub sends a GUID; anything printable and short is accepted so that other senders work,
/// but the id is a primary key and a log field, so it must stay bounded and plain.
fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Reads at most `cap` bytes; `None` when the body is larger (it is not buffered past the cap).
async fn read_capped(body: Body, cap: usize) -> Result<Option<Bytes>, String> {
    match axum::body::to_bytes(body, cap).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                Ok(None)
            } else {
                Err(format!("reading body: {e}"))
            }
        }
    }
}

async fn receive<Q: DeliveryQueue>(
    State(intake): State<Arc<Intake<Q>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let event_name = header_str(&headers, "x-github-event")
        .unwrap_or("")
        .to_string();
    let delivery_id = header_str(&headers, "x-github-delivery")
        .unwrap_or("")
        .to_string();
    // Header values are attacker-controlled until the signature checks out: log them only
    // when they have the expected shape.
    let span = tracing::info_span!(
        "delivery",
        delivery_id = %if valid_delivery_id(&delivery_id) { delivery_id.as_str() } else { "-" },
        event = %if valid_event_name(&event_name) { event_name.as_str() } else { "-" },
    );
    receive_inner(intake, headers, body, event_name, delivery_id)
        .instrument(span)
        .await
}

async fn receive_inner<Q: DeliveryQueue>(
    intake: Arc<Intake<Q>>,
    headers: HeaderMap,
    body: Body,
    event_name: String,
    delivery_id: String,
) -> Response {
    let m = &intake.metrics;
    let cap = intake.config.server.max_body_bytes;
    let declared = header_str(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        m.delivery(&event_name, "too_large");
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "rejected",
            Some("body exceeds the configured limit"),
        );
    }
    let body = match read_capped(body, cap).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            m.delivery(&event_name, "too_large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "rejected",
                Some("body exceeds the configured limit"),
            );
        }
        Err(reason) => {
            m.delivery(&event_name, "rejected");
            return answer(StatusCode::BAD_REQUEST, "rejected", Some(&reason));
        }
    };
    // Authenticate before looking at anything else, so unauthenticated callers learn nothing.
    if let Err(e) = signature::verify(
        intake.secret.expose().as_bytes(),
        &body,
        header_str(&headers, "x-hub-signature-256"),
    ) {
        m.signature_failure();
        m.delivery(&event_name, "unauthorized");
        warn!(reason = %e, "refused delivery: bad signature");
        return answer(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some(&e.to_string()),
        );
    }
    if !valid_event_name(&event_name) {
        m.delivery(&event_name, "rejected");
        return answer(
            StatusCode::BAD_REQUEST,
            "rejected",
            Some("missing or malformed X-GitHub-Event header"),
        );
    }
    if !valid_delivery_id(&delivery_id) {
        m.delivery(&event_name, "rejected");
        return answer(
            StatusCode::BAD_REQUEST,
            "rejected",
            Some("missing or malformed X-GitHub-Delivery header"),
        );
    }
    let parsed = match event::parse(&event_name, &body) {
        Ok(p) => p,
        Err(e) => {
            m.delivery(&event_name, "rejected");
            warn!(error = %e, "refused delivery: malformed payload");
            return answer(StatusCode::BAD_REQUEST, "rejected", Some(&e.to_string()));
        }
    };
    let (status, detail) = triage(&intake.config, &parsed);
    let delivery = NewDelivery {
        delivery_id: delivery_id.clone(),
        event: event_name.clone(),
        action: parsed.action.clone(),
        repository: parsed.repository.clone(),
        received_at: chrono::Utc::now().to_rfc3339(),
        payload: body.to_vec(),
        status,
        detail: detail.clone(),
    };
    match intake.queue.enqueue(delivery).await {
        Ok(Inserted::Duplicate) => {
            m.delivery(&event_name, "duplicate");
            info!("duplicate delivery: already received, not processed again");
            answer(StatusCode::OK, "duplicate", None)
        }
        Ok(Inserted::New) if status == DeliveryStatus::Ignored => {
            m.delivery(&event_name, "ignored");
            let reason = detail.unwrap_or_default();
            info!(action = ?parsed.action, repository = ?parsed.repository, %reason, "recorded, ignored");
            answer(StatusCode::ACCEPTED, "ignored", Some(&reason))
        }
        Ok(Inserted::New) => {
            m.delivery(&event_name, "queued");
            info!(action = ?parsed.action, repository = ?parsed.repository, "queued");
            intake.wake.notify_one();
            answer(StatusCode::ACCEPTED, "queued", None)
        }
        Err(e) => {
            m.delivery(&event_name, "error");
            tracing::error!(error = %e, "could not store delivery");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                axum::Json(serde_json::json!({"status": "error", "reason": "store unavailable"})),
            )
                .into_response()
        }
    }
}

/// Decides whether a verified, parsed delivery is queued or only recorded.
fn triage(config: &Config, parsed: &event::Parsed) -> (DeliveryStatus, Option<String>) {
    if let event::Event::Ignored { event } = &parsed.event {
        return (
            DeliveryStatus::Ignored,
            Some(format!("deploybot does not act on {event}")),
        );
    }
    match &parsed.repository {
        Some(repo)
            if !repo
                .parse::<deploybot_core::github::RepoName>()
                .is_ok_and(|r| config.is_configured_repo(&r)) =>
        {
            (
                DeliveryStatus::Ignored,
                Some(format!("repository {repo} is not configured")),
            )
        }
        // Organisation-level deliveries (an org hook's ping) name no repository.
        None if !matches!(parsed.event, event::Event::Ping { .. }) => (
            DeliveryStatus::Ignored,
            Some("delivery names no repository".into()),
        ),
        _ => (DeliveryStatus::Pending, None),
    }
}
