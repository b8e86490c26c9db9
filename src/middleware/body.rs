//! [`LingerBody`]: a request body that records whether it was read to its
//! end; [`InnerBody`]: how the middleware hands it to the inner service.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};

use crate::middleware::rescue::Rescue;

/// How the [`Linger`](crate::Linger) middleware hands a request body of type
/// `B` to its inner service: the body type the inner service receives, made
/// from a tracked [`LingerBody`] or from a body the middleware does not
/// track (an empty one, HTTP/2).
pub trait InnerBody<B> {
    /// The request body type the inner service receives.
    type Body;

    /// The inner service's body for a tracked body.
    fn tracked(body: LingerBody<B>) -> Self::Body;

    /// The inner service's body for a body the middleware does not track.
    fn untracked(body: B) -> Self::Body;

    /// The inner service's request for a request whose body the middleware
    /// does not track: [`untracked`](Self::untracked) on its body.
    #[inline]
    fn untracked_request(req: http::Request<B>) -> http::Request<Self::Body> {
        req.map(Self::untracked)
    }
}

/// The default [`InnerBody`]: the inner service receives
/// `Request<LingerBody<B>>`, whatever `B` is (hyper's `Incoming`, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct LingerBodies;

impl<B> InnerBody<B> for LingerBodies {
    type Body = LingerBody<B>;

    fn tracked(body: LingerBody<B>) -> Self::Body {
        body
    }

    fn untracked(body: B) -> Self::Body {
        LingerBody::untracked(body)
    }
}

/// The [`InnerBody`] of the middleware around a whole axum app: the inner
/// service receives axum's own `Body`, untouched when the middleware does
/// not track it (an empty body: no allocation), boxed around a
/// [`LingerBody`] when it does (as axum would box it anyway).
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AxumBodies;

#[cfg(feature = "axum")]
impl InnerBody<axum::body::Body> for AxumBodies {
    type Body = axum::body::Body;

    fn tracked(body: LingerBody<axum::body::Body>) -> Self::Body {
        axum::body::Body::new(body)
    }

    fn untracked(body: axum::body::Body) -> Self::Body {
        body
    }

    /// The request itself, not taken apart and put back together.
    #[inline]
    fn untracked_request(req: http::Request<axum::body::Body>) -> http::Request<Self::Body> {
        req
    }
}

/// The request body the [`Linger`](crate::Linger) middleware hands to its
/// inner service.
///
/// Frames, size hints and errors pass through untouched. A body that is
/// already empty is not tracked and costs nothing; otherwise the middleware
/// learns, when the response is ready, whether the handler read the body to
/// its end. If the handler dropped it unread, the middleware gets it back,
/// to discard a small remainder so the connection can be reused.
pub struct LingerBody<B> {
    /// `Some` until dropped.
    inner: Option<B>,
    tracker: Option<Arc<Tracker<B>>>,
}

/// What the middleware learns of a request body, and what it needs to
/// know if the body is left unread.
pub(crate) struct Tracker<B> {
    finished: AtomicBool,
    /// The body, handed back when the handler drops it unread.
    leftover: Mutex<Option<B>>,
    /// How much of it may be discarded to keep the connection.
    pub(crate) rescue: Option<Rescue>,
    /// The request ends the connection whatever the response (hyper says
    /// so on the wire): no rescue.
    pub(crate) request_ends: bool,
}

impl<B> Tracker<B> {
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The unread body, if the handler dropped it.
    pub(crate) fn take_leftover(&self) -> Option<B> {
        self.leftover
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl<B> LingerBody<B> {
    /// Wraps `inner`, a body with data left to read, and its tracker.
    pub(crate) fn track(
        inner: B,
        rescue: Option<Rescue>,
        request_ends: bool,
    ) -> (Self, Arc<Tracker<B>>) {
        let tracker = Arc::new(Tracker {
            finished: AtomicBool::new(false),
            leftover: Mutex::new(None),
            rescue,
            request_ends,
        });
        let body = Self {
            inner: Some(inner),
            tracker: Some(tracker.clone()),
        };
        (body, tracker)
    }
}

impl<B> LingerBody<B> {
    /// Wraps `inner` without tracking it.
    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner: Some(inner),
            tracker: None,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        self.inner
            .as_ref()
            .expect("LingerBody holds its body until dropped")
    }

    /// Unwraps the inner body; reading it is no longer tracked, and the
    /// connection ends after the response unless it is read to its end.
    pub fn into_inner(mut self) -> B {
        self.tracker = None;
        self.inner
            .take()
            .expect("LingerBody holds its body until dropped")
    }
}

impl<B: Body + Unpin> Body for LingerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let inner = this
            .inner
            .as_mut()
            .expect("LingerBody holds its body until dropped");
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => inner.is_end_stream(),
            Some(Err(_)) => false,
        };
        if ended {
            if let Some(tracker) = this.tracker.take() {
                tracker.finished.store(true, Ordering::Release);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.get_ref().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.get_ref().size_hint()
    }
}

impl<B> Drop for LingerBody<B> {
    fn drop(&mut self) {
        // Dropped unread: hand the body back to the middleware.
        if let Some(tracker) = self.tracker.take() {
            if !tracker.is_finished() {
                *tracker
                    .leftover
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = self.inner.take();
            }
        }
    }
}

impl<B> fmt::Debug for LingerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerBody")
            .field("tracked", &self.tracker.is_some())
            .finish_non_exhaustive()
    }
}
