//! Future types of [`Linger`](crate::Linger).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::middleware::body::{LingerBody, SlotRef};
use crate::middleware::rescue::{Rescue, Rescuing};
use crate::middleware::rules::{ensure_close, has_close, leaves_alone};
use crate::state::body::BodyEnd;
use crate::state::connection::ConnectionHandle;

pin_project! {
    /// Response future of [`Linger`](crate::Linger).
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        #[pin]
        pub(crate) inner: F,
        pub(crate) check: Check,
        // Boxed: rare, and large (it holds a response), so the common
        // future stays small.
        pub(crate) rescuing: RescueSlot<F::Output, B>,
    }
}

/// What the middleware checks when the response is ready.
pub(crate) enum Check {
    /// Nothing: HTTP/2, or a request without a body on a connection the
    /// middleware does not know.
    Nothing,
    /// A request without a body on a known connection: whether the
    /// connection was marked closing, or its listener's shutdown began.
    Connection(ConnectionHandle),
    /// A request whose body is tracked.
    Body(TrackedBody),
}

/// A tracked request body, as the response future sees it.
pub(crate) struct TrackedBody {
    pub(crate) slot: SlotRef,
    pub(crate) ticket: u64,
    pub(crate) rescue: Option<Rescue>,
    /// The request ends the connection whatever the response (HTTP/1.0:
    /// hyper says so on the wire): no rescue.
    pub(crate) request_ends: bool,
}

/// What to do with a response whose request body was tracked.
enum Settled<B> {
    /// Nothing more: it was changed where it lies, if need be.
    Done,
    /// Discard this unread body within this budget before releasing it.
    Rescue(B, std::time::Duration),
}

impl<F, B, R, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<R>, E>>,
    B: Body + Unpin + Send + 'static,
{
    type Output = Result<Response<R>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_response(this.inner, this.check, this.rescuing, cx)
    }
}

/// The rescue of a response future, if one is under way.
pub(crate) type RescueSlot<O, B> = Option<Box<Rescuing<O, B>>>;

/// Polls `inner`, the inner service's response future, and changes its
/// response as `check` says: the poll of [`ResponseFuture`], and of the
/// futures that hold the same parts apart.
#[inline(always)]
pub(crate) fn poll_response<F, B, R, E>(
    inner: Pin<&mut F>,
    check: &Check,
    rescuing: &mut RescueSlot<Result<Response<R>, E>, B>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<R>, E>>
where
    F: Future<Output = Result<Response<R>, E>>,
    B: Body + Unpin + Send + 'static,
{
    if rescuing.is_some() {
        return poll_rescuing(rescuing, check, cx);
    }
    // The response is changed where it lies, never moved, on the path
    // every request takes: the poll's own result is what returns.
    let mut polled = inner.poll(cx);
    if let Poll::Ready(Ok(res)) = &mut polled {
        match check {
            Check::Nothing => {}
            Check::Connection(handle) => {
                if handle.ends_after_response() {
                    close(res, Some(handle));
                }
            }
            Check::Body(tracked) => {
                if let Settled::Rescue(body, budget) = tracked.settle::<B, R>(res) {
                    return start_rescue(polled, body, budget, rescuing, check, cx);
                }
            }
        }
    }
    polled
}

/// Holds the response `polled` while `body` is discarded for at most
/// `budget`.
#[cold]
#[inline(never)]
fn start_rescue<B: Body + Unpin, R, E>(
    polled: Poll<Result<Response<R>, E>>,
    body: B,
    budget: std::time::Duration,
    rescuing: &mut RescueSlot<Result<Response<R>, E>, B>,
    check: &Check,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<R>, E>> {
    let Poll::Ready(out) = polled else {
        return Poll::Pending;
    };
    *rescuing = Some(Box::new(Rescuing::new(out, body, budget)));
    poll_rescuing(rescuing, check, cx)
}

/// Discards the unread body of a rescue, then releases its response.
#[cold]
#[inline(never)]
fn poll_rescuing<B: Body + Unpin, R, E>(
    rescuing: &mut RescueSlot<Result<Response<R>, E>, B>,
    check: &Check,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<R>, E>> {
    let drained = ready!(rescuing
        .as_mut()
        .expect("a rescue in progress")
        .poll_discard(cx));
    let out = rescuing.take().expect("a rescue in progress").response;
    Poll::Ready(rescued(out, check.handle(), drained))
}

impl Check {
    fn handle(&self) -> Option<&ConnectionHandle> {
        match self {
            Check::Nothing => None,
            Check::Connection(handle) => Some(handle),
            Check::Body(tracked) => tracked.handle(),
        }
    }
}

impl TrackedBody {
    /// `body`, tracked under this ticket.
    #[inline]
    pub(crate) fn wrap<B: Send + 'static>(&self, body: B) -> LingerBody<B> {
        LingerBody::tracked(body, self.slot.clone(), self.ticket)
    }

    fn handle(&self) -> Option<&ConnectionHandle> {
        match &self.slot {
            SlotRef::Connection(handle) => Some(handle),
            SlotRef::Request(_) => None,
        }
    }

    /// Learns whether the body was read to its end, and changes `res` if
    /// the connection ends after it; or gives back the unread body to
    /// discard, when that can keep the connection.
    #[inline(never)]
    fn settle<B: Body + Send + 'static, R>(&self, res: &mut Response<R>) -> Settled<B> {
        let handle = self.handle();
        let leftover = match self.slot.get().settle(self.ticket) {
            BodyEnd::Finished => {
                if handle.is_some_and(ConnectionHandle::ends_after_response) {
                    close(res, handle);
                }
                return Settled::Done;
            }
            BodyEnd::Unread(leftover) => leftover,
        };
        if leaves_alone(res) {
            return Settled::Done;
        }
        // Asked only of an unread body: a response that keeps its
        // connection costs no header lookup.
        let ends = self.request_ends
            || handle.is_some_and(ConnectionHandle::ends_after_response)
            || has_close(res.headers());
        let rescue = self.rescue.filter(|_| !ends);
        if let (Some(rescue), Some(leftover)) = (rescue, leftover) {
            if let Ok(body) = leftover.downcast::<B>() {
                if rescue.fits(&*body) {
                    return Settled::Rescue(*body, rescue.budget);
                }
            }
        }
        close(res, handle);
        Settled::Done
    }
}

/// The response held during a rescue, released: it ends its connection
/// unless the body was `drained`.
fn rescued<R, E>(
    mut out: Result<Response<R>, E>,
    handle: Option<&ConnectionHandle>,
    drained: bool,
) -> Result<Response<R>, E> {
    if let Ok(res) = &mut out {
        if !drained || handle.is_some_and(ConnectionHandle::ends_after_response) {
            close(res, handle);
        }
    }
    out
}

/// Makes `res` end its connection: `Connection: close`, and the handle
/// marked so that the close lingers. A `101 Switching Protocols` is never
/// touched.
#[cold]
fn close<R>(res: &mut Response<R>, handle: Option<&ConnectionHandle>) {
    if leaves_alone(res) {
        return;
    }
    ensure_close(res.headers_mut());
    if let Some(handle) = handle {
        handle.mark_closing();
    }
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let check = match self.check {
            Check::Nothing => "nothing",
            Check::Connection(_) => "connection",
            Check::Body(_) => "body",
        };
        f.debug_struct("ResponseFuture")
            .field("check", &check)
            .field("rescuing", &self.rescuing.is_some())
            .finish_non_exhaustive()
    }
}
