//! The README's performance figures, each measured side by side in one run:
//!
//! 1. keep-alive cost ([`keepalive`]): server CPU per request and
//!    requests/s for `GET /ok`, linger (`LingerListener` + `LingerLayer`)
//!    against plain axum, under wrk;
//! 2. lingering memory ([`memory`]): the server's RSS with 10,000
//!    connections lingering at once, against the same connections idle in
//!    keep-alive and against none, with what the kernel charges for the
//!    sockets beside it;
//! 3. drain cost ([`drain`]): server CPU per GiB discarded while clients
//!    flood a linger, `recv(MSG_TRUNC)` against the copying fallback;
//! 4. hold time ([`hold`]): how long after its response the server keeps a
//!    well-behaved client's socket.
//!
//! # Which figures run
//!
//! All four take several minutes (`benches/run.sh` bounds the run at 30),
//! so a plain `cargo bench` does not start them: without a selection this
//! target measures figure 4 alone (a few seconds: no wrk, no raised fd
//! limit, and a quiet wait of 10 s instead of 180 s), and skips it with a
//! note on a machine without 2 cores or `taskset`. Select figures with
//! arguments or the environment:
//!
//! ```text
//! benches/run.sh                          # all four, as published (FIGURES=1,3 for some)
//! cargo bench --bench figures -- all      # all four
//! cargo bench --bench figures -- figure1 figure3   # or: -- 1,3
//! FIGURES=2 cargo bench --bench figures
//! cargo bench --bench figures -- --list   # what each figure needs, and the knobs
//! ```
//!
//! An argument that names no figure (a `cargo bench <filter>` meant for
//! another target) selects nothing, and the target only prints the list.
//!
//! # How
//!
//! `benches/run.sh` installs wrk, builds this target, raises the fd limit
//! and runs it. The one binary plays both parts: by default it is the
//! orchestrator, pinned to core 1 ([`main`] re-runs itself under `taskset`),
//! which drives the load (wrk, see [`wrk`], or its own blocking sockets,
//! see [`client`]); with `serve ...` it is a server ([`serve`]), which the
//! orchestrator starts as a child under `taskset -c 0` ([`child`]) and asks
//! for its `LingerStats` over stdin. Server CPU time comes from
//! `/proc/PID/task/*/schedstat`, RSS from `/proc/PID/status` ([`procfs`]).
//!
//! Side by side means at the same time where CPU is measured (figures 1
//! and 3): the two servers share core 0 and are loaded at once, so whatever
//! else disturbs this (virtual, shared) machine during a round disturbs both
//! alike and cancels in the round's ratio; alternating runs varied ±10-20%
//! round to round even between two identical servers. Rounds during which
//! other processes used the CPU are discarded and run again, and the bench
//! first waits (bounded) for the machine to be quiet ([`load`]).
//!
//! Every wait is bounded: sockets have timeouts, children are waited for
//! with deadlines, and polls give up after a fixed time.

// The lab server (`support::lab`), shared with the tests and the reset-lab
// example.
#[path = "../../tests/support/mod.rs"]
mod support;

mod child;
mod client;
mod drain;
mod hold;
mod keepalive;
mod load;
mod memory;
mod procfs;
mod serve;
mod summary;
mod wrk;

use std::env;
use std::fs;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::load::wait_quiet;
use crate::procfs::{cpu_count, cpu_model, cpus_allowed, fd_limit};
use crate::wrk::wrk_version;

pub(crate) type R<T> = Result<T, String>;

/// One figure: its number, what it measures, what it needs, its runner.
struct Figure {
    n: &'static str,
    title: &'static str,
    needs: &'static str,
    run: fn(&Settings) -> R<()>,
}

const FIGURES: [Figure; 4] = [
    Figure {
        n: "1",
        title: "keep-alive cost: server CPU per request under wrk, linger vs plain axum",
        needs: "wrk; FIGURES_ROUNDS × FIGURES_SECS s of load (30 s by default)",
        run: keepalive::run,
    },
    Figure {
        n: "2",
        title: "lingering memory: server RSS with FIGURES_MEM_CONNS connections lingering",
        needs: "an fd limit above FIGURES_MEM_CONNS + 100 (benches/run.sh raises it)",
        run: memory::run,
    },
    Figure {
        n: "3",
        title: "drain cost: server CPU per GiB discarded, MSG_TRUNC vs copying",
        needs: "FIGURES_FLOOD_ROUNDS × 2 × FIGURES_FLOOD_MIB MiB over loopback",
        run: drain::run,
    },
    Figure {
        n: "4",
        title: "hold time: how long the server keeps a well-behaved client's socket",
        needs: "nothing more (a few seconds); what a plain `cargo bench` runs",
        run: hold::run,
    },
];

