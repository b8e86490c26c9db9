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
//! use linger::{LingerLayer, LingerListener};
//!
//! # async {
//! let app = Router::new()
//!     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
//!     .layer(DefaultBodyLimit::max(1 << 20))
//!     .layer(LingerLayer::new());
//! let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
//! axum::serve(listener, app).await?;
//! # Ok::<_, std::io::Error>(())
//! # };
//! ```
//!
//! # The pieces
//!
//! - [`LingerIo`] wraps a connection's IO; its `poll_shutdown` is the
//!   lingering close, bounded by a [`LingerConfig`].
//! - [`LingerListener`] accepts connections as `LingerIo`s: an axum
//!   `Listener`, and an `accept` for hand-written hyper loops.
//! - [`LingerLayer`] / [`Linger`] make every response that ends its
//!   connection carry `Connection: close`, including the ones that end it
//!   implicitly (an unread request body, HTTP/1.0), and tell the connection's
//!   [`Handle`].
//! - [`LingerShutdown`] begins a graceful shutdown that shortens lingers and
//!   waits for them.
//! - [`LingerStats`] counts how lingers ended.
//!
//! The listener alone already delivers every response whole: `LingerIo`
//! decides when to linger from what it saw, and costs nothing measurable on
//! keep-alive traffic. The layer adds `Connection: close` where hyper would
//! close silently, keep-alive rescue of small unread bodies, and the
//! per-connection handle, for a few percent of CPU per request (see the
//! README's performance figures).

mod body;
mod config;
pub mod future;
mod handle;
mod io;
mod layer;
mod listener;
mod service;
mod shutdown;
mod stats;
#[cfg(target_os = "linux")]
mod tcp;

pub use body::LingerBody;
pub use config::{
    LingerConfig, LingerMode, DEFAULT_ACK_QUIET, DEFAULT_DEADLINE, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_LINGERING, DEFAULT_SHORT_DEADLINE,
};
pub use handle::Handle;
pub use io::LingerIo;
pub use layer::{LingerLayer, DEFAULT_RESCUE_BUDGET, DEFAULT_RESCUE_MAX_BYTES};
#[cfg(feature = "axum")]
pub use listener::LingerConnectInfo;
pub use listener::LingerListener;
pub use service::Linger;
pub use shutdown::LingerShutdown;
pub use stats::{LingerOutcome, LingerStats};
