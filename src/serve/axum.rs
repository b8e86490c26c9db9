//! [`serve`](crate::serve()): an axum app served with lingering close, in
//! one call.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tower_service::Service;

use crate::io::LingerIo;
use crate::listener::LingerListener;
use crate::middleware::body::AxumBodies;
use crate::middleware::service::Linger;
use crate::serve::run::{self, Accept, Connection};
use crate::serve::ServeFuture;
use crate::state::{LingerConnectInfo, LingerShutdown};

/// Serves an axum app with lingering close: the [`Linger`] middleware
/// around the whole app, on the connections of a [`LingerListener`].
///
/// `listener` is a [`LingerListener`], tokio's `TcpListener` or
/// `UnixListener` (wrapped with the default [`LingerConfig`]), or an
/// address to bind (with [`LingerListener::bind`]). `app` is a `Router`, or
/// any tower service over axum's `Request` that answers with axum's
/// `Response` (a `Router` in tower layers, a `MethodRouter`, a handler's
/// service), cloned for each request as `axum::serve` clones it. A
/// `Router`'s handlers are turned into routes once, as `axum::serve` does
/// for each connection; call `.with_state(())` on a `Router` before you wrap
/// it in tower layers, or each request does that work again.
/// [`with_connect_info`](Serve::with_connect_info) gives handlers the
/// peer's address.
///
/// It serves as `axum::serve` does (hyper-util's HTTP/1 and HTTP/2 server,
/// upgrades and HTTP/2's extended CONNECT on, no timer), with the
/// middleware as hyper's service for each connection: the request body is
/// boxed once, as axum boxes it, whether the middleware tracks it or not.
///
/// Await it to serve until an error; [`with_graceful_shutdown`] stops on a
/// signal and returns once every connection, and every linger, has ended.
///
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
pub fn serve<A, S>(listener: A, app: S) -> Serve<A, S>
where
    A: IntoLingerListener,
{
    Serve {
        listener,
        app,
        tcp_nodelay: None,
        connect_info: false,
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
pub struct Serve<A, S> {
    listener: A,
    app: S,
    tcp_nodelay: Option<bool>,
    connect_info: bool,
}

impl<A, S> Serve<A, S> {
    /// Sets `TCP_NODELAY` on every accepted TCP connection, as
    /// [`LingerListener::with_tcp_nodelay`] does.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = Some(nodelay);
        self
    }

    /// Gives every request axum's `ConnectInfo<LingerConnectInfo<Addr>>`
    /// extension: the peer's address (a `SocketAddr` over TCP) and the
    /// connection's handle. axum's own `ConnectInfo<SocketAddr>` cannot
    /// work through a custom listener.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{extract::ConnectInfo, routing::get, Router};
    /// use linger::LingerConnectInfo;
    ///
    /// async fn whoami(ConnectInfo(info): ConnectInfo<LingerConnectInfo>) -> String {
    ///     info.remote_addr().to_string()
    /// }
    ///
    /// # async {
    /// let app = Router::new().route("/", get(whoami));
    /// linger::serve("127.0.0.1:3000", app).with_connect_info().await?;
    /// # Ok::<_, std::io::Error>(())
    /// # };
    /// ```
    pub fn with_connect_info(mut self) -> Self {
        self.connect_info = true;
        self
    }

    /// Stops on `signal`, and returns once every connection has ended and
    /// every linger with it.
    ///
    /// On the signal: every linger is cut to the short deadline (2 s by
    /// default) and every response says `Connection: close`; connections
    /// made meanwhile are still accepted and answered until the lingers
    /// that run on tasks of their own have ended; then the listening socket
    /// closes (later connects are refused, not reset), every connection is
    /// told to finish (hyper's graceful shutdown) and waited for, and last
    /// the closes left to tasks of their own
    /// ([`LingerShutdown::wait`](crate::LingerShutdown::wait)).
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<A, S, F>
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
pub struct WithGracefulShutdown<A, S, F> {
    serve: Serve<A, S>,
    signal: F,
}

impl<A, S> IntoFuture for Serve<A, S>
where
    A: IntoLingerListener,
    <A::Listener as Listener>::Addr: Clone + Send + Sync + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        ServeFuture::new(self.run(std::future::pending()))
    }
}

impl<A, S, F> IntoFuture for WithGracefulShutdown<A, S, F>
where
    A: IntoLingerListener,
    <A::Listener as Listener>::Addr: Clone + Send + Sync + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        ServeFuture::new(self.serve.run(self.signal))
    }
}

impl<A, S> Serve<A, S>
where
    A: IntoLingerListener,
    <A::Listener as Listener>::Addr: Clone + Send + Sync + 'static,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// Binds if need be, then runs the accept loop until `signal`.
    async fn run(self, signal: impl Future<Output = ()> + Send) -> io::Result<()> {
        let mut listener = self.listener.into_linger_listener().await?;
        if let Some(nodelay) = self.tcp_nodelay {
            listener = listener.with_tcp_nodelay(nodelay);
        }
        let (app, connect_info) = (routes_once(self.app), self.connect_info);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // As axum's: HTTP/2 WebSockets need the extended CONNECT.
        builder.http2().enable_connect_protocol();
        let connection = move |io: LingerIo<_>, addr| -> std::pin::Pin<Box<dyn Connection>> {
            let handle = io.handle().clone();
            let io = TokioIo::new(io);
            if connect_info {
                let info = ConnectInfo(LingerConnectInfo::new(addr, handle.clone()));
                let app = WithConnectInfo {
                    app: app.clone(),
                    info,
                };
                let service = Linger::<_, AxumBodies>::for_handle(app, handle);
                Box::pin(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                )
            } else {
                let service = Linger::<_, AxumBodies>::for_handle(app.clone(), handle);
                Box::pin(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                )
            }
        };
        run::run(AxumAccept(listener), connection, signal).await
    }
}

/// `app` with a `Router`'s handlers turned into routes now, once, as
/// `axum::serve`'s make-service does for each connection (a `Router` called
/// as it is turns a handler into a route on every request).
fn routes_once<S: 'static>(app: S) -> S {
    let app: Box<dyn Any> = Box::new(app);
    let app = match app.downcast::<axum::Router>() {
        Ok(router) => Box::new(router.with_state::<()>(())) as Box<dyn Any>,
        Err(app) => app,
    };
    *app.downcast::<S>().expect("a Router stays a Router")
}

/// The axum listener's accept, for the accept loop (which shuts down
/// itself, without the listener's gate for `axum::serve`).
struct AxumAccept<L>(LingerListener<L>);

impl<L: Listener> Accept for AxumAccept<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> io::Result<(LingerIo<L::Io>, L::Addr)> {
        Ok(self.0.accept_next().await)
    }

    fn shutdown_handle(&self) -> LingerShutdown {
        self.0.shutdown_handle()
    }
}

/// The app of one connection, with the connect-info extension on every
/// request.
#[derive(Clone)]
struct WithConnectInfo<S, A> {
    app: S,
    info: ConnectInfo<LingerConnectInfo<A>>,
}

impl<S, A> Service<Request> for WithConnectInfo<S, A>
where
    S: Service<Request>,
    A: Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.app.call(req)
    }
}

impl<A: fmt::Debug, S, F> fmt::Debug for WithGracefulShutdown<A, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<A: fmt::Debug, S> fmt::Debug for Serve<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("connect_info", &self.connect_info)
            .finish_non_exhaustive()
    }
}
