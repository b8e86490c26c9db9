//! The properties, one function each, checked on what the driver and the
//! mock recorded for a case. Each panics with what it found; the caller
//! adds the script and the trace.

use std::io;
use std::task::Poll;
use std::time::Duration;

use linger::{LingerMode, LingerStats};

/// What `LingerIo`'s docs promise a drain does per poll: at most 16 reads
/// of at most 64 KiB each, then it yields.
const DRAIN_READS_PER_POLL: usize = 16;
const DRAIN_READ_LEN: usize = 64 * 1024;
use tokio::time::Instant;

use crate::driver::{ClosePoll, Run, MAX_ITERATIONS};
use crate::generator::{ReadStep, Script};
use crate::mock::MockState;
use crate::ms;

/// Timer rounding.
const SLACK: Duration = Duration::from_millis(1);

/// Checks every property of one case, in the order a run meets them: the
/// IO's set-up, each `poll_shutdown`, then the end state.
pub(crate) fn check(script: &Script, run: &Run, io: &MockState) {
    forwards_write_vectored(script, run);
    for poll in &run.polls {
        drain_wakes_itself(poll);
        drain_reads_within_budget(poll);
        ready_only_after_the_half_close(poll);
        ready_only_after_the_linger(script, poll);
        completion_is_final(poll);
    }
    close_ends(run);
    inner_io_used_correctly(io);
    counters_consistent(&run.stats);
    result_matches_the_inner_close(run, io);
    shutdown_waiter_ready_at_the_end(run);
    lingers_when_the_mode_says(script, run, io);
    every_close_half_closes(script, run, io);
    bytes_counted_and_capped(script, run, io);
    linger_ends_within_its_bounds(script, run, io);
    outcome_has_its_cause(script, run, io);
}

/// Where a poll is in the trace.
fn at(poll: &ClosePoll) -> String {
    format!(
        "(iteration {}, at {} ms, woken {})",
        poll.iteration,
        poll.at.as_millis(),
        poll.woken
    )
}

/// `LingerIo` writes vectored exactly when its inner IO does.
fn forwards_write_vectored(script: &Script, run: &Run) {
    assert_eq!(
        run.write_vectored, script.vectored,
        "LingerIo::is_write_vectored differs from the inner IO's"
    );
}

/// A drain that returns `Pending` after a read that returned data holds no
/// waker of the IO: it must wake itself, or it stalls until a timer while
/// input waits.
fn drain_wakes_itself(poll: &ClosePoll) {
    if poll.polled.is_pending() && poll.reads > 0 && !poll.last_read_pending {
        assert!(
            poll.woke_itself,
            "poll_shutdown {} returned Pending after a read that returned data, \
             without waking itself",
            at(poll)
        );
    }
}

/// One poll reads at most the drain's budget, plus the `On` mode's look
/// for waiting input.
fn drain_reads_within_budget(poll: &ClosePoll) {
    assert!(
        poll.reads <= DRAIN_READS_PER_POLL + 1,
        "one poll_shutdown {} made {} inner reads; the drain's budget is \
         {DRAIN_READS_PER_POLL} a poll (+1 for the On mode's look)",
        at(poll),
        poll.reads
    );
}

/// `Ready(Ok)` means the inner half-close completed.
fn ready_only_after_the_half_close(poll: &ClosePoll) {
    if poll.polled == Poll::Ready(Ok(())) {
        assert!(
            poll.half_closed,
            "poll_shutdown {} returned Ready(Ok) before the inner half-close completed",
            at(poll)
        );
    }
}

/// `Ready(Ok)` means the linger ended, unless it was handed to a task of
/// its own: detached, and the server shutdown had not begun (from then on a
/// linger stays in place).
fn ready_only_after_the_linger(script: &Script, poll: &ClosePoll) {
    if poll.polled == Poll::Ready(Ok(())) && !may_hand_off(script, poll.iteration) {
        assert_eq!(
            poll.stats.lingering,
            0,
            "poll_shutdown {} returned Ready(Ok) while its linger still runs: {:?}",
            at(poll),
            poll.stats
        );
    }
}

/// Whether a close that begins to linger in driver iteration `iteration`
/// goes to a task of its own.
pub(crate) fn may_hand_off(script: &Script, iteration: usize) -> bool {
    let begun = script.via_listener && script.begin_at.is_some_and(|at| at <= iteration);
    script.detach && !begun
}

