//! The lingering close as a state machine: flush, half-close, drain; and
//! the hand-off of a close left unfinished to a task of its own.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::discard::InputHead;
use super::drain::{later, Drain, ShutdownCut};
use super::LingerIo;
use crate::state::config::{LingerConfig, LingerMode};
use crate::state::connection::ConnectionHandle;
use crate::state::group::DetachedLinger;

/// Where a connection's close stands.
pub(super) enum Phase {
    Open,
    /// Flushing and half-closing; the bound, made only if that blocks.
    Closing(WhenToLinger, Option<Pin<Box<HalfCloseBound>>>),
    Draining(Pin<Box<Drain>>),
    Closed,
}

/// Whether a close lingers, as far as it can be told before the half-close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenToLinger {
    No,
    /// Only if input is waiting once the connection is half-closed.
    IfInputWaits,
    Yes,
}

impl<T> LingerIo<T> {
    /// Whether a close left unfinished here must be finished elsewhere.
    fn close_is_unfinished(&self) -> bool {
        match self.phase {
            Phase::Open => self.should_linger() == WhenToLinger::Yes,
            Phase::Closing(..) | Phase::Draining(_) => true,
            Phase::Closed => false,
        }
    }

    /// Whether closing now should linger, by the mode and what was seen.
    fn should_linger(&self) -> WhenToLinger {
        if self.eof || self.handle.is_linger_disabled() {
            return WhenToLinger::No;
        }
        match self.handle.config().mode() {
            LingerMode::Off => WhenToLinger::No,
            LingerMode::On if self.read_any || self.handle.is_closing() => WhenToLinger::Yes,
            LingerMode::On => WhenToLinger::IfInputWaits,
            LingerMode::Always => WhenToLinger::Yes,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> LingerIo<T> {
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.phase {
                Phase::Open => self.phase = Phase::Closing(self.should_linger(), None),
                Phase::Closing(decision, timer) => {
                    let decision = *decision;
                    let io = self.io.as_mut().expect(HANDED_OFF);
                    let half_closed = match Pin::new(&mut *io).poll_flush(cx) {
                        Poll::Ready(Ok(())) => Pin::new(&mut *io).poll_shutdown(cx),
                        other => other,
                    };
                    let half_closed = match half_closed {
                        Poll::Ready(result) => result,
                        Poll::Pending => {
                            // A TLS close_notify stuck behind a full window,
                            // say: bounded like the drain.
                            let bound = timer
                                .get_or_insert_with(|| Box::pin(HalfCloseBound::new(&self.handle)));
                            ready!(bound.as_mut().poll_expired(self.handle.config(), cx));
                            Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "the half-close did not complete within the deadline",
                            ))
                        }
                    };
                    if let Err(e) = half_closed {
                        self.phase = Phase::Closed;
                        return Poll::Ready(Err(e));
                    }
                    let mut head = InputHead::default();
                    let waiting = match decision {
                        WhenToLinger::No => None,
                        WhenToLinger::Yes => Some(0),
                        // One look: bytes the server never read are waiting.
                        WhenToLinger::IfInputWaits => match (self.ops.discard)(io, cx, &mut head) {
                            Poll::Ready(Ok(n)) if n > 0 => Some(n as u64),
                            _ => None,
                        },
                    };
                    let Some(discarded) = waiting else {
                        self.phase = Phase::Closed;
                        return Poll::Ready(Ok(()));
                    };
                    let Some(drain) = Drain::new(&self.handle, discarded, head) else {
                        // Past the hard cap: a plain close.
                        self.phase = Phase::Closed;
                        return Poll::Ready(Ok(()));
                    };
                    self.phase = Phase::Draining(Box::pin(drain));
                    // Once the shutdown has begun, `detach` says stay: the
                    // server's graceful shutdown waits for this task.
                    let detached = if self.handle.config().detach() {
                        self.handle.listener().detach()
                    } else {
                        None
                    };
                    if let Some(detached) = detached {
                        if (self.hand_off)(self, detached) {
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                Phase::Draining(drain) => {
                    let io = self.io.as_mut().expect(HANDED_OFF);
                    ready!(drain.as_mut().poll_drain(io, self.ops, cx));
                    self.phase = Phase::Closed;
                    return Poll::Ready(Ok(()));
                }
                Phase::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

pin_project! {
    /// Bounds a half-close that blocks: by the deadline, cut to the short
    /// deadline once the listener's shutdown begins, as a drain is.
    pub(super) struct HalfCloseBound {
        #[pin]
        timer: Sleep,
        #[pin]
        cut: ShutdownCut,
    }
}

impl HalfCloseBound {
    fn new(handle: &ConnectionHandle) -> Self {
        Self {
            timer: tokio::time::sleep_until(later(Instant::now(), handle.config().deadline())),
            cut: ShutdownCut::new(handle),
        }
    }

    fn poll_expired(self: Pin<&mut Self>, config: LingerConfig, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if let Some(cut) = this.cut.poll_cut(config.short_deadline(), cx) {
            if cut < this.timer.deadline() {
                this.timer.as_mut().reset(cut);
            }
        }
        this.timer.poll(cx)
    }
}

const HANDED_OFF: &str = "the IO was handed to a detached linger";

/// Moves the IO and the rest of its close onto a task of its own, counted
/// as `detached` until it ends: for a [`LingerIo`] dropped before its close
/// finished, and for detached lingers. Does nothing, and says so, outside a
/// tokio runtime.
pub(super) fn hand_off<T>(this: &mut LingerIo<T>, detached: DetachedLinger) -> bool
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let Some(io) = this.io.take() else {
        return false;
    };
    let mut rest = LingerIo {
        io: Some(io),
        handle: this.handle.clone(),
        read_any: this.read_any,
        eof: this.eof,
        phase: std::mem::replace(&mut this.phase, Phase::Closed),
        // Dropped before it finishes only when the runtime shuts down.
        hand_off: |_, _| false,
        ops: this.ops,
    };
    runtime.spawn(async move {
        let _ = poll_fn(|cx| rest.poll_close(cx)).await;
        // The socket closes before the linger stops being counted.
        drop(rest);
        drop(detached);
    });
    true
}

impl<T> Drop for LingerIo<T> {
    fn drop(&mut self) {
        self.handle.mark_ended();
        crate::state::current::leave(&self.handle);
        if self.io.is_some() && self.close_is_unfinished() {
            let detached = self.handle.listener().detach_dropped();
            (self.hand_off)(self, detached);
        }
    }
}
