//! The accept loop both servers run, and its graceful shutdown in the right
//! order: the lingers first, then the listening socket, then the
//! connections, then the closes left to tasks of their own.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
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
        stop: Arc::default(),
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
    stop: Arc<Stop>,
    /// Each connection's task holds a receiver until it ends.
    done: (watch::Sender<()>, watch::Receiver<()>),
}

impl<F> Connections<F> {
    fn serve<T, Addr>(&self, io: LingerIo<T>, addr: Addr)
    where
        F: Fn(LingerIo<T>, Addr) -> Pin<Box<dyn Connection>>,
    {
        let mut conn = (self.serve)(io, addr);
        let stop = self.stop.clone();
        let done = self.done.1.clone();
        tokio::spawn(async move {
            let mut watching: Option<(u64, Waker)> = None;
            let mut stopping = false;
            let result = poll_fn(|cx| {
                if !stopping {
                    // The task's waker, registered once: a poll costs one
                    // load, not a look at a channel.
                    if !watching
                        .as_ref()
                        .is_some_and(|(_, w)| w.will_wake(cx.waker()))
                    {
                        if let Some((id, _)) = watching.take() {
                            stop.forget(id);
                        }
                        watching = Some((stop.watch(cx.waker()), cx.waker().clone()));
                    }
                    if stop.is_stopped() {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                conn.as_mut().poll_serve(cx)
            })
            .await;
            if let Some((id, _)) = watching {
                stop.forget(id);
            }
            if let Err(e) = result {
                tracing::debug!("linger: connection ended: {e}");
            }
            drop(done);
        });
    }

    /// Tells every connection to finish, and waits until all have.
    async fn finish(self) {
        let Self { stop, done, .. } = self;
        stop.stop();
        drop(done.1);
        done.0.closed().await;
    }
}

/// The signal that tells every connection's task to finish: a flag each
/// task reads when it is polled, and the tasks' wakers, to wake them once.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    next: u64,
    by_id: HashMap<u64, Waker>,
}

impl Stop {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Wakes `waker` on the stop; the id to forget it by.
    fn watch(&self, waker: &Waker) -> u64 {
        let mut wakers = self.lock();
        let id = wakers.next;
        wakers.next += 1;
        wakers.by_id.insert(id, waker.clone());
        id
    }

    fn forget(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    /// Sets the flag, then wakes every task: a task that registers later
    /// reads the flag after it registered, so none is missed.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut self.lock().by_id);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wakers> {
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