/// The figure a plain `cargo bench` runs.
const QUICK: &str = "4";
/// The quiet wait of a plain `cargo bench`, unless FIGURES_QUIET_WAIT says.
const QUICK_QUIET_WAIT: u64 = 10;

/// What this run does.
enum Plan {
    /// The figures selected by arguments or `FIGURES`.
    Selected(Vec<&'static Figure>),
    /// Nothing selected: the quick figure.
    Quick,
    /// Print the figures and how to run them.
    List(Option<String>),
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve::main(&args[1..]);
    }
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("figures: {e}");
            list();
            return ExitCode::FAILURE;
        }
    };
    match &plan {
        Plan::List(why) => {
            if let Some(why) = why {
                println!("figures: {why}");
            }
            list();
            return ExitCode::SUCCESS;
        }
        Plan::Quick if !can_pin() => {
            println!("figures: skipped: figure {QUICK} needs 2 cores and `taskset` (util-linux)");
            list();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if cpus_allowed(None).as_deref() != Some("1") && env::var_os("FIGURES_PINNED").is_none() {
        // Re-run pinned to core 1: the servers get core 0 to themselves.
        let status = env::current_exe().and_then(|exe| {
            Command::new("taskset")
                .args(["-c", "1"])
                .arg(exe)
                .args(&args)
                .env("FIGURES_PINNED", "1")
                .status()
        });
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("figures: cannot re-run under `taskset -c 1`: {e}");
                ExitCode::FAILURE
            }
        };
    }
    orchestrate(plan)
}

/// The plan from the arguments (`all`, `figure1`, `1,3`, `--list`), else
/// from `FIGURES`, else the quick figure.
fn plan(args: &[String]) -> R<Plan> {
    if args
        .iter()
        .any(|a| ["--list", "--help", "-h"].contains(&a.as_str()))
    {
        return Ok(Plan::List(None));
    }
    // Other flags (libtest's, passed on by `cargo bench`) are ignored.
    let words: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if !words.is_empty() {
        let picked = pick(&words, |w| w.strip_prefix("figure").unwrap_or(w));
        return Ok(if picked.is_empty() {
            Plan::List(Some(format!(
                "no figure matches {}: nothing to run",
                words.join(" ")
            )))
        } else {
            Plan::Selected(picked)
        });
    }
    // FIGURES_ONLY: the name benches/run.sh used to read.
    match env::var("FIGURES").or_else(|_| env::var("FIGURES_ONLY")) {
        Ok(v) if !v.trim().is_empty() => {
            let words: Vec<&str> = v.split(',').map(str::trim).collect();
            let picked = pick(&words, |w| w);
            if picked.is_empty() || words.iter().any(|w| *w != "all" && !is_figure(w)) {
                Err(format!(
                    "FIGURES={v:?}: use all, or figure numbers such as 1,3"
                ))
            } else {
                Ok(Plan::Selected(picked))
            }
        }
        _ => Ok(Plan::Quick),
    }
}

fn is_figure(n: &str) -> bool {
    FIGURES.iter().any(|f| f.n == n)
}

/// The figures the words name (`all`: every one), in order.
fn pick(words: &[&str], number: impl Fn(&str) -> &str) -> Vec<&'static Figure> {
    FIGURES
        .iter()
        .filter(|f| words.iter().any(|w| *w == "all" || number(w) == f.n))
        .collect()
}

