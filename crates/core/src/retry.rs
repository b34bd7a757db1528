//! The one retry policy: how long to wait before another try of a failed effect, and when to
//! give up. Pure: the attempt number and the random draw for jitter are arguments, so every
//! user (the git push loop, Prometheus, the model, GitHub's rate limits, the webhook worker)
//! reads the same arithmetic and tests need no clock.
//!
//! Each user configures its own numbers (today's defaults stay where they were: the config
//! section or the adapter); `deploybot::adapters::retry` runs the loop.

use std::time::Duration;

use crate::failure::{Class, Classified};

/// How a wait is spread out among racing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the computed wait.
    None,
    /// "Equal jitter": half the wait plus a random share of the other half, so racing writers
    /// spread out but never wait less than half.
    Equal,
}

/// Which transient failures are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// Every transient failure, after the backoff (or the wait the peer asked for).
    Transient,
    /// Only a failure whose peer asked to be tried again after a wait (GitHub's rate limits);
    /// other transient failures go back to the caller at once.
    PeerRequest,
}

/// Bounded exponential backoff: the wait before try `n + 1` is `initial * multiplier^(n-1)`,
/// capped at `max`, jittered.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in total, the first included; 1 never retries.
    pub max_attempts: u32,
    /// Wait before the second try.
    pub initial: Duration,
    /// Growth of the wait per try (1 keeps it constant).
    pub multiplier: f64,
    /// Longest wait between tries; a peer asking for longer ends the retries.
    pub max: Duration,
    pub jitter: Jitter,
    pub on: RetryOn,
}

impl RetryPolicy {
    /// Waits that double from `initial` up to `max`, with no jitter, for every transient
    /// failure: the shape of most users.
    pub fn doubling(max_attempts: u32, initial: Duration, max: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial,
            multiplier: 2.0,
            max,
            jitter: Jitter::None,
            on: RetryOn::Transient,
        }
    }

    /// The wait before try `attempt + 1` after try `attempt` (1-based) failed; `None` once
    /// `max_attempts` tries were made. `random` is a draw from `[0, 1)`, used by jitter only.
    pub fn delay(&self, attempt: u32, random: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max.as_secs_f64()).max(0.0);
        let wait = match self.jitter {
            Jitter::None => capped,
            Jitter::Equal => capped / 2.0 + random.clamp(0.0, 1.0) * capped / 2.0,
        };
        Some(Duration::from_secs_f64(wait))
    }

    /// Whether and how long to wait after try `attempt` failed with `failure`: never for a
    /// permanent failure or after the last try; the peer's requested wait when it named one
    /// (give up if it exceeds `max`); otherwise the backoff, unless only peer requests count.
    pub fn next(&self, attempt: u32, failure: &impl Classified, random: f64) -> Option<Duration> {
        if failure.class() == Class::Permanent || attempt >= self.max_attempts {
            return None;
        }
        match failure.retry_after() {
            Some(asked) if asked > self.max => None,
            Some(asked) => Some(asked),
            None if self.on == RetryOn::PeerRequest => None,
            None => self.delay(attempt, random),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Failure;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_are_capped_and_give_up_after_max_attempts() {
        let p = RetryPolicy::doubling(5, ms(100), ms(300));
        let waits: Vec<Option<Duration>> = (1..=5).map(|a| p.delay(a, 0.5)).collect();
        assert_eq!(
            waits,
            [
                Some(ms(100)),
                Some(ms(200)),
                Some(ms(300)),
                Some(ms(300)),
                None
            ]
        );
        let once = RetryPolicy::doubling(1, ms(100), ms(300));
        assert_eq!(once.delay(1, 0.0), None, "one attempt never retries");
    }

    #[test]
    fn equal_jitter_stays_between_half_and_all_of_the_wait() {
        let p = RetryPolicy {
            multiplier: 1.5,
            jitter: Jitter::Equal,
            ..RetryPolicy::doubling(20, ms(1000), ms(30_000))
        };
        for r in [0.0, 0.25, 0.5, 0.999] {
            let first = p.delay(1, r).unwrap();
            assert!(first >= ms(500) && first <= ms(1000), "{first:?}");
            let late = p.delay(12, r).unwrap();
            assert!(late >= ms(15_000) && late <= ms(30_000), "{late:?}");
        }
        assert_eq!(p.delay(2, 0.0), Some(ms(750)));
        assert_eq!(p.delay(2, 1.0), Some(ms(1500)));
        assert!(p.delay(20, 0.5).is_none());
    }

    #[test]
    fn permanent_failures_are_never_retried_and_peer_waits_are_bounded() {
        let p = RetryPolicy::doubling(4, ms(200), ms(20_000));
        let transient = Failure::transient("asking", "HTTP 503");
        assert_eq!(p.next(1, &transient, 0.0), Some(ms(200)));
        assert_eq!(p.next(4, &transient, 0.0), None);
        assert_eq!(
            p.next(1, &Failure::permanent("asking", "HTTP 400"), 0.0),
            None
        );
        let asked = |s| transient.clone().after(Duration::from_secs(s));
        assert_eq!(p.next(1, &asked(3), 0.0), Some(Duration::from_secs(3)));
        assert_eq!(p.next(1, &asked(21), 0.0), None, "longer than max: give up");

        let only_asked = RetryPolicy {
            on: RetryOn::PeerRequest,
            ..p
        };
        assert_eq!(only_asked.next(1, &transient, 0.0), None);
        assert_eq!(
            only_asked.next(1, &asked(2), 0.0),
            Some(Duration::from_secs(2))
        );
    }
}
