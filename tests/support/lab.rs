//! The reset-lab server: an axum app serving the endpoint contract, with or
//! without lingering close.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::time::Duration;

use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown, LingerStats};
use tokio::net::TcpListener;
use tower::Layer;

use super::copying::CopyingListener;
use super::runtime::runtime;
use super::stats;

/// The contract, handlers only: none of them sets `Connection: close`
/// except `/close/N` and `/missing`.
pub(crate) fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/bytes/{n}",
            get(|Path(n): Path<usize>| async move { body(n) }),
        )
        .route(
            "/close/{n}",
            get(|Path(n): Path<usize>| async move { ([(header::CONNECTION, "close")], body(n)) }),
        )
        .route("/missing", get(missing))
        .route(
            "/reject/{n}",
            // Answers without reading the request body, as a body limit does.
            post(|Path(n): Path<usize>| async move { (StatusCode::PAYLOAD_TOO_LARGE, body(n)) }),
        )
        .route(
            "/echo-len",
            post(|bytes: axum::body::Bytes| async move { bytes.len().to_string() }),
        )
        .fallback(missing)
}

async fn missing() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONNECTION, "close")],
        body(2048),
    )
        .into_response()
}

fn body(n: usize) -> Body {
    Body::from(vec![b'b'; n])
}

/// How a lab server closes its connections.
pub(crate) enum Close {
    /// As axum does on its own.
    Plain,
    /// Through [`LingerListener`] with this configuration and this
    /// middleware.
    Linger(LingerConfig, LingerLayer),
    /// Through [`LingerListener`] alone, without the middleware.
    ListenerOnly(LingerConfig),
    /// As `Linger` with the default middleware, but each stream behind a
    /// newtype, so that the drain copies into the scratch buffer rather
    /// than discarding with `recv(MSG_TRUNC)`.
    Copying(LingerConfig),
    /// `linger::serve` over a [`LingerListener`] with this configuration.
    Serve(LingerConfig),
    /// `app.layer(LingerLayer::new())` (inside the app), through a
    /// [`LingerListener`] with this configuration.
    InsideTheApp(LingerConfig),
    /// The app as a tower service, through `LingerListener::serve_with` and
    /// hyper-util's `auto::Builder`.
    Hyper(LingerConfig),
}

impl Close {
    /// Every wiring the README shows, with `config`.
    pub(crate) fn every_form(config: LingerConfig) -> [Close; 4] {
        [
            Close::Serve(config),
            Close::Linger(config, LingerLayer::new()),
            Close::InsideTheApp(config),
            Close::Hyper(config),
        ]
    }

    /// A name for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Close::Plain => "plain axum",
            Close::Linger(..) => "around the whole app",
            Close::ListenerOnly(_) => "the listener alone",
            Close::Copying(_) => "copying drain",
            Close::Serve(_) => "linger::serve",
            Close::InsideTheApp(_) => "inside the app",
            Close::Hyper(_) => "LingerListener::serve_with",
        }
    }
}

/// A loopback-or-given listener fit for `close`: with the crate's backlog
/// (`LingerListener::bind`, 4096) when the crate serves, tokio's (128) when
/// axum serves plainly, as each would be deployed.
pub(crate) async fn bind(
    addr: impl tokio::net::ToSocketAddrs,
    close: &Close,
) -> std::io::Result<TcpListener> {
    match close {
        Close::Plain => TcpListener::bind(addr).await,
        _ => Ok(LingerListener::bind(addr).await?.into_inner()),
    }
}

/// Serves `app` on `listener` until the task is dropped: through
/// [`LingerListener`] and [`LingerLayer`] with `config`, or plainly.
pub(crate) async fn serve(listener: TcpListener, app: Router, config: Option<LingerConfig>) {
    let close = match config {
        Some(config) => Close::Linger(config, LingerLayer::new()),
        None => Close::Plain,
    };
    serve_closing(listener, app, close).await;
}

/// Serves `app` on `listener`, closing as `close` says, until the task is
/// dropped.
pub(crate) async fn serve_closing(listener: TcpListener, app: Router, close: Close) {
    serve_with(listener, app, close, None).await;
}

/// Serves `app` on `listener` through `layer`, the minimal way with the
/// crate, until the task is dropped or serving fails.
pub(crate) async fn serve_lingering(
    listener: LingerListener<TcpListener>,
    app: Router,
    layer: LingerLayer,
) -> std::io::Result<()> {
    axum::serve(listener, layer.layer(app)).await
}

