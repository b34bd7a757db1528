//! `GET /api/rollouts` (and `GET /api/rollouts/{id}`): rollouts as JSON, for dashboards and
//! scripts. `api_router` returns a router the server mounts; it does not listen by itself and
//! never changes a rollout.
//!
//! - `GET /api/rollouts?service=S&live=true&limit=N`: `{"rollouts": [...]}`, live ones first,
//!   then the most recently updated (`limit` defaults to 50, at most 500).
//! - `GET /api/rollouts/{id}`: `{"rollout": {...}, "events": [...]}`, 404 if unknown.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::adapters::store::Store;
use deploybot_core::rollout::record::Rollout;
use deploybot_core::rollout::store::{AuditEvent, RolloutStore};
use deploybot_core::rollout::view::RolloutView;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The router serving the rollout API over `store`.
pub fn api_router(store: Store) -> Router {
    Router::new()
        .route("/api/rollouts", get(list))
        .route("/api/rollouts/{id}", get(one))
        .with_state(store)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    service: Option<String>,
    #[serde(default)]
    live: bool,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct List {
    rollouts: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct One {
    rollout: serde_json::Value,
    events: Vec<AuditEvent>,
}

/// An error as JSON: `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The store is synchronous (SQLite): keep it off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(format!("reading rollouts: {e}")))?
}

async fn list(
    State(store): State<Store>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be within 1..={MAX_LIMIT}, not {limit}"),
        ));
    }
    let rollouts = blocking(move || {
        let service = q.service.as_deref();
        let mut out: Vec<Rollout> = store
            .live()
            .map_err(internal)?
            .into_iter()
            .filter(|r| service.is_none_or(|s| r.service() == s))
            .collect();
        if !q.live {
            for r in store.recent(service, limit).map_err(internal)? {
                if !out.iter().any(|x| x.deploy_id == r.deploy_id) {
                    out.push(r);
                }
            }
        }
        out.truncate(limit);
        out.iter()
            .map(|r| serde_json::to_value(RolloutView::of(r)).map_err(internal))
            .collect()
    })
    .await?;
    Ok(Json(List { rollouts }))
}

async fn one(State(store): State<Store>, Path(id): Path<String>) -> Result<Json<One>, ApiError> {
    blocking(move || {
        let rollout = store
            .get(&id)
            .map_err(internal)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no rollout with id {id}")))?;
        let events = store
            .history(rollout.service())
            .map_err(internal)?
            .into_iter()
            .filter(|e| e.rollout_id == id)
            .collect();
        let rollout = serde_json::to_value(RolloutView::of(&rollout)).map_err(internal)?;
        Ok(Json(One { rollout, events }))
    })
    .await
}
