//! The GitHub webhook intake: verify the signature, parse the event, persist the delivery, answer
//! 202, and process it later from the durable queue.

pub mod bench;
pub mod server;