fn list() {
    println!();
    println!("figures (each also needs 2 cores and taskset: servers on core 0, load on core 1):");
    for f in &FIGURES {
        println!("  figure{}  {}", f.n, f.title);
        println!("           needs: {}", f.needs);
    }
    println!();
    println!("run them:");
    println!("  benches/run.sh                                  all four, as published (installs wrk, raises the fd limit)");
    println!("  FIGURES=1,3 benches/run.sh                      some of them");
    println!("  cargo bench --bench figures -- all              all four (`-- figure1 figure3` or `-- 1,3`: some)");
    println!("  FIGURES=2 cargo bench --bench figures           the same, from the environment");
    println!("  cargo bench                                     figure {QUICK} only");
    println!();
    println!("knobs (defaults in brackets): FIGURES_ROUNDS [10], FIGURES_SECS [3], FIGURES_WRK_CONNS [32], FIGURES_MEM_CONNS [10000], FIGURES_FLOOD_MIB [1024], FIGURES_FLOOD_CONNS [4], FIGURES_FLOOD_ROUNDS [5], FIGURES_HOLD_CONNS [2000], FIGURES_QUIET_WAIT [180; {QUICK_QUIET_WAIT} for the quick figure], FIGURES_F1_B [linger] (see benches/run.sh)");
}

/// Whether the servers can be pinned to core 0 and the load to core 1.
fn can_pin() -> bool {
    let taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let cpus = cpus_allowed(None).unwrap_or_default();
    taskset && (cpus == "1" || cpu_count() >= 2)
}

/// Knobs, from the environment (the defaults are the published figures).
pub(crate) struct Settings {
    pub(crate) rounds: usize,
    pub(crate) secs: u64,
    pub(crate) wrk_conns: usize,
    pub(crate) mem_conns: usize,
    pub(crate) flood_mib: u64,
    pub(crate) flood_conns: usize,
    pub(crate) flood_rounds: usize,
    pub(crate) hold_conns: usize,
    pub(crate) quiet_wait: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env(quiet_wait: u64) -> Self {
        Self {
            rounds: env_or("FIGURES_ROUNDS", 10).max(1),
            secs: env_or("FIGURES_SECS", 3).max(1),
            wrk_conns: env_or("FIGURES_WRK_CONNS", 32).max(1),
            mem_conns: env_or("FIGURES_MEM_CONNS", 10_000).max(1),
            flood_mib: env_or("FIGURES_FLOOD_MIB", 1024).max(1),
            flood_conns: env_or("FIGURES_FLOOD_CONNS", 4).max(1),
            flood_rounds: env_or("FIGURES_FLOOD_ROUNDS", 5).max(1),
            hold_conns: env_or("FIGURES_HOLD_CONNS", 2_000).max(1),
            quiet_wait: env_or("FIGURES_QUIET_WAIT", quiet_wait),
        }
    }
}

fn orchestrate(plan: Plan) -> ExitCode {
    let (figures, s) = match plan {
        Plan::Selected(figures) => (figures, Settings::from_env(180)),
        Plan::Quick => (
            FIGURES.iter().filter(|f| f.n == QUICK).collect(),
            Settings::from_env(QUICK_QUIET_WAIT),
        ),
        Plan::List(_) => return ExitCode::SUCCESS,
    };
    let started = Instant::now();
    println!("# linger performance figures");
    println!();
    println!("command: `benches/run.sh` (builds `cargo build --release --bench figures`, runs it pinned to core 1; servers pinned to core 0)");
    println!(
        "machine: {} cores, {}; Linux {}; {}; fd limit {}",
        cpu_count(),
        cpu_model(),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        wrk_version(),
        fd_limit().map_or_else(|| "?".to_string(), |n| n.to_string()),
    );
    println!(
        "orchestrator/client on CPUs {}, servers on CPU 0 (current_thread tokio runtime, one process each)",
        cpus_allowed(None).unwrap_or_default()
    );
    if figures.len() < FIGURES.len() {
        let ns: Vec<&str> = figures.iter().map(|f| f.n).collect();
        println!(
            "figures run: {} of 1-{} (`cargo bench --bench figures -- --list` for the others)",
            ns.join(", "),
            FIGURES.len()
        );
    }
    let mut failed = 0;
    for figure in figures {
        wait_quiet(Duration::from_secs(s.quiet_wait));
        if let Err(e) = (figure.run)(&s) {
            println!();
            println!("FIGURE {} FAILED: {e}", figure.n);
            failed += 1;
        }
    }
    println!();
    println!("finished in {:.0} s", started.elapsed().as_secs_f64());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
