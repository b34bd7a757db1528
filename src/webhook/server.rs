//! `deploybot serve`: opens the store, starts the worker and the HTTP listener, and stops both
//! cleanly on SIGINT/SIGTERM (the worker finishes the delivery in hand; the rest stay queued).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::webhook::dispatch::Dispatcher;
use crate::webhook::intake::{Intake, router};
use crate::webhook::worker::{self, RetryPolicy};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let secret = config
        .server
        .webhook_secret()
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let db = config.store.database_path();
    let store = Store::open(&db).context("opening the store")?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let token = match config.github.token_ref().map_err(anyhow::Error::msg)? {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| anyhow::anyhow!("github.token: {e}"))?,
        ),
        None => {
            tracing::warn!("no github.token_env/_file: GitHub API calls are unauthenticated");
            None
        }
    };
    let github = crate::github::rest::GithubRest::new(&config.github.api_url, token.as_ref())
        .context("setting up the GitHub client")?;
    let model = crate::risk::service::model_client(&config)?
        .map(|m| Arc::new(m) as Arc<dyn crate::llm::RiskModel>);
    if model.is_none() {
        info!("no llm.base_url: the deterministic risk policy alone decides");
    }

    let worker = tokio::spawn(worker::run(
        store.clone(),
        Arc::new(Dispatcher {
            config: Arc::clone(&config),
            github: Arc::new(github),
            model,
            store: store.clone(),
        }),
        Arc::clone(&metrics),
        Arc::clone(&wake),
        RetryPolicy::default(),
        stop_rx,
    ));

    let app = router(Arc::new(Intake {
        config: Arc::clone(&config),
        secret,
        queue: store.clone(),
        metrics,
        wake,
    }))
    .merge(crate::rollout::api::api_router(store.clone()))
    .merge(crate::rollout::page::page_router(store));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    info!(
        listen = %listener.local_addr()?,
        webhook_path = %config.server.webhook_path,
        store = %db.display(),
        "deploybot listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    info!("shutting down: finishing the delivery in hand");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
