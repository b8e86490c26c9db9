//! The generator: a seeded script of one case, which is a configuration,
//! what the mock IO answers to each call, and what the driver does.

use std::io;

use linger::{LingerConfig, LingerMode};

use crate::ms;

/// A tiny deterministic PRNG: xorshift64*, seeded through splitmix64.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub(crate) fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// How a `Pending` arranges its wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeUp {
    /// `wake_by_ref` before returning.
    Now,
    /// The driver wakes the stored waker once the clock has moved this far.
    AfterMs(u64),
    /// Never (reads only: a silent peer; the linger's timers must end it).
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStep {
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
pub(crate) enum OpStep {
    Ok(usize),
    Pending(WakeUp),
    Err(io::ErrorKind),
}

#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub(crate) seed: u64,
    // The configuration.
    pub(crate) mode: LingerMode,
    pub(crate) idle_ms: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) short_ms: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_lingering: usize,
    pub(crate) end_when_acked: bool,
    pub(crate) ack_quiet_ms: u64,
    pub(crate) detach: bool,
    // The driver.
    /// Built by `LingerListener::wrap` (so a server shutdown can begin)
    /// rather than `LingerIo::with_config`.
    pub(crate) via_listener: bool,
    pub(crate) mark_closing: bool,
    pub(crate) disable_linger: bool,
    /// Request reads through the `LingerIo` before the close.
    pub(crate) request_reads: usize,
    pub(crate) request_buf: usize,
    /// Response writes before the close: (length, vectored).
    pub(crate) response: Vec<(usize, bool)>,
    /// Driver iteration at which the `LingerIo` is dropped unfinished (0:
    /// before any `poll_shutdown`).
    pub(crate) drop_at: Option<usize>,
    /// Driver iteration at which the server shutdown begins.
    pub(crate) begin_at: Option<usize>,
    /// Chance, per iteration, of a poll nobody woke for.
    pub(crate) spurious_pct: u64,
    /// `poll_shutdown` calls after it completed.
    pub(crate) repolls: usize,
    // The mock IO.
    pub(crate) vectored: bool,
    pub(crate) reads: Vec<ReadStep>,
    /// Repeated once `reads` is used up.
    pub(crate) read_tail: ReadStep,
    pub(crate) writes: Vec<OpStep>,
    pub(crate) flushes: Vec<OpStep>,
    pub(crate) shutdowns: Vec<OpStep>,
}

const ERRORS: [io::ErrorKind; 4] = [
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::TimedOut,
    io::ErrorKind::Other,
];

impl Script {
    pub(crate) fn generate(seed: u64) -> Self {
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

    pub(crate) fn config(&self) -> LingerConfig {
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
