//! [`Linger`] as hyper's own service, over hyper's `Incoming` body: what
//! [`linger::serve`](crate::serve()) and
//! [`LingerListener::serve_with`](crate::LingerListener::serve_with) hand
//! hyper for each connection, and what a hand-written hyper loop can hand it
//! without hyper-util's `TowerToHyperService`.
//!
//! hyper calls a service through `&self`, so each request gets a clone of
//! the middleware and its inner service (as `TowerToHyperService` clones
//! its service), and the work waits for the future's first poll. The
//! request body is wrapped once: in a [`LingerBody`], or, for an axum app,
//! in axum's `Body` around hyper's body (around a [`LingerBody`] when it is
//! tracked), the one box axum makes anyway.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::middleware::body::{LingerBodies, LingerBody};
use crate::middleware::future::{poll_response, Check, RescueSlot};
use crate::middleware::service::Linger;

/// How [`Linger`] as hyper's service hands hyper's body to its inner
/// service.
pub trait IncomingBodies {
    /// The request body the inner service receives.
    type Body;

    /// The inner service's body for a tracked body.
    fn tracked(body: LingerBody<Incoming>) -> Self::Body;

    /// The inner service's body for a body the middleware does not track.
    fn untracked(body: Incoming) -> Self::Body;
}

impl IncomingBodies for LingerBodies {
    type Body = LingerBody<Incoming>;

    #[inline]
    fn tracked(body: LingerBody<Incoming>) -> Self::Body {
        body
    }

    #[inline]
    fn untracked(body: Incoming) -> Self::Body {
        LingerBody::untracked(body)
    }
}

#[cfg(feature = "axum")]
impl IncomingBodies for crate::middleware::body::AxumBodies {
    type Body = axum::body::Body;

    #[inline(never)]
    fn tracked(body: LingerBody<Incoming>) -> Self::Body {
        axum::body::Body::new(body)
    }

    #[inline]
    fn untracked(body: Incoming) -> Self::Body {
        axum::body::Body::new(body)
    }
}

impl<S, W, ResBody> hyper::service::Service<Request<Incoming>> for Linger<S, W>
where
    W: IncomingBodies,
    S: Service<Request<W::Body>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HyperResponseFuture<S, W>;

    /// A clone of the middleware and the request: the work waits for the
    /// first poll, so that hyper builds this small future where it keeps it.
    #[inline]
    fn call(&self, req: Request<Incoming>) -> Self::Future {
        HyperResponseFuture {
            state: State::Ready {
                linger: self.clone(),
                req: Some(req),
            },
            check: Check::Nothing,
            rescuing: None,
        }
    }
}

pin_project! {
    /// Response future of [`Linger`] as hyper's service: the inner service
    /// called with the request once it is ready, its response changed as
    /// the middleware's [`ResponseFuture`](crate::future::ResponseFuture)
    /// changes it.
    pub struct HyperResponseFuture<S, W>
    where
        S: Service<Request<W::Body>>,
        W: IncomingBodies,
    {
        #[pin]
        state: State<S, W>,
        // Beside the state, not in it, so that the inner future is moved
        // into its place once.
        check: Check,
        rescuing: RescueSlot<Result<S::Response, S::Error>, Incoming>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, W>
    where
        S: Service<Request<W::Body>>,
        W: IncomingBodies,
    {
        /// Waiting for the inner service to be ready.
        Ready { linger: Linger<S, W>, req: Option<Request<Incoming>> },
        /// Called: its response future.
        Called { #[pin] inner: S::Future },
    }
}

impl<S, W, ResBody> Future for HyperResponseFuture<S, W>
where
    W: IncomingBodies,
    S: Service<Request<W::Body>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Ready { linger, req } => {
                    ready!(linger.get_mut().poll_ready(cx))?;
                    let req = req.take().expect("called once");
                    let check = linger.check(&req);
                    let (parts, body) = req.into_parts();
                    let body = match &check {
                        Check::Body(tracked) => W::tracked(tracked.wrap(body)),
                        Check::Nothing | Check::Connection(_) => W::untracked(body),
                    };
                    *this.check = check;
                    let inner = linger.get_mut().call(Request::from_parts(parts, body));
                    state.set(State::Called { inner });
                }
                StateProj::Called { inner } => {
                    return poll_response(inner, this.check, this.rescuing, cx)
                }
            }
        }
    }
}

impl<S, W> std::fmt::Debug for HyperResponseFuture<S, W>
where
    S: Service<Request<W::Body>>,
    W: IncomingBodies,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Ready { .. } => "ready",
            State::Called { .. } => "called",
        };
        f.debug_tuple("HyperResponseFuture").field(&state).finish()
    }
}