async fn serve_with(
    listener: TcpListener,
    app: Router,
    close: Close,
    lingers: Option<tokio::sync::oneshot::Sender<LingerShutdown>>,
) {
    let result = match close {
        Close::Linger(config, layer) => {
            let listener = lingering(listener, config, lingers);
            serve_lingering(listener, app, layer).await
        }
        Close::ListenerOnly(config) => {
            let listener = lingering(listener, config, lingers);
            axum::serve(listener, app).await
        }
        Close::Copying(config) => {
            let listener = lingering(CopyingListener(listener), config, lingers);
            axum::serve(listener, LingerLayer::new().layer(app)).await
        }
        Close::Serve(config) => {
            let listener = lingering(listener, config, lingers);
            linger::serve(listener, app).await
        }
        Close::InsideTheApp(config) => {
            let listener = lingering(listener, config, lingers);
            axum::serve(listener, app.layer(LingerLayer::new())).await
        }
        Close::Hyper(config) => {
            let listener = lingering(listener, config, lingers);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            listener.serve_with(builder, app).await
        }
        Close::Plain => {
            drop(lingers); // nothing to send: the waiting side gets `None`
            axum::serve(listener, app).await
        }
    };
    if let Err(e) = result {
        eprintln!("lab server stopped: {e}");
    }
}

/// `listener` lingering with `config`; its shutdown handle goes to
/// `lingers`, where a test waits for it.
fn lingering<L>(
    listener: L,
    config: LingerConfig,
    lingers: Option<tokio::sync::oneshot::Sender<LingerShutdown>>,
) -> LingerListener<L> {
    let listener = LingerListener::with_config(listener, config);
    if let Some(lingers) = lingers {
        let _ = lingers.send(listener.shutdown_handle());
    }
    listener
}

/// A lab server on an ephemeral loopback port, on a [`runtime`] of its own,
/// serving until it is dropped.
pub(crate) struct Lab {
    pub(crate) addr: std::net::SocketAddr,
    /// The lingering server's statistics and shutdown; `None` when plain.
    pub(crate) lingers: Option<LingerShutdown>,
    _rt: tokio::runtime::Runtime,
}

impl Lab {
    pub(crate) fn start(app: Router, close: Close) -> Self {
        let rt = runtime();
        let (addr, lingers) = rt.block_on(async {
            let listener = bind("127.0.0.1:0", &close).await.expect("bind");
            let addr = listener.local_addr().expect("local address");
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(serve_with(listener, app, close, Some(tx)));
            (addr, rx.await.ok())
        });
        Self {
            addr,
            lingers,
            _rt: rt,
        }
    }

    /// The lab app through the crate, with `config` and the default middleware.
    pub(crate) fn lingering(config: LingerConfig) -> Self {
        Self::start(app(), Close::Linger(config, LingerLayer::new()))
    }

    /// The lab app served plainly.
    pub(crate) fn plain() -> Self {
        Self::start(app(), Close::Plain)
    }

    /// The server runtime's live tasks.
    pub(crate) fn alive_tasks(&self) -> usize {
        self._rt.metrics().num_alive_tasks()
    }

    /// The lingering server's statistics.
    pub(crate) fn stats(&self) -> LingerStats {
        self.lingers
            .as_ref()
            .expect("a lingering lab server")
            .stats()
    }

    /// [`stats::wait_for`] on the lingering server's statistics: reads them
    /// every `step` until `done` holds, for at most `limit`.
    pub(crate) fn wait_for(
        &self,
        limit: Duration,
        step: Duration,
        done: impl FnMut(&LingerStats) -> bool,
    ) -> Result<LingerStats, LingerStats> {
        stats::wait_for(limit, step, || self.stats(), done)
    }
}

/// A route whose handler counts itself in and answers once the test opens
/// the gate: a request held in flight, with no clock involved.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    entered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl Gate {
    /// `app` with `GET path`, held at the gate, then answering `len` bytes.
    pub(crate) fn route(&self, app: Router, path: &str, len: usize) -> Router {
        let gate = self.clone();
        app.route(
            path,
            get(move || async move {
                // Registered before it counts itself in, so no opening of
                // the gate after the count can be missed.
                let released = gate.release.notified();
                gate.entered
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                released.await;
                vec![b's'; len]
            }),
        )
    }

    /// How many requests reached the gate.
    pub(crate) fn entered(&self) -> usize {
        self.entered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every request at the gate answer.
    pub(crate) fn open(&self) {
        self.release.notify_waiters();
    }
}
