//! Cost per request of every wiring the README shows, beside the same
//! server without the crate, in one run:
//!
//! - user-space instructions per request, counted by valgrind's callgrind:
//!   deterministic where wall-clock time on a shared 2-core machine is not;
//! - server CPU time per request under load (wrk and h2load), over
//!   alternating rounds: the median ratio and its spread.
//!
//! ```text
//! benches/cost.sh                          # installs valgrind, wrk and h2load, then runs the below
//! cargo bench --bench cost                 # both tables (about 15 minutes)
//! cargo bench --bench cost -- --quick      # N = 200 and 600 instead of 1,000 and 3,000; 3 rounds of 2 s
//! cargo bench --bench cost -- --only readme --workloads get,post   # a subset (baselines always run)
//! cargo bench --bench cost -- --no-load    # instructions only
//! cargo bench --bench cost -- --rounds 7 --seconds 5
//! cargo bench --bench cost -- --profile --only readme --workloads get   # where the extra instructions go
//! cargo bench --bench cost -- --profile --only inside-the-app --against empty-layer
//! ```
//!
//! Instructions: for each wiring and workload, the server runs twice under
//! `valgrind --tool=callgrind` on a current-thread runtime: once serving N
//! requests, once 3N. The difference of the two totals over 2N is the cost
//! of one request, with start-up, binding and exit cancelled out.
//! Workloads:
//!
//! - `get`: keep-alive `GET /ok` on one connection;
//! - `get-over-32`, `get-over-1000`: the same round-robin over 32 and 1,000
//!   open connections (how the cost grows with connections; not by default);
//! - `post`: keep-alive `POST /echo` with a 1 KiB body the handler reads;
//! - `close`: `GET /ok` with `Connection: close`, one connection each;
//! - `reject`: `POST /reject` with a 64 KiB body answered 413 unread, one
//!   connection each: the close (and, with the crate, the linger until the
//!   client closes).
//!
//! CPU under load: see `load.rs`. The server runs on CPU 1 and the load
//! generator on CPU 0; 7 rounds of 3 s by default. `plain-again`, plain
//! axum against a second plain axum, shows how far two identical servers'
//! figures stray on this machine: the noise floor to read the others by.
//!
//! Each ratio is to the wiring's baseline: plain axum, plain axum with
//! connect-info, or plain hyper-util (see `serve.rs`). It needs valgrind,
//! wrk and h2load, and fails without them (`benches/cost.sh` installs them).

mod client;
mod load;
mod profile;
mod serve;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use client::Workload;
use serve::Wiring;

/// The wirings whose CPU under load is measured: the README's forms,
/// beside their baselines, and plain axum against itself.
const LOADED: [Wiring; 5] = [
    Wiring::PlainAgain,
    Wiring::Readme,
    Wiring::InsideTheApp,
    Wiring::ConnectInfo,
    Wiring::ServeWith,
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let wiring = args
            .get(1)
            .and_then(|w| Wiring::parse(w))
            .expect("a wiring");
        serve::serve(wiring);
        return ExitCode::SUCCESS;
    }
    match compare(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cost: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs what `args` ask for, and prints the table.
fn compare(args: &[String]) -> Result<(), String> {
    // `cargo bench` passes `--bench`; other arguments filter nothing here.
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| -> Option<&str> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).map(String::as_str)
    };
    let quick = flag("--quick");
    let n = if quick { 200 } else { 1000 };
    let shown: Vec<Wiring> = match value("--only") {
        Some(names) => {
            let names: Vec<&str> = names.split(',').collect();
            Wiring::ALL
                .into_iter()
                .filter(|w| names.contains(&w.name()))
                .collect()
        }
        None => Wiring::ALL.to_vec(),
    };
    // Baselines first, each once, then the rest in their order.
    let mut wirings: Vec<Wiring> = shown.iter().map(|w| w.baseline()).collect();
    wirings.extend(shown.iter().copied());
    wirings.dedup();
    let mut seen = Vec::new();
    wirings.retain(|w| {
        let first = !seen.contains(w);
        seen.push(*w);
        first
    });
    let workloads: Vec<Workload> = match value("--workloads") {
        Some(names) => {
            let names: Vec<&str> = names.split(',').collect();
            Workload::ALL
                .into_iter()
                .filter(|w| names.contains(&w.name().as_str()))
                .collect()
        }
        None => Workload::DEFAULT.to_vec(),
    };
    let with_load = !flag("--no-load") && !flag("--profile");
    let mut missing = vec![];
    if Command::new("valgrind").arg("--version").output().is_err() {
        missing.push("valgrind");
    }
    if with_load {
        for (tool, package) in load::TOOLS {
            if Command::new(tool).arg("--version").output().is_err() {
                missing.push(package);
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: run benches/cost.sh, which installs them (apt-get install -y {})",
            missing.join(", "),
            missing.join(" ")
        ));
    }
    if flag("--profile") {
        let against = match value("--against") {
            Some(name) => Some(Wiring::parse(name).ok_or(format!("no wiring {name}"))?),
            None => None,
        };
        return profile::compare(&shown, against, &workloads, n);
    }
    let mut instructions = Vec::new();
    for &wiring in &wirings {
        let mut row = Vec::new();
        for &workload in &workloads {
            let figure = per_request(wiring, workload, n)
                .map_err(|e| format!("{} {}: {e}", wiring.name(), workload.name()))?;
            row.push(figure);
        }
        eprintln!("instructions: {} done", wiring.name());
        instructions.push((wiring, row));
    }
    let loaded: Vec<Wiring> = wirings
        .iter()
        .copied()
        .filter(|w| LOADED.contains(w) || LOADED.iter().any(|l| l.baseline() == *w))
        .collect();
    let rounds = value("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 3 } else { 7 });
    let seconds = value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 2 } else { 3 });
    let cpu = if with_load && !loaded.is_empty() {
        Some(load::measure(&loaded, rounds, seconds)?)
    } else {
        None
    };
    print_table(&instructions, &workloads, n, cpu.as_ref(), rounds, seconds);
    Ok(())
}

