//! The README's performance figures, each measured side by side in one run:
//!
//! 1. keep-alive cost: server CPU per request and requests/s for `GET /ok`,
//!    linger (`LingerListener` + `LingerLayer`) against plain axum, under wrk;
//! 2. lingering memory: the server's RSS with 10,000 connections lingering
//!    at once, against the same connections idle in keep-alive and against
//!    none, with what the kernel charges for the sockets beside it;
//! 3. drain cost: server CPU per GiB discarded while clients flood a linger,
//!    `recv(MSG_TRUNC)` against the copying fallback;
//! 4. hold time: how long after its response the server keeps a well-behaved
//!    client's socket.
//!
//! Run it with `benches/run.sh` (it installs wrk, builds this target, raises
//! the fd limit and runs it). The one binary plays both parts: without
//! arguments it is the orchestrator, pinned to core 1, which drives the load
//! (wrk or its own blocking sockets); with `serve ...` it is a server, which
//! the orchestrator starts as a child under `taskset -c 0` and asks for its
//! `LingerStats` over stdin. Server CPU time comes from
//! `/proc/PID/task/*/schedstat`, RSS from `/proc/PID/status`.
//!
//! Side by side means at the same time where CPU is measured (figures 1
//! and 3): the two servers share core 0 and are loaded at once, so whatever
//! else disturbs this (virtual, shared) machine during a round disturbs both
//! alike and cancels in the round's ratio; alternating runs varied ±10-20%
//! round to round even between two identical servers. Rounds during which
//! other processes used the CPU are discarded and run again, and the bench
//! first waits (bounded) for the machine to be quiet.
//!
//! Every wait is bounded: sockets have timeouts, children are waited for
//! with deadlines, and polls give up after a fixed time.

#[path = "../examples/reset_lab/lab.rs"]
mod lab;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

type R<T> = Result<T, String>;
type Figure = fn(&Settings) -> R<()>;

const REQ_OK: &[u8] = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
const REQ_CLOSE: &[u8] = b"GET /close/16 HTTP/1.1\r\nHost: x\r\n\r\n";
/// Bytes a client sends after its request: input the server has not asked
/// for, so it lingers (as a pipelined request or an upload tail would).
const EXTRA: &[u8] = b"XXXX";
const GIB: f64 = (1u64 << 30) as f64;
/// Other processes' CPU, in % of one core, above which a measurement is
/// disturbed (this bench shares its machine with whatever else runs).
const DISTURBED: f64 = 15.0;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("serve") {
        return server::main(&args[1..]);
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
    orchestrate()
}

/// Knobs, from the environment (the defaults are the published figures).
struct Settings {
    rounds: usize,
    secs: u64,
    wrk_conns: usize,
    mem_conns: usize,
    flood_mib: u64,
    flood_conns: usize,
    flood_rounds: usize,
    hold_conns: usize,
    quiet_wait: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        Self {
            rounds: env_or("FIGURES_ROUNDS", 10).max(1),
            secs: env_or("FIGURES_SECS", 3).max(1),
            wrk_conns: env_or("FIGURES_WRK_CONNS", 32).max(1),
            mem_conns: env_or("FIGURES_MEM_CONNS", 10_000).max(1),
            flood_mib: env_or("FIGURES_FLOOD_MIB", 1024).max(1),
            flood_conns: env_or("FIGURES_FLOOD_CONNS", 4).max(1),
            flood_rounds: env_or("FIGURES_FLOOD_ROUNDS", 5).max(1),
            hold_conns: env_or("FIGURES_HOLD_CONNS", 2_000).max(1),
            quiet_wait: env_or("FIGURES_QUIET_WAIT", 180),
        }
    }
}

