//! [`LingerIo`]: an IO whose shutdown half-closes, then drains under bounds.

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::config::{LingerConfig, LingerMode};
use crate::handle::{Handle, Shared};
use crate::stats::{log_outcome, LingerOutcome};

/// Reads one drain poll makes before it yields, so a flooding peer cannot
/// hold a worker thread.
const READS_PER_POLL: usize = 16;
/// Size of the per-thread scratch buffer lingers read into and discard.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// Where lingers on this thread read what they discard: one buffer per
    /// worker thread, none per connection. Never read back, so never
    /// initialised.
    static SCRATCH: RefCell<Box<[MaybeUninit<u8>]>> =
        RefCell::new(vec![MaybeUninit::uninit(); SCRATCH_LEN].into_boxed_slice());
}

/// What the drain does with the IO, chosen once per type at construction:
/// the Linux TCP paths for tokio's `TcpStream`, the generic ones otherwise.
struct Ops<T> {
    /// Reads once and forgets what was read: `Ready(Ok(0))` is EOF.
    discard: fn(&mut T, &mut Context<'_>) -> Poll<io::Result<usize>>,
    /// Bytes sent but not yet acknowledged, where the IO can tell.
    unacked: fn(&T) -> Option<usize>,
}

impl<T> Clone for Ops<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Ops<T> {}

/// Wraps a connection's IO so that closing it is a lingering close.
///
/// Reads and writes (vectored ones included) go straight to the inner IO.
/// [`poll_shutdown`](AsyncWrite::poll_shutdown) flushes, half-closes the
/// inner IO (for TCP, `shutdown(Write)`: the FIN follows the last response
/// byte), then, when the connection should linger (see
/// [`LingerMode`]), reads and discards input until the peer closes, a read
/// fails, or a bound of the [`LingerConfig`] is reached, and only then
/// returns `Ready(Ok(()))`. The caller closes the socket by dropping the IO.
///
/// If the IO is dropped without a completed shutdown (hyper's error paths:
/// a service or IO error, a header-read timeout, a cancelled version
/// sniff), the same half-close and bounded drain run on a task of their
/// own, so those closes do not reset the connection either.
///
/// Lingering needs a tokio runtime with its timer enabled (as `axum::serve`
/// and `#[tokio::main]` have). On Linux, when `T` is tokio's `TcpStream`,
/// the drain discards with `recv(MSG_TRUNC)`: the kernel drops the bytes
/// without copying them. Other IOs are read into one scratch buffer per
/// thread; no lingering connection holds a buffer of its own.
///
/// # Example
///
/// ```
/// use hyper_util::rt::TokioIo;
/// use linger::{LingerConfig, LingerIo};
///
/// # async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (stream, _peer) = listener.accept().await?;
/// let io = TokioIo::new(LingerIo::with_config(stream, LingerConfig::new()));
/// // hand `io` to hyper's `serve_connection`
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
pub struct LingerIo<T> {
    io: Option<T>,
    handle: Handle,
    /// A read returned at least one byte from the peer.
    read_any: bool,
    /// A read returned end of file.
    eof: bool,
    phase: Phase,
    /// Moves the IO and the rest of its close onto a task of its own, and
    /// says whether it did; set by the constructors, where `T: Send +
    /// 'static` is known.
    hand_off: fn(&mut LingerIo<T>) -> bool,
    /// How the drain reads and what it can ask the kernel.
    ops: Ops<T>,
}

enum Phase {
    Open,
    /// Flushing and half-closing; the timer, made only if that blocks,
    /// bounds it by the deadline.
    Closing(Decision, Option<Pin<Box<Sleep>>>),
    Draining(Pin<Box<Drain>>),
    Closed,
}

/// Whether a close lingers, as far as it can be told before the half-close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    No,
    /// Only if input is waiting once the connection is half-closed.
    IfInputWaits,
    Yes,
}

impl<T> LingerIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps `io` with the default [`LingerConfig`].
    pub fn new(io: T) -> Self {
        Self::with_config(io, LingerConfig::new())
    }

    /// Wraps `io` with `config`.
    pub fn with_config(io: T, config: LingerConfig) -> Self {
        Self::with_shared(io, Shared::new(config))
    }

    pub(crate) fn with_shared(io: T, shared: Arc<Shared>) -> Self {
        Self {
            io: Some(io),
            handle: Handle::new(shared),
            read_any: false,
            eof: false,
            phase: Phase::Open,
            hand_off: hand_off::<T>,
            ops: ops_for::<T>(),
        }
    }
}

