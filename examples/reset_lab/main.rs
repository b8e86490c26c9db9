//! The reset lab: shows the TCP reset problem and the cure, and probes any
//! server that serves its endpoint contract.
//!
//! ```text
//! cargo run --release --example reset_lab                      # the demo
//! cargo run --release --example reset_lab -- serve --port 8080 [--bind 127.0.0.1] [--no-linger] [--idle-timeout SECS] [--in-place] [--copy-drain] [--max-lingering N]
//! cargo run --release --example reset_lab -- probe --port 8080 [--host 127.0.0.1] [--trials 10] [--json] [--expect-whole]
//! cargo run --release --example reset_lab -- soak [--seconds 60]   # mixed traffic; exit 1 if anything was lost or leaked
//! ```
//!
//! A thin command line over the lab server and the scenarios, which live
//! with the tests in `tests/support/` (`lab.rs`, `scenarios.rs`,
//! `probe.rs`), so the demo and the test suite run the same code.

mod soak;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use linger::LingerConfig;
use support::lab::{self, Lab};
use support::probe::Outcome;
use support::runtime::runtime;
use support::scenarios::{scenarios, Scenario};

const DEFAULT_TRIALS: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => demo(DEFAULT_TRIALS),
        Some("demo") => demo(flag(&args, "--trials").map_or(DEFAULT_TRIALS, parse)),
        Some("serve") => serve(&args),
        Some("probe") => probe_cmd(&args),
        Some("soak") => {
            let seconds = flag(&args, "--seconds").map_or(60, parse);
            if soak::soak(seconds) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(other) => {
            eprintln!("unknown command {other:?}; use: (none) | demo | serve | probe | soak");
            ExitCode::from(2)
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("not a valid value: {s:?}");
        std::process::exit(2)
    })
}

/// Per scenario: the outcomes of every trial.
type Results = Vec<(Scenario, Vec<Outcome>)>;

fn run_all(addr: SocketAddr, trials: usize, label: &str) -> Results {
    scenarios()
        .into_iter()
        .map(|scenario| {
            eprint!("  {label:<10} {:<28} ", scenario.key);
            let outcomes = (0..trials)
                .map(|_| {
                    let outcome = scenario.run(addr);
                    eprint!("{}", if outcome.is_whole() { '.' } else { 'x' });
                    let _ = std::io::stderr().flush();
                    outcome
                })
                .collect();
            eprintln!();
            (scenario, outcomes)
        })
        .collect()
}

fn summary(outcomes: &[Outcome]) -> String {
    let whole = outcomes.iter().filter(|o| o.is_delivered()).count();
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.is_whole()) {
        *failures.entry(o.kind()).or_default() += 1;
    }
    let mut text = format!("{whole}/{}", outcomes.len());
    if !failures.is_empty() {
        let parts: Vec<String> = failures.iter().map(|(k, n)| format!("{n} {k}")).collect();
        text.push_str(&format!(" ({})", parts.join(", ")));
    }
    text
}

fn demo(trials: usize) -> ExitCode {
    let (lingering, plain) = (Lab::lingering(LingerConfig::new()), Lab::plain());
    let (with, without) = (lingering.addr, plain.addr);
    eprintln!("reset lab: {trials} trials per scenario, lab server with linger on {with}, without on {without}");
    let started = std::time::Instant::now();
    let lingered = run_all(with, trials, "linger");
    let plain = run_all(without, trials, "plain");
    println!();
    println!("| scenario | with linger | without (plain axum) |");
    println!("|---|---|---|");
    let mut all_whole = true;
    for ((scenario, with), (_, without)) in lingered.iter().zip(&plain) {
        all_whole &= with.iter().all(Outcome::is_whole);
        println!(
            "| {} | {} | {} |",
            scenario.key,
            summary(with),
            summary(without)
        );
    }
    println!();
    println!(
        "responses delivered whole / trials (\"whole, then reset\": delivered, but the close was an RST, not a clean FIN); finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (scenario, _) in &lingered {
        println!("  {:<28} {}", scenario.key, scenario.about);
    }
    if all_whole {
        ExitCode::SUCCESS
    } else {
        eprintln!("FAIL: a response was lost with lingering close on");
        ExitCode::FAILURE
    }
}

fn serve(args: &[String]) -> ExitCode {
    let port: u16 = flag(args, "--port").map_or(8080, parse);
    let bind = flag(args, "--bind").unwrap_or("127.0.0.1");
    let idle = flag(args, "--idle-timeout").map_or(5, parse::<u64>);
    let in_place = args.iter().any(|a| a == "--in-place");
    let max_lingering =
        flag(args, "--max-lingering").map_or(linger::LingerConfig::DEFAULT_MAX_LINGERING, parse);
    let config = LingerConfig::new()
        .with_idle_timeout(std::time::Duration::from_secs(idle))
        .with_detach(!in_place)
        .with_max_lingering(max_lingering);
    let close = if args.iter().any(|a| a == "--no-linger") {
        lab::Close::Plain
    } else if args.iter().any(|a| a == "--copy-drain") {
        lab::Close::Copying(config)
    } else {
        lab::Close::Linger(config, linger::LingerLayer::new())
    };
    let rt = runtime();
    rt.block_on(async {
        let listener = match lab::bind((bind, port), &close).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot bind {bind}:{port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "reset lab serving on {} ({})",
            listener.local_addr().expect("local addr"),
            match close {
                lab::Close::Plain => "no linger",
                lab::Close::Copying(_) => "lingering close, copying drain",
                _ => "lingering close",
            }
        );
        lab::serve_closing(listener, lab::app(), close).await;
        ExitCode::SUCCESS
    })
}

fn probe_cmd(args: &[String]) -> ExitCode {
    let port: u16 = flag(args, "--port").map_or(8080, parse);
    let host = flag(args, "--host").unwrap_or("127.0.0.1");
    let trials = flag(args, "--trials").map_or(DEFAULT_TRIALS, parse);
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        eprintln!("cannot resolve {host}:{port}");
        return ExitCode::FAILURE;
    };
    let results = run_all(addr, trials, "probe");
    if args.iter().any(|a| a == "--json") {
        let rows: Vec<String> = results
            .iter()
            .map(|(s, outcomes)| {
                let whole = outcomes.iter().filter(|o| o.is_whole()).count();
                let kinds: Vec<String> = outcomes
                    .iter()
                    .map(|o| format!("\"{}\"", o.kind()))
                    .collect();
                format!(
                    "{{\"scenario\":\"{}\",\"trials\":{},\"whole\":{},\"outcomes\":[{}]}}",
                    s.key,
                    outcomes.len(),
                    whole,
                    kinds.join(",")
                )
            })
            .collect();
        println!("[{}]", rows.join(","));
    } else {
        println!("| scenario | {addr} |");
        println!("|---|---|");
        for (s, outcomes) in &results {
            println!("| {} | {} |", s.key, summary(outcomes));
        }
    }
    let all_whole = results.iter().all(|(_, o)| o.iter().all(Outcome::is_whole));
    if args.iter().any(|a| a == "--expect-whole") && !all_whole {
        eprintln!("FAIL: not every response was delivered whole with a clean close");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
