//! [`LingerLayer`]: the tower layer that applies [`Linger`].

use tower_layer::Layer;

use crate::handle::Handle;
use crate::service::Linger;

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
#[derive(Debug, Clone, Default)]
pub struct LingerLayer {
    handle: Option<Handle>,
}

impl LingerLayer {
    /// A layer that finds each connection's [`Handle`] in the request.
    pub const fn new() -> Self {
        Self { handle: None }
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
        }
    }
}

impl<S> Layer<S> for LingerLayer {
    type Service = Linger<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Linger::with_handle(inner, self.handle.clone())
    }
}
