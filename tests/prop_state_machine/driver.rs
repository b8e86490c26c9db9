//! The driver: plays one script against a `LingerIo` over the mock, as
//! hyper would (reads a request, writes a response, closes), and records
//! what it saw, for the properties to check afterwards.
//!
//! It polls `poll_shutdown` only when woken (plus, in some scripts,
//! spurious polls), so a lost wake-up shows as a linger that ends late or
//! never. It asserts nothing itself; every line it and the mock write goes
//! to the case's trace.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use linger::{LingerIo, LingerListener, LingerShutdown, LingerStats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{advance, Instant};

use crate::generator::{Rng, Script};
use crate::mock::{fire_due, lock, Mock, State, ZEROS};
use crate::ms;

/// Driver iterations (one clock step each) before a case counts as hung.
pub(crate) const MAX_ITERATIONS: usize = 5_000;
/// Polls of one request read before the driver gives up on it.
const MAX_READ_POLLS: usize = 64;
/// Yields per driver iteration, so tasks the close spawned run before the
/// clock moves again.
const YIELDS: usize = 3;

/// What one case did, as the driver saw it.
#[derive(Debug)]
pub(crate) struct Run {
    /// What the `LingerIo` said of `is_write_vectored`.
    pub(crate) write_vectored: bool,
    /// A request read returned data.
    pub(crate) read_any: bool,
    /// A request read returned EOF.
    pub(crate) saw_eof: bool,
    /// Every `poll_shutdown` of the close, in order.
    pub(crate) polls: Vec<ClosePoll>,
    /// What `poll_shutdown` completed with, if it did.
    pub(crate) result: Option<io::Result<()>>,
    /// The close and every linger it started ended within
    /// `MAX_ITERATIONS` clock steps.
    pub(crate) ended: bool,
    /// The counters at the end (or when the driver gave up).
    pub(crate) stats: LingerStats,
    /// When the server shutdown began.
    pub(crate) begun_at: Option<Instant>,
    /// When the driver first saw a linger started.
    pub(crate) drain_start: Option<Instant>,
    /// When the driver first saw no linger left after one started, and the
    /// clock step just before.
    pub(crate) drain_end: Option<(Instant, Duration)>,
    /// The driver dropped the `LingerIo` before `poll_shutdown` completed.
    pub(crate) dropped_unfinished: bool,
    /// `LingerShutdown::wait` was ready at the end (via a listener only).
    pub(crate) wait_ready: Option<bool>,
}

/// One `poll_shutdown` of the close.
#[derive(Debug)]
pub(crate) struct ClosePoll {
    /// The driver iteration it ran in.
    pub(crate) iteration: usize,
    /// Time since the case began, to find it in the trace.
    pub(crate) at: Duration,
    /// Was it woken, or a first or spurious poll?
    pub(crate) woken: bool,
    pub(crate) polled: Poll<Result<(), io::ErrorKind>>,
    /// Inner reads during the poll.
    pub(crate) reads: usize,
    /// The inner half-close had completed when it returned.
    pub(crate) half_closed: bool,
    /// The last inner read returned `Pending` (so the IO holds a waker).
    pub(crate) last_read_pending: bool,
    /// It woke the driver's waker before returning.
    pub(crate) woke_itself: bool,
    /// The counters when it returned.
    pub(crate) stats: LingerStats,
    /// The polls after it completed (none unless it did).
    pub(crate) repolls: Vec<Repoll>,
}

/// A `poll_shutdown` after the close completed.
#[derive(Debug)]
pub(crate) struct Repoll {
    pub(crate) polled: Poll<Result<(), io::ErrorKind>>,
    /// Inner IO calls it made.
    pub(crate) calls: u64,
    /// The counters after it.
    pub(crate) stats: LingerStats,
}

/// A waker that only raises a flag, so the driver polls when woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }

    fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn pick_step(rng: &mut Rng) -> Duration {
    ms(match rng.below(10) {
        0 => 0,
        1..=3 => rng.range(1, 20),
        _ => rng.range(1, 300),
    })
}

