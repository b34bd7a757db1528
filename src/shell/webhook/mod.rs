//! The GitHub webhook intake: verify the signature, parse the event, persist the delivery, answer
//! 202, and process it later from the durable queue.
//!
//! The path of a delivery: `intake` (HTTP: cap, verify, parse, triage, store, answer) ->
//! the store's `deliveries` table -> `worker` (arrival order, retries, crash-safe) ->
//! `dispatch` (which concept acts on it).

pub mod dispatch;
pub mod intake;
pub mod server;
pub mod worker;
