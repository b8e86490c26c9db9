//! [`LingerLayer`]: the tower layer that applies [`Linger`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::middleware::rescue::Rescue;
use crate::middleware::service::Linger;
use crate::state::connection::ConnectionHandle;

/// Applies the [`Linger`] middleware.
///
/// [`linger::serve`](crate::serve()) applies it around the whole app for
/// you. Around a whole axum app (`LingerLayer::new().layer(app)`) it is the
/// make-service `axum::serve` takes: it finds each connection's
/// [`ConnectionHandle`] in the [`LingerListener`]'s IO and wraps the app
/// once per connection. Inside the app (`Router::layer(LingerLayer::new())`)
/// it finds the connection the running task reads; see [`Linger`]. Both
/// forms need the server's connections to be [`LingerIo`]s (served through
/// a [`LingerListener`], axum-server's `LingerAcceptor`, or wrapped by
/// hand).
///
/// [`LingerListener`]: crate::LingerListener
/// [`LingerIo`]: crate::LingerIo
///
/// # Example
///
/// ```
/// use axum::{routing::post, Router};
/// use linger::{LingerLayer, LingerListener};
/// use tower::Layer;
///
/// # async {
/// let app = Router::new()
///     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }));
/// let listener = LingerListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, LingerLayer::new().layer(app)).await?;
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
///
/// # Keep-alive rescue
///
/// When a handler answers without reading the request body, the connection
/// cannot be reused until the rest of the body has been read. If the
/// handler dropped the body and its known remainder is at most
/// [`DEFAULT_RESCUE_MAX_BYTES`](Self::DEFAULT_RESCUE_MAX_BYTES), the
/// middleware discards it, for at most
/// [`DEFAULT_RESCUE_BUDGET`](Self::DEFAULT_RESCUE_BUDGET), before it
/// releases the response: the connection stays open instead of closing and
/// lingering. Otherwise, or if the budget runs out, the response says
/// `Connection: close`. Tune it with [`with_rescue`](Self::with_rescue),
/// turn it off with [`without_rescue`](Self::without_rescue).
#[derive(Debug, Clone)]
pub struct LingerLayer {
    handle: Option<ConnectionHandle>,
    rescue: Option<Rescue>,
    /// Whether a service of this layer (or of a clone of it, as
    /// `Router::layer` makes one per route) warned that it found no handle.
    warned: Arc<AtomicBool>,
}

impl LingerLayer {
    /// Default largest unread request body remainder the middleware
    /// discards to keep a connection reusable: 256 KiB (Go's `net/http`
    /// figure).
    pub const DEFAULT_RESCUE_MAX_BYTES: u64 = Rescue::DEFAULT.max_bytes;
    /// Default time the middleware spends discarding such a remainder
    /// before it gives up and ends the connection: 50 ms.
    pub const DEFAULT_RESCUE_BUDGET: Duration = Rescue::DEFAULT.budget;

    /// A layer that finds each connection's [`ConnectionHandle`] itself.
    pub fn new() -> Self {
        Self {
            handle: None,
            rescue: Some(Rescue::DEFAULT),
            warned: Arc::default(),
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
    /// let io = LingerIo::standalone(server);
    /// let svc = LingerLayer::with_handle(io.handle().clone())
    ///     .layer(tower::service_fn(|_req: http::Request<linger::LingerBody<String>>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///     }));
    /// # drop(svc);
    /// ```
    #[must_use]
    pub fn with_handle(handle: ConnectionHandle) -> Self {
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
        Linger::with_parts(inner, self.handle.clone(), self.rescue, &self.warned)
    }
}
