//! `deploybot serve`: opens the store, starts the webhook worker, the rollout loop, the webhook
//! listener (`server.listen`: the webhook and health, the one port exposed to the internet) and
//! the admin listener (`server.admin_listen`: the status page, `/api/rollouts`, `/metrics`), and
//! stops on SIGINT/SIGTERM within `server.shutdown_grace`: it stops accepting, lets requests and
//! deliveries in flight finish, abandons what is still running at the deadline (those
//! deliveries stay queued; live rollouts are re-examined on the next start) and exits. The store
//! is pruned every hour.
//!
//! `assemble` builds the whole service from a config and its edges (metrics source, clock)
//! without binding a port, so the end-to-end tests drive exactly what `serve` runs.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::adapters::secrets::Secrets;
use crate::adapters::store::{Location, Store};
use crate::config::{Config, SecretKey};
use crate::shell::driver::Clock;
use crate::shell::events::RolloutEvents;
use crate::shell::metrics::Metrics;
use crate::shell::pipeline::Pipeline;
use crate::shell::runner::{LiveRunner, PrometheusWindows, RunnerParts, WindowSource};
use crate::shell::webhook::dispatch::Dispatcher;
use crate::shell::webhook::intake::{Intake, metrics_router, probes, router};
use crate::shell::webhook::listen;
use crate::shell::webhook::worker;
use deploybot_core::github::Github;
use deploybot_core::secret::SecretRef;

/// Everything `serve` runs, assembled but not started listening.
pub struct Assembly<W: WindowSource + 'static> {
    pub config: Arc<Config>,
    pub store: Store,
    /// The webhook listener's routes: the webhook, `/healthz`, `/readyz`.
    pub router: axum::Router,
    /// The admin listener's routes: the status page, `/api/rollouts`, `/metrics` and the probes.
    pub admin: axum::Router,
    pub pipeline: Arc<Pipeline<LiveRunner<W>>>,
    pub github: Arc<dyn Github>,
    pub model: Option<Arc<dyn deploybot_core::risk::model::RiskModel>>,
    pub clock: Arc<dyn Clock + Send + Sync>,
    worker: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl<W: WindowSource + 'static> Assembly<W> {
    /// The rollout side of GitHub events, for the reconcile.
    pub fn events(&self) -> RolloutEvents<'_, LiveRunner<W>> {
        RolloutEvents {
            config: &self.config,
            github: self.github.as_ref(),
            model: self.model.as_deref(),
            pipeline: &self.pipeline,
        }
    }

    /// One turn of the rollout loop at the clock's time: every live rollout ticks, verified
    /// releases move to the next environment.
    pub async fn tick(&self) {
        if let Err(e) = self.pipeline.tick(self.clock.now()).await {
            tracing::warn!("rollout tick: {e}");
        }
    }

    /// Stops everything at once, mid-delivery or mid-effect, as a killed process would
    /// (for crash tests: nothing is flushed or finished).
    pub fn abort(self) {
        self.worker.abort();
    }

    /// Stops the webhook worker after the deliveries in hand, waiting at most `grace`; what is
    /// still running then is abandoned and stays queued. Whether everything finished.
    pub async fn shutdown(self, grace: std::time::Duration) -> bool {
        let _ = self.stop.send(true);
        let mut worker = self.worker;
        match tokio::time::timeout(grace, &mut worker).await {
            Ok(_) => true,
            Err(_) => {
                worker.abort();
                false
            }
        }
    }
}

