//! Serves the status page (`deploybot_core::rollout::page`, pure rendering) over the store:
//! `GET /` and `GET /rollouts/{id}`. Reads the store off the async workers and answers with
//! headers that keep the page inert. `page_router` does not listen by itself.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use deploybot_core::clock::Clock;
use deploybot_core::rollout::page::{RECENT, render_index, render_message, render_rollout};
use deploybot_core::rollout::store::{AuditEvent, RolloutStore};

use crate::adapters::store::Store;

/// What the pages read: the store, and the clock that dates each page.
#[derive(Clone)]
struct Pages {
    store: Store,
    clock: Arc<dyn Clock + Send + Sync>,
}

/// The router serving the status page over `store`: `GET /` and `GET /rollouts/{id}`, each page
/// stamped with `clock`'s time.
pub fn page_router(store: Store, clock: Arc<dyn Clock + Send + Sync>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/rollouts/{id}", get(one))
        .with_state(Pages { store, clock })
}

/// An HTML answer with headers that keep the page inert: no script may run, nothing loads from
/// elsewhere, and the browser does not guess another content type.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Reads the store off the async workers (SQLite is synchronous) and renders; a store error is
/// a 500 page naming what failed.
async fn render_blocking(
    now: DateTime<Utc>,
    f: impl FnOnce(DateTime<Utc>) -> Result<(StatusCode, String), String> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(now)).await {
        Ok(Ok((status, body))) => html(status, body),
        Ok(Err(message)) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            render_message("Error", &message, now),
        ),
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            render_message("Error", &format!("rendering the page: {e}"), now),
        ),
    }
}

async fn index(State(Pages { store, clock }): State<Pages>) -> Response {
    render_blocking(clock.now(), move |now| {
        let live = store
            .live()
            .map_err(|e| format!("reading live rollouts: {e}"))?;
        let recent = store
            .recent(None, RECENT + live.len())
            .map_err(|e| format!("reading recent rollouts: {e}"))?;
        Ok((StatusCode::OK, render_index(&live, &recent, now)))
    })
    .await
}

async fn one(State(Pages { store, clock }): State<Pages>, Path(id): Path<String>) -> Response {
    render_blocking(clock.now(), move |now| {
        let Some(r) = store
            .get(&id)
            .map_err(|e| format!("reading rollout {id}: {e}"))?
        else {
            return Ok((
                StatusCode::NOT_FOUND,
                render_message("Not found", &format!("No rollout with id {id}."), now),
            ));
        };
        let events: Vec<AuditEvent> = store
            .history(r.service())
            .map_err(|e| format!("reading the audit trail of {id}: {e}"))?
            .into_iter()
            .filter(|e| e.rollout_id == id)
            .collect();
        let points = store
            .metrics(&id)
            .map_err(|e| format!("reading the metrics of {id}: {e}"))?;
        Ok((StatusCode::OK, render_rollout(&r, &events, &points, now)))
    })
    .await
}
