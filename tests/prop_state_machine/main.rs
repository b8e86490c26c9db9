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
//! - [`generator`]: the seeded script of a case;
//! - [`mock`]: the inner IO, which follows the script and records misuse
//!   and a trace;
//! - [`driver`]: plays the script against `LingerIo` and records what it
//!   saw (polling only when woken, so a lost wake-up shows as a linger
//!   that ends late or never);
//! - [`properties`]: one function per property, checked on that record.
//!
//! A failing seed is printed with its script and a trace of every IO call;
//! replay it with `PROP_SEED=<seed> cargo test --test prop_state_machine
//! replay -- --ignored`.

mod driver;
mod generator;
mod mock;
mod properties;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::Poll;
use std::time::Duration;

use crate::driver::{drive, Run};
use crate::generator::Script;
use crate::mock::{lock, MockState, State};
use crate::properties::outcome_name;

/// Seeds run by the main test.
const SEEDS: u64 = 10_000;
/// Failures after which the main test stops (a broken close can leave busy
/// tasks behind that slow every later case).
const MAX_FAILURES: usize = 50;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a case covered, so the main test can check the generator still
/// reaches every path.
#[derive(Debug, Default)]
struct Coverage {
    outcome: &'static str,
    dropped_unfinished: bool,
    detached: bool,
    kept_in_place: bool,
    foreground_err: bool,
    shutdown_begun: bool,
}

impl Coverage {
    fn of(script: &Script, run: &Run) -> Self {
        Coverage {
            outcome: outcome_name(&run.stats),
            dropped_unfinished: run.dropped_unfinished,
            // Seen: a close that returned while its linger ran on.
            detached: run
                .polls
                .iter()
                .any(|p| p.polled == Poll::Ready(Ok(())) && p.stats.lingering > 0),
            // Seen: a detaching close that lingered in place, the server
            // shutdown having begun.
            kept_in_place: run.polls.iter().any(|p| {
                script.detach
                    && !properties::may_hand_off(script, p.iteration)
                    && p.polled.is_pending()
                    && p.stats.lingering > 0
            }),
            foreground_err: matches!(run.result, Some(Err(_))),
            shutdown_begun: run.begun_at.is_some(),
        }
    }
}

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
    let case = {
        let (script, state) = (script.clone(), state.clone());
        async move {
            let run = drive(&script, &state).await;
            properties::check(&script, &run, &lock(&state));
            Coverage::of(&script, &run)
        }
    };
    let joined = tokio::spawn(case).await;
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
    let mut outcomes = BTreeMap::new();
    let (mut dropped, mut detached, mut kept, mut errs, mut begun) = (0, 0, 0, 0, 0);
    for seed in 0..SEEDS {
        match run_case(seed).await {
            Ok(c) => {
                *outcomes.entry(c.outcome).or_insert(0u32) += 1;
                dropped += u32::from(c.dropped_unfinished);
                detached += u32::from(c.detached);
                kept += u32::from(c.kept_in_place);
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
        ("detaching, kept in place by the shutdown", kept),
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
