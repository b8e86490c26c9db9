//! The reset-lab server: an axum app serving the endpoint contract, with or
//! without lingering close.

#![allow(dead_code)]

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerConfig, LingerLayer, LingerListener};
use tokio::net::TcpListener;

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

/// Serves `app` on `listener` until the task is dropped: through
/// [`LingerListener`] and [`LingerLayer`] with `config`, or plainly.
pub(crate) async fn serve(listener: TcpListener, app: Router, config: Option<LingerConfig>) {
    let result = match config {
        Some(config) => {
            axum::serve(
                LingerListener::with_config(listener, config),
                app.layer(LingerLayer::new()),
            )
            .await
        }
        None => axum::serve(listener, app).await,
    };
    if let Err(e) = result {
        eprintln!("lab server stopped: {e}");
    }
}
