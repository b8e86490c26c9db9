//! The bounded read-and-discard after the half-close.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::discard::{InputHead, Ops, DRAIN_READS_PER_POLL};
use crate::state::connection::ConnectionHandle;
use crate::state::stats::{log_outcome, LingerOutcome};

pin_project! {
    /// The bounded read-and-discard after the half-close.
    pub(super) struct Drain {
        #[pin]
        timer: Sleep,
        #[pin]
        cut: ShutdownCut,
        ack: Option<AckCheck>,
        shortened: bool,
        deadline: Instant,
        idle_until: Instant,
        count: Counted,
    }
}

pin_project! {
    /// The listener's shutdown, as a close in progress sees it: once it has
    /// begun, the short deadline from the moment the close notices.
    pub(super) struct ShutdownCut {
        #[pin]
        stop: WaitForCancellationFutureOwned,
        seen: bool,
    }
}

impl ShutdownCut {
    pub(super) fn new(handle: &ConnectionHandle) -> Self {
        Self {
            stop: handle.listener().shutdown.clone().cancelled_owned(),
            seen: false,
        }
    }

    /// `short` from now, the first time it is polled after the shutdown
    /// began (registering for the wake-up until then); `None` otherwise.
    pub(super) fn poll_cut(
        self: Pin<&mut Self>,
        short: Duration,
        cx: &mut Context<'_>,
    ) -> Option<Instant> {
        let this = self.project();
        if *this.seen || this.stop.poll(cx).is_pending() {
            return None;
        }
        *this.seen = true;
        Some(later(Instant::now(), short))
    }
}

impl Drain {
    /// Starts a linger: counts it in, and cuts it to the short deadline when
    /// too many connections linger or the server is shutting down; `None`
    /// past the hard cap, where the close is a plain one.
    pub(super) fn new(handle: &ConnectionHandle, discarded: u64, head: InputHead) -> Option<Self> {
        let shared = handle.listener();
        let config = shared.config;
        let lingering_before = shared.counters.start(config.max_lingering_sockets())?;
        let count = Counted {
            handle: handle.clone(),
            started: Instant::now(),
            bytes: discarded,
            head,
            done: false,
        };
        let started = count.started;
        let short = shared.is_shutting_down() || lingering_before >= config.max_lingering();
        let full = later(started, config.deadline());
        let cut = later(started, config.short_deadline());
        let (deadline, shortened) = if short && cut < full {
            (cut, true)
        } else {
            (full, false)
        };
        let idle_until = later(started, config.idle_timeout());
        Some(Self {
            timer: tokio::time::sleep_until(deadline.min(idle_until)),
            cut: ShutdownCut::new(handle),
            ack: config
                .end_when_acked()
                .then(|| AckCheck::new(started, config.ack_quiet())),
            shortened,
            deadline,
            idle_until,
            count,
        })
    }

