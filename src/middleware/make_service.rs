//! [`Linger`] as axum's make-service: around a whole app served by
//! `axum::serve`, it takes each connection's handle from the listener's IO
//! and wraps the app once per connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::middleware::body::AxumBodies;
use crate::middleware::future::{Check, ResponseFuture};
use crate::middleware::service::Linger;
use crate::state::connection::AsConnectionHandle;

pin_project! {
    /// Future of [`Linger`](crate::Linger) used as axum's make-service: the
    /// inner make-service's answer for one connection, wrapped in the
    /// middleware with that connection's handle.
    pub struct MakeServiceFuture<F> {
        #[pin]
        inner: F,
        template: Option<Linger<(), AxumBodies>>,
    }
}

impl<F> MakeServiceFuture<F> {
    pub(crate) fn new(inner: F, template: Linger<(), AxumBodies>) -> Self {
        Self {
            inner,
            template: Some(template),
        }
    }
}

impl<F, S, E> Future for MakeServiceFuture<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Result<Linger<S, AxumBodies>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let svc = ready!(this.inner.poll(cx))?;
        let template = this.template.take().expect("polled after completion");
        Poll::Ready(Ok(template.around(svc)))
    }
}

impl<F> fmt::Debug for MakeServiceFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeServiceFuture")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl<'a, M, W, L> Service<axum::serve::IncomingStream<'a, L>> for Linger<M, W>
where
    M: Service<axum::serve::IncomingStream<'a, L>>,
    L: axum::serve::Listener,
    L::Io: AsConnectionHandle,
{
    type Response = Linger<M::Response, AxumBodies>;
    type Error = M::Error;
    type Future = MakeServiceFuture<M::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_ready(cx)
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        let template = self.for_connection(stream.io().connection_handle());
        MakeServiceFuture::new(self.get_mut().call(stream), template)
    }
}

/// The middleware around one connection of a whole axum app: the app gets
/// axum's `Body`, the request unmoved, its body swapped where it lies when
/// it is tracked.
impl<S, ResBody> Service<Request<Body>> for Linger<S, AxumBodies>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Body>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let check = self.check(&req);
        if let Check::Body(tracked) = &check {
            let body = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(tracked.wrap(body));
        }
        ResponseFuture {
            check,
            rescuing: None,
            inner: self.get_mut().call(req),
        }
    }
}