fn orchestrate() -> ExitCode {
    let s = Settings::from_env();
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
    let mut failed = 0;
    let figures: [(&str, Figure); 4] = [
        ("1", figure1),
        ("2", figure2),
        ("3", figure3),
        ("4", figure4),
    ];
    let only = env::var("FIGURES_ONLY").unwrap_or_default();
    for (n, figure) in figures {
        if !only.is_empty() && !only.split(',').any(|o| o.trim() == n) {
            continue;
        }
        wait_quiet(Duration::from_secs(s.quiet_wait));
        if let Err(e) = figure(&s) {
            println!();
            println!("FIGURE {n} FAILED: {e}");
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

// ---------------------------------------------------------------------------
// Figure 1: keep-alive cost
// ---------------------------------------------------------------------------

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

fn figure1(s: &Settings) -> R<()> {
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

/// Starts wrk against `/ok` on `port`, pinned to core 1.
fn wrk_spawn(port: u16, secs: u64, conns: usize) -> R<Child> {
    Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://127.0.0.1:{port}/ok"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))
}

/// Waits for a wrk run (bounded); returns (requests, requests/s).
fn wrk_finish(child: Child, secs: u64) -> R<(u64, f64)> {
    let out = wait_output(child, Duration::from_secs(secs + 30), "wrk")?;
    let text = String::from_utf8_lossy(&out);
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
    if let Some(bad) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        return Err(format!("wrk reported errors: {}", bad.trim()));
    }
    Ok((requests, rps))
}

// ---------------------------------------------------------------------------
// Figure 2: lingering memory
// ---------------------------------------------------------------------------

/// System-wide kernel memory counters, for what the sockets cost the kernel.
#[derive(Clone, Default)]
struct Kernel {
    /// /proc/net/sockstat `TCP: mem`, pages (socket buffer memory).
    tcp_mem_pages: i64,
    /// /proc/meminfo `Slab`, KiB.
    slab_kib: i64,
    /// /proc/slabinfo: active objects × object size, bytes, per cache.
    caches: BTreeMap<String, i64>,
}

const SOCKET_CACHES: [&str; 6] = [
    "TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
];

fn kernel() -> Kernel {
    let sockstat = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp_mem_pages = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.iter()
                .position(|w| *w == "mem")
                .and_then(|i| t.get(i + 1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let slab_kib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut caches = BTreeMap::new();
    for line in fs::read_to_string("/proc/slabinfo")
        .unwrap_or_default()
        .lines()
    {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() > 3 && SOCKET_CACHES.contains(&t[0]) {
            if let (Ok(active), Ok(size)) = (t[1].parse::<i64>(), t[3].parse::<i64>()) {
                caches.insert(t[0].to_string(), active * size);
            }
        }
    }
    Kernel {
        tcp_mem_pages,
        slab_kib,
        caches,
    }
}

struct MemPoint {
    rss_kib: i64,
    kernel: Kernel,
}

fn mem_point(srv: &Server) -> R<MemPoint> {
    thread::sleep(Duration::from_millis(500));
    Ok(MemPoint {
        rss_kib: srv.rss_kib()?,
        kernel: kernel(),
    })
}

fn per_conn_bytes(from_kib: i64, to_kib: i64, n: usize) -> f64 {
    (to_kib - from_kib) as f64 * 1024.0 / n as f64
}

fn figure2(s: &Settings) -> R<()> {
    println!();
    println!(
        "## 2. Lingering memory: {} connections lingering at once",
        s.mem_conns
    );
    println!();
    let n = s.mem_conns;
    let limit = fd_limit().unwrap_or(0);
    if limit < n as u64 + 100 {
        return Err(format!(
            "needs an fd limit of at least {} (now {limit}): run benches/run.sh, which raises `ulimit -n`",
            n + 100
        ));
    }

    // Reference: plain axum, the same connections idle in keep-alive.
    let plain = Server::start("plain-mem", &["--mode", "plain"])?;
    warm_up(&plain, false)?;
    let p0 = mem_point(&plain)?;
    let conns = open_idle(plain.port, n)?;
    let p1 = mem_point(&plain)?;
    drop(conns);
    drop(plain);

    let max_lingering = (n + 1000).to_string();
    let mut srv = Server::start(
        "linger-mem",
        &[
            "--mode",
            "linger",
            "--idle-secs",
            "60",
            "--deadline-secs",
            "60",
            "--max-lingering",
            &max_lingering,
        ],
    )?;
    warm_up(&srv, true)?;
    wait_stats(&mut srv, Duration::from_secs(5), |st| {
        st.get("lingering") == 0
    })?;
    let l0 = mem_point(&srv)?;
    let mut conns = open_idle(srv.port, n)?;
    let l1 = mem_point(&srv)?;
    // Each idle connection now asks for a close response and sends a few
    // bytes more: the server answers, half-closes and lingers.
    let t = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        let mut req = REQ_CLOSE.to_vec();
        req.extend_from_slice(EXTRA);
        c.write_all(&req).map_err(|e| format!("conn {i}: {e}"))?;
        let resp = read_response(c).map_err(|e| format!("conn {i}: {e}"))?;
        if !resp.close || resp.status != 200 {
            return Err(format!(
                "conn {i}: expected 200 + Connection: close, got {}",
                resp.status
            ));
        }
    }
    let asked = t.elapsed();
    let st_l = wait_stats(&mut srv, Duration::from_secs(20), |st| {
        st.get("lingering") >= n as u64
    })?;
    let l2 = mem_point(&srv)?;
    let st_l2 = srv.stats()?;
    // The clients close: every linger ends with the peer's FIN.
    drop(conns);
    let st_end = wait_stats(&mut srv, Duration::from_secs(30), |st| {
        st.get("lingering") == 0
    })?;
    let l3 = mem_point(&srv)?;

    println!(
        "server: LingerConfig idle 60 s, deadline 60 s, max_lingering {max_lingering}; each client sends `GET /ok` (keep-alive), then on the same connection `GET /close/16` + 4 extra bytes, reads the response and keeps the socket open ({:.1} s for the {n} close requests)",
        asked.as_secs_f64()
    );
    println!(
        "LingerStats while measuring: lingering = {} (started {}, again {} after the RSS read); after the clients closed: peer_closed {}, idle_timeout {}, deadline {}, shortened {}, error {}",
        st_l.get("lingering"),
        st_l.get("started"),
        st_l2.get("lingering"),
        st_end.get("peer_closed"),
        st_end.get("idle_timeout"),
        st_end.get("deadline"),
        st_end.get("shortened"),
        st_end.get("error"),
    );
    println!();
    println!("| server RSS (VmRSS) | plain axum | linger |");
    println!("|---|---|---|");
    println!(
        "| no connections (after a short warm-up) | {} KiB | {} KiB |",
        p0.rss_kib, l0.rss_kib
    );
    println!(
        "| {n} idle keep-alive connections (one request served) | {} KiB | {} KiB |",
        p1.rss_kib, l1.rss_kib
    );
    println!(
        "| the same {n} connections lingering | — | {} KiB |",
        l2.rss_kib
    );
    println!(
        "| after the clients closed and every linger ended | — | {} KiB |",
        l3.rss_kib
    );
    println!();
    let idle_p = per_conn_bytes(p0.rss_kib, p1.rss_kib, n);
    let idle_l = per_conn_bytes(l0.rss_kib, l1.rss_kib, n);
    let linger_total = per_conn_bytes(l0.rss_kib, l2.rss_kib, n);
    let linger_delta = per_conn_bytes(l1.rss_kib, l2.rss_kib, n);
    let kernel_conn = |a: &Kernel, b: &Kernel| {
        let slab = (b.slab_kib - a.slab_kib) as f64 * 1024.0 / n as f64;
        let bufs = (b.tcp_mem_pages - a.tcp_mem_pages) as f64 * 4096.0 / n as f64;
        (slab, bufs)
    };
    let (k_idle_slab, k_idle_bufs) = kernel_conn(&l0.kernel, &l1.kernel);
    let (k_ling_slab, k_ling_bufs) = kernel_conn(&l1.kernel, &l2.kernel);
    println!("| per connection | bytes | goal |");
    println!("|---|---|---|");
    println!(
        "| **server RSS while lingering, over no connections** ((lingering − none) / {n}) | **{linger_total:.0}** | — |"
    );
    println!(
        "| of which: idle keep-alive state, linger server (hyper + axum + LingerIo) | {idle_l:.0} | — |"
    );
    println!(
        "| of which: **the linger itself** ((lingering − idle keep-alive) / {n}) | **{linger_delta:.0}** | ≤ 1024 beyond the kernel socket |"
    );
    println!("| for reference: idle keep-alive state, plain axum | {idle_p:.0} | — |");
    println!(
        "| kernel, both ends of a loopback connection (2 sockets), idle: slab (/proc/meminfo Slab); per socket about {:.0} | {k_idle_slab:.0} | not the crate's |",
        k_idle_slab / 2.0
    );
    println!(
        "| kernel, both ends, idle: socket buffers (/proc/net/sockstat TCP mem pages; noisy: the kernel keeps per-CPU reserves of ~1 MiB) | {k_idle_bufs:.0} | not the crate's |"
    );
    println!(
        "| kernel, change from idle to lingering: slab / socket buffers | {k_ling_slab:.0} / {k_ling_bufs:.0} | — |"
    );
    if !l0.kernel.caches.is_empty() {
        let parts: Vec<String> = SOCKET_CACHES
            .iter()
            .filter_map(|c| {
                let a = l0.kernel.caches.get(*c)?;
                let b = l1.kernel.caches.get(*c)?;
                Some(format!("{c} {:.0}", (b - a) as f64 / n as f64))
            })
            .collect();
        println!(
            "| kernel slab caches, both ends, idle (/proc/slabinfo active objs × size) | {} | — |",
            parts.join(", ")
        );
    }
    println!();
    println!("RSS is the server process's VmRSS 0.5 s after each step; it counts pages the allocator touched, so a figure per connection is an average over all the connections and includes allocator slack. hyper keeps its per-connection state (read buffer, write buffer, dispatcher, the service) while `poll_shutdown` runs, so a lingering connection holds what an idle keep-alive one does, plus the linger's own state (LingerIo's boxed Drain: timer, shutdown waiter, counters). The kernel figures are system-wide and count both ends of each loopback connection (the client's socket is on this machine too); sockstat's `mem` is socket buffer pages, which idle sockets with empty queues barely use.");
    Ok(())
}

/// A few requests, and (for a linger server) a few lingering closes that
/// end at once, so first-use allocations are not counted per connection.
fn warm_up(srv: &Server, lingers: bool) -> R<()> {
    for _ in 0..20 {
        let mut c = connect(srv.port)?;
        c.write_all(REQ_OK).map_err(|e| e.to_string())?;
        read_response(&mut c)?;
        if lingers {
            let mut req = REQ_CLOSE.to_vec();
            req.extend_from_slice(EXTRA);
            c.write_all(&req).map_err(|e| e.to_string())?;
            read_response(&mut c)?;
        }
    }
    Ok(())
}

/// Opens `n` connections, each served one keep-alive `GET /ok`.
fn open_idle(port: u16, n: usize) -> R<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect(port).map_err(|e| format!("connection {i}: {e}"))?;
        c.write_all(REQ_OK)
            .map_err(|e| format!("connection {i}: {e}"))?;
        let resp = read_response(&mut c).map_err(|e| format!("connection {i}: {e}"))?;
        if resp.close || resp.status != 200 {
            return Err(format!("connection {i}: not a keep-alive 200"));
        }
        conns.push(c);
    }
    Ok(conns)
}

// ---------------------------------------------------------------------------
// Figure 3: drain cost
// ---------------------------------------------------------------------------

fn figure3(s: &Settings) -> R<()> {
    println!();
    println!("## 3. Drain cost: server CPU per GiB discarded while clients flood a linger");
    println!();
    let config = [
        "--idle-secs",
        "60",
        "--deadline-secs",
        "120",
        "--max-bytes",
        "4294967296",
    ];
    let mut trunc = Server::start("trunc", &[&["--mode", "linger"][..], &config].concat())?;
    let mut copy = Server::start(
        "copy",
        &[&["--mode", "linger-wrapped"][..], &config].concat(),
    )?;
    let total = s.flood_mib << 20;
    // Warm-up: a small flood each.
    flood_pair(&mut trunc, &mut copy, 16 << 20, s.flood_conns)?;
    println!(
        "Two servers, both pinned to core 0, one serving tokio's TcpStream (the drain uses recv(MSG_TRUNC)), one a newtype around it (the drain copies into a scratch buffer). In each round both are flooded at the same time: per server, {} clients each get a `Connection: close` response (request + 4 extra bytes), then write {} MiB each as fast as they can in 64 KiB writes, then close. Server LingerConfig: idle 60 s, deadline 120 s, max_bytes 4 GiB. {} rounds; a round in which other processes used more than {DISTURBED}% of a core is discarded and run again (at most 3× the rounds in all).",
        s.flood_conns,
        s.flood_mib / s.flood_conns as u64,
        s.flood_rounds
    );
    println!();
    println!("| round | path | GiB discarded (LingerStats.bytes_discarded) | server CPU s | CPU s/GiB | outcomes | other processes' CPU |");
    println!("|---|---|---|---|---|---|---|");
    let mut runs: Vec<(FloodRun, FloodRun)> = Vec::new();
    let mut attempt = 0;
    while runs.len() < s.flood_rounds && attempt < s.flood_rounds * 3 {
        attempt += 1;
        let (t, c) = flood_pair(&mut trunc, &mut copy, total, s.flood_conns)?;
        let disturbed = t.foreign > DISTURBED;
        for (run, name) in [(&t, "recv(MSG_TRUNC)"), (&c, "copy fallback")] {
            println!(
                "| {attempt}{} | {name} | {:.3} | {:.3} | {:.3} | {} | {:.0}% |",
                if disturbed {
                    " (discarded: disturbed)"
                } else {
                    ""
                },
                run.gib(),
                run.cpu_ns as f64 / 1e9,
                run.per_gib(),
                run.outcomes,
                run.foreign
            );
        }
        if disturbed {
            wait_quiet(Duration::from_secs(60));
        } else {
            runs.push((t, c));
        }
    }
    if runs.is_empty() {
        return Err("every round was disturbed by other processes".into());
    }
    let t_all: Vec<f64> = runs.iter().map(|(t, _)| t.per_gib()).collect();
    let c_all: Vec<f64> = runs.iter().map(|(_, c)| c.per_gib()).collect();
    let ratios: Vec<f64> = runs
        .iter()
        .map(|(t, c)| c.per_gib() / t.per_gib())
        .collect();
    let (t, c) = (median(t_all.clone()), median(c_all.clone()));
    let ((t_lo, t_hi), (c_lo, c_hi)) = (min_max(&t_all), min_max(&c_all));
    let (r_lo, r_hi) = min_max(&ratios);
    println!();
    println!(
        "| figure ({} undisturbed rounds) | CPU s per GiB discarded: median (min – max) | CPU ms per 64 MiB (the default byte cap), median | goal |",
        runs.len()
    );
    println!("|---|---|---|---|");
    println!(
        "| `recv(MSG_TRUNC)` (LingerIo<TcpStream>, the default on Linux) | **{t:.3}** ({t_lo:.3} – {t_hi:.3}) | {:.1} | a capped flood costs a few ms of CPU (LingerConfig docs) |",
        t * 1000.0 / 16.0
    );
    println!(
        "| copy fallback (LingerIo<Wrapper(TcpStream)>) | **{c:.3}** ({c_lo:.3} – {c_hi:.3}) | {:.1} | — |",
        c * 1000.0 / 16.0
    );
    println!(
        "| copy / MSG_TRUNC: median of the rounds' ratios (min – max) | {:.2} ({r_lo:.2} – {r_hi:.2}) | | > 1 |",
        median(ratios.clone())
    );
    println!();
    println!("Server CPU (schedstat run time, as in figure 1) from the moment every client's linger has started (LingerStats.lingering) until every linger has ended, so it is the drain alone. The fallback is forced by serving through a newtype around tokio's TcpStream that delegates AsyncRead/AsyncWrite: the crate uses MSG_TRUNC only when the IO type is TcpStream. Both read at most 64 KiB per call. The clients write from core 1, so the servers may wait for input part of the time: CPU per GiB, not the rate, is the figure. On loopback much of the kernel's receive work runs in the sending client's context, so the server's share is mostly the recv calls themselves.");
    Ok(())
}

struct FloodRun {
    cpu_ns: u64,
    bytes: u64,
    outcomes: String,
    foreign: f64,
}

impl FloodRun {
    fn gib(&self) -> f64 {
        self.bytes as f64 / GIB
    }

    fn per_gib(&self) -> f64 {
        self.cpu_ns as f64 / 1e9 / self.gib()
    }
}

/// Connects `conns` clients, gets each a close response and waits until
/// all of them linger; returns the stats before, and the sockets.
fn flood_prepare(srv: &mut Server, conns: usize) -> R<(Stats, Vec<TcpStream>)> {
    let st0 = srv.stats()?;
    let mut streams = Vec::new();
    for _ in 0..conns {
        let mut c = connect(srv.port)?;
        c.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut req = REQ_CLOSE.to_vec();
        req.extend_from_slice(EXTRA);
        c.write_all(&req).map_err(|e| e.to_string())?;
        let resp = read_response(&mut c)?;
        if !resp.close {
            return Err("flood: expected Connection: close".into());
        }
        streams.push(c);
    }
    let want = st0.get("lingering") + conns as u64;
    wait_stats(srv, Duration::from_secs(10), |st| {
        st.get("lingering") >= want
    })?;
    Ok((st0, streams))
}

/// One client per socket: writes `per_conn` bytes, half-closes, and waits
/// (bounded by the read timeout) for the server's close.
fn flood_clients(
    streams: Vec<TcpStream>,
    per_conn: u64,
) -> Vec<thread::JoinHandle<io::Result<()>>> {
    streams
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                let chunk = vec![b'f'; 64 * 1024];
                let mut left = per_conn;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    c.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                c.shutdown(Shutdown::Write)?;
                let mut buf = [0u8; 4096];
                for _ in 0..1000 {
                    if c.read(&mut buf)? == 0 {
                        break;
                    }
                }
                Ok(())
            })
        })
        .collect()
}

