//! [`LingerListener`]: accepts connections as [`LingerIo`]s, for axum and
//! for hand-written hyper loops; the same for axum-server.
//!
//! - `bind`: a TCP listener with a backlog fit for servers;
//! - `connect_info`: axum's connect-info through the listener;
//! - `acceptor`: [`LingerAcceptor`](crate::LingerAcceptor), for axum-server.

#[cfg(feature = "axum-server")]
mod acceptor;
mod bind;
#[cfg(feature = "axum")]
mod connect_info;

use std::fmt;
#[cfg(feature = "axum")]
use std::future::Future as _;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::LingerIo;
use crate::state::config::LingerConfig;
use crate::state::group::Group;
use crate::state::{LingerShutdown, LingerStats};

#[cfg(feature = "axum-server")]
pub use acceptor::LingerAcceptor;

/// A listener whose connections close with a lingering close.
///
/// With axum it is an [`axum::serve::Listener`] (for any inner axum
/// listener: tokio's `TcpListener`, `UnixListener`, or your own) that
/// yields [`LingerIo`]s. In a hand-written hyper accept loop, call its own
/// `accept` (for tokio's `TcpListener` and `UnixListener`), or
/// [`wrap`](Self::wrap) a connection you accepted yourself.
///
/// All connections of one listener share its [`LingerConfig`] and its
/// counters ([`stats`](Self::stats)).
///
/// # Example
///
/// ```
/// use axum::{routing::get, Router};
/// use linger::{LingerLayer, LingerListener};
///
/// # async {
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(LingerLayer::new());
/// let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
/// axum::serve(listener, app).await?;
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
pub struct LingerListener<L = tokio::net::TcpListener> {
    inner: L,
    state: Arc<Group>,
    /// Set `TCP_NODELAY` on each accepted TCP stream (axum's accept only).
    nodelay: bool,
}

impl<L> LingerListener<L> {
    /// Wraps `inner` with the default [`LingerConfig`].
    pub fn new(inner: L) -> Self {
        Self::with_config(inner, LingerConfig::new())
    }

    /// Wraps `inner` with `config`.
    pub fn with_config(inner: L, config: LingerConfig) -> Self {
        Self {
            inner,
            state: Group::new(config),
            nodelay: false,
        }
    }

    /// Sets `TCP_NODELAY` on every TCP connection it accepts for axum (off
    /// by default, as with axum's own listener).
    #[must_use]
    pub fn with_tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Wraps a connection accepted by other means (a TLS acceptor's loop,
    /// say) so that it lingers with this listener's configuration and
    /// counts in its statistics.
    pub fn wrap<T>(&self, io: T) -> LingerIo<T>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        LingerIo::with_listener(io, self.state.clone())
    }

    /// The configuration connections linger with.
    pub fn config(&self) -> LingerConfig {
        self.state.config
    }

    /// A handle to shut this listener's connections down gracefully,
    /// lingering ones included.
    pub fn shutdown_handle(&self) -> LingerShutdown {
        LingerShutdown::new(self.state.clone())
    }

    /// Counters of the lingering closes of this listener's connections.
    pub fn stats(&self) -> LingerStats {
        self.state.counters.snapshot()
    }

    /// A reference to the inner listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }

    /// A mutable reference to the inner listener.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Unwraps the inner listener.
    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl LingerListener<tokio::net::TcpListener> {
    /// The local address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    /// Accepts a connection, for hand-written accept loops.
    ///
    /// # Example
    ///
    /// ```
    /// use hyper::server::conn::http1;
    /// use hyper_util::rt::TokioIo;
    /// use linger::{LingerLayer, LingerListener};
    /// use tower::Layer;
    ///
    /// # async {
    /// let listener = LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:3000").await?);
    /// let (io, _peer) = listener.accept().await?;
    /// let svc = LingerLayer::with_handle(io.handle().clone()).layer(tower::service_fn(
    ///     |_req: http::Request<_>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    ///     },
    /// ));
    /// // The middleware is hyper's service as it is.
    /// let conn = http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    /// conn.await.ok();
    /// # Ok::<_, std::io::Error>(())
    /// # };
    /// ```
    pub async fn accept(
        &self,
    ) -> io::Result<(LingerIo<tokio::net::TcpStream>, std::net::SocketAddr)> {
        let (stream, addr) = self.inner.accept().await?;
        Ok((self.wrap(stream), addr))
    }
}

#[cfg(unix)]
impl LingerListener<tokio::net::UnixListener> {
    /// Accepts a connection, for hand-written accept loops.
    pub async fn accept(
        &self,
    ) -> io::Result<(
        LingerIo<tokio::net::UnixStream>,
        tokio::net::unix::SocketAddr,
    )> {
        let (stream, addr) = self.inner.accept().await?;
        Ok((self.wrap(stream), addr))
    }
}

impl<L: fmt::Debug> fmt::Debug for LingerListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerListener")
            .field("inner", &self.inner)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "axum")]
impl<L> axum::serve::Listener for LingerListener<L>
where
    L: axum::serve::Listener,
{
    type Io = LingerIo<L::Io>;
    type Addr = L::Addr;

    /// Accepts the next connection. Once the shutdown has begun
    /// ([`LingerShutdown::begin`]) it goes on accepting while
    /// [`LingerShutdown::on`] waits, and the middleware makes each new
    /// connection's response say `Connection: close`. When `on`'s wait is
    /// over, it hands on the connections still queued, then accepts nothing
    /// more, and `on` resolves: axum then drops the listener, which closes
    /// the listening socket, so later connects are refused rather than
    /// queued and reset.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let state = self.state.clone();
        state
            .axum_accepts
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut stop = std::pin::pin!(state.stop_accepting.cancelled());
        let mut accepted = std::pin::pin!(self.accept_next());
        std::future::poll_fn(|cx| {
            if state.accept_closed.is_cancelled() {
                // Pending for good; axum's accept loop ends on its signal.
                return std::task::Poll::Pending;
            }
            let stopping = stop.as_mut().poll(cx).is_ready();
            let accepted = accepted.as_mut().poll(cx);
            if stopping && accepted.is_pending() {
                // The queue is empty: nothing waits to be served.
                state.accept_closed.cancel();
            }
            accepted
        })
        .await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(feature = "axum")]
impl<L: axum::serve::Listener> LingerListener<L> {
    /// The next connection of the inner listener, wrapped.
    pub(crate) async fn accept_next(&mut self) -> (LingerIo<L::Io>, L::Addr) {
        let (io, addr) = self.inner.accept().await;
        if self.nodelay {
            set_nodelay(&io);
        }
        (self.wrap(io), addr)
    }
}

/// `TCP_NODELAY` on `io`, if it is tokio's `TcpStream`.
#[cfg(feature = "axum")]
fn set_nodelay<T: 'static>(io: &T) {
    if let Some(tcp) = (io as &dyn std::any::Any).downcast_ref::<tokio::net::TcpStream>() {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("linger: TCP_NODELAY failed: {e}");
        }
    }
}
