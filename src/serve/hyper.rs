//! [`LingerListener::serve_with`]: the accept loop of a hyper server, with
//! lingering close and a graceful shutdown in the right order.

use std::error::Error as StdError;
use std::fmt;
use std::future::{poll_fn, Future, IntoFuture};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use crate::io::LingerIo;
use crate::listener::LingerListener;
use crate::middleware::body::LingerBody;
use crate::middleware::layer::LingerLayer;
use crate::middleware::service::Linger;
use crate::serve::ServeFuture;

type BoxError = Box<dyn StdError + Send + Sync>;
type Io = TokioIo<LingerIo<TcpStream>>;
/// A connection's service as hyper takes it: the user's, in the middleware.
type Hyper<S> = TowerToHyperService<Linger<S>>;

/// A connection builder [`LingerListener::serve_with`] serves with:
/// hyper-util's `auto::Builder<TokioExecutor>` (HTTP/1 and HTTP/2, chosen
/// per connection) or hyper's `http1::Builder`, each with upgrades on, and
/// configured as you like before you hand it over.
pub trait ConnectionBuilder: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Serves one connection.
    #[doc(hidden)]
    fn serve_io<S: ConnectionService>(&self, io: Io, service: Hyper<S>)
        -> Pin<Box<dyn Connection>>;
}

mod sealed {
    pub trait Sealed {}
}

/// A connection being served, whichever builder made it.
#[doc(hidden)]
pub trait Connection: Send {
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl sealed::Sealed for auto::Builder<TokioExecutor> {}
impl ConnectionBuilder for auto::Builder<TokioExecutor> {
    fn serve_io<S: ConnectionService>(
        &self,
        io: Io,
        service: Hyper<S>,
    ) -> Pin<Box<dyn Connection>> {
        Box::pin(
            self.serve_connection_with_upgrades(io, service)
                .into_owned(),
        )
    }
}

impl<S: ConnectionService> Connection
    for auto::UpgradeableConnection<'static, Io, Hyper<S>, TokioExecutor>
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.poll(cx)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl sealed::Sealed for hyper::server::conn::http1::Builder {}
impl ConnectionBuilder for hyper::server::conn::http1::Builder {
    fn serve_io<S: ConnectionService>(
        &self,
        io: Io,
        service: Hyper<S>,
    ) -> Pin<Box<dyn Connection>> {
        Box::pin(self.serve_connection(io, service).with_upgrades())
    }
}

impl<S: ConnectionService> Connection
    for hyper::server::conn::http1::UpgradeableConnection<Io, Hyper<S>>
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
    let lingers = listener.shutdown_handle();
    let mut connections = Connections {
        builder,
        service,
        stop: watch::channel(()),
        done: watch::channel(()),
    };
    accept_until(&listener, &mut connections, Box::pin(signal)).await;
    lingers.begin();
    accept_until(
        &listener,
        &mut connections,
        Box::pin(lingers.wait_detached()),
    )
    .await;
    // Whatever is queued is answered; then the socket closes.
    loop {
        let mut accept = pin!(listener.accept());
        match poll_fn(|cx| Poll::Ready(accept.as_mut().poll(cx))).await {
            Poll::Ready(Ok((io, _))) => connections.serve(io),
            _ => break,
        }
    }
    drop(listener);
    connections.finish().await;
    lingers.wait().await;
    Ok(())
}

/// Accepts and serves connections until `until` resolves.
async fn accept_until<C, S>(
    listener: &LingerListener<TcpListener>,
    connections: &mut Connections<C, S>,
    until: Pin<Box<dyn Future<Output = ()> + Send + '_>>,
) where
    C: ConnectionBuilder,
    S: ConnectionService,
{
    let mut until = until;
    loop {
        tokio::select! {
            biased;
            () = &mut until => return,
            accepted = listener.accept() => match accepted {
                Ok((io, _peer)) => connections.serve(io),
                Err(e) => {
                    tracing::warn!("linger: accept failed: {e}");
                    tokio::select! {
                        () = &mut until => return,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
}

/// The connections being served: how to serve one, how to tell them all
/// to finish, and how to wait for them.
struct Connections<C, S> {
    builder: C,
    service: S,
    /// Sent once, when every connection is to finish.
    stop: (watch::Sender<()>, watch::Receiver<()>),
    /// Each connection's task holds a receiver until it ends.
    done: (watch::Sender<()>, watch::Receiver<()>),
}

impl<C, S> Connections<C, S>
where
    C: ConnectionBuilder,
    S: ConnectionService,
{
    fn serve(&self, io: LingerIo<TcpStream>) {
        let service = LingerLayer::with_handle(io.handle().clone()).layer(self.service.clone());
        let mut conn = self
            .builder
            .serve_io(TokioIo::new(io), TowerToHyperService::new(service));
        let mut stop = self.stop.1.clone();
        let done = self.done.1.clone();
        tokio::spawn(async move {
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = poll_fn(|cx| conn.as_mut().poll_serve(cx)) => {
                        if let Err(e) = result {
                            tracing::debug!("linger: connection ended: {e}");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }

    /// Tells every connection to finish, and waits until all have.
    async fn finish(self) {
        let Self { stop, done, .. } = self;
        stop.0.send_replace(());
        drop(done.1);
        done.0.closed().await;
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
