//! The accept loop both servers run, and its graceful shutdown in the right
//! order: the lingers first, then the listening socket, then the
//! connections, then the closes left to tasks of their own.

use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::io::LingerIo;
use crate::state::LingerShutdown;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// Where the loop takes its connections from.
pub(crate) trait Accept: Send {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Addr: Send + 'static;

    /// The next connection. The loop retries an error after 50 ms.
    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(LingerIo<Self::Io>, Self::Addr)>> + Send;

    /// The shutdown of the listener's lingers.
    fn shutdown_handle(&self) -> LingerShutdown;
}

/// A connection being served, whichever builder made it.
#[doc(hidden)]
pub trait Connection: Send {
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Connection for auto::UpgradeableConnection<'static, I, S, TokioExecutor>
where
    I: Read + Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.poll(cx)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Accepts connections from `listener`, each served by `serve`, until
/// `signal`; then shuts down: [`LingerShutdown::begin`]; goes on accepting,
/// and answering, while the lingers detached before end; takes what is
/// still queued and closes the listening socket (later connects are
/// refused, not reset); tells every connection to finish (hyper's graceful
/// shutdown) and waits for them; last waits for the closes left to tasks of
/// their own ([`LingerShutdown::wait`]).
pub(crate) async fn run<A, F>(
    mut listener: A,
    serve: F,
    signal: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    A: Accept,
    F: Fn(LingerIo<A::Io>, A::Addr) -> Pin<Box<dyn Connection>> + Send,
{
    let lingers = listener.shutdown_handle();
    let mut connections = Connections {
        serve,
        stop: watch::channel(()),
        done: watch::channel(()),
    };
    accept_until(&mut listener, &mut connections, Box::pin(signal)).await;
    lingers.begin();
    accept_until(
        &mut listener,
        &mut connections,
        Box::pin(lingers.wait_detached()),
    )
    .await;
    // Whatever is queued is answered; then the socket closes.
    loop {
        let mut accept = pin!(listener.accept());
        match poll_fn(|cx| Poll::Ready(accept.as_mut().poll(cx))).await {
            Poll::Ready(Ok((io, addr))) => connections.serve(io, addr),
            _ => break,
        }
    }
    drop(listener);
    connections.finish().await;
    lingers.wait().await;
    Ok(())
}

/// Accepts and serves connections until `until` resolves.
async fn accept_until<A, F>(
    listener: &mut A,
    connections: &mut Connections<F>,
    until: Pin<Box<dyn Future<Output = ()> + Send + '_>>,
) where
    A: Accept,
    F: Fn(LingerIo<A::Io>, A::Addr) -> Pin<Box<dyn Connection>>,
{
    let mut until = until;
    loop {
        tokio::select! {
            biased;
            () = &mut until => return,
            accepted = listener.accept() => match accepted {
                Ok((io, addr)) => connections.serve(io, addr),
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
struct Connections<F> {
    serve: F,
    /// Sent once, when every connection is to finish.
    stop: (watch::Sender<()>, watch::Receiver<()>),
    /// Each connection's task holds a receiver until it ends.
    done: (watch::Sender<()>, watch::Receiver<()>),
}

impl<F> Connections<F> {
    fn serve<T, Addr>(&self, io: LingerIo<T>, addr: Addr)
    where
        F: Fn(LingerIo<T>, Addr) -> Pin<Box<dyn Connection>>,
    {
        let mut conn = (self.serve)(io, addr);
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
