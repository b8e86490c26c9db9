//! [`LingerConnectInfo`]: axum's connect-info for a
//! [`LingerListener`](crate::LingerListener).

use crate::state::connection::ConnectionHandle;

/// Connection info for axum apps served through a
/// [`LingerListener`](crate::LingerListener): the
/// peer's address and the connection's [`ConnectionHandle`].
///
/// axum's `ConnectInfo<SocketAddr>` cannot work through a custom listener,
/// so use this type instead; the [`Linger`](crate::Linger) middleware finds
/// the handle in it, too.
///
/// # Example
///
/// ```
/// use axum::{extract::ConnectInfo, routing::get, Router};
/// use linger::{LingerConnectInfo, LingerLayer, LingerListener};
///
/// async fn whoami(ConnectInfo(info): ConnectInfo<LingerConnectInfo>) -> String {
///     info.remote_addr().to_string()
/// }
///
/// # async {
/// let app = Router::new().route("/", get(whoami)).layer(LingerLayer::new());
/// let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
/// axum::serve(listener, app.into_make_service_with_connect_info::<LingerConnectInfo>()).await?;
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
#[derive(Debug, Clone)]
pub struct LingerConnectInfo<A = std::net::SocketAddr> {
    remote_addr: A,
    handle: ConnectionHandle,
}

impl<A> LingerConnectInfo<A> {
    /// Connection info for a custom listener (one that wraps a
    /// [`LingerListener`](crate::LingerListener), for TLS say) to return from its own
    /// `Connected` impl, so the middleware finds the connection's handle.
    pub fn new(remote_addr: A, handle: ConnectionHandle) -> Self {
        Self {
            remote_addr,
            handle,
        }
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> &A {
        &self.remote_addr
    }

    /// The connection's handle.
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }
}