/// Moves the clock, then wakes what is due.
async fn step_clock(state: &State, rng: &mut Rng) -> Duration {
    let step = pick_step(rng);
    advance(step).await;
    fire_due(state);
    step
}

fn kind(polled: &Poll<io::Result<()>>) -> Poll<Result<(), io::ErrorKind>> {
    match polled {
        Poll::Ready(r) => Poll::Ready(r.as_ref().map(|_| ()).map_err(io::Error::kind)),
        Poll::Pending => Poll::Pending,
    }
}

/// Plays `script` over the mock in `state`.
pub(crate) async fn drive(script: &Script, state: &State) -> Run {
    let mut rng = Rng::new(script.seed ^ 0xD1B5_4A32_D192_ED03);
    let config = script.config();
    let mock = Mock {
        state: state.clone(),
        vectored: script.vectored,
    };
    let (listener, mut io) = if script.via_listener {
        let listener = LingerListener::with_config((), config);
        let io = listener.wrap(mock);
        (Some(listener), io)
    } else {
        (None, LingerIo::standalone_with_config(mock, config))
    };
    let stopper: Option<LingerShutdown> = listener.as_ref().map(LingerListener::shutdown_handle);
    let handle = io.handle().clone();
    if script.mark_closing {
        handle.mark_closing();
    }
    if script.disable_linger {
        handle.disable_linger();
    }
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let write_vectored = io.is_write_vectored();

    let (read_any, saw_eof) = read_request(script, state, &mut io, &flag, &waker, &mut rng).await;
    write_response(script, &mut io, &waker);

    // The close.
    lock(state).note(format!(
        "driver: close begins (read_any {read_any}, saw_eof {saw_eof})"
    ));
    lock(state).closing = true;
    flag.take();
    let mut io = Some(io);
    let mut run = Run {
        write_vectored,
        read_any,
        saw_eof,
        polls: Vec::new(),
        result: None,
        ended: false,
        stats: LingerStats::default(),
        begun_at: None,
        drain_start: None,
        drain_end: None,
        dropped_unfinished: false,
        wait_ready: None,
    };
    let mut last_step = Duration::ZERO;
    for iteration in 0..MAX_ITERATIONS {
        if script.begin_at == Some(iteration) {
            if let Some(stopper) = &stopper {
                stopper.begin();
                run.begun_at = Some(Instant::now());
                lock(state).shutdown_begun = run.begun_at;
                lock(state).note("driver: server shutdown begins");
            }
        }
        if script.drop_at == Some(iteration) && run.result.is_none() {
            if let Some(io) = io.take() {
                lock(state).note("driver: drops the LingerIo unfinished");
                drop(io);
                run.dropped_unfinished = true;
            }
        }
        let woken = flag.take();
        if let Some(lio) = io.as_mut() {
            if run.result.is_none() && (iteration == 0 || woken || rng.percent(script.spurious_pct))
            {
                let (polled, record) =
                    poll_close(script, state, lio, (&flag, &waker), iteration, woken);
                run.polls.push(record);
                if let Poll::Ready(r) = polled {
                    run.result = Some(r);
                    drop(io.take());
                }
            }
        }
        // Let tasks the close spawned run (the clock stays put).
        for _ in 0..YIELDS {
            tokio::task::yield_now().await;
        }
        let stats = handle.stats();
        let now = Instant::now();
        if stats.started > 0 && run.drain_start.is_none() {
            run.drain_start = Some(now);
        }
        if run.drain_start.is_some() && stats.lingering == 0 && run.drain_end.is_none() {
            run.drain_end = Some((now, last_step));
        }
        if io.is_none() && stats.lingering == 0 && lock(state).dropped {
            run.ended = true;
            break;
        }
        last_step = step_clock(state, &mut rng).await;
    }
    run.stats = handle.stats();
    if let Some(stopper) = &stopper {
        let mut wait = std::pin::pin!(stopper.wait());
        let ready = wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        run.wait_ready = Some(ready);
    }
    run
}

