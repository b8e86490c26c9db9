//! Future types of [`Linger`](crate::Linger).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, CONNECTION};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use crate::handle::Handle;
use crate::service::has_close;

pin_project! {
    /// Response future of [`Linger`](crate::Linger).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Passthrough { #[pin] inner: F },
        Tracked {
            #[pin]
            inner: F,
            ends: bool,
            body: Option<Arc<AtomicBool>>,
            handle: Option<Handle>,
        },
        Refused,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn passthrough(inner: F) -> Self {
        Self {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(crate) fn tracked(
        inner: F,
        ends: bool,
        body: Option<Arc<AtomicBool>>,
        handle: Option<Handle>,
    ) -> Self {
        Self {
            kind: Kind::Tracked {
                inner,
                ends,
                body,
                handle,
            },
        }
    }

    pub(crate) fn refused() -> Self {
        Self {
            kind: Kind::Refused,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { inner } => inner.poll(cx),
            KindProj::Tracked {
                inner,
                ends,
                body,
                handle,
            } => {
                let mut res = ready!(inner.poll(cx))?;
                if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return Poll::Ready(Ok(res));
                }
                let unread = body.as_ref().is_some_and(|b| !b.load(Ordering::Acquire));
                let closes_here = has_close(res.headers());
                if *ends || unread || closes_here {
                    if !closes_here {
                        res.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    if let Some(handle) = handle {
                        handle.mark_closing();
                    }
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Refused => {
                let mut res = Response::new(B::default());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                Poll::Ready(Ok(res))
            }
        }
    }
}
