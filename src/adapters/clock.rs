//! The wall clock: the one place the program reads the time of day (`clippy.toml` bans
//! `Utc::now` and `SystemTime::now` everywhere else). Whoever can be given a [`Clock`] is; this
//! is what the edges pass in: `serve`, the CLI commands, the store's bookkeeping stamps and the
//! HTTP clients' rate-limit waits, which sleep in real time.

use chrono::{DateTime, Utc};
use deploybot_core::clock::Clock;

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the clock adapter: the one sanctioned read of the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
