//! The worker: takes deliveries from the durable queue and hands each to a [`Processor`].
//!
//! Deliveries run in parallel in two lanes (commands, and all other work), one at a time per
//! ordering key (a pull request keeps its order), as `deploybot_core::webhook::lane::next`
//! decides from the queue's metadata; payloads are loaded only when a delivery starts, within a
//! memory budget. A delivery leaves the queue only when its processing finished (done, ignored,
//! or failed for good: the dead-letter state), so a crash at any point means it is processed
//! again after restart: processors must therefore be idempotent, and the ones deploybot has are.
//!
//! A transient failure is retried as the retry policy says, its attempts and the time of the
//! next one kept in the store; while it waits it holds back only later deliveries with its key.
//! When the outcome itself cannot be written (a full disk), the delivery is held back in memory
//! with a growing wait instead of being tried again at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, warn};

use crate::adapters::store::{
    Claimed, DeliveryQueue, DeliveryStatus, QueuedDelivery, StoredDelivery,
};
use crate::shell::metrics::Metrics;
use deploybot_core::clock::Clock;
use deploybot_core::config::WorkerSpec;
use deploybot_core::failure::Failure;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::webhook::event::{self, Parsed};
use deploybot_core::webhook::lane::{self, Capacity, InFlight, Lane, Waiting};

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

/// How deliveries are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// Two lanes, parallel across ordering keys (what `serve` runs).
    Lanes,
    /// One line in arrival order, one delivery at a time, a retrying delivery holding back all
    /// the others: the worker before lanes, kept as the benchmarks' baseline.
    Fifo,
}

/// The worker's limits and its retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub scheduling: Scheduling,
    pub capacity: Capacity,
    pub retry: RetryPolicy,
    /// How often the queue is read when nothing wakes the worker (a delivery replayed from
    /// another process is picked up within it).
    pub poll: Duration,
}

impl Settings {
    /// The configured worker (`server.workers`, `server.command_workers`,
    /// `server.worker_budget_bytes`, `server.delivery_retry`).
    pub fn from_spec(spec: &WorkerSpec) -> Settings {
        Settings {
            scheduling: Scheduling::Lanes,
            capacity: Capacity {
                work: spec.workers,
                commands: spec.command_workers,
                budget_bytes: spec.budget_bytes,
            },
            retry: spec.retry.clone(),
            poll: Duration::from_secs(5),
        }
    }

    /// One delivery at a time in arrival order, with the same memory budget and retries.
    pub fn fifo(spec: &WorkerSpec) -> Settings {
        Settings {
            scheduling: Scheduling::Fifo,
            capacity: Capacity {
                work: 1,
                commands: 0,
                budget_bytes: spec.budget_bytes,
            },
            ..Settings::from_spec(spec)
        }
    }
}

impl Default for Settings {
    /// The defaults of the config.
    fn default() -> Self {
        Settings::from_spec(&deploybot_core::config::Config::default().server.worker)
    }
}

/// What the worker needs besides the queue and the processor.
pub struct Parts {
    pub metrics: Arc<Metrics>,
    /// Wakes the worker when a delivery was queued, so it does not wait for its next poll.
    pub wake: Arc<Notify>,
    /// The time retries are due at (stored as Unix milliseconds).
    pub clock: Arc<dyn Clock + Send + Sync>,
    pub settings: Settings,
}

impl Parts {
    /// Parts of their own (fresh metrics, a wake-up nobody else rings, the system clock): a
    /// worker run outside `serve`, by the benchmarks and tests.
    pub fn standalone(settings: Settings) -> Parts {
        Parts {
            metrics: Arc::new(Metrics::default()),
            wake: Arc::new(Notify::new()),
            clock: Arc::new(crate::adapters::clock::SystemClock),
            settings,
        }
    }
}

/// Rows of the queue read per round. Deliveries beyond them wait for the ones ahead to start.
const SCAN_LIMIT: usize = 1000;

