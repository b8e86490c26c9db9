//! The mock IO under `LingerIo`: it answers each call as the script says,
//! arranges the wake-ups of its `Pending`s, records a trace of every call,
//! and flags misuse (a read after EOF, a write after the half-close, ...) as
//! violations for the properties to report.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::generator::{OpStep, ReadStep, Script, WakeUp};
use crate::ms;

/// Trace lines kept per case.
const TRACE_CAP: usize = 4_000;

/// Bytes for the mock's reads and the driver's writes.
pub(crate) static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The mock's state, shared by the mock, the driver and the properties.
pub(crate) type State = Arc<Mutex<MockState>>;

pub(crate) fn lock(state: &State) -> MutexGuard<'_, MockState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the mock answers next, and what it saw.
pub(crate) struct MockState {
    /// When the case began.
    pub(crate) t0: Instant,
    reads: VecDeque<ReadStep>,
    read_tail: ReadStep,
    writes: VecDeque<OpStep>,
    flushes: VecDeque<OpStep>,
    shutdowns: VecDeque<OpStep>,
    /// Wakers of `Pending(AfterMs)` steps, with when to wake them.
    wakers: Vec<(Instant, Waker)>,
    /// The driver began the close: reads from here on are the linger's.
    pub(crate) closing: bool,
    eof_returned: bool,
    /// The inner `poll_shutdown` returned `Ready(Ok)`.
    pub(crate) shutdown_done: bool,
    /// A flush or the half-close of the close failed.
    pub(crate) close_failed: bool,
    /// Bytes written since the last successful flush.
    dirty: bool,
    pub(crate) dropped: bool,
    /// The deadline, which also bounds a pending flush or half-close.
    deadline: Duration,
    /// The short deadline, which cuts that bound once the server shutdown
    /// has begun.
    short: Duration,
    /// When the server shutdown began (the driver notes it).
    pub(crate) shutdown_begun: Option<Instant>,
    /// When the close's flush or half-close first returned `Pending`.
    half_close_pending_since: Option<Instant>,
    /// Dropped with the half-close still pending for at least the deadline:
    /// the close gave up on it, as it must.
    pub(crate) half_close_timed_out: bool,
    pub(crate) calls: u64,
    /// Reads since the driver last reset it (before each poll).
    pub(crate) reads_since_mark: usize,
    pub(crate) reads_in_close: usize,
    pub(crate) bytes_in_close: u64,
    /// The first read of the close: the `On` mode's look for waiting input.
    pub(crate) first_close_read: Option<ReadStep>,
    /// When the close last read input.
    pub(crate) last_input: Option<Instant>,
    /// The last read returned `Pending` (so the IO holds a waker).
    pub(crate) last_read_pending: bool,
    pub(crate) linger_saw_eof: bool,
    pub(crate) linger_saw_err: bool,
    /// The first violations (a broken drain may repeat one thousands of
    /// times), and how many more.
    pub(crate) violations: Vec<String>,
    pub(crate) violations_lost: usize,
    trace: Vec<String>,
    trace_lost: usize,
}

impl MockState {
    pub(crate) fn new(script: &Script) -> Self {
        MockState {
            t0: Instant::now(),
            reads: script.reads.iter().copied().collect(),
            read_tail: script.read_tail,
            writes: script.writes.iter().copied().collect(),
            flushes: script.flushes.iter().copied().collect(),
            shutdowns: script.shutdowns.iter().copied().collect(),
            wakers: Vec::new(),
            closing: false,
            eof_returned: false,
            shutdown_done: false,
            close_failed: false,
            dirty: false,
            dropped: false,
            deadline: Duration::from_millis(script.deadline_ms),
            short: Duration::from_millis(script.short_ms),
            shutdown_begun: None,
            half_close_pending_since: None,
            half_close_timed_out: false,
            calls: 0,
            reads_since_mark: 0,
            reads_in_close: 0,
            bytes_in_close: 0,
            first_close_read: None,
            last_input: None,
            last_read_pending: false,
            linger_saw_eof: false,
            linger_saw_err: false,
            violations: Vec::new(),
            violations_lost: 0,
            trace: Vec::new(),
            trace_lost: 0,
        }
    }

    pub(crate) fn note(&mut self, line: impl Into<String>) {
        if self.trace.len() < TRACE_CAP {
            let at = Instant::now() - self.t0;
            self.trace
                .push(format!("[{:>6} ms] {}", at.as_millis(), line.into()));
        } else {
            self.trace_lost += 1;
        }
    }

    fn violation(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.note(format!("VIOLATION: {what}"));
        if self.violations.len() < 20 {
            self.violations.push(what);
        } else {
            self.violations_lost += 1;
        }
    }

    /// A call after the close failed: `LingerIo` is closed then.
    fn check_not_failed(&mut self, call: &str) {
        if self.close_failed {
            self.violation(format!(
                "{call} after the close's flush or half-close failed"
            ));
        }
    }

    fn arrange(&mut self, wake: WakeUp, cx: &Context<'_>) {
        match wake {
            WakeUp::Now => cx.waker().wake_by_ref(),
            WakeUp::AfterMs(n) => self
                .wakers
                .push((Instant::now() + ms(n), cx.waker().clone())),
            WakeUp::Never => {}
        }
    }

    pub(crate) fn trace_text(&self) -> String {
        let mut out = self.trace.join("\n");
        if self.trace_lost > 0 {
            out.push_str(&format!("\n... {} more lines", self.trace_lost));
        }
        out
    }
}

