//! [`LingerListener::serve_with`]: the accept loop of a hyper server, with
//! lingering close and a graceful shutdown in the right order.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service;

use crate::io::LingerIo;
use crate::listener::LingerListener;
use crate::middleware::body::LingerBody;
use crate::middleware::layer::LingerLayer;
use crate::middleware::service::Linger;
use crate::serve::run::{self, Accept, BoxError, Connection};
use crate::serve::ServeFuture;
use crate::state::LingerShutdown;

type Io = TokioIo<LingerIo<TcpStream>>;

/// A connection builder [`LingerListener::serve_with`] serves with:
/// hyper-util's `auto::Builder<TokioExecutor>` (HTTP/1 and HTTP/2, chosen
/// per connection) or hyper's `http1::Builder`, each with upgrades on, and
/// configured as you like before you hand it over.
pub trait ConnectionBuilder: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Serves one connection.
    #[doc(hidden)]
    fn serve_io<S: ConnectionService>(
        &self,
        io: Io,
        service: Linger<S>,
    ) -> Pin<Box<dyn Connection>>;
}

mod sealed {
    pub trait Sealed {}
}

impl sealed::Sealed for auto::Builder<TokioExecutor> {}
impl ConnectionBuilder for auto::Builder<TokioExecutor> {
    fn serve_io<S: ConnectionService>(
        &self,
        io: Io,
        service: Linger<S>,
    ) -> Pin<Box<dyn Connection>> {
        Box::pin(
            self.serve_connection_with_upgrades(io, service)
                .into_owned(),
        )
    }
}

impl sealed::Sealed for hyper::server::conn::http1::Builder {}
impl ConnectionBuilder for hyper::server::conn::http1::Builder {
    fn serve_io<S: ConnectionService>(
        &self,
        io: Io,
        service: Linger<S>,
    ) -> Pin<Box<dyn Connection>> {
        Box::pin(self.serve_connection(io, service).with_upgrades())
    }
}

impl<S: ConnectionService> Connection
    for hyper::server::conn::http1::UpgradeableConnection<Io, Linger<S>>
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.poll(cx).map_err(Into::into)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// A tower service [`LingerListener::serve_with`] serves: over
/// `Request<LingerBody<Incoming>>`, cloned for each connection, its future,
/// error and response body fit to go to another thread. Implemented for
/// every service that fits (`tower::service_fn(handler)`, an axum
/// `Router`).
pub trait ConnectionService:
    Service<
        Request<LingerBody<Incoming>>,
        Response = Response<Self::Body>,
        Error: Into<BoxError> + Send,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> ConnectionService for S
where
    S: Service<Request<LingerBody<Incoming>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

impl LingerListener<TcpListener> {
    /// Serves `service` on every connection with `builder`: the accept loop
    /// of a hyper server, each connection's service wrapped in the
    /// [`Linger`](crate::Linger) middleware with that connection's handle.
    ///
    /// `service` is a tower service over `Request<LingerBody<Incoming>>`,
    /// cloned for each connection (`tower::service_fn(handler)`, say).
    /// Await the result to serve until the process ends;
    /// [`with_graceful_shutdown`](ServeWith::with_graceful_shutdown) stops
    /// on a signal. An accept that fails (out of file descriptors, say) is
    /// retried after 50 ms, and the server keeps serving.
    ///
    /// # Example
    ///
    /// ```
    /// use hyper_util::rt::TokioExecutor;
    /// use hyper_util::server::conn::auto;
    /// use linger::LingerListener;
    ///
    /// # async {
    /// let hello = tower::service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello\n")))
    /// });
    /// LingerListener::bind("127.0.0.1:3000")
    ///     .await?
    ///     .serve_with(auto::Builder::new(TokioExecutor::new()), hello)
    ///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
    ///     .await?;
    /// # Ok::<_, std::io::Error>(())
    /// # };
    /// ```
    pub fn serve_with<C, S>(self, builder: C, service: S) -> ServeWith<C, S>
    where
        C: ConnectionBuilder,
    {
        ServeWith {
            listener: self,
            builder,
            service,
        }
    }
}

/// The server [`LingerListener::serve_with`] returns: await it, or call
/// [`with_graceful_shutdown`](Self::with_graceful_shutdown).
#[must_use = "a server does nothing until it is awaited"]
pub struct ServeWith<C, S> {
    listener: LingerListener<TcpListener>,
    builder: C,
    service: S,
}

impl<C, S> ServeWith<C, S> {
    /// Stops on `signal`, and returns once every connection has ended and
    /// every linger with it.
    ///
    /// On the signal: [`LingerShutdown::begin`](crate::LingerShutdown::begin) (every linger is cut to the
    /// short deadline, every response says `Connection: close`); the loop
    /// goes on accepting, and answering, while the lingers detached before
    /// end; then it takes what is still queued and closes the listening
    /// socket (later connects are refused, not reset); then it tells every
    /// connection to finish (hyper's graceful shutdown), waits for them,
    /// and last waits for the closes left to tasks of their own
    /// ([`LingerShutdown::wait`](crate::LingerShutdown::wait)).
    pub fn with_graceful_shutdown<F>(self, signal: F) -> ServeWithGracefulShutdown<C, S, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        ServeWithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

/// [`ServeWith`] with a graceful shutdown: await it.
#[must_use = "a server does nothing until it is awaited"]
pub struct ServeWithGracefulShutdown<C, S, F> {
    serve: ServeWith<C, S>,
    signal: F,
}

impl<C, S> IntoFuture for ServeWith<C, S>
where
    C: ConnectionBuilder,
    S: ConnectionService,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        ServeFuture::new(run(self, std::future::pending()))
    }
}

impl<C, S, F> IntoFuture for ServeWithGracefulShutdown<C, S, F>
where
    C: ConnectionBuilder,
    S: ConnectionService,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        ServeFuture::new(run(self.serve, self.signal))
    }
}

/// The accept loop and its shutdown.
async fn run<C, S>(
    serve: ServeWith<C, S>,
    signal: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    C: ConnectionBuilder,
    S: ConnectionService,
{
    let ServeWith {
        listener,
        builder,
        service,
    } = serve;
    let connection = move |io: LingerIo<TcpStream>, _peer| {
        let service = LingerLayer::with_handle(io.handle().clone()).layer(service.clone());
        builder.serve_io(TokioIo::new(io), service)
    };
    run::run(TcpAccept(listener), connection, signal).await
}

/// [`LingerListener::accept`], for the accept loop.
struct TcpAccept(LingerListener<TcpListener>);

impl Accept for TcpAccept {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(LingerIo<TcpStream>, Self::Addr)>> + Send {
        self.0.accept()
    }

    fn shutdown_handle(&self) -> LingerShutdown {
        self.0.shutdown_handle()
    }
}

impl<C: fmt::Debug, S> fmt::Debug for ServeWith<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeWith")
            .field("listener", &self.listener)
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl<C: fmt::Debug, S, F> fmt::Debug for ServeWithGracefulShutdown<C, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeWithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}