    /// Reads and discards until EOF, an error, a bound or `Pending`.
    pub(super) fn poll_drain<T>(
        self: Pin<&mut Self>,
        io: &mut T,
        ops: Ops<T>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut this = self.project();
        let config = this.count.handle.config();
        if this.count.bytes >= config.max_bytes() {
            // The first look at waiting input already took the cap.
            return this.count.end(LingerOutcome::ByteCap);
        }
        loop {
            let mut got_input = false;
            let mut blocked = false;
            for _ in 0..DRAIN_READS_PER_POLL {
                match (ops.discard)(io, cx, &mut this.count.head) {
                    Poll::Ready(Ok(0)) => return this.count.end(LingerOutcome::PeerClosed),
                    Poll::Ready(Ok(n)) => {
                        this.count.bytes += n as u64;
                        got_input = true;
                        if this.count.bytes >= config.max_bytes() {
                            return this.count.end(LingerOutcome::ByteCap);
                        }
                    }
                    Poll::Ready(Err(_)) => return this.count.end(LingerOutcome::Error),
                    Poll::Pending => {
                        blocked = true;
                        break;
                    }
                }
            }
            if let Some(cut) = this.cut.as_mut().poll_cut(config.short_deadline(), cx) {
                if cut < *this.deadline {
                    *this.deadline = cut;
                    *this.shortened = true;
                }
            }
            if got_input {
                let now = Instant::now();
                *this.idle_until = later(now, config.idle_timeout());
                if let Some(ack) = this.ack.as_mut() {
                    ack.input_at(now, config.ack_quiet());
                }
            }
            if let Some(ack) = this.ack.as_mut() {
                if blocked && ack.is_due() {
                    match (ops.unacked)(io) {
                        Some(0) => return this.count.end(LingerOutcome::Acked),
                        Some(_) => ack.back_off(config.idle_timeout()),
                        // Not known for this IO: the normal bounds apply.
                        None => *this.ack = None,
                    }
                }
            }
            let bounds = (*this.deadline).min(*this.idle_until);
            let wake_at = this
                .ack
                .as_ref()
                .map_or(bounds, |ack| ack.check_at.min(bounds));
            if this.timer.deadline() != wake_at {
                this.timer.as_mut().reset(wake_at);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                if !blocked {
                    // Out of reads for this poll, not out of input: come back soon.
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            if wake_at >= bounds {
                let outcome = match (wake_at >= *this.deadline, *this.shortened) {
                    (true, true) => LingerOutcome::Shortened,
                    (true, false) => LingerOutcome::Deadline,
                    (false, _) => LingerOutcome::IdleTimeout,
                };
                return this.count.end(outcome);
            }
            // Time for an acknowledgement check: read, then check, but not
            // in this poll if input is still flowing (the read budget).
            if !blocked {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

/// When to ask the kernel whether the peer has acknowledged everything:
/// once input has been quiet for the configured time, then less and less
/// often (the interval doubles), so a linger makes a handful of checks.
struct AckCheck {
    check_at: Instant,
    interval: Duration,
}

impl AckCheck {
    fn new(started: Instant, quiet: Duration) -> Self {
        Self {
            check_at: later(started, quiet),
            interval: quiet,
        }
    }

    fn is_due(&self) -> bool {
        Instant::now() >= self.check_at
    }

    /// Input arrived: wait for it to be quiet again.
    fn input_at(&mut self, now: Instant, quiet: Duration) {
        self.check_at = self.check_at.max(later(now, quiet));
    }

    /// Not acknowledged yet: check again later, at most `cap` apart.
    fn back_off(&mut self, cap: Duration) {
        self.interval = (self.interval * 2).min(cap).max(Duration::from_millis(1));
        self.check_at = later(Instant::now(), self.interval);
    }
}

/// `at + wait`, saturating some thirty years ahead (as tokio's `timeout`
/// does) so that no bound, however large, overflows.
pub(super) fn later(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365 * 30))
}

/// A linger counted in the listener's statistics until it ends, or until it
/// is dropped unfinished (its task cancelled as the runtime shuts down:
/// counted as an error, with the bytes it had discarded).
struct Counted {
    handle: ConnectionHandle,
    started: Instant,
    bytes: u64,
    /// The first of those bytes.
    head: InputHead,
    done: bool,
}

impl Counted {
    fn end(&mut self, outcome: LingerOutcome) -> Poll<()> {
        if !self.done {
            self.done = true;
            let shared = self.handle.listener();
            // A plain close would have been reset by this input, but for a
            // TLS close_notify, whose reset comes after the client read all.
            let prevented = self.bytes > 0 && !self.head.is_only_a_tls_alert(self.bytes);
            if shared.counters.end(outcome, self.bytes, prevented) {
                shared.idle.notify_waiters();
            }
            log_outcome(outcome, self.bytes, prevented, self.started.elapsed());
        }
        Poll::Ready(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.end(LingerOutcome::Error);
    }
}
