//! [`LingerLayer`]: the tower layer that applies [`Linger`].

use std::time::Duration;

use tower_layer::Layer;

use crate::handle::Handle;
use crate::service::Linger;

/// Default largest unread request body remainder the middleware discards to
/// keep a connection reusable: 256 KiB (Go's `net/http` figure).
pub const DEFAULT_RESCUE_MAX_BYTES: u64 = 256 << 10;
/// Default time the middleware spends discarding such a remainder before
/// it gives up and closes the connection: 50 ms.
pub const DEFAULT_RESCUE_BUDGET: Duration = Duration::from_millis(50);

/// Keep-alive rescue: discard a small unread request body rather than close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rescue {
    pub(crate) max_bytes: u64,
    pub(crate) budget: Duration,
}

const DEFAULT_RESCUE: Rescue = Rescue {
    max_bytes: DEFAULT_RESCUE_MAX_BYTES,
    budget: DEFAULT_RESCUE_BUDGET,
};

/// Applies the [`Linger`] middleware.
///
/// # Example
///
/// ```
/// use axum::{routing::post, Router};
/// use linger::{LingerLayer, LingerListener};
///
/// # async {
/// let app = Router::new()
///     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
///     .layer(LingerLayer::new());
/// let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
/// axum::serve(listener, app).await?;
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
///
/// # Keep-alive rescue
///
/// When a handler answers without reading the request body, the connection
/// cannot be reused until the rest of the body has been read. If the
/// handler dropped the body and its known remainder is at most
/// [`DEFAULT_RESCUE_MAX_BYTES`], the middleware discards it, for at most
/// [`DEFAULT_RESCUE_BUDGET`], before it releases the response: the
/// connection stays open instead of closing and lingering. Otherwise, or if
/// the budget runs out, the response says `Connection: close`. Tune it with
/// [`with_rescue`](Self::with_rescue), turn it off with
/// [`without_rescue`](Self::without_rescue).
#[derive(Debug, Clone)]
pub struct LingerLayer {
    handle: Option<Handle>,
    rescue: Option<Rescue>,
}

impl LingerLayer {
    /// A layer that finds each connection's [`Handle`] in the request.
    pub const fn new() -> Self {
        Self {
            handle: None,
            rescue: Some(DEFAULT_RESCUE),
        }
    }

    /// Discards an unread request body remainder of at most `max_bytes`,
    /// within `budget`, to keep the connection reusable.
    #[must_use]
    pub const fn with_rescue(mut self, max_bytes: u64, budget: Duration) -> Self {
        self.rescue = Some(Rescue { max_bytes, budget });
        self
    }

    /// Never discards an unread request body: such a response always ends
    /// its connection.
    #[must_use]
    pub const fn without_rescue(mut self) -> Self {
        self.rescue = None;
        self
    }

    /// A layer for the services of one connection, whose handle it holds:
    /// the hook for hand-written hyper accept loops.
    ///
    /// # Example
    ///
    /// ```
    /// use linger::{LingerIo, LingerLayer};
    /// use tower::Layer;
    ///
    /// let (server, _client) = tokio::io::duplex(64);
    /// let io = LingerIo::new(server);
    /// let svc = LingerLayer::with_handle(io.handle().clone())
    ///     .layer(tower::service_fn(|_req: http::Request<linger::LingerBody<String>>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///     }));
    /// # drop(svc);
    /// ```
    pub fn with_handle(handle: Handle) -> Self {
        Self {
            handle: Some(handle),
            ..Self::new()
        }
    }
}

impl Default for LingerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for LingerLayer {
    type Service = Linger<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Linger::from_layer(inner, self.handle.clone(), self.rescue)
    }
}
