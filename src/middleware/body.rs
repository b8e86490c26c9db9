//! [`LingerBody`]: a request body that records whether it was read to its
//! end, in the slot of its connection; which body type the middleware
//! hands its inner service (`LingerBodies`, `AxumBodies`).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};

use crate::state::body::{BodySlot, Leftover};
use crate::state::connection::ConnectionHandle;

/// The request bodies of the [`Linger`](crate::Linger) middleware by
/// default: the inner service receives `Request<LingerBody<B>>`, whatever
/// `B` is (hyper's `Incoming`, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct LingerBodies;

/// The request bodies of the middleware around a whole axum app: the inner
/// service receives axum's own `Body`, untouched when the middleware does
/// not track it (an empty body: no allocation), boxed around a
/// [`LingerBody`] when it does (as axum would box it anyway).
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AxumBodies;

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
    tracking: Option<Tracking<B>>,
}

/// Where a tracked body reports: the slot and its ticket there.
struct Tracking<B> {
    slot: SlotRef,
    ticket: u64,
    /// Erases the body's type to hand it back; made where `B: Send +
    /// 'static` is known.
    erase: fn(B) -> Leftover,
}

/// The slot a tracked body reports to: its connection's, or one of its
/// own where the middleware found no connection.
#[derive(Clone)]
pub(crate) enum SlotRef {
    Connection(ConnectionHandle),
    Request(Arc<BodySlot>),
}

impl SlotRef {
    #[inline]
    pub(crate) fn get(&self) -> &BodySlot {
        match self {
            Self::Connection(handle) => handle.body(),
            Self::Request(slot) => slot,
        }
    }
}

impl<B: Send + 'static> LingerBody<B> {
    /// Wraps `inner`, a body with data left to read, tracked in `slot`
    /// under `ticket`.
    #[inline]
    pub(crate) fn tracked(inner: B, slot: SlotRef, ticket: u64) -> Self {
        Self {
            inner: Some(inner),
            tracking: Some(Tracking {
                slot,
                ticket,
                erase: |body| Box::new(body),
            }),
        }
    }
}

impl<B> LingerBody<B> {
    /// Wraps `inner` without tracking it.
    #[inline]
    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner: Some(inner),
            tracking: None,
        }
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        self.inner
            .as_ref()
            .expect("LingerBody holds its body until dropped")
    }

    /// Unwraps the inner body. Reading it is no longer tracked: a tracked
    /// body unwrapped counts as unread, and its response ends the
    /// connection.
    pub fn into_inner(mut self) -> B {
        self.tracking = None;
        self.inner
            .take()
            .expect("LingerBody holds its body until dropped")
    }
}

impl<B: Body + Unpin> Body for LingerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
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
        if this.tracking.is_some() {
            let ended = match &frame {
                None => true,
                Some(Ok(_)) => inner.is_end_stream(),
                Some(Err(_)) => false,
            };
            if ended {
                if let Some(tracking) = this.tracking.take() {
                    tracking.slot.get().finish(tracking.ticket);
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.get_ref().is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.get_ref().size_hint()
    }
}

impl<B> Drop for LingerBody<B> {
    fn drop(&mut self) {
        // Dropped unread: hand the body back to the middleware.
        if let Some(tracking) = self.tracking.take() {
            if let Some(body) = self.inner.take() {
                tracking
                    .slot
                    .get()
                    .hand_back(tracking.ticket, (tracking.erase)(body));
            }
        }
    }
}

impl<B> fmt::Debug for Tracking<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracking")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl<B> fmt::Debug for LingerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LingerBody")
            .field("tracked", &self.tracking.is_some())
            .finish_non_exhaustive()
    }
}