/// The longest a delivery whose outcome could not be written is held back.
const HOLD_BACK_MAX: Duration = Duration::from_secs(60);

/// A delivery in hand.
struct Running {
    key: String,
    lane: Lane,
    bytes: usize,
}

/// What a finished task reports.
struct Finished {
    seq: i64,
    /// The outcome could not be written: the delivery is still pending in the store.
    unrecorded: bool,
}

/// The worker loop. When `shutdown` turns true it starts nothing more and returns once the
/// deliveries in hand are finished; the caller bounds that wait (dropping this future abandons
/// them, and they stay queued).
pub async fn run<Q, P>(
    queue: Q,
    processor: Arc<P>,
    parts: Parts,
    mut shutdown: watch::Receiver<bool>,
) where
    Q: DeliveryQueue,
    P: Processor,
{
    let queue = Arc::new(queue);
    let pending = queue.pending_count().unwrap_or(0);
    if pending > 0 {
        info!(pending, "resuming deliveries left in the queue");
    }
    let settings = &parts.settings;
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut running: HashMap<i64, Running> = HashMap::new();
    // Deliveries whose outcome could not be written: when they may start again, and how often
    // it failed in a row.
    let mut held_back: HashMap<i64, (Instant, u32)> = HashMap::new();
    // Deliveries another replica claimed (a store several share), until their claim's end in
    // Unix ms: their keys wait here as behind a delivery in hand, so a key keeps its order
    // across replicas; they take none of this replica's capacity.
    let mut elsewhere: HashMap<i64, (Running, i64)> = HashMap::new();
    while !*shutdown.borrow() {
        let queued = match queue.queued(SCAN_LIMIT) {
            Ok(q) => q,
            Err(e) => {
                error!(error = %e, "reading the delivery queue");
                Vec::new()
            }
        };
        let now_ms = parts.clock.now().timestamp_millis();
        let now = Instant::now();
        held_back.retain(|seq, _| queued.iter().any(|q| q.seq == *seq));
        elsewhere.retain(|seq, (_, until)| *until > now_ms && queued.iter().any(|q| q.seq == *seq));
        let waiting: Vec<Waiting> = queued
            .iter()
            .filter(|q| !running.contains_key(&q.seq) && !elsewhere.contains_key(&q.seq))
            .map(|q| waiting(q, settings.scheduling, now_ms, held_back.get(&q.seq)))
            .collect();
        let mut in_flight = in_flight(&running, settings.scheduling);
        in_flight.keys.extend(
            elsewhere
                .values()
                .map(|(r, _)| key_of(r, settings.scheduling)),
        );
        for seq in lane::next(&waiting, &in_flight, settings.capacity) {
            let Some(q) = queued.iter().find(|q| q.seq == seq) else {
                continue;
            };
            match queue.claim_one(&q.delivery_id, now_ms) {
                Ok(Claimed::Yes) => {}
                Ok(Claimed::Elsewhere { until }) => {
                    let held = Running {
                        key: q.key.clone(),
                        lane: q.lane,
                        bytes: 0,
                    };
                    elsewhere.insert(seq, (held, until));
                    continue;
                }
                Ok(Claimed::Gone) => continue,
                Err(e) => {
                    error!(error = %e, "claiming a delivery");
                    continue;
                }
            }
            let delivery = match queue.load(seq) {
                Ok(Some(d)) if d.status == DeliveryStatus::Pending => Arc::new(d),
                Ok(_) => continue,
                Err(e) => {
                    error!(error = %e, "reading a delivery's payload");
                    continue;
                }
            };
            running.insert(
                seq,
                Running {
                    key: q.key.clone(),
                    lane: q.lane,
                    bytes: q.bytes,
                },
            );
            let (queue, processor, metrics) = (
                Arc::clone(&queue),
                Arc::clone(&processor),
                Arc::clone(&parts.metrics),
            );
            let (retry, clock) = (settings.retry.clone(), Arc::clone(&parts.clock));
            let span = tracing::info_span!(
                "delivery",
                delivery_id = %delivery.delivery_id,
                event = %delivery.event,
            );
            tasks.spawn(
                async move {
                    let unrecorded =
                        process_one(&*queue, &processor, &metrics, &retry, &*clock, &delivery)
                            .await;
                    Finished { seq, unrecorded }
                }
                .instrument(span),
            );
        }
        let next_due = next_due(&queued, &running, &held_back, now_ms, now);
        let wait = next_due.map_or(settings.poll, |d| d.min(settings.poll));
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                finished(done, &mut running, &mut held_back);
            }
            _ = parts.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
    if !tasks.is_empty() {
        info!(
            in_hand = tasks.len(),
            "stopping: finishing the deliveries in hand"
        );
    }
    while let Some(done) = tasks.join_next().await {
        finished(done, &mut running, &mut held_back);
    }
}