/// Builds the service: store, GitHub client, optional LLM, Argo CD, alerts, the rollout
/// pipeline over `windows`, the webhook worker (started) and the HTTP router. Reads every secret
/// the config references first, and refuses to start naming each one it cannot read.
pub async fn assemble<W: WindowSource + 'static>(
    config: Config,
    windows: W,
    clock: Arc<dyn Clock + Send + Sync>,
) -> anyhow::Result<Assembly<W>> {
    let secrets = Secrets::read(&config, &SecretKey::ALL)
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let secret = secrets.get(SecretKey::WebhookSecret).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "refusing to start: server.webhook_secret_env or server.webhook_secret_file must be \
             set: deploybot refuses to accept unsigned webhooks"
        )
    })?;
    let location = Location::of(
        &config.store,
        secrets.get(SecretKey::StorePassword).cloned(),
    );
    let store = Store::open_at(&location).context("opening the store")?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    if let Some(app) = &config.github.app {
        info!(
            app_id = app.id,
            "authenticating as the GitHub App: installation tokens are minted as needed"
        );
    }
    if !config.github.authenticated() {
        tracing::warn!(
            "no github.app_id or github.token_env/_file: GitHub API calls are unauthenticated, \
             and approval PRs cannot be opened"
        );
    }
    // GitHub's clock decides whether a JWT is valid, so the App signs with the wall clock
    // whatever clock drives the rollouts.
    let tokens = crate::adapters::github_auth::from_config(
        &config.github,
        Arc::new(crate::adapters::clock::SystemClock),
    )
    .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let github: Arc<dyn Github> = Arc::new(
        crate::adapters::github::GithubRest::with_tokens(
            config.github.api_base(),
            Arc::clone(&tokens),
        )
        .context("setting up the GitHub client")?
        .with_timeout(config.github.timeout.as_duration()),
    );
    let model = crate::shell::assess::model_client(&config, &secrets)?
        .map(|m| Arc::new(m) as Arc<dyn deploybot_core::risk::model::RiskModel>);
    if model.is_none() {
        info!("no llm.base_url: the deterministic risk policy alone decides");
    }
    let argocd = crate::adapters::argocd::ArgoCdServers::from_config(
        &config,
        secrets.get(SecretKey::ArgoCdToken),
    )
    .map_err(anyhow::Error::msg)?;
    if argocd.is_empty() {
        info!(settle_time = %config.argocd.settle_time, "no argocd.url: each commit settles for a fixed time");
    }
    let alerts = crate::adapters::alert::Alerts::new(
        secrets.get(SecretKey::AlertsWebhookUrl).cloned(),
        &config.alerts,
    )
    .map_err(anyhow::Error::msg)?;
    let runner = LiveRunner::new(RunnerParts {
        gitops: crate::shell::runner::gitops_writers(
            &config,
            crate::adapters::github_auth::for_gitops(&config, &tokens)
                .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?,
        ),
        config: Arc::clone(&config),
        store: store.clone(),
        github: Some(Arc::clone(&github)),
        github_authenticated: config.github.authenticated(),
        argocd,
        alerts,
        windows,
        clock: Arc::clone(&clock),
        metrics: Some(Arc::clone(&metrics)),
    });
    let pipeline = Arc::new(Pipeline::new(Arc::clone(&config), store.clone(), runner));

    let worker = tokio::spawn(worker::run(
        store.clone(),
        Arc::new(Dispatcher {
            config: Arc::clone(&config),
            github: Arc::clone(&github),
            tokens: Arc::clone(&tokens),
            model: model.clone(),
            store: store.clone(),
            pipeline: Some(Arc::clone(&pipeline)),
            clock: Arc::clone(&clock),
        }),
        worker::Parts {
            metrics: Arc::clone(&metrics),
            wake: Arc::clone(&wake),
            clock: Arc::clone(&clock),
            settings: worker::Settings::from_spec(&config.server.worker),
        },
        stop_rx,
    ));

    let mut intake = Intake::new(
        Arc::clone(&config),
        secret,
        store.clone(),
        metrics,
        wake,
        Arc::clone(&clock),
    );
    if let Some(file @ SecretRef::File(_)) = &config.server.webhook_secret {
        intake = intake.with_rotating_secret(
            crate::adapters::github_auth::RotatingSecret::read(file.clone())
                .map_err(|e| anyhow::anyhow!("refusing to start: server.webhook_secret: {e}"))?,
        );
    }
    let intake = Arc::new(intake);
    let admin = crate::shell::status_api::api_router(store.clone())
        .merge(crate::shell::status_page::page_router(
            store.clone(),
            Arc::clone(&clock),
        ))
        .merge(metrics_router(Arc::clone(&intake)))
        .merge(probes(Arc::clone(&intake)));
    let router = router(intake);
    Ok(Assembly {
        config,
        store,
        router,
        admin,
        pipeline,
        github,
        model,
        clock,
        worker,
        stop: stop_tx,
    })
}