impl<T> LingerIo<T> {
    /// The handle shared with the middleware.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// A reference to the inner IO.
    ///
    /// # Panics
    ///
    /// If a shutdown handed the IO to a detached linger
    /// ([`LingerConfig::with_detach`]).
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect(HANDED_OFF)
    }

    /// A mutable reference to the inner IO. Reading from it directly hides
    /// that input from the lingering decision.
    ///
    /// # Panics
    ///
    /// As [`get_ref`](Self::get_ref).
    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect(HANDED_OFF)
    }

    /// A pinned mutable reference to the inner IO.
    ///
    /// # Panics
    ///
    /// As [`get_ref`](Self::get_ref).
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T>
    where
        T: Unpin,
    {
        Pin::new(self.get_mut().get_mut())
    }

    /// Unwraps the inner IO. It will not linger when it is closed.
    ///
    /// # Panics
    ///
    /// As [`get_ref`](Self::get_ref).
    pub fn into_inner(mut self) -> T {
        self.phase = Phase::Closed;
        self.io.take().expect(HANDED_OFF)
    }

    /// The inner IO, or `NotConnected` once it was handed to a detached
    /// linger.
    #[inline]
    fn pinned(&mut self) -> io::Result<Pin<&mut T>>
    where
        T: Unpin,
    {
        match self.io.as_mut() {
            Some(io) => Ok(Pin::new(io)),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, HANDED_OFF)),
        }
    }

    /// Whether a close left unfinished here must be finished elsewhere.
    fn close_is_unfinished(&self) -> bool {
        match self.phase {
            Phase::Open => self.should_linger() == Decision::Yes,
            Phase::Closing(..) | Phase::Draining(_) => true,
            Phase::Closed => false,
        }
    }

    /// Whether closing now should linger, by the mode and what was seen.
    fn should_linger(&self) -> Decision {
        if self.eof || self.handle.is_linger_disabled() {
            return Decision::No;
        }
        match self.handle.config().mode() {
            LingerMode::Off => Decision::No,
            LingerMode::On if self.read_any || self.handle.is_closing() => Decision::Yes,
            LingerMode::On => Decision::IfInputWaits,
            LingerMode::Always => Decision::Yes,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> LingerIo<T> {
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
                            // say: bounded by the deadline like the drain.
                            let deadline = self.handle.config().deadline();
                            let timer = timer.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(later(Instant::now(), deadline)))
                            });
                            ready!(timer.as_mut().poll(cx));
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
                    let waiting = match decision {
                        Decision::No => None,
                        Decision::Yes => Some(0),
                        // One look: bytes the server never read are waiting.
                        Decision::IfInputWaits => match (self.ops.discard)(io, cx) {
                            Poll::Ready(Ok(n)) if n > 0 => Some(n as u64),
                            _ => None,
                        },
                    };
                    let Some(discarded) = waiting else {
                        self.phase = Phase::Closed;
                        return Poll::Ready(Ok(()));
                    };
                    self.phase = Phase::Draining(Box::pin(Drain::new(&self.handle, discarded)));
                    if self.handle.config().detach() && (self.hand_off)(self) {
                        return Poll::Ready(Ok(()));
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

const HANDED_OFF: &str = "the IO was handed to a detached linger";

/// Moves the IO and the rest of its close onto a task of its own: for a
/// [`LingerIo`] dropped before its close finished, and for detached
/// lingers. Does nothing, and says so, outside a tokio runtime.
fn hand_off<T>(this: &mut LingerIo<T>) -> bool
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
        hand_off: |_| false,
        ops: this.ops,
    };
    runtime.spawn(async move {
        let _ = poll_fn(|cx| rest.poll_close(cx)).await;
    });
    true
}

impl<T> Drop for LingerIo<T> {
    fn drop(&mut self) {
        if self.io.is_some() && self.close_is_unfinished() {
            (self.hand_off)(self);
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for LingerIo<T> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = this.pinned()?.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if buf.filled().len() > before {
                this.read_any = true;
            } else if buf.remaining() > 0 {
                this.eof = true;
            }
        }
        res
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingerIo<T> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pinned()?.poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pinned()?.poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(T::is_write_vectored)
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().pinned()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

impl<T: fmt::Debug> fmt::Debug for LingerIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Open => "open",
            Phase::Closing(..) => "closing",
            Phase::Draining(_) => "draining",
            Phase::Closed => "closed",
        };
        f.debug_struct("LingerIo")
            .field("io", &self.io)
            .field("phase", &phase)
            .field("handle", &self.handle)
            .finish()
    }
}