/// A queued delivery as the scheduler sees it. In FIFO every delivery shares one key and one
/// lane, so nothing overtakes anything.
fn waiting(
    q: &QueuedDelivery,
    scheduling: Scheduling,
    now_ms: i64,
    held: Option<&(Instant, u32)>,
) -> Waiting {
    let due = q.not_before <= now_ms && held.is_none_or(|(until, _)| *until <= Instant::now());
    let (lane, key) = match scheduling {
        Scheduling::Lanes => (q.lane, q.key.clone()),
        Scheduling::Fifo => (Lane::Work, String::new()),
    };
    Waiting {
        seq: q.seq,
        lane,
        key,
        due,
        bytes: q.bytes,
    }
}

/// The ordering key a delivery holds while in hand: its own in lanes, the one line in FIFO.
fn key_of(r: &Running, scheduling: Scheduling) -> String {
    match scheduling {
        Scheduling::Lanes => r.key.clone(),
        Scheduling::Fifo => String::new(),
    }
}

fn in_flight(running: &HashMap<i64, Running>, scheduling: Scheduling) -> InFlight {
    let mut f = InFlight::default();
    for r in running.values() {
        let (lane, key) = match scheduling {
            Scheduling::Lanes => (r.lane, r.key.clone()),
            Scheduling::Fifo => (Lane::Work, String::new()),
        };
        f.keys.insert(key);
        match lane {
            Lane::Work => f.work += 1,
            Lane::Commands => f.commands += 1,
        }
        f.bytes = f.bytes.saturating_add(r.bytes);
    }
    f
}

/// How long until the earliest waiting delivery is due again (a retry or a held-back one).
fn next_due(
    queued: &[QueuedDelivery],
    running: &HashMap<i64, Running>,
    held_back: &HashMap<i64, (Instant, u32)>,
    now_ms: i64,
    now: Instant,
) -> Option<Duration> {
    let retries = queued
        .iter()
        .filter(|q| !running.contains_key(&q.seq) && q.not_before > now_ms)
        .map(|q| Duration::from_millis(u64::try_from(q.not_before - now_ms).unwrap_or(0)));
    let held = held_back
        .values()
        .map(|(until, _)| until.saturating_duration_since(now));
    retries.chain(held).min()
}

fn finished(
    done: Result<Finished, tokio::task::JoinError>,
    running: &mut HashMap<i64, Running>,
    held_back: &mut HashMap<i64, (Instant, u32)>,
) {
    // A task only ends by finishing: the processor's panics are caught inside it.
    let Ok(Finished { seq, unrecorded }) = done else {
        return;
    };
    running.remove(&seq);
    if unrecorded {
        let failures = held_back.get(&seq).map_or(1, |(_, n)| n + 1);
        let wait = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(failures - 1))
            .min(HOLD_BACK_MAX);
        warn!(
            seq,
            ?wait,
            "the outcome of a delivery could not be stored; holding it back"
        );
        held_back.insert(seq, (Instant::now() + wait, failures));
    } else {
        held_back.remove(&seq);
    }
}

