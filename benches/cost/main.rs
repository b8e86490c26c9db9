//! Cost per request in user-space instructions, counted by valgrind's
//! callgrind: deterministic where wall-clock time on a shared 2-core
//! machine is not.
//!
//! ```text
//! cargo bench --bench cost                 # every wiring, every workload (about five minutes)
//! cargo bench --bench cost -- --quick      # N = 200 and 600 instead of 1,000 and 3,000
//! cargo bench --bench cost -- --only readme --workloads get,post   # a subset (plain always runs)
//! cargo bench --bench cost -- --profile --only readme --workloads get   # where the extra instructions go
//! ```
//!
//! For each wiring (plain axum, the README's, the others the README
//! documents) and each workload, the server runs twice under
//! `valgrind --tool=callgrind` on a current-thread runtime: once serving N
//! requests, once 3N. The difference of the two totals over 2N is the
//! cost of one request, with start-up, binding and exit cancelled out.
//! Workloads:
//!
//! - `get`: keep-alive `GET /ok` on one connection;
//! - `get-over-32`, `get-over-1000`: the same round-robin over 32 and 1,000
//!   open connections (how the cost grows with connections);
//! - `post`: keep-alive `POST /echo` with a 1 KiB body the handler reads;
//! - `reject`: `POST /reject` with a 64 KiB body answered 413 unread, one
//!   connection each: the close (and, with the crate, the linger until the
//!   client closes).
//!
//! It prints each total per request and its ratio to plain axum. It needs
//! valgrind (`apt-get install valgrind`) and fails without it.

mod client;
mod profile;
mod serve;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use client::Workload;
use serve::Wiring;

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
    // `cargo bench` passes `--bench`; other arguments filter nothing here.
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 200 } else { 1000 };
    let listed = |flag: &str| -> Option<Vec<String>> {
        let at = args.iter().position(|a| a == flag)?;
        Some(args.get(at + 1)?.split(',').map(str::to_owned).collect())
    };
    let wirings: Vec<Wiring> = match listed("--only") {
        Some(names) => Wiring::ALL
            .into_iter()
            .filter(|w| *w == Wiring::Plain || names.iter().any(|n| n == w.name()))
            .collect(),
        None => Wiring::ALL.to_vec(),
    };
    let workloads: Vec<Workload> = match listed("--workloads") {
        Some(names) => Workload::ALL
            .into_iter()
            .filter(|w| names.contains(&w.name()))
            .collect(),
        None => Workload::ALL.to_vec(),
    };
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is missing: install it (apt-get install -y valgrind)");
        return ExitCode::FAILURE;
    }
    if args.iter().any(|a| a == "--profile") {
        return match profile::compare(&wirings, &workloads, n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("profile: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "user-space instructions per request (callgrind; totals at {} minus at {n}, over {})",
        3 * n,
        2 * n
    );
    println!();
    let names: Vec<String> = workloads.iter().map(|w| w.name()).collect();
    println!("| wiring | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    let mut baseline = vec![0.0; workloads.len()];
    for &wiring in &wirings {
        let mut cells = Vec::new();
        for (i, &workload) in workloads.iter().enumerate() {
            let per_request = match per_request(wiring, workload, n) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{} {}: {e}", wiring.name(), workload.name());
                    return ExitCode::FAILURE;
                }
            };
            if wiring == Wiring::Plain {
                baseline[i] = per_request;
                cells.push(format!("{per_request:.0}"));
            } else {
                cells.push(format!(
                    "{per_request:.0} (×{:.3})",
                    per_request / baseline[i]
                ));
            }
        }
        println!("| {} | {} |", wiring.name(), cells.join(" | "));
    }
    println!();
    for wiring in wirings {
        println!("- {}: {}", wiring.name(), wiring.about());
    }
    ExitCode::SUCCESS
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
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["serve", wiring.name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("valgrind: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port: u16 = line
        .trim()
        .parse()
        .map_err(|_| format!("no port: {line:?}"))?;
    let driven = client::drive(port, workload, requests).and_then(|()| client::exit(port));
    let status = client::wait(&mut child, Duration::from_secs(120));
    driven?;
    status?;
    Ok(out)
}
