//! The clock port: where the shell gets the time. The core itself never asks; its functions take
//! `now` as an argument. The wall clock is one adapter (`deploybot::adapters::clock`); the demo and
//! the tests run the same shell on virtual clocks.

use chrono::{DateTime, Utc};

/// Where the shell gets the time; the core never reads a clock.
pub trait Clock {
    fn now(&self) -> DateTime<Utc>;
}
