//! [`Group`]: what every connection of one listener (or acceptor, or
//! standalone `LingerIo`) shares.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::config::LingerConfig;
use crate::state::stats::Counters;

/// State shared by every connection of one [`LingerListener`](crate::LingerListener)
/// (or of one standalone [`LingerIo`](crate::LingerIo)): the configuration,
/// the counters, and the shutdown signal. Connections reach it through
/// their [`ConnectionHandle`](crate::ConnectionHandle); nothing of it is
/// process-wide.
pub(crate) struct Group {
    pub(crate) config: LingerConfig,
    pub(crate) counters: Counters,
    pub(crate) shutdown: CancellationToken,
    /// Set by [`begin_shutdown`](Self::begin_shutdown), read beside
    /// `detached` (see [`detach`](Self::detach)).
    shutting_down: AtomicBool,
    /// Lingers running on tasks of their own.
    detached: AtomicUsize,
    /// Woken when the last linger ends, and when the last detached one does.
    pub(crate) idle: Notify,
    /// The accept loop's end: cancelled by [`LingerShutdown::on`] once its
    /// wait is over; the listener then hands on what is queued, and closes.
    ///
    /// [`LingerShutdown::on`]: crate::LingerShutdown::on
    pub(crate) stop_accepting: CancellationToken,
    /// Cancelled by the listener once its accept queue was found empty
    /// after `stop_accepting`: it accepts nothing more.
    pub(crate) accept_closed: CancellationToken,
    /// Whether an axum accept loop takes connections from this group's
    /// listener (so that [`LingerShutdown::on`] waits for it to close).
    ///
    /// [`LingerShutdown::on`]: crate::LingerShutdown::on
    pub(crate) axum_accepts: AtomicBool,
}

impl Group {
    pub(crate) fn new(config: LingerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            counters: Counters::default(),
            shutdown: CancellationToken::new(),
            shutting_down: AtomicBool::new(false),
            detached: AtomicUsize::new(0),
            idle: Notify::new(),
            stop_accepting: CancellationToken::new(),
            accept_closed: CancellationToken::new(),
            axum_accepts: AtomicBool::new(false),
        })
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, SeqCst);
        self.shutdown.cancel();
    }

    #[inline]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(SeqCst)
    }

    /// Counts a linger about to leave its connection for a task of its own
    /// ([`LingerConfig::detach`]), unless the shutdown has begun: from then
    /// on a linger stays in place, where the server's graceful shutdown
    /// waits for it. `None` means: stay in place.
    ///
    /// The count goes up before the flag is read, and
    /// [`begin_shutdown`](Self::begin_shutdown) sets the flag before
    /// [`detached`](Self::detached) reads the count (all `SeqCst`), so a
    /// linger that detaches after the shutdown began is always seen by
    /// whoever waits for the count to reach 0.
    pub(crate) fn detach(self: &Arc<Self>) -> Option<DetachedLinger> {
        self.detached.fetch_add(1, SeqCst);
        let counted = DetachedLinger(self.clone());
        (!self.is_shutting_down()).then_some(counted)
    }

    /// Counts a linger that must run on a task of its own whatever the
    /// shutdown (its connection was dropped before its close finished).
    pub(crate) fn detach_dropped(self: &Arc<Self>) -> DetachedLinger {
        self.detached.fetch_add(1, SeqCst);
        DetachedLinger(self.clone())
    }

    /// Lingers running on tasks of their own.
    pub(crate) fn detached(&self) -> usize {
        self.detached.load(SeqCst)
    }
}

/// One linger counted as running on a task of its own, until dropped.
pub(crate) struct DetachedLinger(Arc<Group>);

impl Drop for DetachedLinger {
    fn drop(&mut self) {
        if self.0.detached.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
