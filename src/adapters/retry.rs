//! The one retry loop: runs an operation, and after each failure asks the core's
//! [`RetryPolicy`] whether and how long to wait before the next try. Every adapter that retries
//! in-process (the git push race, Prometheus, the model, GitHub's rate limits) goes through it;
//! the durable retries (the webhook worker's, the rollout driver's) read the same policy.
//!
//! It lives with the adapters, below the shell, because adapters use it; `sleep` is a parameter
//! so tests run without waiting.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use deploybot_core::failure::Classified;
use deploybot_core::retry::RetryPolicy;

/// Runs `op` (given the 1-based attempt number) until it succeeds or `policy` gives up, and
/// returns the last error then. A permanent error is returned at once.
pub async fn retry<T, E, Op, Fut, Sleep, Slept>(
    policy: &RetryPolicy,
    sleep: Sleep,
    mut op: Op,
) -> Result<T, E>
where
    E: Classified + Display,
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    Sleep: Fn(Duration) -> Slept,
    Slept: Future<Output = ()>,
{
    let mut attempt = 1;
    loop {
        let error = match op(attempt).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let Some(wait) = policy.next(attempt, &error, rand::random()) else {
            return Err(error);
        };
        tracing::warn!(attempt, ?wait, error = %error, "failed; trying again");
        sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use deploybot_core::failure::Failure;

    use super::*;

    /// Runs `retry` over a scripted list of outcomes, recording the waits instead of sleeping.
    fn run(
        policy: &RetryPolicy,
        mut script: Vec<Result<u32, Failure>>,
    ) -> (Result<u32, Failure>, Vec<Duration>, u32) {
        let waits = Mutex::new(Vec::new());
        let mut calls = 0;
        script.reverse();
        let result = block_on(retry(
            policy,
            |d| {
                waits.lock().unwrap().push(d);
                std::future::ready(())
            },
            |attempt| {
                calls += 1;
                assert_eq!(attempt, calls);
                std::future::ready(script.pop().expect("no more scripted outcomes"))
            },
        ));
        (result, waits.into_inner().unwrap(), calls)
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn transient_failures_are_tried_again_with_the_policys_waits() {
        let p = RetryPolicy::doubling(4, ms(10), ms(15));
        let busy = || Err(Failure::transient("asking", "HTTP 503"));
        let (r, waits, calls) = run(&p, vec![busy(), busy(), Ok(7)]);
        assert_eq!((r, calls), (Ok(7), 3));
        assert_eq!(waits, [ms(10), ms(15)]);

        let (r, waits, calls) = run(&p, vec![busy(), busy(), busy(), busy()]);
        assert_eq!(
            r.unwrap_err().cause,
            "HTTP 503",
            "the last error comes back"
        );
        assert_eq!((waits.len(), calls), (3, 4));
    }

    #[test]
    fn permanent_failures_and_long_peer_waits_end_at_once() {
        let p = RetryPolicy::doubling(4, ms(10), ms(1000));
        let (r, waits, calls) = run(&p, vec![Err(Failure::permanent("asking", "HTTP 400"))]);
        assert!(r.is_err() && waits.is_empty() && calls == 1);

        let asked = |s| Err(Failure::transient("asking", "HTTP 429").after(ms(s)));
        let (r, waits, _) = run(&p, vec![asked(300), Ok(1)]);
        assert_eq!((r, waits), (Ok(1), vec![ms(300)]));
        let (r, waits, calls) = run(&p, vec![asked(5000)]);
        assert!(r.is_err() && waits.is_empty() && calls == 1);
    }
}
