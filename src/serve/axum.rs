//! [`serve`](crate::serve()): an axum app served with lingering close, in
//! one call.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::Request;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use tower_service::Service;

use crate::listener::LingerListener;
use crate::middleware::service::Linger;
use crate::serve::ServeFuture;

/// Serves an axum app with lingering close: [`LingerLayer`] applied around
/// the whole app, on the connections of a [`LingerListener`].
///
/// `listener` is a [`LingerListener`], tokio's `TcpListener` or
/// `UnixListener` (wrapped with the default [`LingerConfig`]), or an
/// address to bind (with [`LingerListener::bind`]). `app` is what
/// `axum::serve` takes: a `Router`, or a make-service such as
/// `router.into_make_service_with_connect_info::<LingerConnectInfo>()`.
///
/// Await it to serve until an error; [`with_graceful_shutdown`] stops on a
/// signal and returns once every connection, and every linger, has ended.
///
/// [`LingerLayer`]: crate::LingerLayer
/// [`LingerConfig`]: crate::LingerConfig
/// [`with_graceful_shutdown`]: Serve::with_graceful_shutdown
///
/// # Example
///
/// ```
/// use axum::{extract::DefaultBodyLimit, routing::post, Router};
///
/// # async {
/// let app = Router::new()
///     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
///     .layer(DefaultBodyLimit::max(1 << 20));
/// linger::serve("127.0.0.1:3000", app)
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// // Every connection and every linger has ended.
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
pub fn serve<A, M>(listener: A, app: M) -> Serve<A, M>
where
    A: IntoLingerListener,
{
    Serve {
        listener,
        app,
        tcp_nodelay: None,
    }
}

/// What [`serve`](crate::serve()) takes as its listener: a
/// [`LingerListener`], tokio's `TcpListener` or `UnixListener`, or an
/// address to bind.
pub trait IntoLingerListener: sealed::Sealed + Send + 'static {
    /// The axum listener the [`LingerListener`] wraps.
    type Listener: Listener;

    /// The listener, bound if need be.
    fn into_linger_listener(
        self,
    ) -> impl Future<Output = io::Result<LingerListener<Self::Listener>>> + Send;
}

mod sealed {
    pub trait Sealed {}
}

impl<L: Listener> sealed::Sealed for LingerListener<L> {}
impl<L: Listener> IntoLingerListener for LingerListener<L> {
    type Listener = L;

    async fn into_linger_listener(self) -> io::Result<Self> {
        Ok(self)
    }
}

macro_rules! wrapped_listener {
    ($($listener:ty),*) => {$(
        impl sealed::Sealed for $listener {}
        impl IntoLingerListener for $listener {
            type Listener = $listener;

            async fn into_linger_listener(self) -> io::Result<LingerListener<Self>> {
                Ok(LingerListener::new(self))
            }
        }
    )*};
}

wrapped_listener!(tokio::net::TcpListener);
#[cfg(unix)]
wrapped_listener!(tokio::net::UnixListener);

macro_rules! bind_address {
    ($($addr:ty),*) => {$(
        impl sealed::Sealed for $addr {}
        impl IntoLingerListener for $addr {
            type Listener = tokio::net::TcpListener;

            async fn into_linger_listener(self) -> io::Result<LingerListener> {
                LingerListener::bind(self).await
            }
        }
    )*};
}

bind_address!(
    SocketAddr,
    &'static str,
    String,
    (&'static str, u16),
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

/// The server [`serve`](crate::serve()) returns: await it, or call
/// [`with_graceful_shutdown`](Self::with_graceful_shutdown).
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<A, M> {
    listener: A,
    app: M,
    tcp_nodelay: Option<bool>,
}

impl<A, M> Serve<A, M> {
    /// Sets `TCP_NODELAY` on every accepted TCP connection, as
    /// [`LingerListener::with_tcp_nodelay`] does.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = Some(nodelay);
        self
    }

    /// Stops on `signal`, and returns once every connection has ended and
    /// every linger with it.
    ///
    /// On the signal it runs [`LingerShutdown::on`](crate::LingerShutdown::on)'s
    /// sequence: every linger is cut to the short deadline (2 s by default),
    /// every response says `Connection: close`, connections made meanwhile
    /// are still accepted and answered, then the listening socket closes
    /// (later connects are refused, not reset) and axum's graceful shutdown
    /// waits for the connections. Last it waits for the closes left to
    /// tasks of their own ([`LingerShutdown::wait`](crate::LingerShutdown::wait)).
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<A, M, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

/// [`Serve`] with a graceful shutdown: await it.
#[must_use = "a server does nothing until it is awaited"]
pub struct WithGracefulShutdown<A, M, F> {
    serve: Serve<A, M>,
    signal: F,
}

impl<A, M> Serve<A, M>
where
    A: IntoLingerListener,
{
    async fn listener(self) -> io::Result<(LingerListener<A::Listener>, M)> {
        let mut listener = self.listener.into_linger_listener().await?;
        if let Some(nodelay) = self.tcp_nodelay {
            listener = listener.with_tcp_nodelay(nodelay);
        }
        Ok((listener, self.app))
    }
}

impl<A, M, S> IntoFuture for Serve<A, M>
where
    A: IntoLingerListener,
    <A::Listener as Listener>::Addr: fmt::Debug,
    M: for<'a> Service<
            IncomingStream<'a, LingerListener<A::Listener>>,
            Error = Infallible,
            Response = S,
        > + Send
        + 'static,
    for<'a> <M as Service<IncomingStream<'a, LingerListener<A::Listener>>>>::Future: Send,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        ServeFuture::new(async move {
            let (listener, app) = self.listener().await?;
            axum::serve(listener, Linger::new(app)).await
        })
    }
}

impl<A, M, S, F> IntoFuture for WithGracefulShutdown<A, M, F>
where
    A: IntoLingerListener,
    <A::Listener as Listener>::Addr: fmt::Debug,
    M: for<'a> Service<
            IncomingStream<'a, LingerListener<A::Listener>>,
            Error = Infallible,
            Response = S,
        > + Send
        + 'static,
    for<'a> <M as Service<IncomingStream<'a, LingerListener<A::Listener>>>>::Future: Send,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        ServeFuture::new(async move {
            let (listener, app) = self.serve.listener().await?;
            let shutdown = listener.shutdown_handle();
            axum::serve(listener, Linger::new(app))
                .with_graceful_shutdown(shutdown.on(self.signal))
                .await?;
            shutdown.wait().await;
            Ok(())
        })
    }
}

impl<A: fmt::Debug, M, F> fmt::Debug for WithGracefulShutdown<A, M, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<A: fmt::Debug, M> fmt::Debug for Serve<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .finish_non_exhaustive()
    }
}
