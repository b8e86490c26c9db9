//! Future types of [`Linger`](crate::Linger).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::middleware::body::Tracker;
use crate::middleware::rescue::{Rescue, Rescuing};
use crate::middleware::rules::{ensure_close, has_close};
use crate::state::connection::ConnectionHandle;
pin_project! {
    /// Response future of [`Linger`](crate::Linger).
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        #[pin]
        inner: F,
        tracked: Option<Tracked<B>>,
        // Boxed: rare, and large (it holds a response), so the common
        // future stays small.
        rescuing: Option<Box<Rescuing<F::Output, B>>>,
    }
}

/// What the middleware knows of an HTTP/1 request whose response it may
/// have to change: its body is tracked, or its connection has a handle.
pub(crate) struct Tracked<B> {
    pub(crate) tracker: Option<Arc<Tracker<B>>>,
    pub(crate) handle: Option<ConnectionHandle>,
}

impl<F: Future, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn new(inner: F, tracked: Option<Tracked<B>>) -> Self {
        Self {
            inner,
            tracked,
            rescuing: None,
        }
    }
}

impl<F, B, R, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<R>, E>>,
    B: Body + Unpin,
{
    type Output = Result<Response<R>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rescuing) = this.rescuing.as_mut() {
            let drained = ready!(rescuing.poll_discard(cx));
            let mut out = this.rescuing.take().expect("rescuing").response;
            let tracked = this.tracked.take().expect("a rescue's request");
            if let Ok(res) = &mut out {
                tracked.finish(res, !drained);
            }
            return Poll::Ready(out);
        }
        // The response is changed where it lies, never moved, on the path
        // every request takes.
        let mut out = ready!(this.inner.poll(cx));
        let (Some(tracked), Ok(res)) = (this.tracked.as_ref(), out.as_mut()) else {
            return Poll::Ready(out);
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Poll::Ready(out);
        }
        let unread = tracked.tracker.as_ref().is_some_and(|t| !t.is_finished());
        // Asked only of an unread body: a response that keeps its
        // connection costs no header lookup.
        if let Some(rescue) = unread.then(|| tracked.rescue_for(res)).flatten() {
            if let Some(body) = tracked.tracker.as_ref().and_then(|t| t.take_leftover()) {
                return match rescue.start(out, body) {
                    Ok(mut rescuing) => {
                        if let Poll::Ready(drained) = rescuing.poll_discard(cx) {
                            let mut out = rescuing.response;
                            if let Ok(res) = &mut out {
                                tracked.finish(res, !drained);
                            }
                            return Poll::Ready(out);
                        }
                        *this.rescuing = Some(Box::new(rescuing));
                        Poll::Pending
                    }
                    Err(mut out) => {
                        if let Ok(res) = &mut out {
                            tracked.finish(res, true);
                        }
                        Poll::Ready(out)
                    }
                };
            }
        }
        tracked.finish(res, unread);
        Poll::Ready(out)
    }
}

impl<B> Tracked<B> {
    /// The rescue to try on an unread body, if discarding it could keep
    /// the connection: one is configured, and nothing else ends the
    /// connection anyway.
    fn rescue_for<R>(&self, res: &Response<R>) -> Option<Rescue> {
        let tracker = self.tracker.as_ref()?;
        let ends = tracker.request_ends
            || self
                .handle
                .as_ref()
                .is_some_and(|h| h.is_closing() || h.is_shutting_down())
            || has_close(res.headers());
        tracker.rescue.filter(|_| !ends)
    }

    /// Makes a response that ends its connection say so, and marks the
    /// handle: when the body was left `unread`, the connection was marked
    /// closing, or the listener's shutdown has begun.
    #[inline]
    fn finish<R>(&self, res: &mut Response<R>, unread: bool) {
        let closing = self
            .handle
            .as_ref()
            .is_some_and(|h| h.is_closing() || h.is_shutting_down());
        if unread || closing {
            ensure_close(res.headers_mut());
            if let Some(handle) = &self.handle {
                handle.mark_closing();
            }
        }
    }
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracked", &self.tracked.is_some())
            .field("rescuing", &self.rescuing.is_some())
            .finish_non_exhaustive()
    }
}