/// After completion, `poll_shutdown` is ready at once with `Ok`, and
/// touches neither the inner IO nor the counters.
fn completion_is_final(poll: &ClosePoll) {
    for again in &poll.repolls {
        assert!(
            again.polled == Poll::Ready(Ok(())),
            "poll_shutdown after completion {} returned {:?}",
            at(poll),
            again.polled
        );
        assert_eq!(
            again.calls,
            0,
            "poll_shutdown after completion {} used the inner IO",
            at(poll)
        );
        assert_eq!(
            again.stats,
            poll.stats,
            "poll_shutdown after completion {} changed the counters",
            at(poll)
        );
    }
}

/// The close, and every linger it started, ends: a lost wake-up shows here.
fn close_ends(run: &Run) {
    assert!(
        run.ended,
        "the close did not end within {MAX_ITERATIONS} clock steps (a lost wake-up?): {:?}",
        run.stats
    );
}

/// The mock saw no misuse (a read after EOF, a write after the half-close,
/// a second inner `poll_shutdown`, a drain read before the half-close, ...).
fn inner_io_used_correctly(io: &MockState) {
    assert!(
        io.violations.is_empty(),
        "the mock recorded misuse: {:?} (and {} more)",
        io.violations,
        io.violations_lost
    );
}

pub(crate) fn sum_of_outcomes(s: &LingerStats) -> u64 {
    s.peer_closed + s.idle_timeout + s.deadline + s.byte_cap + s.error + s.shortened + s.acked
}

pub(crate) fn outcome_name(s: &LingerStats) -> &'static str {
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

/// No linger left; every started one has one outcome; none is `acked`
/// over an IO that cannot report acknowledgements.
fn counters_consistent(stats: &LingerStats) {
    assert_eq!(stats.lingering, 0, "{stats:?}");
    assert_eq!(
        stats.started,
        sum_of_outcomes(stats),
        "started is not the sum of the outcomes: {stats:?}"
    );
    assert_eq!(
        stats.acked, 0,
        "acked, over an IO that cannot report acknowledgements"
    );
}

/// The flush and half-close are bounded by the deadline: a close whose
/// inner half-close stayed pending that long fails with `TimedOut`.
fn half_close_timed_out(run: &Run, io: &MockState) -> bool {
    io.half_close_timed_out
        || matches!(&run.result, Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut)
            && !io.shutdown_done
            && !io.close_failed
}

/// `poll_shutdown` fails exactly when the inner flush or half-close
/// failed (or timed out).
fn result_matches_the_inner_close(run: &Run, io: &MockState) {
    if let Some(r) = run
        .result
        .as_ref()
        .filter(|_| !half_close_timed_out(run, io))
    {
        assert_eq!(
            r.is_err(),
            io.close_failed,
            "poll_shutdown returned {r:?}, but the inner flush/half-close {}",
            if io.close_failed {
                "failed"
            } else {
                "did not fail"
            }
        );
    }
}

/// With no linger left, `LingerShutdown::wait` is ready.
fn shutdown_waiter_ready_at_the_end(run: &Run) {
    assert_ne!(
        run.wait_ready,
        Some(false),
        "LingerShutdown::wait pending with no linger left"
    );
}

/// The driver's request read saw EOF, or the linger was disabled.
fn disabled(script: &Script, run: &Run) -> bool {
    script.disable_linger || run.saw_eof
}

/// Whether it lingered: the mode, what the driver read, and the `On`
/// mode's look for waiting input; a close that did not linger reads at
/// most that look.
fn lingers_when_the_mode_says(script: &Script, run: &Run, io: &MockState) {
    let (expected, may_look) = match script.mode {
        _ if !io.shutdown_done || disabled(script, run) => (0, false),
        LingerMode::Off => (0, false),
        LingerMode::Always => (1, false),
        LingerMode::On if run.read_any || script.mark_closing => (1, false),
        LingerMode::On => (
            u64::from(matches!(io.first_close_read, Some(ReadStep::Data(_)))),
            true,
        ),
    };
    assert_eq!(
        run.stats.started,
        expected,
        "lingered {} times; expected {expected} (mode {:?}, read_any {}, saw_eof {}, \
         half-closed {}, first read of the close {:?})",
        run.stats.started,
        script.mode,
        run.read_any,
        run.saw_eof,
        io.shutdown_done,
        io.first_close_read
    );
    if expected == 0 {
        assert!(
            io.reads_in_close <= usize::from(may_look),
            "{} reads in a close that did not linger",
            io.reads_in_close
        );
    }
}

