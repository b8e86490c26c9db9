//! Servers in one call, with lingering close and a graceful shutdown that
//! covers every linger:
//!
//! - `axum`: [`serve`](crate::serve()), axum's `serve` with the
//!   [`LingerLayer`](crate::LingerLayer) around the whole app;
//! - `hyper`: [`LingerListener::serve_with`](crate::LingerListener::serve_with),
//!   the accept loop of a hyper or hyper-util connection builder.

#[cfg(feature = "axum")]
pub(crate) mod axum;
#[cfg(feature = "hyper")]
pub(crate) mod hyper;
#[cfg(feature = "hyper")]
mod run;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(feature = "axum")]
pub use self::axum::{IntoLingerListener, Serve, WithGracefulShutdown};
#[cfg(feature = "hyper")]
pub use self::hyper::{ConnectionBuilder, ConnectionService, ServeWith, ServeWithGracefulShutdown};

/// The future of a server of this module: it resolves when the server
/// stops, with the error that stopped it, if any.
#[must_use = "futures do nothing unless polled"]
pub struct ServeFuture(Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'static>>);

impl ServeFuture {
    #[cfg_attr(not(any(feature = "axum", feature = "hyper")), allow(dead_code))]
    pub(crate) fn new(run: impl Future<Output = io::Result<()>> + Send + 'static) -> Self {
        Self(Box::pin(run))
    }
}

impl Future for ServeFuture {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}