/// Floods both servers' lingers at once, `total` bytes each over `conns`
/// clients each; returns each server's run.
fn flood_pair(a: &mut Server, b: &mut Server, total: u64, conns: usize) -> R<(FloodRun, FloodRun)> {
    let (sa0, streams_a) = flood_prepare(a, conns)?;
    let (sb0, streams_b) = flood_prepare(b, conns)?;
    let load = Load::now();
    let (ca0, cb0) = (a.cpu_ns()?, b.cpu_ns()?);
    let per_conn = total / conns as u64;
    let mut workers = flood_clients(streams_a, per_conn);
    workers.extend(flood_clients(streams_b, per_conn));
    let mut errors = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("client thread panicked".into()),
        }
    }
    let sa1 = wait_stats(a, Duration::from_secs(30), |st| {
        st.get("lingering") == sa0.get("lingering")
    })?;
    let sb1 = wait_stats(b, Duration::from_secs(30), |st| {
        st.get("lingering") == sb0.get("lingering")
    })?;
    thread::sleep(Duration::from_millis(100));
    let (ca, cb) = (
        a.cpu_ns()?.saturating_sub(ca0),
        b.cpu_ns()?.saturating_sub(cb0),
    );
    let foreign = load.foreign_pct(ca + cb);
    if !errors.is_empty() {
        return Err(format!("flood clients failed: {}", errors.join("; ")));
    }
    let run = |st0: &Stats, st1: &Stats, cpu_ns: u64| {
        let d = |k: &str| st1.get(k) - st0.get(k);
        let outcomes: Vec<String> = [
            "peer_closed",
            "byte_cap",
            "idle_timeout",
            "deadline",
            "shortened",
            "error",
        ]
        .iter()
        .filter(|k| d(k) > 0)
        .map(|k| format!("{k} {}", d(k)))
        .collect();
        FloodRun {
            cpu_ns,
            bytes: d("bytes_discarded"),
            outcomes: outcomes.join(", "),
            foreign,
        }
    };
    Ok((run(&sa0, &sa1, ca), run(&sb0, &sb1, cb)))
}

