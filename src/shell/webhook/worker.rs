//! The worker: takes deliveries from the durable queue in arrival order and hands each to a
//! [`Processor`]. A delivery leaves the queue only when its processing finished (done, ignored,
//! or failed for good), so a crash at any point means it is processed again after restart:
//! processors must therefore be idempotent, and the ones deploybot has are. A transient
//! failure is retried as the retry policy says, its attempts counted in the store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tracing::{Instrument, error, info, warn};

use crate::adapters::store::{DeliveryQueue, DeliveryStatus, StoredDelivery};
use crate::shell::metrics::Metrics;
use deploybot_core::failure::Failure;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::webhook::event::{self, Parsed};

/// What processing a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Acted on; the text says what was done.
    Done(String),
    /// Nothing to do for this delivery; the text says why.
    Ignored(String),
}

/// Acts on one parsed delivery. Must be idempotent: a delivery can be handed over twice when
/// the process dies between acting and recording that it acted. A transient failure (a peer
/// timed out, a rate limit) is retried; a permanent one (the payload asks for something
/// impossible) is not.
pub trait Processor: Send + Sync + 'static {
    fn process(
        &self,
        delivery: &StoredDelivery,
        parsed: &Parsed,
    ) -> impl Future<Output = Result<Processed, Failure>> + Send;
}

/// The retry of deliveries that failed transiently: 5 attempts, waits doubling from 1 s up to
/// 60 s.
pub fn delivery_retry() -> RetryPolicy {
    RetryPolicy::doubling(5, Duration::from_secs(1), Duration::from_secs(60))
}

/// The worker loop. Returns when `shutdown` turns true (after the delivery in hand is finished).
pub async fn run<Q, P>(
    queue: Q,
    processor: Arc<P>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    retry: RetryPolicy,
    mut shutdown: watch::Receiver<bool>,
) where
    Q: DeliveryQueue,
    P: Processor,
{
    let pending = queue.pending_count().unwrap_or(0);
    if pending > 0 {
        info!(pending, "resuming deliveries left in the queue");
    }
    loop {
        if *shutdown.borrow() {
            return;
        }
        let batch = match queue.pending(32) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "reading the delivery queue");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for delivery in batch {
            if *shutdown.borrow() {
                return;
            }
            let span = tracing::info_span!(
                "delivery",
                delivery_id = %delivery.delivery_id,
                event = %delivery.event,
            );
            let backoff = process_one(&queue, &processor, &metrics, &retry, &delivery)
                .instrument(span)
                .await;
            if let Some(wait) = backoff {
                // Keep arrival order: later deliveries for the same PR must not overtake this one.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                break;
            }
        }
    }
}

/// Processes one delivery and records the outcome. Returns a backoff when it should be retried.
async fn process_one<Q: DeliveryQueue, P: Processor>(
    queue: &Q,
    processor: &Arc<P>,
    metrics: &Metrics,
    retry: &RetryPolicy,
    delivery: &StoredDelivery,
) -> Option<Duration> {
    let started = Instant::now();
    let parsed = match event::parse(&delivery.event, &delivery.payload) {
        Ok(p) => p,
        Err(e) => {
            // The intake parsed it before storing; only a format change between versions gets here.
            finish(queue, delivery, DeliveryStatus::Failed, &e.to_string());
            metrics.processed("failed", started.elapsed().as_secs_f64());
            return None;
        }
    };
    // Run the processor on its own task so that a panic in it fails this delivery instead of
    // killing the worker and wedging the queue.
    let result = {
        let processor = Arc::clone(processor);
        let delivery = delivery.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move { processor.process(&delivery, &parsed).instrument(span).await })
            .await
            .unwrap_or_else(|e| Err(Failure::refused(format!("processor panicked: {e}"))))
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(Processed::Done(what)) => {
            info!(%what, seconds, "processed");
            finish(queue, delivery, DeliveryStatus::Done, &what);
            metrics.processed("done", seconds);
            None
        }
        Ok(Processed::Ignored(why)) => {
            info!(%why, "nothing to do");
            finish(queue, delivery, DeliveryStatus::Ignored, &why);
            metrics.processed("ignored", seconds);
            None
        }
        Err(f) if !f.is_transient() => {
            let why = f.to_string();
            error!(%why, "processing failed; not retried");
            finish(queue, delivery, DeliveryStatus::Failed, &why);
            metrics.processed("failed", seconds);
            None
        }
        Err(f) => {
            let why = f.to_string();
            let attempts = queue
                .record_attempt(&delivery.delivery_id, &why)
                .map_or(retry.max_attempts, |n| u32::try_from(n).unwrap_or(u32::MAX));
            // The attempts are the queue's; a wait the peer named was already honoured inside
            // the adapter, so the backoff alone decides here.
            match retry.delay(attempts, rand::random()) {
                None => {
                    error!(%why, attempts, "processing failed; giving up after bounded retries");
                    finish(queue, delivery, DeliveryStatus::Failed, &why);
                    metrics.processed("failed", seconds);
                    None
                }
                Some(wait) => {
                    warn!(%why, attempts, retry_in = ?wait, "processing failed; will retry");
                    metrics.processed("retry", seconds);
                    Some(wait)
                }
            }
        }
    }
}

fn finish<Q: DeliveryQueue>(queue: &Q, d: &StoredDelivery, status: DeliveryStatus, detail: &str) {
    if let Err(e) = queue.finish(&d.delivery_id, status, detail) {
        // The delivery stays pending and is processed again: processors are idempotent.
        error!(error = %e, "recording the outcome of a delivery");
    }
}
