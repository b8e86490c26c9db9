//! Bounded waits on a listener's [`LingerStats`], and the one assertion on
//! how its lingers ended.

use std::time::Duration;

use linger::{LingerShutdown, LingerStats};

use super::wait::wait_until;

/// Reads `stats` every `step` until `done` holds, for at most `limit`
/// (blocking the thread): the snapshot that satisfied it, or the last one
/// as the error. `done` sees every snapshot, so it can also record them.
pub(crate) fn wait_for(
    limit: Duration,
    step: Duration,
    stats: impl Fn() -> LingerStats,
    mut done: impl FnMut(&LingerStats) -> bool,
) -> Result<LingerStats, LingerStats> {
    let mut last = LingerStats::default();
    let met = wait_until(limit, step, || {
        last = stats();
        done(&last)
    });
    match met {
        Some(_) => Ok(last),
        None => Err(last),
    }
}

/// Waits, for at most `limit`, until at least `started` lingers have
/// started and none is left: the statistics then, or as the error those at
/// the limit. A client sees the FIN a moment before the server counts its
/// linger, so waiting for none to linger is not enough on its own.
pub(crate) async fn settled(
    lingers: &LingerShutdown,
    started: u64,
    limit: Duration,
) -> Result<LingerStats, LingerStats> {
    let settled = async {
        loop {
            lingers.wait().await;
            let stats = lingers.stats();
            if stats.started >= started && stats.lingering == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(limit, settled)
        .await
        .map_err(|_| lingers.stats())
}

/// The counters of [`LingerStats`] that say how many lingers started, are
/// running, and ended which way; compared whole, so a test states every
/// one of them. `bytes_discarded` is left to each test's own bounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ends {
    pub(crate) started: u64,
    pub(crate) lingering: u64,
    pub(crate) peer_closed: u64,
    pub(crate) idle_timeout: u64,
    pub(crate) deadline: u64,
    pub(crate) byte_cap: u64,
    pub(crate) error: u64,
    pub(crate) shortened: u64,
    pub(crate) acked: u64,
}

impl Ends {
    /// The counters of `stats`.
    pub(crate) fn of(stats: &LingerStats) -> Self {
        Self {
            started: stats.started,
            lingering: stats.lingering,
            peer_closed: stats.peer_closed,
            idle_timeout: stats.idle_timeout,
            deadline: stats.deadline,
            byte_cap: stats.byte_cap,
            error: stats.error,
            shortened: stats.shortened,
            acked: stats.acked,
        }
    }
}

/// Asserts every counter of `stats` equals `expected`'s.
#[track_caller]
pub(crate) fn assert_ends(stats: &LingerStats, expected: Ends) {
    assert_eq!(Ends::of(stats), expected, "{stats:?}");
}