// ---------------------------------------------------------------------------
// Figure 4: hold time
// ---------------------------------------------------------------------------

fn figure4(s: &Settings) -> R<()> {
    println!();
    println!(
        "## 4. Hold time: how long the server keeps a well-behaved client's socket after the response"
    );
    println!();
    let n = s.hold_conns;
    let mut wrapped = Server::start(
        "linger-wrapped",
        &["--mode", "linger-wrapped", "--holds", "--trace"],
    )?;
    let mut tcp = Server::start("linger-tcp", &["--mode", "linger", "--trace"])?;
    let mut plain = Server::start("plain-wrapped", &["--mode", "plain-wrapped", "--holds"])?;
    let load = Load::now();
    let cpu0 = wrapped.cpu_ns()? + tcp.cpu_ns()? + plain.cpu_ns()?;
    println!("{n} clients one after another per server, each: connect, `GET /close/16` (no extra bytes), read the response to its last byte (Content-Length), close. Server LingerConfig::new() (the defaults: idle 5 s, deadline 30 s).");
    println!();
    println!("| server | n | median | p99 | max | how it is measured |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (srv, label) in [
        (&mut wrapped, "linger, LingerIo<Wrapper(TcpStream)>"),
        (&mut plain, "plain axum, Wrapper(TcpStream) (no linger)"),
    ] {
        well_behaved(srv.port, 20)?;
        wait_stats(srv, Duration::from_secs(10), |st| st.get("lingering") == 0)?;
        srv.ask("clear")?;
        well_behaved(srv.port, n)?;
        wait_stats(srv, Duration::from_secs(10), |st| st.get("lingering") == 0)?;
        let holds = wait_samples(srv, "holds", n)?;
        let (med, p99, max) = percentiles(holds);
        println!(
            "| {label} | {n} | **{:.0} µs** | **{:.0} µs** | {:.0} µs | server side: Instant at the last successful write of the response to the socket → Instant when the socket is dropped (closed) |",
            med, p99, max
        );
        rows.push((label, med, p99));
    }
    // The crate's own event on the default (MSG_TRUNC) path.
    well_behaved(tcp.port, 20)?;
    wait_stats(&mut tcp, Duration::from_secs(10), |st| {
        st.get("lingering") == 0
    })?;
    tcp.ask("clear")?;
    well_behaved(tcp.port, n)?;
    let st = wait_stats(&mut tcp, Duration::from_secs(10), |st| {
        st.get("lingering") == 0
    })?;
    let line = tcp.ask("events")?;
    let unit = if line.contains("unit=us") {
        "µs"
    } else {
        "ms"
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let count = values.len();
    let zeros = if unit == "ms" {
        let n = values.iter().filter(|v| **v == 0.0).count();
        format!("{n} of {count} are 0 ms; ")
    } else {
        String::new()
    };
    let (med, p99, max) = percentiles(values);
    println!(
        "| linger, LingerIo<TcpStream> (default path) | {count} | {med:.0} {unit} | {p99:.0} {unit} | {max:.0} {unit} | the crate's `lingering close ended` tracing event, field `{}` (half-close → end of drain); {zeros}outcomes: peer_closed {} of {} started |",
        if unit == "µs" { "micros" } else { "millis" },
        st.get("peer_closed"),
        st.get("started"),
    );
    // For scale: what one round trip between the two cores costs here.
    let rtt = {
        let mut c = connect(tcp.port)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            c.write_all(REQ_OK).map_err(|e| e.to_string())?;
            read_response(&mut c)?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        percentiles(v)
    };
    println!(
        "| for scale: one keep-alive `GET /ok` round trip, client side (not a hold time) | {n} | {:.0} µs | {:.0} µs | {:.0} µs | client: Instant before the request write → after the response's last byte; the hold of a lingering close spans about one such round trip (FIN to the client, the client's FIN back) |",
        rtt.0, rtt.1, rtt.2
    );
    println!("| Go net/http (anchor) | — | 500 ms | 500 ms | 500 ms | constant, not measured: after CloseWrite it sleeps 500 ms (rstAvoidanceDelay) without reading, whatever the client does |");
    println!("| nginx `lingering_close always` (anchor) | — | until the client closes | | ≤ 5 s idle, 30 s total | constants, not measured: reads until the client's FIN, `lingering_timeout` 5 s, `lingering_time` 30 s |");
    thread::sleep(Duration::from_millis(100));
    let cpu1 = wrapped.cpu_ns()? + tcp.cpu_ns()? + plain.cpu_ns()?;
    println!();
    println!(
        "other processes used {:.0}% of a core during this figure",
        load.foreign_pct(cpu1.saturating_sub(cpu0))
    );
    println!();
    println!("Goal: a well-behaved client's socket is released as soon as its FIN arrives (as nginx), not after a fixed delay (Go's 500 ms). The Wrapper rows time the socket itself from the server side with µs resolution; the wrapper forces the copy fallback for the drain, which for a client that sends nothing more is one read returning EOF either way. The event row is the same close on the default path, timed by the crate with the resolution of its field.");
    if unit == "ms" {
        println!("Note: the crate's event reports whole milliseconds (`millis`), too coarse for this figure; a `micros` field would give it µs resolution (this bench reads `micros` when present).");
    }
    Ok(())
}

/// `n` well-behaved clients, one after another: read the response, close.
fn well_behaved(port: u16, n: usize) -> R<()> {
    for i in 0..n {
        let mut c = connect(port)?;
        c.write_all(REQ_CLOSE)
            .map_err(|e| format!("client {i}: {e}"))?;
        let resp = read_response(&mut c).map_err(|e| format!("client {i}: {e}"))?;
        if resp.status != 200 || resp.body_len != 16 {
            return Err(format!("client {i}: bad response {}", resp.status));
        }
        drop(c);
    }
    Ok(())
}

/// Asks the server for its samples until it has `n` (bounded).
fn wait_samples(srv: &mut Server, what: &str, n: usize) -> R<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = srv.ask(what)?;
        let values: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if values.len() >= n || Instant::now() > deadline {
            return Ok(values);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Client side: blocking sockets with timeouts
// ---------------------------------------------------------------------------

fn connect(port: u16) -> R<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(c)
}

struct Response {
    status: u16,
    close: bool,
    body_len: usize,
}

/// Reads one response with a Content-Length body, and nothing past it.
fn read_response(c: &mut TcpStream) -> R<Response> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() > deadline || buf.len() > 1 << 20 {
            return Err("response too slow or too large".into());
        }
        let n = c.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let body_len: usize = header("content-length:")
            .and_then(|v| v.parse().ok())
            .ok_or("response without Content-Length")?;
        let close = header("connection:").is_some_and(|v| v.contains("close"));
        if buf.len() >= end + 4 + body_len {
            return Ok(Response {
                status,
                close,
                body_len,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Servers as children, and /proc
// ---------------------------------------------------------------------------

/// A server child process pinned to core 0, with its control pipe.
struct Server {
    child: Child,
    pid: u32,
    port: u16,
    stdin: ChildStdin,
    lines: Receiver<String>,
    label: String,
}

struct Stats(BTreeMap<String, u64>);

impl Stats {
    fn get(&self, k: &str) -> u64 {
        self.0.get(k).copied().unwrap_or(0)
    }
}

impl Server {
    fn start(label: &str, args: &[&str]) -> R<Self> {
        let exe = env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(exe)
            .arg("serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start server {label} under taskset: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        let mut srv = Self {
            child,
            pid,
            port: 0,
            stdin,
            lines,
            label: label.to_string(),
        };
        let first = srv
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("server {label} did not start"))?;
        srv.port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("server {label} said {first:?}"))?;
        let pinned = cpus_allowed(Some(pid)).unwrap_or_default();
        if pinned != "0" {
            return Err(format!(
                "server {label} runs on CPUs {pinned:?}, not core 0"
            ));
        }
        Ok(srv)
    }

    fn ask(&mut self, cmd: &str) -> R<String> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("server {}: {e}", self.label))?;
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("server {} did not answer {cmd:?}", self.label))
    }

    fn stats(&mut self) -> R<Stats> {
        let line = self.ask("stats")?;
        let map = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Ok(Stats(map))
    }

    /// CPU time of every thread of the server, ns.
    fn cpu_ns(&self) -> R<u64> {
        cpu_ns(self.pid)
    }

    fn rss_kib(&self) -> R<i64> {
        fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(|e| e.to_string())?
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "no VmRSS".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the server's stats until `done` holds (bounded by `limit`).
fn wait_stats(srv: &mut Server, limit: Duration, done: impl Fn(&Stats) -> bool) -> R<Stats> {
    let deadline = Instant::now() + limit;
    loop {
        let st = srv.stats()?;
        if done(&st) {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let all: Vec<String> = st.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(format!(
                "server {}: stats did not reach the expected state within {limit:?}: {}",
                srv.label,
                all.join(" ")
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sum over the process's threads of the run time in
/// /proc/PID/task/TID/schedstat (ns); falls back to utime+stime ticks.
fn cpu_ns(pid: u32) -> R<u64> {
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut total = 0u64;
        let mut any = false;
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            if let Some(ns) = fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
        if any {
            return Ok(total);
        }
    }
    let ticks = stat_ticks(&format!("/proc/{pid}/stat"), false)
        .ok_or_else(|| format!("cannot read CPU time of {pid}"))?;
    Ok(ticks * TICK_NS)
}

/// Nanoseconds per clock tick of /proc/*/stat and /proc/stat (USER_HZ).
const TICK_NS: u64 = 10_000_000;

/// utime+stime of a /proc/PID/stat, plus cutime+cstime (the children
/// waited for) when `children`, in ticks.
fn stat_ticks(path: &str, children: bool) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    // After the comm: field 3 (state) is index 0; utime is field 14.
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let own = field(14)? + field(15)?;
    Some(if children {
        own + field(16)? + field(17)?
    } else {
        own
    })
}

/// A snapshot to tell how much CPU other processes of the machine used.
#[derive(Clone, Copy)]
struct Load {
    at: Instant,
    /// Busy ticks of all CPUs (/proc/stat).
    busy: u64,
    /// This process's ticks, and its waited-for children's (wrk).
    me: u64,
}

impl Load {
    fn now() -> Self {
        let busy = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_string();
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                let total: u64 = v.iter().take(8).sum();
                Some(total - v.get(3)? - v.get(4)?)
            })
            .unwrap_or(0);
        Self {
            at: Instant::now(),
            busy,
            me: stat_ticks("/proc/self/stat", true).unwrap_or(0),
        }
    }

    /// CPU other processes used since `self`, in % of one core; `ours_ns`
    /// is what our servers used meanwhile.
    fn foreign_pct(&self, ours_ns: u64) -> f64 {
        let now = Self::now();
        let busy_ns = now.busy.saturating_sub(self.busy) * TICK_NS;
        let me_ns = now.me.saturating_sub(self.me) * TICK_NS;
        let other = busy_ns as f64 - me_ns as f64 - ours_ns as f64;
        (other / 1e9 / now.at.duration_since(self.at).as_secs_f64() * 100.0).max(0.0)
    }
}

/// Waits (at most `limit`) until other processes use under 10% of a core
/// over 2 s, so they do not disturb the figures; says so if they do.
fn wait_quiet(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        let start = Load::now();
        thread::sleep(Duration::from_secs(2));
        let other = start.foreign_pct(0);
        if other < 10.0 {
            if said {
                println!("(machine quiet again: other processes {other:.0}% of a core)");
            }
            return;
        }
        if Instant::now() > deadline {
            println!();
            println!("WARNING: other processes use {other:.0}% of a core; waited {limit:?} for quiet, measuring anyway: the CPU figures below are disturbed");
            return;
        }
        if !said {
            println!();
            println!("(waiting up to {limit:?} for the machine to be quiet: other processes use {other:.0}% of a core)");
            said = true;
        }
    }
}

fn cpus_allowed(pid: Option<u32>) -> Option<String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

fn fd_limit() -> Option<u64> {
    fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn cpu_count() -> usize {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

fn wrk_version() -> String {
    Command::new("wrk")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split(" Copyright").next().unwrap_or(l).to_string())
        })
        .unwrap_or_else(|| "wrk not found".into())
}

