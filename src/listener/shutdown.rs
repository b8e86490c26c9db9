//! [`LingerShutdown`]: graceful shutdown that covers lingering connections.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::listener::state::ListenerState;
use crate::listener::stats::LingerStats;

/// Graceful shutdown for a [`LingerListener`](crate::LingerListener)'s
/// connections, lingering ones included.
///
/// [`begin`](Self::begin) tells every connection the server is stopping:
/// the [`Linger`](crate::Linger) middleware adds `Connection: close` to the
/// responses still in flight, and every linger, running or yet to start,
/// is cut to the [`short_deadline`](crate::LingerConfig::short_deadline).
/// [`wait`](Self::wait) resolves once no connection lingers.
///
/// With axum, pass [`on`](Self::on) to `with_graceful_shutdown`: axum waits
/// for its connection tasks (a linger that hyper runs through
/// `poll_shutdown` is part of them); then `wait` covers the lingers that
/// run on tasks of their own (connections hyper dropped without a
/// shutdown). With a hand-written hyper-util loop, call `begin` beside
/// `GracefulShutdown::shutdown`.
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use linger::{LingerLayer, LingerListener};
///
/// # async {
/// let app = Router::new().route("/", get(|| async { "hi" })).layer(LingerLayer::new());
/// let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
/// let shutdown = listener.shutdown_handle();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown.on(async { tokio::signal::ctrl_c().await.ok(); }))
///     .await?;
/// shutdown.wait().await;
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
#[derive(Clone)]
pub struct LingerShutdown {
    state: Arc<ListenerState>,
}

impl LingerShutdown {
    pub(crate) fn new(state: Arc<ListenerState>) -> Self {
        Self { state }
    }

    /// Begins the shutdown. Calling it again does nothing more.
    pub fn begin(&self) {
        self.state.begin_shutdown();
    }

    /// Whether [`begin`](Self::begin) was called.
    pub fn is_begun(&self) -> bool {
        self.state.is_shutting_down()
    }

    /// Counters of the listener's lingering closes; still readable after
    /// `axum::serve` has taken the listener.
    pub fn stats(&self) -> LingerStats {
        self.state.counters.snapshot()
    }

    /// A future that waits for `signal`, then [begins](Self::begin) the
    /// shutdown: the argument for axum's `with_graceful_shutdown`.
    pub fn on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        async move {
            signal.await;
            this.begin();
        }
    }

    /// Resolves once no connection of the listener lingers. After
    /// [`begin`](Self::begin), that is within the short deadline.
    pub async fn wait(&self) {
        loop {
            let idle = self.state.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.state.counters.live() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl fmt::Debug for LingerShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerShutdown")
            .field("begun", &self.is_begun())
            .field("lingering", &self.state.counters.live())
            .finish()
    }
}
