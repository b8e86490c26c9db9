//! [`ListenerState`]: what every connection of one listener shares.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::LingerConfig;
use crate::listener::stats::Counters;

/// State shared by every connection of one [`LingerListener`](crate::LingerListener)
/// (or of one standalone [`LingerIo`](crate::LingerIo)): the configuration,
/// the counters, and the shutdown signal. Connections reach it through
/// their [`ConnectionHandle`](crate::ConnectionHandle); nothing of it is
/// process-wide.
pub(crate) struct ListenerState {
    pub(crate) config: LingerConfig,
    pub(crate) counters: Counters,
    pub(crate) shutdown: CancellationToken,
    /// Woken when the last linger ends.
    pub(crate) idle: Notify,
}

impl ListenerState {
    pub(crate) fn new(config: LingerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            counters: Counters::default(),
            shutdown: CancellationToken::new(),
            idle: Notify::new(),
        })
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}
