//! A property test of the close state machine of `LingerIo`: thousands of
//! seeded scripts, each a random configuration, a random mock IO (reads,
//! writes, flushes and the half-close each may be ready, pending or fail)
//! and a random driver (reads a request or not, writes a response, polls
//! `poll_shutdown` while moving the paused clock, drops the IO mid-close,
//! begins a server shutdown, polls again after completion).
//!
//! For every seed it checks that the close never panics, always ends within
//! its bounds (time and bytes), leaves the counters consistent, decides to
//! linger exactly when the mode says so, and uses the inner IO correctly:
//! no read after EOF, no write or flush after the half-close, no second
//! inner `poll_shutdown`, no drain read before the half-close, no more
//! reads per poll than the drain's budget.
//!
//! The driver polls only when woken (plus, in some scripts, spurious
//! polls), so a lost wake-up shows as a linger that ends late or never.
//!
//! A failing seed is printed with its script and a trace of every IO call;
//! replay it with `PROP_SEED=<seed> cargo test --test prop_state_machine
//! replay -- --ignored`.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use linger::{LingerConfig, LingerIo, LingerListener, LingerMode, LingerShutdown, LingerStats};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{advance, Instant};

/// Seeds run by the main test.
const SEEDS: u64 = 10_000;
/// Failures after which the main test stops (a broken close can leave busy
/// tasks behind that slow every later case).
const MAX_FAILURES: usize = 50;
/// The most one drain read takes (the crate's scratch buffer).
const READ_CHUNK: u64 = 64 << 10;
/// Reads one drain poll may make (the crate's `READS_PER_POLL`).
const READS_PER_POLL: usize = 16;
/// Driver iterations (one clock step each) before a case counts as hung.
const MAX_ITERATIONS: usize = 5_000;
/// Polls of one request read before the driver gives up on it.
const MAX_READ_POLLS: usize = 64;
/// Yields per driver iteration, so tasks the close spawned run before the
/// clock moves again.
const YIELDS: usize = 3;
/// Timer rounding.
const SLACK: Duration = Duration::from_millis(1);
/// Trace lines kept per case.
const TRACE_CAP: usize = 4_000;

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// A tiny deterministic PRNG: xorshift64*, seeded through splitmix64.

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

// ---------------------------------------------------------------------------
// The script.

/// How a `Pending` arranges its wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WakeUp {
    /// `wake_by_ref` before returning.
    Now,
    /// The driver wakes the stored waker once the clock has moved this far.
    AfterMs(u64),
    /// Never (reads only: a silent peer; the linger's timers must end it).
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadStep {
    /// `Ready(Ok)` with this many bytes, capped by the buffer.
    Data(usize),
    Pending(WakeUp),
    /// `Ready(Ok)` with no bytes; every later read must also see EOF.
    Eof,
    Err(io::ErrorKind),
}

/// A step of `poll_write` (`Ok(n)`: accepts up to `n` bytes), `poll_flush`
/// or `poll_shutdown` (`Ok(_)`: done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpStep {
    Ok(usize),
    Pending(WakeUp),
    Err(io::ErrorKind),
}

#[derive(Debug, Clone)]
struct Script {
    seed: u64,
    // The configuration.
    mode: LingerMode,
    idle_ms: u64,
    deadline_ms: u64,
    short_ms: u64,
    max_bytes: u64,
    max_lingering: usize,
    end_when_acked: bool,
    ack_quiet_ms: u64,
    detach: bool,
    // The driver.
    /// Built by `LingerListener::wrap` (so a server shutdown can begin)
    /// rather than `LingerIo::with_config`.
    via_listener: bool,
    mark_closing: bool,
    disable_linger: bool,
    /// Request reads through the `LingerIo` before the close.
    request_reads: usize,
    request_buf: usize,
    /// Response writes before the close: (length, vectored).
    response: Vec<(usize, bool)>,
    /// Driver iteration at which the `LingerIo` is dropped unfinished (0:
    /// before any `poll_shutdown`).
    drop_at: Option<usize>,
    /// Driver iteration at which the server shutdown begins.
    begin_at: Option<usize>,
    /// Chance, per iteration, of a poll nobody woke for.
    spurious_pct: u64,
    /// `poll_shutdown` calls after it completed.
    repolls: usize,
    // The mock IO.
    vectored: bool,
    reads: Vec<ReadStep>,
    /// Repeated once `reads` is used up.
    read_tail: ReadStep,
    writes: Vec<OpStep>,
    flushes: Vec<OpStep>,
    shutdowns: Vec<OpStep>,
}