/// The rollout loop: re-examine live rollouts (a restart continues them), then tick every
/// `server.tick_interval`, reconcile every `server.reconcile_interval` and prune the store every
/// hour, until `stop` is set.
pub async fn rollout_loop<W: WindowSource + 'static>(
    app: &Assembly<W>,
    mut stop: watch::Receiver<bool>,
) {
    match app.pipeline.driver().recover(app.clock.now()).await {
        Ok(n) => info!(live = n, "rollouts re-examined"),
        Err(e) => tracing::warn!("re-examining rollouts: {e}"),
    }
    let every = app.config.server.tick_interval.as_duration();
    let reconcile_every = app.config.server.reconcile_interval.as_duration();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconcile = tokio::time::interval(reconcile_every);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => app.tick().await,
            _ = reconcile.tick() => app.events().reconcile(app.clock.now()).await,
            _ = prune.tick() => app.prune().await,
        }
    }
}

/// How often `serve` applies `store.retention`.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl<W: WindowSource + 'static> Assembly<W> {
    /// Applies `store.retention` once, off the async threads (a large delete takes a while).
    pub async fn prune(&self) {
        let (store, retention, now) = (
            self.store.clone(),
            self.config.store.retention.clone(),
            self.clock.now(),
        );
        match tokio::task::spawn_blocking(move || store.prune(now, &retention)).await {
            Ok(Ok(p)) if p != Default::default() => info!(
                payloads = p.payloads,
                ignored = p.ignored,
                deliveries = p.deliveries,
                "store pruned"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("pruning the store: {e}"),
            Err(e) => tracing::warn!("pruning the store: {e}"),
        }
    }
}

/// Runs the service until SIGINT/SIGTERM. `config` was loaded with its secrets checked; they are
/// read once here, and each one that cannot be read is named before anything starts.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let secrets = Secrets::read(&config, &SecretKey::ALL)
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let windows = PrometheusWindows::new(Arc::new(config.clone()), &secrets);
    if let Some(problem) = windows.problem() {
        tracing::warn!("canaries cannot be judged, rollouts will pause at analysis: {problem}");
    }
    crate::adapters::gitops::set_network_timeout(config.gitops.timeout.as_duration());
    let app = assemble(config, windows, Arc::new(crate::shell::driver::SystemClock)).await?;
    let config = Arc::clone(&app.config);
    let server = &config.server;
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .with_context(|| format!("binding server.listen {}", server.listen))?;
    let admin = tokio::net::TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("binding server.admin_listen {}", server.admin_listen))?;
    info!(
        listen = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        webhook_path = %server.webhook_path,
        store = %app.store.describe(),
        "deploybot listening"
    );
    let grace = server.shutdown_grace.as_duration();
    let (stop, stopped) = watch::channel(false);
    // One deadline for everything: listeners, the rollout loop and the worker.
    let deadline = {
        let webhook = listen::serve(
            listener,
            app.router.clone(),
            &server.limits,
            stopped.clone(),
            grace,
        );
        let admin = listen::serve(
            admin,
            app.admin.clone(),
            &server.limits,
            stopped.clone(),
            grace,
        );
        let rollouts = rollout_loop(&app, stopped);
        let running = async {
            tokio::join!(webhook, admin, rollouts);
        };
        tokio::pin!(running);
        tokio::select! {
            _ = &mut running => {}
            _ = shutdown_signal() => {}
        }
        info!(?grace, "shutting down: finishing what is in flight");
        let _ = stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        if tokio::time::timeout_at(deadline, &mut running)
            .await
            .is_err()
        {
            tracing::warn!(
                "the rollout loop was still busy at the deadline; abandoned (it resumes on the \
                 next start)"
            );
        }
        deadline
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !app.shutdown(left).await {
        tracing::warn!("deliveries still in hand at the deadline were abandoned; they stay queued");
    }
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
