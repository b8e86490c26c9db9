//! The server side of the cost benchmark: one wiring of the crate (or
//! plain axum) on a current-thread runtime, which exits once told to.

use std::future::IntoFuture;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerConnectInfo, LingerLayer, LingerListener};
use tower::Layer;

/// The ways to serve the app that the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wiring {
    /// axum alone, tokio's `TcpListener`.
    Plain,
    /// The README's: `linger::serve` on a `LingerListener::bind`.
    Readme,
    /// `axum::serve` with the layer around the app.
    WholeApp,
    /// The layer around `into_make_service_with_connect_info`.
    ConnectInfo,
    /// The layer inside the app, `Router::layer`.
    InsideTheApp,
    /// `LingerListener` alone, no middleware.
    ListenerOnly,
    /// Plain axum with a layer that does nothing, `Router::layer`: what
    /// axum's own per-route layering costs, whatever the layer.
    EmptyLayer,
}

impl Wiring {
    pub(crate) const ALL: [Self; 7] = [
        Self::Plain,
        Self::Readme,
        Self::WholeApp,
        Self::ConnectInfo,
        Self::InsideTheApp,
        Self::ListenerOnly,
        Self::EmptyLayer,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Readme => "readme",
            Self::WholeApp => "whole-app",
            Self::ConnectInfo => "connect-info",
            Self::InsideTheApp => "inside-the-app",
            Self::ListenerOnly => "listener-only",
            Self::EmptyLayer => "empty-layer",
        }
    }

    pub(crate) fn about(self) -> &'static str {
        match self {
            Self::Plain => "plain axum (the baseline)",
            Self::Readme => "linger::serve(LingerListener::bind(..), app) (the README's)",
            Self::WholeApp => "axum::serve(LingerListener, LingerLayer::new().layer(app))",
            Self::ConnectInfo => {
                "LingerLayer::new().layer(app.into_make_service_with_connect_info)"
            }
            Self::InsideTheApp => "app.layer(LingerLayer::new()) via LingerListener",
            Self::ListenerOnly => "LingerListener alone",
            Self::EmptyLayer => {
                "plain axum, app.layer(a layer that does nothing): axum's own cost of Router::layer"
            }
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
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
        let tcp = LingerListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", tcp.local_addr().expect("address").port());
        let server = match wiring {
            // The same socket, axum alone: what listens is not measured.
            Wiring::Plain => tokio::spawn(axum::serve(tcp.into_inner(), app).into_future()),
            Wiring::Readme => tokio::spawn(linger::serve(tcp, app).into_future()),
            Wiring::WholeApp => {
                tokio::spawn(axum::serve(tcp, LingerLayer::new().layer(app)).into_future())
            }
            Wiring::ConnectInfo => tokio::spawn(
                axum::serve(
                    tcp,
                    LingerLayer::new()
                        .layer(app.into_make_service_with_connect_info::<LingerConnectInfo>()),
                )
                .into_future(),
            ),
            Wiring::InsideTheApp => {
                tokio::spawn(axum::serve(tcp, app.layer(LingerLayer::new())).into_future())
            }
            Wiring::ListenerOnly => tokio::spawn(axum::serve(tcp, app).into_future()),
            Wiring::EmptyLayer => tokio::spawn(
                axum::serve(
                    tcp.into_inner(),
                    app.layer(tower::layer::util::Identity::new()),
                )
                .into_future(),
            ),
        };
        exiting.recv().await;
        // Let the answer to `/exit` leave.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        server.abort();
    });
}
