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
use linger::LingerListener;

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
    // Every connection it accepts closes with a lingering close: half-close,
    // then drain the client's input (5 s idle, 30 s total, 64 MiB: the
    // default `LingerConfig`; `LingerListener::bind_with` takes others)
    // before the socket closes. It listens with a backlog of 4096 (tokio's
    // `bind`: 128), so a burst of connections does not overflow the queue.
    let listener = LingerListener::bind(("127.0.0.1", port)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let lingers = listener.shutdown_handle();

    // `linger::serve` serves as `axum::serve` does, with the middleware
    // around the app: a response that ends its connection where hyper
    // would not say so (here: the 413, whose request body is left unread)
    // says `Connection: close`. On Ctrl-C every linger is cut to 2 s, new
    // connections are still answered until the lingers have ended, the
    // listening socket closes, axum finishes its connections, and `serve`
    // returns once every linger has ended.
    linger::serve(listener, app)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
            tracing::info!("shutting down");
        })
        .await?;
    tracing::info!("stopped: {:?}", lingers.stats());
    Ok(())
}

/// Reads the whole body (at most the `DefaultBodyLimit`) and returns its length.
async fn upload(body: Bytes) -> String {
    format!("{} bytes\n", body.len())
}
