//! [`LingerAcceptor`]: lingering close for axum-server.

use std::fmt;
use std::sync::Arc;

use axum_server::accept::{Accept, DefaultAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::LingerIo;
use crate::middleware::service::Linger;
use crate::state::config::LingerConfig;
use crate::state::group::Group;
use crate::state::shutdown::LingerShutdown;
use crate::state::stats::LingerStats;

/// An axum-server acceptor whose connections close with a lingering close.
///
/// It wraps each accepted stream in a [`LingerIo`] (counted in this
/// acceptor's [`stats`](Self::stats), bounded by its [`LingerConfig`]) and
/// the connection's service in the [`Linger`] middleware, holding that
/// connection's handle. Under TLS, nest it inside axum-server's
/// `RustlsAcceptor`, so that the close goes out as close_notify, then the
/// FIN, then the drain:
///
/// ```no_run
/// # async fn serve(config: axum_server::tls_rustls::RustlsConfig, app: axum::Router) -> std::io::Result<()> {
/// use linger::LingerAcceptor;
///
/// let lingering = LingerAcceptor::new();
/// let lingers = lingering.shutdown_handle();
/// let handle = axum_server::Handle::<std::net::SocketAddr>::new();
/// axum_server::bind("127.0.0.1:3443".parse().unwrap())
///     .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(config).acceptor(lingering))
///     .handle(handle.clone())
///     .serve(app.into_make_service())
///     .await?;
/// # let _ = lingers;
/// # Ok(())
/// # }
/// ```
///
/// For a graceful shutdown, call the shutdown handle's
/// [`begin`](LingerShutdown::begin) beside axum-server's
/// `Handle::graceful_shutdown`: hyper then makes the responses in flight say
/// `Connection: close`, every linger is cut to the short deadline, and the
/// lingers that begin from then on run in place, where axum-server waits
/// for them. After `serve` returns, [`LingerShutdown::wait`] waits for the
/// lingers on tasks of their own: those detached before the shutdown
/// ([`LingerConfig::detach`], the default) and those of connections
/// axum-server dropped when its grace period ended.
pub struct LingerAcceptor<A = DefaultAcceptor> {
    inner: A,
    state: Arc<Group>,
}

impl LingerAcceptor {
    /// An acceptor with the default [`LingerConfig`].
    pub fn new() -> Self {
        Self::with_config(LingerConfig::new())
    }

    /// An acceptor lingering with `config`.
    pub fn with_config(config: LingerConfig) -> Self {
        Self {
            inner: DefaultAcceptor::new(),
            state: Group::new(config),
        }
    }
}

impl Default for LingerAcceptor {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> LingerAcceptor<A> {
    /// Runs `inner` on each stream after wrapping it (an acceptor that sets
    /// socket options, say).
    pub fn acceptor<B>(self, inner: B) -> LingerAcceptor<B> {
        LingerAcceptor {
            inner,
            state: self.state,
        }
    }

    /// A handle to shut this acceptor's connections down gracefully,
    /// lingering ones included; it also reads the counters.
    pub fn shutdown_handle(&self) -> LingerShutdown {
        LingerShutdown::new(self.state.clone())
    }

    /// Counters of the lingering closes of this acceptor's connections.
    pub fn stats(&self) -> LingerStats {
        self.state.counters.snapshot()
    }
}

impl<A: Clone> Clone for LingerAcceptor<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<A: fmt::Debug> fmt::Debug for LingerAcceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerAcceptor")
            .field("inner", &self.inner)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl<A, I, S> Accept<I, S> for LingerAcceptor<A>
where
    A: Accept<LingerIo<I>, Linger<S>>,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = A::Future;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let io = LingerIo::with_listener(stream, self.state.clone());
        let service = Linger::for_handle(service, io.handle().clone());
        self.inner.accept(io, service)
    }
}