pin_project! {
    /// The bounded read-and-discard after the half-close.
    struct Drain {
        #[pin]
        timer: Sleep,
        #[pin]
        stop: WaitForCancellationFutureOwned,
        stopping: bool,
        ack: Option<AckCheck>,
        shortened: bool,
        deadline: Instant,
        idle_until: Instant,
        count: Counted,
    }
}

impl Drain {
    /// Starts a linger: counts it in, and cuts it to the short deadline when
    /// too many connections linger or the server is shutting down.
    fn new(handle: &Handle, discarded: u64) -> Self {
        let shared = handle.shared();
        let config = shared.config;
        let lingering_before = shared.counters.start();
        let count = Counted {
            handle: handle.clone(),
            started: Instant::now(),
            bytes: discarded,
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
        Self {
            timer: tokio::time::sleep_until(deadline.min(idle_until)),
            stop: shared.shutdown.clone().cancelled_owned(),
            stopping: false,
            ack: config
                .end_when_acked()
                .then(|| AckCheck::new(started, config.ack_quiet())),
            shortened,
            deadline,
            idle_until,
            count,
        }
    }

    /// Reads and discards until EOF, an error, a bound or `Pending`.
    fn poll_drain<T>(
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
            for _ in 0..READS_PER_POLL {
                match (ops.discard)(io, cx) {
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
            if !*this.stopping && this.stop.as_mut().poll(cx).is_ready() {
                *this.stopping = true;
                let cut = later(Instant::now(), config.short_deadline());
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
    interval: std::time::Duration,
}

impl AckCheck {
    fn new(started: Instant, quiet: std::time::Duration) -> Self {
        Self {
            check_at: later(started, quiet),
            interval: quiet,
        }
    }

    fn is_due(&self) -> bool {
        Instant::now() >= self.check_at
    }

    /// Input arrived: wait for it to be quiet again.
    fn input_at(&mut self, now: Instant, quiet: std::time::Duration) {
        self.check_at = self.check_at.max(later(now, quiet));
    }

    /// Not acknowledged yet: check again later, at most `cap` apart.
    fn back_off(&mut self, cap: std::time::Duration) {
        self.interval = (self.interval * 2)
            .min(cap)
            .max(std::time::Duration::from_millis(1));
        self.check_at = later(Instant::now(), self.interval);
    }
}

/// `at + wait`, saturating some thirty years ahead (as tokio's `timeout`
/// does) so that no bound, however large, overflows.
fn later(at: Instant, wait: std::time::Duration) -> Instant {
    at.checked_add(wait)
        .unwrap_or_else(|| at + std::time::Duration::from_secs(86_400 * 365 * 30))
}

/// A linger counted in the listener's statistics until it ends, or until it
/// is dropped unfinished (its task cancelled as the runtime shuts down:
/// counted as an error, with the bytes it had discarded).
struct Counted {
    handle: Handle,
    started: Instant,
    bytes: u64,
    done: bool,
}

impl Counted {
    fn end(&mut self, outcome: LingerOutcome) -> Poll<()> {
        if !self.done {
            self.done = true;
            let shared = self.handle.shared();
            if shared.counters.end(outcome, self.bytes) {
                shared.idle.notify_waiters();
            }
            log_outcome(outcome, self.bytes, self.started.elapsed());
        }
        Poll::Ready(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.end(LingerOutcome::Error);
    }
}

/// The drain's operations for `T`: on Linux, when `T` is tokio's
/// `TcpStream`, `recv(MSG_TRUNC)` (the kernel drops the bytes without
/// copying them) and `SIOCOUTQ`; otherwise a read into the thread's scratch
/// buffer, and no acknowledgement information.
fn ops_for<T: AsyncRead + Unpin + 'static>() -> Ops<T> {
    #[cfg(target_os = "linux")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<tokio::net::TcpStream>() {
        use std::any::Any;
        return Ops {
            discard: |io, cx| match (io as &mut dyn Any).downcast_mut() {
                Some(tcp) => with_scratch(|scratch| crate::tcp::discard(tcp, scratch, cx)),
                None => discard_copy(io, cx),
            },
            unacked: |io| {
                let tcp = (io as &dyn Any).downcast_ref()?;
                crate::tcp::unacked(tcp).ok()
            },
        };
    }
    Ops {
        discard: discard_copy::<T>,
        unacked: |_| None,
    }
}

/// Reads once into the thread's scratch buffer.
fn discard_copy<T: AsyncRead + Unpin>(io: &mut T, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    with_scratch(|scratch| {
        let mut buf = ReadBuf::uninit(scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    })
}

/// Lends the thread's scratch buffer, or a small stack buffer in the
/// unlikely case it is already lent (a discard nested in another).
fn with_scratch<R>(f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut [MaybeUninit::uninit(); 4096]),
    })
}
