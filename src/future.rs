//! Future types of [`Linger`](crate::Linger).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, CONNECTION};
use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::body::Tracker;
use crate::handle::Handle;
use crate::layer::Rescue;
use crate::service::has_close;

pin_project! {
    /// Response future of [`Linger`](crate::Linger).
    pub struct ResponseFuture<F, B>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
        decision: Option<Decision<B>>,
        // Boxed: rare, and large (it holds a response), so the common
        // future stays small.
        rescuing: Option<Box<Rescuing<F::Output, B>>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] inner: F },
        Refused,
    }
}

/// What the middleware knows of a tracked HTTP/1 request.
pub(crate) struct Decision<B> {
    /// The request or the server ends the connection whatever the response.
    pub(crate) ends: bool,
    pub(crate) tracker: Option<Arc<Tracker<B>>>,
    pub(crate) handle: Option<Handle>,
    pub(crate) rescue: Option<Rescue>,
}

/// A response held back while a small unread request body is discarded.
struct Rescuing<O, B> {
    response: O,
    body: B,
    budget: Pin<Box<Sleep>>,
}

impl<F: Future, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: F, decision: Option<Decision<B>>) -> Self {
        Self {
            kind: Kind::Inner { inner },
            decision,
            rescuing: None,
        }
    }

    pub(crate) fn refused() -> Self {
        Self {
            kind: Kind::Refused,
            decision: None,
            rescuing: None,
        }
    }
}

impl<F, B, R, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<R>, E>>,
    R: Default,
    B: Body + Unpin,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rescuing) = this.rescuing.as_mut() {
            let drained = ready!(rescuing.poll_discard(cx));
            let Rescuing { response, .. } = *this.rescuing.take().expect("rescuing");
            let decision = this.decision.take().expect("decision of a rescue");
            return Poll::Ready(response.map(|res| finish(res, &decision, !drained)));
        }
        let res = match this.kind.project() {
            KindProj::Refused => return Poll::Ready(Ok(refusal())),
            KindProj::Inner { inner } => ready!(inner.poll(cx))?,
        };
        let Some(decision) = this.decision.take() else {
            return Poll::Ready(Ok(res));
        };
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Poll::Ready(Ok(res));
        }
        let unread = decision.tracker.as_ref().is_some_and(|t| !t.is_finished());
        if unread && !decision.ends && !has_close(res.headers()) {
            if let Some((body, budget)) = decision.rescuable_body() {
                let mut rescuing = Rescuing {
                    response: Ok(res),
                    body,
                    budget: Box::pin(tokio::time::sleep(budget)),
                };
                if let Poll::Ready(drained) = rescuing.poll_discard(cx) {
                    let response = rescuing.response;
                    return Poll::Ready(response.map(|res| finish(res, &decision, !drained)));
                }
                *this.rescuing = Some(Box::new(rescuing));
                *this.decision = Some(decision);
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(finish(res, &decision, unread)))
    }
}

impl<B: Body> Decision<B> {
    /// The handler's unread request body, if it dropped it with a known
    /// remainder within the rescue's bound, and the time to discard it in.
    fn rescuable_body(&self) -> Option<(B, std::time::Duration)> {
        let rescue = self.rescue?;
        let body = self.tracker.as_ref()?.take_leftover()?;
        let remaining = body.size_hint().upper()?;
        (remaining <= rescue.max_bytes).then_some((body, rescue.budget))
    }
}

impl<O, B: Body + Unpin> Rescuing<O, B> {
    /// Discards the body: `Ready(true)` at its end, `Ready(false)` on an
    /// error or when the budget runs out.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => return Poll::Ready(true),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                Poll::Pending => {
                    ready!(self.budget.as_mut().poll(cx));
                    return Poll::Ready(false);
                }
            }
        }
    }
}

/// Makes a response that ends its connection say so, and marks the handle.
fn finish<R, B>(mut res: Response<R>, decision: &Decision<B>, unread: bool) -> Response<R> {
    if !decision.ends && !unread {
        // Only the response itself may end the connection, and hyper sees
        // its header: what is left is telling the handle, if there is one.
        if let Some(handle) = &decision.handle {
            if has_close(res.headers()) {
                handle.mark_closing();
            }
        }
        return res;
    }
    if !has_close(res.headers()) {
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(handle) = &decision.handle {
        handle.mark_closing();
    }
    res
}

/// The answer to a request on a connection already marked closing.
fn refusal<R: Default>() -> Response<R> {
    let mut res = Response::new(R::default());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

impl<F: Future, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracked", &self.decision.is_some())
            .field("rescuing", &self.rescuing.is_some())
            .finish_non_exhaustive()
    }
}