const ERRORS: [io::ErrorKind; 4] = [
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::TimedOut,
    io::ErrorKind::Other,
];

impl Script {
    fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let r = &mut rng;
        let mode = match r.below(100) {
            0..=19 => LingerMode::Off,
            20..=64 => LingerMode::On,
            _ => LingerMode::Always,
        };
        let idle_ms = r.range(1, 500);
        let deadline_ms = r.range(1, 2000);
        // Often short enough to matter.
        let short_ms = if r.percent(50) {
            r.range(1, 200)
        } else {
            r.range(1, 2000)
        };
        // Log-uniform-ish over 1 B ..= 1 MiB.
        let max_bytes = {
            let exp = r.range(0, 20);
            r.range(1 << exp, (2u64 << exp).min(1 << 20))
        };
        let max_lingering = if r.percent(20) { 0 } else { 1024 };
        let end_when_acked = r.percent(50);
        let ack_quiet_ms = if r.percent(25) { 0 } else { r.range(1, 50) };
        let detach = r.percent(35);
        let via_listener = r.percent(60);
        let mark_closing = r.percent(20);
        let disable_linger = r.percent(5);
        let request_reads = if r.percent(30) {
            0
        } else {
            r.range(1, 4) as usize
        };
        let request_buf = r.range(1, 16 << 10) as usize;
        let response = (0..r.range(0, 3))
            .map(|_| (r.range(1, 4096) as usize, r.percent(50)))
            .collect();
        let drop_at = r.percent(45).then(|| r.range(0, 30) as usize);
        let begin_at = (via_listener && r.percent(50)).then(|| r.range(0, 12) as usize);
        let spurious_pct = if r.percent(50) { 0 } else { r.range(1, 50) };
        let repolls = r.range(0, 3) as usize;
        let vectored = r.percent(50);
        // The peer's profile: a flood (data only), no end before the tail,
        // or anything.
        let (p_data, p_pending) = match r.below(100) {
            0..=19 => (100, 0),
            20..=49 => (60, 40),
            _ => (50, 35),
        };
        let reads = (0..r.range(0, 40))
            .map(|_| read_step(r, p_data, p_pending))
            .collect();
        let read_tail = match r.below(100) {
            0..=24 => ReadStep::Eof,
            25..=34 => ReadStep::Err(ERRORS[r.below(4) as usize]),
            35..=59 => ReadStep::Pending(WakeUp::Never),
            60..=74 => ReadStep::Pending(WakeUp::AfterMs(r.range(1, 300))),
            75..=84 => ReadStep::Pending(WakeUp::Now),
            // A flood: at least 1 KiB a read, so the byte cap comes soon.
            _ => ReadStep::Data(r.range(1024, 64 << 10) as usize),
        };
        let writes = (0..r.range(0, 4)).map(|_| op_step(r, true)).collect();
        let flushes = (0..r.range(0, 4)).map(|_| op_step(r, false)).collect();
        let shutdowns = (0..r.range(0, 4)).map(|_| op_step(r, false)).collect();
        Script {
            seed,
            mode,
            idle_ms,
            deadline_ms,
            short_ms,
            max_bytes,
            max_lingering,
            end_when_acked,
            ack_quiet_ms,
            detach,
            via_listener,
            mark_closing,
            disable_linger,
            request_reads,
            request_buf,
            response,
            drop_at,
            begin_at,
            spurious_pct,
            repolls,
            vectored,
            reads,
            read_tail,
            writes,
            flushes,
            shutdowns,
        }
    }

    fn config(&self) -> LingerConfig {
        LingerConfig::new()
            .with_mode(self.mode)
            .with_idle_timeout(ms(self.idle_ms))
            .with_deadline(ms(self.deadline_ms))
            .with_short_deadline(ms(self.short_ms))
            .with_max_bytes(self.max_bytes)
            .with_max_lingering(self.max_lingering)
            .with_end_when_acked(self.end_when_acked)
            .with_ack_quiet(ms(self.ack_quiet_ms))
            .with_detach(self.detach)
    }
}

