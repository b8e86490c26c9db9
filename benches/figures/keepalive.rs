//! Figure 1, keep-alive cost: server CPU per request and requests/s for
//! `GET /ok` under wrk, linger against plain axum, both loaded at once.

use std::env;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::Server;
use crate::load::{wait_quiet, Load, DISTURBED};
use crate::summary::{median, min_max};
use crate::wrk::{wrk_finish, wrk_spawn};
use crate::{Settings, R};

struct WrkRun {
    requests: u64,
    rps: f64,
    cpu_ns: u64,
    wall: f64,
    /// CPU used by other processes meanwhile, % of one core.
    foreign: f64,
}

impl WrkRun {
    fn cpu_us_per_req(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.requests.max(1) as f64
    }
}

pub(crate) fn run(s: &Settings) -> R<()> {
    println!();
    println!("## 1. Keep-alive cost: `GET /ok` under wrk, linger vs plain axum");
    println!();
    // Two server processes share core 0 and are loaded at the same time by
    // two wrk processes sharing core 1: whatever disturbs the machine
    // during a round disturbs both alike, and the per-round ratio cancels
    // it. (Alternating runs on this shared VM varied ±10-20% round to round
    // even between two identical plain servers.) FIGURES_F1_B picks the
    // second server: `linger` (the figure), `plain` (an A/A run: the noise
    // floor), `listener` (LingerListener only), `layer` (LingerLayer only)
    // `noop` (a tower layer that does nothing, on plain axum) or `outer`
    // (LingerListener, and LingerLayer around the Router instead of
    // `Router::layer`).
    let b_mode = env::var("FIGURES_F1_B").unwrap_or_else(|_| "linger".into());
    let (b_server_mode, b_name) = match b_mode.as_str() {
        "linger" => ("linger", "linger"),
        "plain" => ("plain", "plain (A/A)"),
        "listener" => ("linger-listener-only", "LingerListener only"),
        "layer" => ("linger-layer-only", "LingerLayer only"),
        "noop" => ("plain-noop-layer", "plain + no-op tower layer"),
        "outer" => ("linger-outer", "linger, layer around the Router"),
        other => {
            return Err(format!(
                "FIGURES_F1_B={other:?}: use linger, plain, listener, layer, noop or outer"
            ))
        }
    };
    let a_name = "plain axum";
    let plain = Server::start("plain", &["--mode", "plain"])?;
    let linger = Server::start(b_name, &["--mode", b_server_mode])?;
    // Warm-up: page in code, grow buffers.
    measure_pair(&plain, &linger, 1, s.wrk_conns)?;
    println!(
        "{a_name} and {b_name} in two server processes, both pinned to core 0 (current_thread runtime each), loaded at the same time by two `wrk -t1 -c{} -d{}s` pinned to core 1; {} rounds; a round in which other processes used more than {DISTURBED}% of a core is discarded and run again (at most 3× the rounds in all).",
        s.wrk_conns, s.secs, s.rounds
    );
    println!();
    println!("| round | {a_name} µs CPU/req | {b_name} µs CPU/req | ratio | {a_name} req/s | {b_name} req/s | ratio | server CPU use | other processes' CPU |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(WrkRun, WrkRun)> = Vec::new();
    let mut discarded: Vec<(WrkRun, WrkRun)> = Vec::new();
    let mut attempt = 0;
    while runs.len() < s.rounds && attempt < s.rounds * 3 {
        attempt += 1;
        let (p, l) = measure_pair(&plain, &linger, s.secs, s.wrk_conns)?;
        let disturbed = p.foreign > DISTURBED;
        println!(
            "| {}{} | {:.3} | {:.3} | {:.4} | {:.0} | {:.0} | {:.4} | {:.0}% + {:.0}% | {:.0}% |",
            attempt,
            if disturbed {
                " (discarded: disturbed)"
            } else {
                ""
            },
            p.cpu_us_per_req(),
            l.cpu_us_per_req(),
            l.cpu_us_per_req() / p.cpu_us_per_req(),
            p.rps,
            l.rps,
            l.rps / p.rps,
            p.cpu_ns as f64 / 1e7 / p.wall,
            l.cpu_ns as f64 / 1e7 / l.wall,
            p.foreign,
        );
        if disturbed {
            discarded.push((p, l));
            wait_quiet(Duration::from_secs(60));
        } else {
            runs.push((p, l));
        }
    }
    if runs.is_empty() {
        println!(
            "WARNING: every round was disturbed by other processes; the figures below use them all"
        );
        runs = std::mem::take(&mut discarded);
    }
    let kept = runs.len();
    let cpu_p = median(runs.iter().map(|(p, _)| p.cpu_us_per_req()).collect());
    let cpu_l = median(runs.iter().map(|(_, l)| l.cpu_us_per_req()).collect());
    let rps_p = median(runs.iter().map(|(p, _)| p.rps).collect());
    let rps_l = median(runs.iter().map(|(_, l)| l.rps).collect());
    let cpu_ratios: Vec<f64> = runs
        .iter()
        .map(|(p, l)| l.cpu_us_per_req() / p.cpu_us_per_req())
        .collect();
    let rps_ratios: Vec<f64> = runs.iter().map(|(p, l)| l.rps / p.rps).collect();
    let (cr_lo, cr_hi) = min_max(&cpu_ratios);
    let (rr_lo, rr_hi) = min_max(&rps_ratios);
    println!();
    println!(
        "| figure ({kept} undisturbed rounds{}) | {a_name} (median) | {b_name} (median) | {b_name} / {a_name}: median of the rounds' ratios (min – max) | goal |",
        if discarded.is_empty() {
            String::new()
        } else {
            format!(", {} discarded", discarded.len())
        }
    );
    println!("|---|---|---|---|---|");
    println!(
        "| server CPU per request | {cpu_p:.3} µs | {cpu_l:.3} µs | **{:.4}** ({cr_lo:.4} – {cr_hi:.4}) | ≤ 1.01 |",
        median(cpu_ratios.clone()),
    );
    println!(
        "| requests/s (each server gets about half of core 0) | {rps_p:.0} | {rps_l:.0} | {:.4} ({rr_lo:.4} – {rr_hi:.4}) | ≥ 0.99 |",
        median(rps_ratios.clone()),
    );
    println!();
    println!("Server CPU = the server process's run time (sum of /proc/PID/task/*/schedstat, ns) from just before the two wrk start to 0.1 s after both exit, divided by the requests its wrk completed. Both servers run the lab app (examples/reset_lab/lab.rs): plain is `axum::serve(TcpListener, app)`, linger is `axum::serve(LingerListener::new(TcpListener), app.layer(LingerLayer::new()))`. Loopback's receive path partly runs in the sender's softirq context, so a share of each side's kernel work is charged to the other; both servers are charged alike. `FIGURES_F1_B=plain benches/run.sh` runs plain against plain: the method's noise floor.");
    Ok(())
}

/// Loads both servers at once, each with its own wrk; returns their runs.
fn measure_pair(a: &Server, b: &Server, secs: u64, conns: usize) -> R<(WrkRun, WrkRun)> {
    let load = Load::now();
    let (a0, b0) = (a.cpu_ns()?, b.cpu_ns()?);
    let t0 = Instant::now();
    let wa = wrk_spawn(a.port, secs, conns)?;
    let wb = wrk_spawn(b.port, secs, conns)?;
    let ra = wrk_finish(wa, secs);
    let rb = wrk_finish(wb, secs);
    let wall = t0.elapsed().as_secs_f64();
    // The servers are idle again within a few ms: read their CPU time once
    // they have been descheduled, so the last tick is accounted.
    thread::sleep(Duration::from_millis(100));
    let (a1, b1) = (a.cpu_ns()?, b.cpu_ns()?);
    let (ra, rb) = (ra?, rb?);
    let (ca, cb) = (a1.saturating_sub(a0), b1.saturating_sub(b0));
    let foreign = load.foreign_pct(ca + cb);
    let run = |(requests, rps): (u64, f64), cpu_ns| WrkRun {
        requests,
        rps,
        cpu_ns,
        wall,
        foreign,
    };
    Ok((run(ra, ca), run(rb, cb)))
}
