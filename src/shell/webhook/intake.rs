//! The HTTP side of the intake: `POST <webhook_path>`, `/healthz` and `/readyz`, the only routes
//! of the listener exposed to the internet (the status page and `/metrics` are on the admin
//! listener, which `shell::webhook::server` assembles).
//!
//! A delivery is verified, parsed and stored durably before it is answered, and is never
//! processed here: the worker reads it back from the store. Nothing in this file answers 500:
//! bad input is a 4xx with a reason, a store failure or a spent budget a 503.
//!
//! Nothing unauthenticated holds memory past the budget (but for the one chunk being copied
//! while a body's chunks are joined): a body is read chunk by chunk, each
//! chunk taken from `server.intake_budget_bytes` (shared by every request) as it arrives, and
//! a body that would overdraw it is refused with 503 and `Retry-After` at once, so GitHub
//! records the failure and the delivery can be redelivered. A body that does not arrive within
//! `server.body_timeout` gets 408.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, info, warn};

use crate::adapters::store::{DeliveryQueue, DeliveryStatus, Inserted, NewDelivery};
use crate::config::Config;
use crate::shell::metrics::{Metrics, Outcome, UNVERIFIED, event_label};
use deploybot_core::clock::Clock;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::lane::{self, Placement};
use deploybot_core::webhook::route::{Route, route};
use deploybot_core::webhook::{event, signature};

/// Everything the intake needs; shared by all requests.
pub struct Intake<Q> {
    pub config: Arc<Config>,
    pub secret: Secret,
    /// `server.webhook_secret_file`, read again for each delivery so that a rotated secret
    /// (the App's webhook secret changed, the mounted Secret replaced) needs no restart; when
    /// set it is used instead of `secret`.
    pub rotating: Option<Arc<crate::adapters::github_auth::RotatingSecret>>,
    pub queue: Q,
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when a delivery was queued, so it does not wait for its next poll.
    pub wake: Arc<Notify>,
    /// Stamps each delivery's arrival.
    pub clock: Arc<dyn Clock + Send + Sync>,
    /// Bytes of bodies in flight, all requests together (`server.intake_budget_bytes`).
    budget: Arc<Semaphore>,
    /// The last readiness answer and when it was found, so probes (unauthenticated, on the
    /// public port) cost the store at most one write a second.
    readiness: Mutex<Option<(Instant, Result<(), String>)>>,
    /// Refusals of unauthenticated requests are logged at most once a second, with the count
    /// left out since: anyone on the internet can send them, and a line each would let them
    /// fill the disk with logs.
    refusals: Mutex<(Option<Instant>, u64)>,
}

/// How many refusals of unauthenticated requests a log line may stand for: `None` when this one
/// is left out (a line was written less than a second ago), else how many were left out
/// before it.
fn log_refusal(refusals: &Mutex<(Option<Instant>, u64)>, now: Instant) -> Option<u64> {
    let mut r = refusals.lock().unwrap_or_else(|p| p.into_inner());
    match r.0 {
        Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
            r.1 += 1;
            None
        }
        _ => {
            let left_out = r.1;
            *r = (Some(now), 0);
            Some(left_out)
        }
    }
}

impl<Q: DeliveryQueue> Intake<Q> {
    /// The webhook secret is read from its file for each delivery (see `rotating`).
    pub fn with_rotating_secret(
        mut self,
        secret: crate::adapters::github_auth::RotatingSecret,
    ) -> Self {
        self.rotating = Some(Arc::new(secret));
        self
    }

    pub fn new(
        config: Arc<Config>,
        secret: Secret,
        queue: Q,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        let budget = config
            .server
            .limits
            .intake_budget_bytes
            .min(Semaphore::MAX_PERMITS);
        Intake {
            config,
            secret,
            rotating: None,
            queue,
            metrics,
            wake,
            clock,
            budget: Arc::new(Semaphore::new(budget)),
            readiness: Mutex::new(None),
            refusals: Mutex::new((None, 0)),
        }
    }