fn pending_wake(r: &mut Rng, never_ok: bool) -> WakeUp {
    match r.below(100) {
        0..=39 => WakeUp::Now,
        40..=79 => WakeUp::AfterMs(r.range(1, 300)),
        _ if never_ok => WakeUp::Never,
        _ => WakeUp::AfterMs(r.range(1, 20)),
    }
}

/// A read: data with chance `p_data` %, pending with `p_pending` %, else
/// EOF or an error.
fn read_step(r: &mut Rng, p_data: u64, p_pending: u64) -> ReadStep {
    let x = r.below(100);
    if x < p_data {
        ReadStep::Data(match r.below(3) {
            0 => r.range(1, 100),
            1 => r.range(1, 4096),
            _ => r.range(1, 64 << 10),
        } as usize)
    } else if x < p_data + p_pending {
        ReadStep::Pending(pending_wake(r, true))
    } else if r.percent(60) {
        ReadStep::Eof
    } else {
        ReadStep::Err(ERRORS[r.below(4) as usize])
    }
}

/// Write-side steps never pend without a wake-up: nothing bounds a flush
/// that never completes, in `LingerIo` or in hyper.
fn op_step(r: &mut Rng, write: bool) -> OpStep {
    match r.below(100) {
        0..=54 => OpStep::Ok(if write { r.range(1, 4096) as usize } else { 0 }),
        55..=92 => OpStep::Pending(pending_wake(r, false)),
        _ => OpStep::Err(ERRORS[r.below(4) as usize]),
    }
}

// ---------------------------------------------------------------------------
// The mock IO and what it records.

type State = Arc<Mutex<MockState>>;

fn lock(state: &State) -> MutexGuard<'_, MockState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

struct MockState {
    t0: Instant,
    reads: VecDeque<ReadStep>,
    read_tail: ReadStep,
    writes: VecDeque<OpStep>,
    flushes: VecDeque<OpStep>,
    shutdowns: VecDeque<OpStep>,
    /// Wakers of `Pending(AfterMs)` steps, with when to wake them.
    wakers: Vec<(Instant, Waker)>,
    /// The driver began the close: reads from here on are the linger's.
    closing: bool,
    eof_returned: bool,
    /// The inner `poll_shutdown` returned `Ready(Ok)`.
    shutdown_done: bool,
    /// A flush or the half-close of the close failed.
    close_failed: bool,
    /// Bytes written since the last successful flush.
    dirty: bool,
    dropped: bool,
    /// The deadline, which also bounds a pending flush or half-close.
    deadline: Duration,
    /// When the close's flush or half-close first returned `Pending`.
    half_close_pending_since: Option<Instant>,
    /// Dropped with the half-close still pending for at least the deadline:
    /// the close gave up on it, as it must.
    half_close_timed_out: bool,
    calls: u64,
    /// Reads since the driver last reset it (before each poll).
    reads_since_mark: usize,
    reads_in_close: usize,
    bytes_in_close: u64,
    /// The first read of the close: the `On` mode's look for waiting input.
    first_close_read: Option<ReadStep>,
    /// When the close last read input.
    last_input: Option<Instant>,
    /// The last read returned `Pending` (so the IO holds a waker).
    last_read_pending: bool,
    linger_saw_eof: bool,
    linger_saw_err: bool,
    /// The first violations (a broken drain may repeat one thousands of
    /// times), and how many more.
    violations: Vec<String>,
    violations_lost: usize,
    trace: Vec<String>,
    trace_lost: usize,
}

