//! Keep-alive rescue: discard a small unread request body rather than end
//! the connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use tokio::time::Sleep;

/// How much unread body the middleware discards, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rescue {
    pub(crate) max_bytes: u64,
    pub(crate) budget: Duration,
}

impl Rescue {
    /// 256 KiB (Go's `net/http` figure) within 50 ms.
    pub(crate) const DEFAULT: Self = Self {
        max_bytes: 256 << 10,
        budget: Duration::from_millis(50),
    };

    /// Whether `body`'s known remainder is within the bound.
    pub(crate) fn fits<B: Body>(self, body: &B) -> bool {
        body.size_hint()
            .upper()
            .is_some_and(|remaining| remaining <= self.max_bytes)
    }
}

/// A response held back while a small unread request body is discarded.
pub(crate) struct Rescuing<O, B> {
    pub(crate) response: O,
    body: B,
    budget: Pin<Box<Sleep>>,
}

impl<O, B> Rescuing<O, B> {
    /// Holds `response` while `body` is discarded, for at most `budget`.
    pub(crate) fn new(response: O, body: B, budget: Duration) -> Self {
        Self {
            response,
            body,
            budget: Box::pin(tokio::time::sleep(budget)),
        }
    }
}

impl<O, B: Body + Unpin> Rescuing<O, B> {
    /// Discards the body: `Ready(true)` at its end, `Ready(false)` on an
    /// error or when the budget runs out.
    pub(crate) fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => return Poll::Ready(true),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                Poll::Pending => {
                    if self.budget.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(false);
                }
            }
        }
    }
}