    /// Whether the store answers, takes a write and has room for two of the largest deliveries
    /// (one in the log, one being checkpointed into the database); found at most once a second.
    fn readiness(&self) -> Result<(), String> {
        const FRESH: Duration = Duration::from_secs(1);
        let mut last = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, answer)) = last.as_ref().filter(|(at, _)| at.elapsed() < FRESH) {
            return answer.clone();
        }
        let room = (self.config.server.max_body_bytes as u64).saturating_mul(2);
        let answer = self.queue.ready(room).map_err(|e| e.to_string());
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// The router of the webhook listener: the webhook, `/healthz` and `/readyz`, nothing else.
pub fn router<Q: DeliveryQueue>(intake: Arc<Intake<Q>>) -> Router {
    let path = intake.config.server.webhook_path.clone();
    Router::new()
        .route(&path, post(receive::<Q>))
        // The handler enforces the configured cap itself while streaming; axum's default 2 MB
        // limit must not cut in first.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::clone(&intake))
        .merge(probes(intake))
}

/// `/healthz` (the process serves HTTP) and `/readyz` (the store can take a delivery), served on
/// both listeners.
pub fn probes<Q: DeliveryQueue>(intake: Arc<Intake<Q>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<Q>))
        .with_state(intake)
}

/// `/metrics`, for the admin listener.
pub fn metrics_router<Q: DeliveryQueue>(intake: Arc<Intake<Q>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<Q>))
        .with_state(intake)
}

async fn ready<Q: DeliveryQueue>(State(intake): State<Arc<Intake<Q>>>) -> Response {
    match intake.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            warn!(error = %e, "readiness probe: the store cannot take deliveries");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store not writable: {e}\n"),
            )
                .into_response()
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

/// Why a body was not read to its end.
enum Refused {
    TooLarge,
    Busy,
    Timeout,
    Broken(String),
}