impl MockState {
    fn new(script: &Script) -> Self {
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

    fn note(&mut self, line: impl Into<String>) {
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

    fn trace_text(&self) -> String {
        let mut out = self.trace.join("\n");
        if self.trace_lost > 0 {
            out.push_str(&format!("\n... {} more lines", self.trace_lost));
        }
        out
    }
}

/// Wakes the stored wakers that are due.
fn fire_due(state: &State) {
    let due: Vec<Waker> = {
        let mut s = lock(state);
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = s.wakers.drain(..).partition(|(at, _)| *at <= now);
        s.wakers = keep;
        due.into_iter().map(|(_, w)| w).collect()
    };
    due.into_iter().for_each(Waker::wake);
}

struct Mock {
    state: State,
    vectored: bool,
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
            s.half_close_timed_out = s.closing
                && !s.shutdown_done
                && !s.close_failed
                && since.elapsed() + Duration::from_millis(1) >= s.deadline;
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

// ---------------------------------------------------------------------------
// The driver.

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

fn sum_of_outcomes(s: &LingerStats) -> u64 {
    s.peer_closed + s.idle_timeout + s.deadline + s.byte_cap + s.error + s.shortened + s.acked
}

fn outcome_name(s: &LingerStats) -> &'static str {
    [
        (s.peer_closed, "peer_closed"),
        (s.idle_timeout, "idle_timeout"),
        (s.deadline, "deadline"),
        (s.byte_cap, "byte_cap"),
        (s.error, "error"),
        (s.shortened, "shortened"),
        (s.acked, "acked"),
    ]
    .into_iter()
    .find(|(n, _)| *n > 0)
    .map_or("none", |(_, name)| name)
}

/// What a case covered, so the main test can check the generator still
/// reaches every path.
#[derive(Debug, Default)]
struct Coverage {
    outcome: &'static str,
    dropped_unfinished: bool,
    detached: bool,
    foreground_err: bool,
    shutdown_begun: bool,
}

async fn drive(script: Script, state: State) -> Coverage {
    let seed = script.seed;
    let mut rng = Rng::new(seed ^ 0xD1B5_4A32_D192_ED03);
    let config = script.config();
    let mock = Mock {
        state: state.clone(),
        vectored: script.vectored,
    };
    let (listener, io) = if script.via_listener {
        let listener = LingerListener::with_config((), config);
        let io = listener.wrap(mock);
        (Some(listener), io)
    } else {
        (None, LingerIo::with_config(mock, config))
    };
    let stopper: Option<LingerShutdown> = listener.as_ref().map(LingerListener::shutdown_handle);
    let handle = io.handle().clone();
    assert_eq!(io.is_write_vectored(), script.vectored);
    if script.mark_closing {
        handle.mark_closing();
    }
    if script.disable_linger {
        handle.disable_linger();
    }
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut io = io;

    // 1. The request: a few reads through the LingerIo, as hyper would.
    let mut read_any = false;
    let mut saw_eof = false;
    'request: for _ in 0..script.request_reads {
        let mut buf = vec![0u8; script.request_buf];
        for poll in 0.. {
            if poll == MAX_READ_POLLS {
                lock(&state).note("driver: gives up on the request read");
                break 'request;
            }
            let mut rb = ReadBuf::new(&mut buf);
            let polled = Pin::new(&mut io).poll_read(&mut Context::from_waker(&waker), &mut rb);
            match polled {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    saw_eof = true;
                    break 'request;
                }
                Poll::Ready(Ok(())) => {
                    read_any = true;
                    break;
                }
                Poll::Ready(Err(_)) => break 'request,
                Poll::Pending => {
                    // Wait for the wake-up a while; then give up on the
                    // request, as a header-read timeout would.
                    let mut woken = flag.take();
                    for _ in 0..8 {
                        if woken {
                            break;
                        }
                        step_clock(&state, &mut rng).await;
                        woken = flag.take();
                    }
                    if !woken {
                        lock(&state).note("driver: the request read never woke");
                        break 'request;
                    }
                }
            }
        }
    }

    // 2. The response: each write polled once, whatever it returns.
    for &(len, vectored) in &script.response {
        let data = &ZEROS[..len];
        let _ = if vectored {
            let (a, b) = data.split_at(len / 2);
            let bufs = [IoSlice::new(a), IoSlice::new(b)];
            Pin::new(&mut io).poll_write_vectored(&mut Context::from_waker(&waker), &bufs)
        } else {
            Pin::new(&mut io).poll_write(&mut Context::from_waker(&waker), data)
        };
    }