/// Every close that began half-closes (or fails trying): all but an IO
/// dropped before any `poll_shutdown` with no sure reason to linger,
/// which is neither half-closed nor read.
fn every_close_half_closes(script: &Script, run: &Run, io: &MockState) {
    let sure_to_linger = !disabled(script, run)
        && match script.mode {
            LingerMode::Off => false,
            LingerMode::On => run.read_any || script.mark_closing,
            LingerMode::Always => true,
        };
    let polled_any = !run.polls.is_empty();
    if polled_any || sure_to_linger {
        assert!(
            io.shutdown_done || io.close_failed || half_close_timed_out(run, io),
            "the close ended without the inner half-close (polled {polled_any}, sure to \
             linger {sure_to_linger})"
        );
    } else {
        assert!(
            !io.shutdown_done && io.reads_in_close == 0,
            "an IO dropped with no reason to linger was half-closed or read"
        );
    }
}

/// Every byte the close read is counted, and the cap holds (give or take
/// the one read that crosses it).
fn bytes_counted_and_capped(script: &Script, run: &Run, io: &MockState) {
    let read_len = DRAIN_READ_LEN as u64;
    assert_eq!(
        run.stats.bytes_discarded, io.bytes_in_close,
        "bytes discarded vs. bytes the close read"
    );
    assert!(
        run.stats.bytes_discarded < script.max_bytes + read_len,
        "discarded {} bytes, max_bytes {} (+ one read of at most {read_len})",
        run.stats.bytes_discarded,
        script.max_bytes
    );
}

/// When the one linger of a case started and ended, as the driver saw it.
struct Span {
    start: Instant,
    end: Instant,
    /// The clock step just before the end was seen.
    step: Duration,
    /// What the idle timeout counts from: the last input, or the start.
    idle_from: Instant,
}

fn span(run: &Run, io: &MockState) -> Option<Span> {
    if run.stats.started != 1 {
        return None;
    }
    let start = run.drain_start.expect("a linger started unseen");
    let (end, step) = run.drain_end.expect("a linger ended unseen");
    let idle_from = io.last_input.map_or(start, |t| t.max(start));
    Some(Span {
        start,
        end,
        step,
        idle_from,
    })
}

/// The linger ends by its deadline (the short one when it applies) and its
/// idle timeout, seen at the first clock step past them.
fn linger_ends_within_its_bounds(script: &Script, run: &Run, io: &MockState) {
    let Some(Span {
        start,
        end,
        step,
        idle_from,
    }) = span(run, io)
    else {
        return;
    };
    let short_at_start = script.max_lingering == 0 || run.begun_at.is_some_and(|b| b <= start);
    let deadline = if short_at_start {
        ms(script.deadline_ms.min(script.short_ms))
    } else {
        ms(script.deadline_ms)
    };
    let mut limit = start + deadline;
    if let Some(b) = run.begun_at.filter(|b| *b > start) {
        limit = limit.min(b + ms(script.short_ms));
    }
    let bound = limit.min(idle_from + ms(script.idle_ms));
    assert!(
        end <= bound + step + SLACK,
        "the linger took {:?}: past its bound {:?} (+ the last clock step {step:?}); \
         outcome {}",
        end - start,
        bound - start,
        outcome_name(&run.stats)
    );
}

/// The outcome the counters report is what ended the linger.
fn outcome_has_its_cause(script: &Script, run: &Run, io: &MockState) {
    let Some(Span {
        start,
        end,
        idle_from,
        ..
    }) = span(run, io)
    else {
        return;
    };
    let took = end - start;
    match outcome_name(&run.stats) {
        "peer_closed" => assert!(io.linger_saw_eof, "peer_closed without an EOF"),
        "error" => assert!(io.linger_saw_err, "error without a read error"),
        "byte_cap" => assert!(run.stats.bytes_discarded >= script.max_bytes),
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
            script.max_lingering == 0 || run.begun_at.is_some(),
            "shortened, but neither the cap nor a shutdown applies"
        ),
        other => panic!("outcome {other}"),
    }
}
