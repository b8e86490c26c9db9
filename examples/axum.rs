//! An axum 0.8 server with lingering close: a template to copy.
//!
//! ```text
//! cargo run --example axum                 # listens on 127.0.0.1:3000
//! PORT=8080 cargo run --example axum       # or on another port
//! RUST_LOG=linger=debug cargo run --example axum   # log every lingering close
//! ```
//!
//! Then, from another shell:
//!
//! ```text
//! curl http://127.0.0.1:3000/
//! curl --data-binary 'some bytes' http://127.0.0.1:3000/upload
//!
//! # A body over the 1 MiB limit is rejected with 413 before it is read.
//! # The server closes the connection, but lingers, so curl sees the 413
//! # instead of a "connection reset by peer" while it is still uploading:
//! head -c 2097152 /dev/zero > bigfile
//! curl -v --data-binary @bigfile http://127.0.0.1:3000/upload
//! ```
//!
//! Stop it with Ctrl-C.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerLayer, LingerListener};
use tower::Layer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `RUST_LOG=linger=debug` shows how each lingering close ended.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        // The upload is read whole into memory; anything over the limit is
        // answered 413 Payload Too Large without reading the rest of it.
        .route("/upload", post(upload))
        .layer(DefaultBodyLimit::max(1024 * 1024));

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().expect("PORT must be a port number"),
        Err(_) => 3000,
    };
    // The two pieces of lingering close:
    // - `LingerListener` wraps every accepted connection in a `LingerIo`,
    //   whose close half-closes, then drains the client's input (bounded by
    //   a `LingerConfig`: 5 s idle, 30 s total, 64 MiB) before it closes.
    //   `bind` listens with a backlog of 4096 (tokio's `bind`: 128), so a
    //   burst of connections does not overflow the accept queue;
    //   `LingerListener::bind_with` takes other bounds and backlogs.
    // - `LingerLayer` around the whole app is the make-service axum serves:
    //   it finds each connection's handle in the listener's IO and makes
    //   every response that ends its connection where hyper would not say
    //   so (here: the 413, whose request body is left unread) carry
    //   `Connection: close`.
    //
    // Need the peer address, or to end a connection from a handler? axum's
    // `ConnectInfo<SocketAddr>` does not work through a custom listener;
    // serve `LingerLayer::new().layer(app.into_make_service_with_connect_info::<linger::LingerConnectInfo>())`
    // and extract `ConnectInfo<LingerConnectInfo>`: its `handle().mark_closing()`
    // makes the current response say `Connection: close`.
    let listener = LingerListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.get_ref().local_addr()?);
    // On Ctrl-C: every linger is cut to the short deadline (2 s), and
    // `on` waits for the lingers running on tasks of their own; then axum
    // stops accepting, hyper makes responses still in flight say
    // `Connection: close`, and the lingers that begin from then on run in
    // their connection's task, which axum waits for. `serve` returns once
    // every linger has ended.
    let shutdown = listener.shutdown_handle();
    axum::serve(listener, LingerLayer::new().layer(app))
        .with_graceful_shutdown(shutdown.on(async {
            tokio::signal::ctrl_c().await.ok();
            tracing::info!("shutting down");
        }))
        .await?;
    // The one close `on` cannot see: a connection hyper dropped on an error
    // during axum's graceful shutdown finishes its close on a task.
    shutdown.wait().await;
    tracing::info!("stopped: {:?}", shutdown.stats());
    Ok(())
}

/// Reads the whole body (at most the `DefaultBodyLimit`) and returns its length.
async fn upload(body: Bytes) -> String {
    format!("{} bytes\n", body.len())
}