    // 3. The close.
    lock(&state).note(format!(
        "driver: close begins (read_any {read_any}, saw_eof {saw_eof})"
    ));
    lock(&state).closing = true;
    flag.take();
    let mut io = Some(io);
    let mut coverage = Coverage::default();
    let mut result: Option<io::Result<()>> = None;
    let mut begun_at: Option<Instant> = None;
    let mut drain_start: Option<Instant> = None;
    // When the end was seen, and the clock step just before.
    let mut drain_end: Option<(Instant, Duration)> = None;
    let mut last_step = Duration::ZERO;
    let mut done = false;
    let mut polled_any = false;
    for iteration in 0..MAX_ITERATIONS {
        if script.begin_at == Some(iteration) {
            if let Some(stopper) = &stopper {
                stopper.begin();
                begun_at = Some(Instant::now());
                coverage.shutdown_begun = true;
                lock(&state).note("driver: server shutdown begins");
            }
        }
        if script.drop_at == Some(iteration) && result.is_none() {
            if let Some(io) = io.take() {
                lock(&state).note("driver: drops the LingerIo unfinished");
                drop(io);
                coverage.dropped_unfinished = true;
            }
        }
        let woken = flag.take();
        if let Some(lio) = io.as_mut() {
            if result.is_none() && (iteration == 0 || woken || rng.percent(script.spurious_pct)) {
                lock(&state).reads_since_mark = 0;
                let polled = Pin::new(&mut *lio).poll_shutdown(&mut Context::from_waker(&waker));
                let stats = handle.stats();
                polled_any = true;
                let woke_itself = flag.0.load(Ordering::SeqCst);
                let (reads, half_closed, last_read_pending) = {
                    let mut s = lock(&state);
                    s.note(format!(
                        "driver: poll_shutdown -> {polled:?} (woken {woken})"
                    ));
                    (s.reads_since_mark, s.shutdown_done, s.last_read_pending)
                };
                // A drain that returns Pending after a read that returned
                // data holds no waker of the IO: it must wake itself, or it
                // stalls until a timer while input waits.
                if polled.is_pending() && reads > 0 && !last_read_pending {
                    assert!(
                        woke_itself,
                        "poll_shutdown returned Pending after a read that returned data, \
                         without waking itself"
                    );
                }
                assert!(
                    reads <= READS_PER_POLL + 1,
                    "one poll_shutdown made {reads} inner reads; the drain's budget is \
                     {READS_PER_POLL} a poll (+1 for the On mode's look)"
                );
                if let Poll::Ready(r) = polled {
                    match &r {
                        Ok(()) => {
                            assert!(
                                half_closed,
                                "poll_shutdown returned Ready(Ok) before the inner half-close completed"
                            );
                            if !script.detach {
                                assert_eq!(
                                    stats.lingering, 0,
                                    "poll_shutdown returned Ready(Ok) while its linger still runs: {stats:?}"
                                );
                            }
                        }
                        Err(_) => coverage.foreground_err = true,
                    }
                    // Again after completion: ready at once, the IO untouched.
                    for _ in 0..script.repolls {
                        let calls = lock(&state).calls;
                        let again =
                            Pin::new(&mut *lio).poll_shutdown(&mut Context::from_waker(&waker));
                        assert!(
                            matches!(again, Poll::Ready(Ok(()))),
                            "poll_shutdown after completion returned {again:?}"
                        );
                        assert_eq!(
                            lock(&state).calls,
                            calls,
                            "poll_shutdown after completion used the inner IO"
                        );
                        assert_eq!(
                            handle.stats(),
                            stats,
                            "poll_shutdown after completion changed the counters"
                        );
                    }
                    result = Some(r);
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
        if stats.started > 0 && drain_start.is_none() {
            drain_start = Some(now);
            coverage.detached = script.detach;
        }
        if drain_start.is_some() && stats.lingering == 0 && drain_end.is_none() {
            drain_end = Some((now, last_step));
        }
        if io.is_none() && stats.lingering == 0 && lock(&state).dropped {
            done = true;
            break;
        }
        last_step = step_clock(&state, &mut rng).await;
    }
    assert!(
        done,
        "the close did not end within {MAX_ITERATIONS} clock steps (a lost wake-up?): {:?}",
        handle.stats()
    );

    // 4. The end state.
    let stats = handle.stats();
    let s = lock(&state);
    assert!(
        s.violations.is_empty(),
        "the mock recorded misuse: {:?} (and {} more)",
        s.violations,
        s.violations_lost
    );
    assert_eq!(stats.lingering, 0, "{stats:?}");
    assert_eq!(
        stats.started,
        sum_of_outcomes(&stats),
        "started is not the sum of the outcomes: {stats:?}"
    );
    assert_eq!(
        stats.acked, 0,
        "acked, over an IO that cannot report acknowledgements"
    );
    // The flush and half-close are bounded by the deadline: a close whose
    // inner half-close stayed pending that long fails with `TimedOut`.
    let timed_out = s.half_close_timed_out
        || matches!(&result, Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut)
            && !s.shutdown_done
            && !s.close_failed;
    if let Some(r) = result.as_ref().filter(|_| !timed_out) {
        assert_eq!(
            r.is_err(),
            s.close_failed,
            "poll_shutdown returned {r:?}, but the inner flush/half-close {}",
            if s.close_failed {
                "failed"
            } else {
                "did not fail"
            }
        );
    }
    if let Some(stopper) = &stopper {
        let mut wait = std::pin::pin!(stopper.wait());
        assert!(
            wait.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready(),
            "LingerShutdown::wait pending with no linger left"
        );
    }

    // Whether it lingered: the mode, what the driver read, and the look.
    let disabled = script.disable_linger || saw_eof;
    let (expected, may_look) = match script.mode {
        _ if !s.shutdown_done || disabled => (0, false),
        LingerMode::Off => (0, false),
        LingerMode::Always => (1, false),
        LingerMode::On if read_any || script.mark_closing => (1, false),
        LingerMode::On => (
            u64::from(matches!(s.first_close_read, Some(ReadStep::Data(_)))),
            true,
        ),
    };
    assert_eq!(
        stats.started, expected,
        "lingered {} times; expected {expected} (mode {:?}, read_any {read_any}, saw_eof \
         {saw_eof}, half-closed {}, first read of the close {:?})",
        stats.started, script.mode, s.shutdown_done, s.first_close_read
    );
    if expected == 0 {
        assert!(
            s.reads_in_close <= usize::from(may_look),
            "{} reads in a close that did not linger",
            s.reads_in_close
        );
    }

    // Every close that began half-closes (or fails trying): all but an IO
    // dropped before any poll_shutdown with no sure reason to linger.
    let sure_to_linger = !disabled
        && match script.mode {
            LingerMode::Off => false,
            LingerMode::On => read_any || script.mark_closing,
            LingerMode::Always => true,
        };
    if polled_any || sure_to_linger {
        assert!(
            s.shutdown_done || s.close_failed || timed_out,
            "the close ended without the inner half-close (polled {polled_any}, sure to \
             linger {sure_to_linger})"
        );
    } else {
        assert!(
            !s.shutdown_done && s.reads_in_close == 0,
            "an IO dropped with no reason to linger was half-closed or read"
        );
    }

    // Bytes: every byte the close read is counted, and the cap holds.
    assert_eq!(
        stats.bytes_discarded, s.bytes_in_close,
        "bytes discarded vs. bytes the close read"
    );
    assert!(
        stats.bytes_discarded < script.max_bytes + READ_CHUNK,
        "discarded {} bytes, max_bytes {} (+ one read of at most {READ_CHUNK})",
        stats.bytes_discarded,
        script.max_bytes
    );

    // Time: the linger ends by its deadline (short when it applies) and its
    // idle timeout, seen at the first clock step past them.
    if stats.started == 1 {
        let start = drain_start.expect("a linger started unseen");
        let (end, step) = drain_end.expect("a linger ended unseen");
        let short_at_start = script.max_lingering == 0 || begun_at.is_some_and(|b| b <= start);
        let deadline = if short_at_start {
            ms(script.deadline_ms.min(script.short_ms))
        } else {
            ms(script.deadline_ms)
        };
        let mut limit = start + deadline;
        if let Some(b) = begun_at.filter(|b| *b > start) {
            limit = limit.min(b + ms(script.short_ms));
        }
        let idle_from = s.last_input.map_or(start, |t| t.max(start));
        let bound = limit.min(idle_from + ms(script.idle_ms));
        let took = end - start;
        assert!(
            end <= bound + step + SLACK,
            "the linger took {took:?}: past its bound {:?} (+ the last clock step {step:?}); \
             outcome {}",
            bound - start,
            outcome_name(&stats)
        );
        match outcome_name(&stats) {
            "peer_closed" => assert!(s.linger_saw_eof, "peer_closed without an EOF"),
            "error" => assert!(s.linger_saw_err, "error without a read error"),
            "byte_cap" => assert!(stats.bytes_discarded >= script.max_bytes),
            "deadline" => assert!(
                took >= ms(script.deadline_ms),
                "deadline after {took:?} < {} ms",
                script.deadline_ms
            ),
            "idle_timeout" => assert!(
                end - idle_from >= ms(script.idle_ms),
                "idle_timeout {:?} after the last input < {} ms",
                end - idle_from,
                script.idle_ms
            ),
            "shortened" => assert!(
                script.max_lingering == 0 || begun_at.is_some(),
                "shortened, but neither the cap nor a shutdown applies"
            ),
            other => panic!("outcome {other}"),
        }
    }
    coverage.outcome = outcome_name(&stats);
    coverage
}

// ---------------------------------------------------------------------------
// Running cases.

/// Panics anywhere in the process (the close's own tasks included: tokio
/// catches those), so a case can tell one happened.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic".to_string(),
        },
    }
}