/// Aborts the task it holds when dropped, so that a processor abandoned at shutdown stops too.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Processes one delivery and records the outcome. Returns whether the outcome could not be
/// written (the delivery then stays pending).
async fn process_one<Q: DeliveryQueue, P: Processor>(
    queue: &Q,
    processor: &Arc<P>,
    metrics: &Metrics,
    retry: &RetryPolicy,
    clock: &(dyn Clock + Send + Sync),
    delivery: &Arc<StoredDelivery>,
) -> bool {
    let started = Instant::now();
    let parsed = match event::parse(&delivery.event, &delivery.payload) {
        Ok(p) => p,
        Err(e) => {
            // The intake parsed it before storing; only a format change between versions gets here.
            metrics.processed("failed", started.elapsed().as_secs_f64());
            return !finish(queue, delivery, DeliveryStatus::Failed, &e.to_string());
        }
    };
    // Run the processor on its own task so that a panic in it fails this delivery instead of
    // killing the worker and wedging the queue.
    let result = {
        let processor = Arc::clone(processor);
        let delivery = Arc::clone(delivery);
        let span = tracing::Span::current();
        let mut task = AbortOnDrop(tokio::spawn(async move {
            processor.process(&delivery, &parsed).instrument(span).await
        }));
        (&mut task.0)
            .await
            .unwrap_or_else(|e| Err(Failure::refused(format!("processor panicked: {e}"))))
    };
    let seconds = started.elapsed().as_secs_f64();
    let recorded = match result {
        Ok(Processed::Done(what)) => {
            info!(%what, seconds, "processed");
            metrics.processed("done", seconds);
            finish(queue, delivery, DeliveryStatus::Done, &what)
        }
        Ok(Processed::Ignored(why)) => {
            info!(%why, "nothing to do");
            metrics.processed("ignored", seconds);
            finish(queue, delivery, DeliveryStatus::Ignored, &why)
        }
        Err(f) if !f.is_transient() => {
            let why = f.to_string();
            error!(%why, "processing failed; not retried (dead letter: `deploybot deliveries`)");
            metrics.processed("failed", seconds);
            finish(queue, delivery, DeliveryStatus::Failed, &why)
        }
        Err(f) => {
            let why = f.to_string();
            let attempt = u32::try_from(delivery.attempts.saturating_add(1)).unwrap_or(u32::MAX);
            // The attempts are the queue's; a wait the peer named was already honoured inside
            // the adapter, so the backoff alone decides here.
            match retry.delay(attempt, rand::random()) {
                None => {
                    error!(%why, attempts = attempt, "processing failed; giving up after bounded retries (dead letter: `deploybot deliveries`)");
                    metrics.processed("failed", seconds);
                    finish(queue, delivery, DeliveryStatus::Failed, &why)
                }
                Some(wait) => {
                    warn!(%why, attempts = attempt, retry_in = ?wait, "processing failed; will retry");
                    metrics.processed("retry", seconds);
                    let not_before = clock
                        .now()
                        .timestamp_millis()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    match queue.record_attempt(&delivery.delivery_id, &why, not_before) {
                        Ok(_) => true,
                        Err(e) => {
                            error!(error = %e, "recording a failed attempt");
                            false
                        }
                    }
                }
            }
        }
    };
    !recorded
}

/// Records a delivery's outcome; whether that worked.
fn finish<Q: DeliveryQueue>(
    queue: &Q,
    d: &StoredDelivery,
    status: DeliveryStatus,
    detail: &str,
) -> bool {
    match queue.finish(&d.delivery_id, status, detail) {
        Ok(()) => true,
        Err(e) => {
            // The delivery stays pending and is processed again: processors are idempotent.
            error!(error = %e, "recording the outcome of a delivery");
            false
        }
    }
}
