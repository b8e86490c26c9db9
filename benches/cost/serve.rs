//! The server side of the cost benchmark: one wiring of the crate (or its
//! baseline without the crate) on a current-thread runtime, which exits
//! once told to.

use std::future::IntoFuture;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use linger::{LingerLayer, LingerListener};
use tower::Layer;

/// The ways to serve the app that the benchmark compares: each wiring the
/// README shows, beside the same server without the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Wiring {
    /// axum alone: `axum::serve` on tokio's `TcpListener`.
    Plain,
    /// The same again, a server of its own: against `Plain`, the noise
    /// floor of the figures (an A/A comparison).
    PlainAgain,
    /// The README's: `linger::serve`.
    Readme,
    /// The layer inside the app: `axum::serve(LingerListener, app.layer(LingerLayer::new()))`.
    InsideTheApp,
    /// axum alone with a layer that does nothing inside the app: what any
    /// `Router::layer` costs.
    EmptyLayer,
    /// The layer around the app: `axum::serve(LingerListener, LingerLayer::new().layer(app))`.
    AroundTheApp,
    /// `LingerListener` alone, no middleware.
    ListenerOnly,
    /// axum alone with the peer's address:
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    PlainConnectInfo,
    /// `linger::serve(..).with_connect_info()`.
    ConnectInfo,
    /// hyper-util alone: its `auto::Builder` in an accept loop, the app as
    /// a tower service.
    PlainHyper,
    /// `LingerListener::serve_with(auto::Builder, app)`.
    ServeWith,
}

impl Wiring {
    pub(crate) const ALL: [Self; 11] = [
        Self::Plain,
        Self::PlainAgain,
        Self::Readme,
        Self::InsideTheApp,
        Self::EmptyLayer,
        Self::AroundTheApp,
        Self::ListenerOnly,
        Self::PlainConnectInfo,
        Self::ConnectInfo,
        Self::PlainHyper,
        Self::ServeWith,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::PlainAgain => "plain-again",
            Self::Readme => "readme",
            Self::InsideTheApp => "inside-the-app",
            Self::EmptyLayer => "empty-layer",
            Self::AroundTheApp => "around-the-app",
            Self::ListenerOnly => "listener-only",
            Self::PlainConnectInfo => "plain-connect-info",
            Self::ConnectInfo => "connect-info",
            Self::PlainHyper => "plain-hyper",
            Self::ServeWith => "serve-with",
        }
    }

    pub(crate) fn about(self) -> &'static str {
        match self {
            Self::Plain => "plain axum: axum::serve(TcpListener, app)",
            Self::PlainAgain => "plain axum again, a server of its own: the noise floor (A/A)",
            Self::Readme => "linger::serve(listener, app), the README's",
            Self::InsideTheApp => {
                "axum::serve(LingerListener, app.layer(LingerLayer::new())), the README's inside the app"
            }
            Self::EmptyLayer => {
                "plain axum, app.layer(a layer that does nothing): what axum's Router::layer costs by itself"
            }
            Self::AroundTheApp => "axum::serve(LingerListener, LingerLayer::new().layer(app))",
            Self::ListenerOnly => "axum::serve(LingerListener, app): the IO wrapper alone",
            Self::PlainConnectInfo => {
                "plain axum: axum::serve(TcpListener, app.into_make_service_with_connect_info::<SocketAddr>())"
            }
            Self::ConnectInfo => "linger::serve(listener, app).with_connect_info()",
            Self::PlainHyper => {
                "plain hyper-util: an accept loop, auto::Builder, TowerToHyperService::new(app), GracefulShutdown::watch"
            }
            Self::ServeWith => "LingerListener::serve_with(auto::Builder, app), the README's hyper",
        }
    }

    /// The same server without the crate, which this wiring's ratios are to.
    pub(crate) fn baseline(self) -> Self {
        match self {
            Self::PlainConnectInfo | Self::ConnectInfo => Self::PlainConnectInfo,
            Self::PlainHyper | Self::ServeWith => Self::PlainHyper,
            _ => Self::Plain,
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Starts `command`, a server of this benchmark (`<bench> serve <wiring>`,
/// maybe under a tool), and reads the port it prints.
pub(crate) fn spawn(mut command: Command) -> Result<(Child, u16), String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("server: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    match line.trim().parse() {
        Ok(port) => Ok((child, port)),
        Err(_) => {
            let _ = child.kill();
            Err(format!("no port: {line:?}"))
        }
    }
}

fn app(exit: tokio::sync::mpsc::Sender<()>) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/reject",
            post(|| async { (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too large") }),
        )
        .route(
            "/exit",
            get(move || async move {
                let _ = exit.send(()).await;
                "bye"
            }),
        )
        .layer(DefaultBodyLimit::max(1 << 20))
}

/// Serves `wiring` on a loopback port, prints the port on stdout, and
/// returns once `GET /exit` was answered.
pub(crate) fn serve(wiring: Wiring) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (exit, mut exiting) = tokio::sync::mpsc::channel(1);
        let app = app(exit);
        // The same socket for every wiring: what listens is not measured.
        let tcp = LingerListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", tcp.local_addr().expect("address").port());
        let server = match wiring {
            Wiring::Plain | Wiring::PlainAgain => {
                tokio::spawn(axum::serve(tcp.into_inner(), app).into_future())
            }
            Wiring::Readme => tokio::spawn(linger::serve(tcp, app).into_future()),
            Wiring::InsideTheApp => {
                tokio::spawn(axum::serve(tcp, app.layer(LingerLayer::new())).into_future())
            }
            Wiring::EmptyLayer => tokio::spawn(
                axum::serve(
                    tcp.into_inner(),
                    app.layer(tower::layer::util::Identity::new()),
                )
                .into_future(),
            ),
            Wiring::AroundTheApp => {
                tokio::spawn(axum::serve(tcp, LingerLayer::new().layer(app)).into_future())
            }
            Wiring::ListenerOnly => tokio::spawn(axum::serve(tcp, app).into_future()),
            Wiring::PlainConnectInfo => tokio::spawn(
                axum::serve(
                    tcp.into_inner(),
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .into_future(),
            ),
            Wiring::ConnectInfo => {
                tokio::spawn(linger::serve(tcp, app).with_connect_info().into_future())
            }
            Wiring::PlainHyper => tokio::spawn(hyper_loop(tcp.into_inner(), app)),
            Wiring::ServeWith => tokio::spawn(
                tcp.serve_with(auto::Builder::new(TokioExecutor::new()), app.with_state(()))
                    .into_future(),
            ),
        };
        exiting.recv().await;
        // Let the answer to `/exit` leave.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        server.abort();
    });
}

/// hyper-util's server without the crate: what `serve_with` is compared to.
async fn hyper_loop(tcp: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    let app = app.with_state::<()>(());
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tcp.accept().await?;
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(app.clone()),
            )
            .into_owned();
        tokio::spawn(conn);
    }
}