/// Runs one seed; on failure, says why, with the script and the trace.
async fn run_case(seed: u64) -> Result<Coverage, String> {
    count_panics();
    let script = Script::generate(seed);
    let state: State = Arc::new(Mutex::new(MockState::new(&script)));
    let panics = PANICS.load(Ordering::SeqCst);
    let joined = tokio::spawn(drive(script.clone(), state.clone())).await;
    let panicked = PANICS.load(Ordering::SeqCst) - panics;
    let why = match joined {
        Ok(coverage) if panicked == 0 => return Ok(coverage),
        Ok(_) => format!("{panicked} panic(s) on a task the close spawned (see stderr)"),
        Err(e) if e.is_panic() => panic_text(e.into_panic()),
        Err(e) => e.to_string(),
    };
    let s = lock(&state);
    Err(format!(
        "seed {seed} failed: {why}\n\
         replay: replay({seed}), or PROP_SEED={seed} cargo test --test prop_state_machine replay -- --ignored\n\
         script: {script:#?}\n\
         violations: {:?}\n\
         trace:\n{}",
        s.violations,
        s.trace_text()
    ))
}

/// Runs one seed, panicking with its script and trace if it fails.
async fn replay(seed: u64) -> Coverage {
    run_case(seed).await.unwrap_or_else(|why| panic!("{why}"))
}

