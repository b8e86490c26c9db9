//! [`LingerBody`]: a request body that records whether it was read to its end.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body the [`Linger`](crate::Linger) middleware hands to
    /// its inner service.
    ///
    /// Frames, size hints and errors pass through untouched. A body that is
    /// already empty is not tracked and costs nothing; otherwise the
    /// middleware learns, when the response is ready, whether the handler
    /// read the body to its end, and ends the connection if it did not.
    pub struct LingerBody<B> {
        #[pin]
        inner: B,
        finished: Option<Arc<AtomicBool>>,
    }
}

impl<B: Body> LingerBody<B> {
    /// Wraps `inner`; returns the flag that turns true at its end, if it has
    /// any data left to read.
    pub(crate) fn track(inner: B) -> (Self, Option<Arc<AtomicBool>>) {
        let finished = (!inner.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let tracker = finished.clone();
        (Self { inner, finished }, tracker)
    }
}

impl<B> LingerBody<B> {
    /// Wraps `inner` without tracking it.
    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner,
            finished: None,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the inner body; reading it is no longer tracked.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for LingerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => false,
        };
        if ended {
            if let Some(finished) = this.finished.take() {
                finished.store(true, Ordering::Release);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for LingerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerBody")
            .field("tracked", &self.finished.is_some())
            .finish_non_exhaustive()
    }
}