/// Wakes the stored wakers that are due.
pub(crate) fn fire_due(state: &State) {
    let due: Vec<Waker> = {
        let mut s = lock(state);
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = s.wakers.drain(..).partition(|(at, _)| *at <= now);
        s.wakers = keep;
        due.into_iter().map(|(_, w)| w).collect()
    };
    due.into_iter().for_each(Waker::wake);
}

/// The inner IO of one case.
pub(crate) struct Mock {
    pub(crate) state: State,
    pub(crate) vectored: bool,
}

impl Mock {
    fn write(&self, cx: &Context<'_>, len: usize, call: &str) -> Poll<io::Result<usize>> {
        let mut s = lock(&self.state);
        s.calls += 1;
        s.check_not_failed(call);
        if s.shutdown_done {
            s.violation(format!("{call} after poll_shutdown returned Ready(Ok)"));
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let step = match s.writes.pop_front() {
            Some(OpStep::Ok(n)) => OpStep::Ok(n.min(len)),
            Some(step) => step,
            None => OpStep::Ok(len),
        };
        s.note(format!("{call}({len}) -> {step:?}"));
        match step {
            OpStep::Ok(n) => {
                s.dirty |= n > 0;
                Poll::Ready(Ok(n))
            }
            OpStep::Pending(wake) => {
                s.arrange(wake, cx);
                Poll::Pending
            }
            OpStep::Err(kind) => Poll::Ready(Err(kind.into())),
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.dropped = true;
        if let Some(since) = s.half_close_pending_since {
            // Bounded by the deadline, cut to the short deadline from the
            // shutdown (or from the half-close, if that came later).
            let mut bound = since + s.deadline;
            if let Some(begun) = s.shutdown_begun {
                bound = bound.min(begun.max(since) + s.short);
            }
            s.half_close_timed_out = s.closing
                && !s.shutdown_done
                && !s.close_failed
                && Instant::now() + Duration::from_millis(1) >= bound;
        }
        s.note("mock dropped (closed)");
    }
}

impl AsyncRead for Mock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.state);
        s.calls += 1;
        s.reads_since_mark += 1;
        s.check_not_failed("poll_read");
        if s.eof_returned {
            s.violation("poll_read after it returned EOF");
            return Poll::Ready(Ok(()));
        }
        if s.closing && !s.shutdown_done {
            s.violation("poll_read during the close before the half-close completed");
        }
        let room = buf.remaining();
        if room == 0 {
            s.note("read(0) -> Ok(0)");
            return Poll::Ready(Ok(()));
        }
        let step = s.reads.pop_front().unwrap_or(s.read_tail);
        let in_close = s.closing;
        if in_close {
            s.reads_in_close += 1;
            s.first_close_read.get_or_insert(step);
        }
        s.last_read_pending = matches!(step, ReadStep::Pending(_));
        s.note(format!(
            "{}read({room}) -> {step:?}",
            if in_close { "close: " } else { "" }
        ));
        match step {
            ReadStep::Data(n) => {
                let n = n.min(room);
                buf.put_slice(&ZEROS[..n]);
                if in_close {
                    s.bytes_in_close += n as u64;
                    s.last_input = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            ReadStep::Eof => {
                s.eof_returned = true;
                s.linger_saw_eof |= in_close;
                Poll::Ready(Ok(()))
            }
            ReadStep::Err(kind) => {
                s.linger_saw_err |= in_close;
                Poll::Ready(Err(kind.into()))
            }
            ReadStep::Pending(wake) => {
                s.arrange(wake, cx);
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Mock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, buf.len(), "poll_write")
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.write(cx, len, "poll_write_vectored")
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.state);
        s.calls += 1;
        s.check_not_failed("poll_flush");
        if s.shutdown_done {
            s.violation("poll_flush after poll_shutdown returned Ready(Ok)");
            return Poll::Ready(Ok(()));
        }
        let step = s.flushes.pop_front().unwrap_or(OpStep::Ok(0));
        s.note(format!("flush -> {step:?}"));
        match step {
            OpStep::Ok(_) => {
                s.dirty = false;
                Poll::Ready(Ok(()))
            }
            OpStep::Pending(wake) => {
                if s.closing {
                    s.half_close_pending_since.get_or_insert_with(Instant::now);
                }
                s.arrange(wake, cx);
                Poll::Pending
            }
            OpStep::Err(kind) => {
                s.close_failed |= s.closing;
                Poll::Ready(Err(kind.into()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.state);
        s.calls += 1;
        s.check_not_failed("poll_shutdown");
        if s.shutdown_done {
            s.violation("inner poll_shutdown called again after it completed");
            return Poll::Ready(Ok(()));
        }
        if s.dirty {
            s.violation("inner poll_shutdown before the written bytes were flushed");
        }
        if !s.closing {
            s.violation("inner poll_shutdown before the close began");
        }
        let step = s.shutdowns.pop_front().unwrap_or(OpStep::Ok(0));
        s.note(format!("shutdown -> {step:?}"));
        match step {
            OpStep::Ok(_) => {
                s.shutdown_done = true;
                Poll::Ready(Ok(()))
            }
            OpStep::Pending(wake) => {
                s.half_close_pending_since.get_or_insert_with(Instant::now);
                s.arrange(wake, cx);
                Poll::Pending
            }
            OpStep::Err(kind) => {
                s.close_failed = true;
                Poll::Ready(Err(kind.into()))
            }
        }
    }
}
