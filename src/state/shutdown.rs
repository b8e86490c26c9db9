//! [`LingerShutdown`]: graceful shutdown that covers lingering connections.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::state::group::Group;
use crate::state::stats::LingerStats;

/// Graceful shutdown for a [`LingerListener`](crate::LingerListener)'s
/// connections, lingering ones included.
///
/// [`begin`](Self::begin) tells every linger the server is stopping: every
/// linger, running or yet to start, is cut to the
/// [`short_deadline`](crate::LingerConfig::short_deadline), and from then on
/// a linger runs in place, inside its connection's task, rather than on a
/// task of its own ([`LingerConfig::detach`](crate::LingerConfig::detach)),
/// so that the server's own graceful shutdown waits for it.
/// [`wait`](Self::wait) resolves once no connection lingers.
///
/// [`linger::serve`](crate::serve()) and
/// [`LingerListener::serve_with`](crate::LingerListener::serve_with) do all
/// of this in their `with_graceful_shutdown`. With `axum::serve`, pass
/// [`on`](Self::on) to `with_graceful_shutdown` and await
/// [`wait`](Self::wait) after `serve`. With a hand-written hyper-util loop,
/// call `begin` beside `GracefulShutdown::shutdown`, and `wait` after it.
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use linger::{LingerLayer, LingerListener};
///
/// # async {
/// let app = Router::new().route("/", get(|| async { "hi" })).layer(LingerLayer::new());
/// let listener = LingerListener::bind("127.0.0.1:3000").await?;
/// let shutdown = listener.shutdown_handle();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown.on(async { tokio::signal::ctrl_c().await.ok(); }))
///     .await?;
/// shutdown.wait().await;
/// // Every linger has ended.
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
#[derive(Clone)]
pub struct LingerShutdown {
    state: Arc<Group>,
}

impl LingerShutdown {
    pub(crate) fn new(state: Arc<Group>) -> Self {
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

    /// A future that waits for `signal`, [begins](Self::begin) the
    /// shutdown, then waits for the lingers running on tasks of their own
    /// ([`LingerConfig::detach`](crate::LingerConfig::detach), the default)
    /// to end: the argument for axum's `with_graceful_shutdown`.
    /// [`linger::serve`](crate::serve())'s `with_graceful_shutdown` runs the
    /// same sequence in its own accept loop, and waits for the rest itself.
    ///
    /// Each linger is cut to the
    /// [`short_deadline`](crate::LingerConfig::short_deadline) (2 s by
    /// default) from the signal, or from its own start if later, so the
    /// wait is bounded by it. Meanwhile the
    /// [`LingerListener`](crate::LingerListener) goes on accepting, and the
    /// [`Linger`](crate::Linger) middleware makes every response say
    /// `Connection: close`, new connections' first ones included. Then the
    /// listener hands axum the connections still queued and stops
    /// accepting, and this future resolves: axum drops the listener (later
    /// connects are refused, not queued and reset), tells its connections
    /// to finish, and waits for their tasks. A linger that begins after the
    /// shutdown runs in place, inside its connection's task, so axum waits
    /// for it too, and `serve` returns within about twice the short
    /// deadline plus the time the requests in flight take.
    ///
    /// One close escapes both: a connection hyper drops on an error after
    /// this future resolved (a malformed request during axum's graceful
    /// phase) finishes its close on a task of its own; [`wait`](Self::wait)
    /// after `serve` covers it, as `linger::serve` does.
    pub fn on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        async move {
            signal.await;
            this.begin();
            this.wait_detached().await;
            let state = &this.state;
            state.stop_accepting.cancel();
            if state
                .axum_accepts
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                // Bounded, should no accept loop poll the listener again.
                let _ = tokio::time::timeout(
                    state.config.short_deadline(),
                    state.accept_closed.cancelled(),
                )
                .await;
            }
        }
    }

    /// Resolves once no connection of the listener lingers, in place or on
    /// a task of its own (a close handed to a task counts from the moment
    /// it is handed over, before its drain starts). After
    /// [`begin`](Self::begin), that is within the short deadline of the
    /// last linger to start.
    pub async fn wait(&self) {
        self.wait_for(|state| state.counters.live() == 0 && state.detached() == 0)
            .await;
    }

    /// Resolves once no linger runs on a task of its own.
    pub(crate) async fn wait_detached(&self) {
        self.wait_for(|state| state.detached() == 0).await;
    }

    async fn wait_for(&self, done: impl Fn(&Group) -> bool) {
        loop {
            let idle = self.state.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if done(&self.state) {
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
