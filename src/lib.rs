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
//! use tower::Layer;
//!
//! # async {
//! let app = Router::new()
//!     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
//!     .layer(DefaultBodyLimit::max(1 << 20));
//! let listener = LingerListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, LingerLayer::new().layer(app)).await?;
//! # Ok::<_, std::io::Error>(())
//! # };
//! ```
//!
//! # The pieces
//!
//! - [`LingerIo`] wraps a connection's IO; its `poll_shutdown` is the
//!   lingering close, bounded by a [`LingerConfig`], run by default on a
//!   small task of its own so that hyper frees the connection's buffers.
//!   Each has a [`ConnectionHandle`], shared with the middleware.
//! - [`LingerListener`] accepts connections as `LingerIo`s: an axum
//!   `Listener`, and an `accept` for hand-written hyper loops. Its
//!   [`LingerShutdown`] shortens lingers and waits for them; its
//!   [`LingerStats`] count how lingers ended.
//! - [`LingerLayer`] / [`Linger`] make every response that ends its
//!   connection where hyper would not say so carry `Connection: close` (an
//!   unread request body, a connection a handler marked closing, a listener
//!   whose shutdown has begun). Around the whole app they are axum's
//!   make-service and find each connection's handle in its IO
//!   ([`AsConnectionHandle`]).
//!
//! The listener alone already delivers every response whole: `LingerIo`
//! decides when to linger from what it saw. The middleware adds
//! `Connection: close` where hyper would close silently, the keep-alive
//! rescue of small unread bodies, and the close a handler asks for.
//!
//! # Modules
//!
//! `io` (the IO wrapper and its drain), `middleware` (layer, service,
//! futures, body, header rules), `listener` (the listener and its
//! per-listener state, shutdown and counters); `connection` (the handle
//! both halves share) and `config` beside them; [`doctor`] (Linux), which
//! tells the causes of resets on a host apart. No state is process-wide:
//! everything is per connection or per listener, reached through the
//! handle.

/// Future types of [`Linger`].
pub mod future {
    pub use crate::middleware::future::ResponseFuture;
    #[cfg(feature = "axum")]
    pub use crate::middleware::make_service::MakeServiceFuture;
}

mod config;
mod connection;
#[cfg(target_os = "linux")]
pub mod doctor;
mod io;
mod listener;
mod middleware;

pub use config::{
    LingerConfig, LingerMode, DEFAULT_ACK_QUIET, DEFAULT_DEADLINE, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_LINGERING, DEFAULT_SHORT_DEADLINE,
};
pub use connection::{AsConnectionHandle, ConnectionHandle};
pub use io::{LingerIo, DRAIN_READS_PER_POLL, DRAIN_READ_LEN};
pub use listener::shutdown::LingerShutdown;
pub use listener::stats::{LingerOutcome, LingerStats};
#[cfg(feature = "axum-server")]
pub use listener::LingerAcceptor;
#[cfg(feature = "axum")]
pub use listener::LingerConnectInfo;
pub use listener::{LingerListener, DEFAULT_BACKLOG};
pub use middleware::body::LingerBody;
pub use middleware::layer::LingerLayer;
pub use middleware::service::Linger;
#[cfg(feature = "axum")]
pub use middleware::AxumBodies;
pub use middleware::{InnerBody, LingerBodies, DEFAULT_RESCUE_BUDGET, DEFAULT_RESCUE_MAX_BYTES};