/// Waits for a child with a deadline (then kills it); returns its stdout.
fn wait_output(mut child: Child, limit: Duration, what: &str) -> R<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().unwrap_or_default();
                if !status.success() {
                    return Err(format!(
                        "{what} failed ({status}): {}",
                        String::from_utf8_lossy(&out)
                    ));
                }
                return Ok(out);
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {limit:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// (median, p99, max) of the samples.
fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let p99 = v[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
    (v[n / 2], p99, v[n - 1])
}

// ---------------------------------------------------------------------------
// The server side: `figures serve --mode ...`
// ---------------------------------------------------------------------------

mod server {
    //! A lab server on a current_thread runtime, answering `stats`,
    //! `holds`, `events` and `clear` on stdin, one line each.

    use std::io::{self, BufRead, Write};
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::process::ExitCode;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use axum::Router;
    use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};

    use super::lab;

    type Samples = Arc<Mutex<Vec<u64>>>;

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).map(String::as_str)
    }

    fn num(args: &[String], name: &str) -> Option<u64> {
        flag(args, name).and_then(|v| v.parse().ok())
    }

    pub(super) fn main(args: &[String]) -> ExitCode {
        let mode = flag(args, "--mode").unwrap_or("linger").to_string();
        let mut config = LingerConfig::new();
        if let Some(s) = num(args, "--idle-secs") {
            config = config.with_idle_timeout(Duration::from_secs(s));
        }
        if let Some(s) = num(args, "--deadline-secs") {
            config = config.with_deadline(Duration::from_secs(s));
        }
        if let Some(b) = num(args, "--max-bytes") {
            config = config.with_max_bytes(b);
        }
        if let Some(n) = num(args, "--max-lingering") {
            config = config.with_max_lingering(n as usize);
        }
        let holds: Option<Samples> = args
            .iter()
            .any(|a| a == "--holds")
            .then(|| Arc::new(Mutex::new(Vec::new())));
        let events: Samples = Arc::new(Mutex::new(Vec::new()));
        let micros_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if args.iter().any(|a| a == "--trace") {
            use tracing_subscriber::layer::SubscriberExt;
            let layer = EndEvents {
                values: events.clone(),
                micros_seen: micros_seen.clone(),
            };
            let subscriber = tracing_subscriber::registry().with(layer);
            if tracing::subscriber::set_global_default(subscriber).is_err() {
                eprintln!("figures serve: a tracing subscriber is already set");
            }
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("figures serve: runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        rt.block_on(async move {
            let listener = match TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("figures serve: bind: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            let app: Router = lab::app();
            let control = Control {
                stats: None,
                holds: holds.clone(),
                events,
                micros_seen,
            };
            let result = match mode.as_str() {
                "plain" => {
                    control.spawn(port);
                    axum::serve(listener, app).await
                }
                "plain-wrapped" => {
                    control.spawn(port);
                    axum::serve(
                        WrappedListener {
                            inner: listener,
                            holds,
                        },
                        app,
                    )
                    .await
                }
                "linger" => {
                    let listener = LingerListener::with_config(listener, config);
                    Control {
                        stats: Some(listener.shutdown_handle()),
                        ..control
                    }
                    .spawn(port);
                    axum::serve(listener, app.layer(LingerLayer::new())).await
                }
                "linger-listener-only" => {
                    let listener = LingerListener::with_config(listener, config);
                    control.spawn(port);
                    axum::serve(listener, app).await
                }
                "plain-noop-layer" => {
                    // A tower layer that does nothing, for scale: what any
                    // layer on a Router costs.
                    control.spawn(port);
                    let noop = tower::util::MapRequestLayer::new(
                        |req: axum::http::Request<axum::body::Body>| req,
                    );
                    axum::serve(listener, app.layer(noop)).await
                }
                "linger-outer" => {
                    // The layer around the whole Router (one layer) instead
                    // of `Router::layer` (which wraps every route).
                    use tower::Layer as _;
                    let listener = LingerListener::with_config(listener, config);
                    Control {
                        stats: Some(listener.shutdown_handle()),
                        ..control
                    }
                    .spawn(port);
                    let svc = LingerLayer::new().layer(app);
                    axum::serve(
                        listener,
                        axum::ServiceExt::<axum::http::Request<axum::body::Body>>::into_make_service(svc),
                    )
                    .await
                }
                "linger-layer-only" => {
                    control.spawn(port);
                    axum::serve(listener, app.layer(LingerLayer::new())).await
                }
                "linger-wrapped" => {
                    let listener = LingerListener::with_config(
                        WrappedListener {
                            inner: listener,
                            holds,
                        },
                        config,
                    );
                    Control {
                        stats: Some(listener.shutdown_handle()),
                        ..control
                    }
                    .spawn(port);
                    axum::serve(listener, app.layer(LingerLayer::new())).await
                }
                other => {
                    eprintln!("figures serve: unknown mode {other:?}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = result {
                eprintln!("figures serve: {e}");
            }
            ExitCode::FAILURE
        })
    }

    /// Answers the orchestrator on stdin; the process exits when stdin
    /// closes (the orchestrator is gone).
    struct Control {
        stats: Option<LingerShutdown>,
        holds: Option<Samples>,
        events: Samples,
        micros_seen: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Control {
        fn spawn(self, port: u16) {
            std::thread::spawn(move || {
                println!("port {port}");
                let _ = io::stdout().flush();
                for line in io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    let reply = self.answer(line.trim());
                    let mut out = io::stdout().lock();
                    if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
                std::process::exit(0);
            });
        }

        fn answer(&self, cmd: &str) -> String {
            let join = |v: &Samples| {
                let v = v.lock().unwrap_or_else(|e| e.into_inner());
                v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
            };
            match cmd {
                "stats" => match &self.stats {
                    Some(s) => {
                        let st = s.stats();
                        format!(
                            "stats started={} lingering={} peer_closed={} idle_timeout={} deadline={} byte_cap={} error={} shortened={} bytes_discarded={}",
                            st.started,
                            st.lingering,
                            st.peer_closed,
                            st.idle_timeout,
                            st.deadline,
                            st.byte_cap,
                            st.error,
                            st.shortened,
                            st.bytes_discarded
                        )
                    }
                    None => "stats".to_string(),
                },
                "holds" => format!(
                    "holds {}",
                    self.holds.as_ref().map(join).unwrap_or_default()
                ),
                "events" => {
                    let unit = if self.micros_seen.load(std::sync::atomic::Ordering::Relaxed) {
                        "us"
                    } else {
                        "ms"
                    };
                    format!("events unit={unit} {}", join(&self.events))
                }
                "clear" => {
                    if let Some(h) = &self.holds {
                        h.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    }
                    self.events
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    "cleared".to_string()
                }
                other => format!("unknown {other}"),
            }
        }
    }

    /// Records the duration field of the crate's "lingering close ended"
    /// events: `micros` when the crate has it, else `millis`.
    struct EndEvents {
        values: Samples,
        micros_seen: Arc<std::sync::atomic::AtomicBool>,
    }

    #[derive(Default)]
    struct Fields {
        is_end: bool,
        millis: Option<u64>,
        micros: Option<u64>,
    }

    impl tracing::field::Visit for Fields {
        fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
            match field.name() {
                "millis" => self.millis = Some(value),
                "micros" => self.micros = Some(value),
                _ => {}
            }
        }

        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.is_end = format!("{value:?}") == "lingering close ended";
            }
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EndEvents {
        fn enabled(
            &self,
            metadata: &tracing::Metadata<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) -> bool {
            metadata.target().starts_with("linger")
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if !fields.is_end {
                return;
            }
            let value = match (fields.micros, fields.millis) {
                (Some(us), _) => {
                    self.micros_seen
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    us
                }
                (None, Some(ms)) => ms,
                (None, None) => return,
            };
            self.values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(value);
        }
    }

    /// Accepts tokio TcpStreams as [`Wrapper`]s, so a `LingerListener`
    /// around it gets an IO that is not `TcpStream`.
    struct WrappedListener {
        inner: TcpListener,
        holds: Option<Samples>,
    }

    impl axum::serve::Listener for WrappedListener {
        type Io = Wrapper;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Wrapper, SocketAddr) {
            loop {
                match self.inner.accept().await {
                    Ok((io, addr)) => {
                        let wrapper = Wrapper {
                            io,
                            last_write: None,
                            holds: self.holds.clone(),
                        };
                        return (wrapper, addr);
                    }
                    Err(e) => {
                        eprintln!("figures serve: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }
    }

    /// A TcpStream behind a newtype: delegates every read and write (so the
    /// crate's drain takes the copying fallback), and optionally records
    /// how long the socket stays open after its last write.
    struct Wrapper {
        io: TcpStream,
        last_write: Option<Instant>,
        holds: Option<Samples>,
    }

    impl Drop for Wrapper {
        fn drop(&mut self) {
            if let (Some(at), Some(holds)) = (self.last_write, &self.holds) {
                let us = at.elapsed().as_micros() as u64;
                holds.lock().unwrap_or_else(|e| e.into_inner()).push(us);
            }
        }
    }

    impl Wrapper {
        fn wrote(&mut self, res: &Poll<io::Result<usize>>) {
            if self.holds.is_some() {
                if let Poll::Ready(Ok(n)) = res {
                    if *n > 0 {
                        self.last_write = Some(Instant::now());
                    }
                }
            }
        }
    }

    impl AsyncRead for Wrapper {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Wrapper {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let res = Pin::new(&mut this.io).poll_write(cx, buf);
            this.wrote(&res);
            res
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            this.wrote(&res);
            res
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
        }
    }
}