/// Reads the body chunk by chunk, taking each chunk's bytes from the shared `budget` as it
/// arrives: refused as soon as it passes `cap`, overdraws the budget, or outlasts `timeout`.
/// The permit holds the body's bytes until the request is answered.
async fn read_body(
    body: Body,
    cap: usize,
    budget: &Arc<Semaphore>,
    timeout: Duration,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Refused> {
    let read = async {
        let mut body = body;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        let mut permit: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Refused::Broken(format!("reading body: {e}")))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            len = len.saturating_add(chunk.len());
            if len > cap {
                return Err(Refused::TooLarge);
            }
            let n = u32::try_from(chunk.len()).map_err(|_| Refused::TooLarge)?;
            let more = Arc::clone(budget)
                .try_acquire_many_owned(n)
                .map_err(|_| Refused::Busy)?;
            match permit.as_mut() {
                Some(p) => p.merge(more),
                None => permit = Some(more),
            }
            chunks.push(chunk);
        }
        // Joined chunk by chunk, each dropped once copied, so the join holds at most one chunk
        // beyond the budget instead of a second copy of the whole body.
        let bytes = match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut joined = Vec::with_capacity(len);
                for chunk in chunks.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                Bytes::from(joined)
            }
        };
        Ok((bytes, permit))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(Refused::Timeout))
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
    let server = &intake.config.server;
    let cap = server.max_body_bytes;
    let declared = header_str(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        m.delivery(UNVERIFIED, Outcome::TooLarge);
        return too_large();
    }
    let budget = &intake.budget;
    let (body, _held) =
        match read_body(body, cap, budget, server.limits.body_timeout.as_duration()).await {
            Ok(read) => read,
            Err(Refused::TooLarge) => {
                m.delivery(UNVERIFIED, Outcome::TooLarge);
                return too_large();
            }
            Err(Refused::Busy) => {
                m.delivery(UNVERIFIED, Outcome::Busy);
                if let Some(left_out) = log_refusal(&intake.refusals, Instant::now()) {
                    warn!(
                        left_out,
                        "refused delivery: the budget for bodies in flight is spent"
                    );
                }
                return unavailable("busy: too many deliveries in flight");
            }
            Err(Refused::Timeout) => {
                m.delivery(UNVERIFIED, Outcome::Timeout);
                return answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "rejected",
                    Some("the body did not arrive in time"),
                );
            }
            Err(Refused::Broken(reason)) => {
                m.delivery(UNVERIFIED, Outcome::Rejected);
                return answer(StatusCode::BAD_REQUEST, "rejected", Some(&reason));
            }
        };
    // Authenticate before looking at anything else, so unauthenticated callers learn nothing.
    let secret = match &intake.rotating {
        Some(r) => r.current(),
        None => intake.secret.clone(),
    };
    if let Err(e) = signature::verify(
        secret.expose().as_bytes(),
        &body,
        header_str(&headers, "x-hub-signature-256"),
    ) {
        m.signature_failure();
        m.delivery(UNVERIFIED, Outcome::Unauthorized);
        if let Some(left_out) = log_refusal(&intake.refusals, Instant::now()) {
            warn!(reason = %e, left_out, "refused delivery: bad signature");
        }
        return answer(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some(&e.to_string()),
        );
    }
    let label = event_label(&event_name);
    if !valid_event_name(&event_name) {
        m.delivery(label, Outcome::Rejected);
        return answer(
            StatusCode::BAD_REQUEST,
            "rejected",
            Some("missing or malformed X-GitHub-Event header"),
        );
    }
    if !valid_delivery_id(&delivery_id) {
        m.delivery(label, Outcome::Rejected);
        return answer(
            StatusCode::BAD_REQUEST,
            "rejected",
            Some("missing or malformed X-GitHub-Delivery header"),
        );
    }
    let parsed = match event::parse(&event_name, &body) {
        Ok(p) => p,
        Err(e) => {
            m.delivery(label, Outcome::Rejected);
            warn!(error = %e, "refused delivery: malformed payload");
            return answer(StatusCode::BAD_REQUEST, "rejected", Some(&e.to_string()));
        }
    };
    let (status, detail, placement) = triage(&intake.config, &parsed, &delivery_id);
    let delivery = NewDelivery {
        delivery_id: delivery_id.clone(),
        event: event_name.clone(),
        action: parsed.action.clone(),
        repository: parsed.repository.clone(),
        received_at: intake.clock.now().to_rfc3339(),
        // No copy: the bytes move into the row (the budget's permit still counts them).
        payload: Vec::from(body),
        status,
        detail: detail.clone(),
        placement,
    };
    match intake.queue.enqueue(delivery).await {
        Ok(Inserted::Duplicate) => {
            m.delivery(label, Outcome::Duplicate);
            info!("duplicate delivery: already received, not processed again");
            answer(StatusCode::OK, "duplicate", None)
        }
        Ok(Inserted::New) if status == DeliveryStatus::Ignored => {
            m.delivery(label, Outcome::Ignored);
            let reason = detail.unwrap_or_default();
            info!(action = ?parsed.action, repository = ?parsed.repository, %reason, "recorded, ignored");
            answer(StatusCode::ACCEPTED, "ignored", Some(&reason))
        }
        Ok(Inserted::New) => {
            m.delivery(label, Outcome::Queued);
            info!(action = ?parsed.action, repository = ?parsed.repository, "queued");
            intake.wake.notify_one();
            answer(StatusCode::ACCEPTED, "queued", None)
        }
        Err(e) => {
            m.delivery(label, Outcome::Error);
            tracing::error!(error = %e, "could not store delivery");
            unavailable("store unavailable")
        }
    }
}

fn too_large() -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "rejected",
        Some("body exceeds the configured limit"),
    )
}

/// 503 with `Retry-After`: GitHub records the failure, and the delivery can be redelivered.
fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        axum::Json(serde_json::json!({"status": "error", "reason": reason})),
    )
        .into_response()
}

/// Decides whether a verified, parsed delivery is queued or only recorded, and where it waits:
/// what its route ignores is recorded with the reason, everything else is queued for the worker
/// in its lane.
fn triage(
    config: &Config,
    parsed: &event::Parsed,
    delivery_id: &str,
) -> (DeliveryStatus, Option<String>, Placement) {
    let route = route(parsed, &super::repos(config));
    let placement = lane::place(&route, delivery_id);
    match route {
        Route::Ignore { reason } => (DeliveryStatus::Ignored, Some(reason), placement),
        _ => (DeliveryStatus::Pending, None, placement),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals a second apart are each logged; those in between are counted into the next line.
    #[test]
    fn unauthenticated_refusals_are_logged_once_a_second_with_the_rest_counted() {
        let r = Mutex::new((None, 0));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log_refusal(&r, at(0)), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(log_refusal(&r, at(ms)), None, "at {ms} ms");
        }
        assert_eq!(log_refusal(&r, at(1000)), Some(4));
        assert_eq!(log_refusal(&r, at(2500)), Some(0));
    }
}