#[tokio::test(start_paused = true)]
async fn close_state_machine_holds_for_every_seed() {
    let mut failed = Vec::new();
    let mut first = None;
    let mut outcomes = std::collections::BTreeMap::new();
    let (mut dropped, mut detached, mut errs, mut begun) = (0, 0, 0, 0);
    for seed in 0..SEEDS {
        match run_case(seed).await {
            Ok(c) => {
                *outcomes.entry(c.outcome).or_insert(0u32) += 1;
                dropped += u32::from(c.dropped_unfinished);
                detached += u32::from(c.detached);
                errs += u32::from(c.foreground_err);
                begun += u32::from(c.shutdown_begun);
            }
            Err(why) => {
                failed.push(seed);
                first.get_or_insert(why);
                if failed.len() == MAX_FAILURES {
                    break;
                }
            }
        }
    }
    if let Some(first) = first {
        panic!(
            "{} of {SEEDS} seeds failed{}: {failed:?}\n\nfirst failure:\n{first}",
            failed.len(),
            if failed.len() == MAX_FAILURES {
                " (stopped there)"
            } else {
                ""
            },
        );
    }
    // The generator still reaches every path.
    for outcome in [
        "none",
        "peer_closed",
        "idle_timeout",
        "deadline",
        "byte_cap",
        "error",
        "shortened",
    ] {
        assert!(
            outcomes.get(outcome).copied().unwrap_or(0) >= 10,
            "outcome {outcome} too rare: {outcomes:?}"
        );
    }
    for (what, n) in [
        ("dropped unfinished", dropped),
        ("detached", detached),
        ("foreground error", errs),
        ("shutdown begun", begun),
    ] {
        assert!(n >= 10, "{what}: only {n} cases");
    }
}

#[tokio::test(start_paused = true)]
#[ignore = "replays the seed in PROP_SEED"]
async fn replay_from_env() {
    let seed = std::env::var("PROP_SEED")
        .expect("set PROP_SEED")
        .parse()
        .expect("PROP_SEED: a u64");
    let coverage = replay(seed).await;
    println!("seed {seed} passed: {coverage:?}");
}
