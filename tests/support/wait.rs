//! Bounded polling: wait for a condition, never longer than a limit.

use std::time::{Duration, Instant};

/// How many times a wait of `limit` polls every `step`: a second bound, so
/// a wait ends even if the clock misbehaves.
fn max_polls(limit: Duration, step: Duration) -> u128 {
    limit.as_millis() / step.as_millis().max(1) + 1
}

/// Checks `cond` every `step` until it holds, for at most `limit` (blocking
/// the thread); returns how long it took, or `None`.
pub(crate) fn wait_until(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    for _ in 0..max_polls(limit, step) {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(step);
    }
    cond().then(|| start.elapsed())
}

/// [`wait_until`] on a tokio runtime: sleeps without blocking its worker.
pub(crate) async fn poll_until(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    for _ in 0..max_polls(limit, step) {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(step).await;
    }
    cond().then(|| start.elapsed())
}

/// [`poll_until`], failing the test with `what` if `cond` does not hold
/// within `limit`; returns how long it took.
pub(crate) async fn expect_within(
    what: &str,
    limit: Duration,
    step: Duration,
    cond: impl FnMut() -> bool,
) -> Duration {
    match poll_until(limit, step, cond).await {
        Some(took) => took,
        None => panic!("{what}: not within {limit:?}"),
    }
}
