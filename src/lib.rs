//! Lingering close for hyper and axum servers.
//!
//! When a server closes a connection right after its last response while the
//! client still has bytes in flight (a pipelined request, the rest of an
//! upload the server rejected), the kernel answers them with a TCP RST, and
//! the RST can destroy the response before the client reads it (RFC 9112
//! §9.6). A lingering close avoids that: half-close (the FIN follows the last
//! response byte), read and discard until the client closes or a bound is
//! hit, then close. This crate gives hyper and axum that close.
//!
//! # With axum
//!
//! ```
//! use axum::{extract::DefaultBodyLimit, routing::post, Router};
//!
//! # async {
//! let app = Router::new()
//!     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
//!     .layer(DefaultBodyLimit::max(1 << 20));
//! linger::serve("127.0.0.1:3000", app)
//!     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
//!     .await?;
//! # Ok::<_, std::io::Error>(())
//! # };
//! ```
//!
//! `axum::serve(LingerListener::bind(addr).await?, app.layer(LingerLayer::new()))`
//! does the same inside the app, and `LingerLayer::new().layer(app)` around
//! it; with either, pass [`LingerShutdown::on`] to axum's
//! `with_graceful_shutdown` and call [`LingerShutdown::wait`] after it.
//!
//! # The pieces
//!
//! - [`LingerIo`] wraps a connection's IO; its `poll_shutdown` is the
//!   lingering close, bounded by a [`LingerConfig`], run by default on a
//!   small task of its own so that hyper frees the connection's buffers.
//!   Each has a [`ConnectionHandle`], shared with the middleware.
//! - [`LingerListener`] accepts connections as `LingerIo`s: an axum
//!   `Listener`, an `accept` for hand-written loops, and
//!   [`serve_with`](LingerListener::serve_with) for hyper's builders. Its
//!   [`LingerShutdown`] shortens lingers and waits for them; its
//!   [`LingerStats`] count how lingers ended.
//! - [`LingerLayer`] / [`Linger`] make every response that ends its
//!   connection where hyper would not say so carry `Connection: close` (an
//!   unread request body, a connection a handler marked closing, a listener
//!   whose shutdown has begun).
//! - [`serve()`] puts them together for axum.
//!
//! # Layout
//!
//! In layers, each importing only those below it:
//!
//! 1. `state`: what the IO and the middleware share: the configuration,
//!    the connection handle, the per-group state (a listener's), its
//!    counters and its shutdown;
//! 2. `io` (the IO wrapper and its drain) and `middleware` (layer,
//!    service, futures, body, header rules), each on `state` alone;
//! 3. `listener`: the listener, its bind, axum's connect-info and the
//!    axum-server acceptor;
//! 4. `serve`: the one-call servers, for axum and for hyper.
//!
//! `doctor` (feature `doctor`, Linux) stands apart: it tells the causes of
//! resets on a host apart. No state is process-wide: everything is per
//! connection or per listener, reached through the handle.
//!
//! # Features
//!
//! - `axum` (default; turns on `hyper`): the axum listener, [`serve()`],
//!   connect-info and the handle extractor;
//! - `hyper` (default): [`LingerListener::serve_with`], and [`Linger`] as a
//!   hyper service;
//! - `tokio-rustls`: [`AsConnectionHandle`] for tokio-rustls server streams;
//! - `axum-server`: `LingerAcceptor`, for axum-server;
//! - `doctor`: the `doctor` module (Linux).

/// Future types of [`Linger`].
pub mod future {
    pub use crate::middleware::future::ResponseFuture;
    #[cfg(feature = "hyper")]
    pub use crate::middleware::hyper::HyperResponseFuture;
    #[cfg(feature = "axum")]
    pub use crate::middleware::make_service::MakeServiceFuture;
}

#[cfg(all(feature = "doctor", target_os = "linux"))]
pub mod doctor;
mod io;
mod listener;
mod middleware;
pub mod serve;
mod state;

pub use io::LingerIo;
#[cfg(feature = "axum-server")]
pub use listener::LingerAcceptor;
pub use listener::LingerListener;
pub use middleware::body::LingerBody;
pub use middleware::layer::LingerLayer;
pub use middleware::service::Linger;
#[cfg(feature = "axum")]
pub use serve::axum::serve;
#[cfg(feature = "axum")]
pub use state::LingerConnectInfo;
pub use state::{
    AsConnectionHandle, ConnectionHandle, LingerConfig, LingerMode, LingerOutcome, LingerShutdown,
    LingerStats,
};