/// The request: a few reads through the `LingerIo`, as hyper would.
/// Returns whether one read data, and whether one saw EOF.
async fn read_request(
    script: &Script,
    state: &State,
    io: &mut LingerIo<Mock>,
    flag: &Flag,
    waker: &Waker,
    rng: &mut Rng,
) -> (bool, bool) {
    let mut read_any = false;
    for _ in 0..script.request_reads {
        let mut buf = vec![0u8; script.request_buf];
        for poll in 0.. {
            if poll == MAX_READ_POLLS {
                lock(state).note("driver: gives up on the request read");
                return (read_any, false);
            }
            let mut rb = ReadBuf::new(&mut buf);
            let polled = Pin::new(&mut *io).poll_read(&mut Context::from_waker(waker), &mut rb);
            match polled {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return (read_any, true),
                Poll::Ready(Ok(())) => {
                    read_any = true;
                    break;
                }
                Poll::Ready(Err(_)) => return (read_any, false),
                Poll::Pending => {
                    // Wait for the wake-up a while; then give up on the
                    // request, as a header-read timeout would.
                    let mut woken = flag.take();
                    for _ in 0..8 {
                        if woken {
                            break;
                        }
                        step_clock(state, rng).await;
                        woken = flag.take();
                    }
                    if !woken {
                        lock(state).note("driver: the request read never woke");
                        return (read_any, false);
                    }
                }
            }
        }
    }
    (read_any, false)
}

/// The response: each write polled once, whatever it returns.
fn write_response(script: &Script, io: &mut LingerIo<Mock>, waker: &Waker) {
    for &(len, vectored) in &script.response {
        let data = &ZEROS[..len];
        let _ = if vectored {
            let (a, b) = data.split_at(len / 2);
            let bufs = [IoSlice::new(a), IoSlice::new(b)];
            Pin::new(&mut *io).poll_write_vectored(&mut Context::from_waker(waker), &bufs)
        } else {
            Pin::new(&mut *io).poll_write(&mut Context::from_waker(waker), data)
        };
    }
}

/// One `poll_shutdown`, and when it completes, the script's polls after
/// completion.
fn poll_close(
    script: &Script,
    state: &State,
    io: &mut LingerIo<Mock>,
    (flag, waker): (&Flag, &Waker),
    iteration: usize,
    woken: bool,
) -> (Poll<io::Result<()>>, ClosePoll) {
    lock(state).reads_since_mark = 0;
    let polled = Pin::new(&mut *io).poll_shutdown(&mut Context::from_waker(waker));
    let stats = io.handle().stats();
    let woke_itself = flag.is_raised();
    let (at, reads, half_closed, last_read_pending) = {
        let mut s = lock(state);
        s.note(format!(
            "driver: poll_shutdown -> {polled:?} (woken {woken})"
        ));
        (
            Instant::now() - s.t0,
            s.reads_since_mark,
            s.shutdown_done,
            s.last_read_pending,
        )
    };
    let mut repolls = Vec::new();
    if polled.is_ready() {
        // Again after completion.
        for _ in 0..script.repolls {
            let calls = lock(state).calls;
            let again = Pin::new(&mut *io).poll_shutdown(&mut Context::from_waker(waker));
            lock(state).note(format!("driver: poll_shutdown again -> {again:?}"));
            repolls.push(Repoll {
                polled: kind(&again),
                calls: lock(state).calls - calls,
                stats: io.handle().stats(),
            });
        }
    }
    let record = ClosePoll {
        iteration,
        at,
        woken,
        polled: kind(&polled),
        reads,
        half_closed,
        last_read_pending,
        woke_itself,
        stats,
        repolls,
    };
    (polled, record)
}