/// The figure of `wiring` in a row: its own value for a baseline, else the
/// value and its ratio to the baseline's.
fn cell(value: f64, baseline: f64, is_baseline: bool) -> String {
    if is_baseline {
        format!("{value:.0}")
    } else {
        format!("{value:.0} (×{:.3})", value / baseline)
    }
}

fn print_table(
    instructions: &[(Wiring, Vec<f64>)],
    workloads: &[Workload],
    n: usize,
    cpu: Option<&load::Figures>,
    rounds: usize,
    seconds: u64,
) {
    println!(
        "user-space instructions per request (callgrind; totals at {} minus at {n}, over {})",
        3 * n,
        2 * n
    );
    if cpu.is_some() {
        println!(
            "and server CPU per request under load (µs, /proc schedstat, user and system;              {rounds} alternating rounds of {seconds} s; baselines: median (min–max);              others: median ratio to the baseline in the same round (min–max))"
        );
    }
    println!();
    let mut header: Vec<String> = workloads.iter().map(|w| w.name()).collect();
    if cpu.is_some() {
        header.extend(load::Load::ALL.iter().map(|l| format!("{} CPU", l.name())));
    }
    println!("| wiring | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    let row_of = |w: Wiring| instructions.iter().find(|(x, _)| *x == w).map(|(_, r)| r);
    for (wiring, row) in instructions {
        let is_baseline = wiring.baseline() == *wiring;
        let base = row_of(wiring.baseline()).unwrap_or(row);
        let mut cells: Vec<String> = row
            .iter()
            .zip(base)
            .map(|(v, b)| cell(*v, *b, is_baseline))
            .collect();
        if let Some(cpu) = cpu {
            for l in load::Load::ALL {
                let (Some(mine), Some(theirs)) =
                    (cpu.get(&(*wiring, l)), cpu.get(&(wiring.baseline(), l)))
                else {
                    cells.push("—".into());
                    continue;
                };
                cells.push(if is_baseline {
                    let (m, lo, hi) = load::spread(mine);
                    format!("{m:.2} µs ({lo:.2}–{hi:.2})")
                } else {
                    let ratios: Vec<f64> = mine.iter().zip(theirs).map(|(a, b)| a / b).collect();
                    let (m, lo, hi) = load::spread(&ratios);
                    format!("×{m:.3} ({lo:.3}–{hi:.3})")
                });
            }
        }
        println!("| {} | {} |", wiring.name(), cells.join(" | "));
    }
    println!();
    for (wiring, _) in instructions {
        println!("- {}: {}", wiring.name(), wiring.about());
    }
}

/// Instructions per request of `workload` served by `wiring`.
fn per_request(wiring: Wiring, workload: Workload, n: usize) -> Result<f64, String> {
    let low = total(wiring, workload, n)?;
    let high = total(wiring, workload, 3 * n)?;
    Ok((high as f64 - low as f64) / (2 * n) as f64)
}

/// Total instructions of one server run that serves `requests` requests.
fn total(wiring: Wiring, workload: Workload, requests: usize) -> Result<u64, String> {
    let out = run(wiring, workload, requests)?;
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&out);
    text?
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no totals in callgrind's output".to_owned())
}

/// Runs the server under callgrind for `requests` requests; the path of
/// callgrind's output, which the caller removes.
fn run(wiring: Wiring, workload: Workload, requests: usize) -> Result<PathBuf, String> {
    let out = std::env::temp_dir().join(format!(
        "linger-cost-{}-{}-{}-{requests}.out",
        std::process::id(),
        wiring.name(),
        workload.name()
    ));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["serve", wiring.name()])
        .stderr(Stdio::null());
    let (mut child, port) = serve::spawn(command)?;
    let driven = client::drive(port, workload, requests).and_then(|()| client::exit(port));
    let status = client::wait(&mut child, Duration::from_secs(120));
    driven?;
    status?;
    Ok(out)
}
