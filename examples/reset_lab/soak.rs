//! `reset_lab soak`: mixed traffic against the lab server with the crate
//! for a given time, then whether anything was lost or left behind.
//!
//! Four kinds of client run at once, each on a thread of its own:
//! keep-alive `GET /ok` on one connection; every reset-lab scenario in
//! turn; clients that take a close response and never close (the oldest
//! of up to 200 are dropped as new ones come); and clients that flood
//! after their response until a write fails or 2 s pass. At the end the
//! clients stop, the lingers end, and the process's descriptors, RSS and
//! the server runtime's live tasks are compared with those at the start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use linger::LingerConfig;

use crate::support::client::{connect, read_response};
use crate::support::lab::Lab;
use crate::support::leaks::open_fds;
use crate::support::scenarios::scenarios;

/// Counts of what the clients did.
#[derive(Default)]
struct Tally {
    keep_alive: AtomicU64,
    scenarios: AtomicU64,
    lost: AtomicU64,
    never_close: AtomicU64,
    floods: AtomicU64,
    flooded_bytes: AtomicU64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Asks glibc to return the memory it holds free, so RSS shows what is in
/// use.
#[allow(unsafe_code)]
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn keep_alive(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = connect(addr, None) else {
            continue;
        };
        for _ in 0..1000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let ok = c
                .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
                .is_ok()
                && read_response(&mut c).is_ok_and(|r| r.head.status == 200);
            if !ok {
                tally.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tally.keep_alive.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn every_scenario(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let all = scenarios();
    while !stop.load(Ordering::Relaxed) {
        for scenario in &all {
            let outcome = scenario.run(addr);
            tally.scenarios.fetch_add(1, Ordering::Relaxed);
            if !outcome.is_whole() {
                eprintln!("lost: {}: {outcome:?}", scenario.key);
                tally.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn never_close(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut held: std::collections::VecDeque<TcpStream> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = connect(addr, None) else {
            continue;
        };
        let _ = c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nxyz");
        let mut got = Vec::new();
        if c.read_to_end(&mut got).is_err() || !got.ends_with(&[b'b'; 16]) {
            tally.lost.fetch_add(1, Ordering::Relaxed);
        }
        tally.never_close.fetch_add(1, Ordering::Relaxed);
        held.push_back(c);
        if held.len() > 200 {
            held.pop_front();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn flood(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let chunk = vec![b'f'; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = connect(addr, None) else {
            continue;
        };
        let _ = c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n");
        if read_response(&mut c).is_err() {
            tally.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) && !stop.load(Ordering::Relaxed) {
            match c.write(&chunk) {
                Ok(n) => tally.flooded_bytes.fetch_add(n as u64, Ordering::Relaxed),
                Err(_) => break,
            };
        }
        tally.floods.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the soak for `seconds`; success if nothing was lost and the
/// descriptors and tasks came back to where they started.
pub(crate) fn soak(seconds: u64) -> bool {
    let lab = Lab::lingering(LingerConfig::new().with_idle_timeout(Duration::from_secs(2)));
    // Warm up the runtime and allocator.
    for scenario in scenarios() {
        scenario.run(lab.addr);
    }
    let settle = |lab: &Lab| {
        lab.wait_for(Duration::from_secs(40), Duration::from_millis(50), |s| {
            s.lingering == 0
        })
        .ok();
        std::thread::sleep(Duration::from_millis(200));
    };
    settle(&lab);
    let (fds0, rss0, tasks0) = (open_fds(), rss_kib(), lab.alive_tasks());
    let (stop, tally) = (AtomicBool::new(false), Tally::default());
    // RSS once the traffic has run a while: the allocator's working set.
    let mut rss_warm = None;
    let addr = lab.addr;
    let started = Instant::now();
    std::thread::scope(|s| {
        type Client = fn(SocketAddr, &AtomicBool, &Tally);
        let clients: [Client; 4] = [keep_alive, every_scenario, never_close, flood];
        for client in clients {
            let (stop, tally) = (&stop, &tally);
            s.spawn(move || client(addr, stop, tally));
        }
        let deadline = started + Duration::from_secs(seconds);
        let warm_at = started + Duration::from_secs((seconds / 10).clamp(1, 30));
        let mut next_line = started;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1).min(deadline - Instant::now()));
            if rss_warm.is_none() && Instant::now() >= warm_at {
                rss_warm = Some(rss_kib());
            }
            if Instant::now() < next_line {
                continue;
            }
            next_line += Duration::from_secs(10);
            let stats = lab.stats();
            eprintln!(
                "{:>5} s: {} keep-alive, {} scenarios, {} lost, lingering {}, fds {}, RSS {} KiB",
                started.elapsed().as_secs(),
                tally.keep_alive.load(Ordering::Relaxed),
                tally.scenarios.load(Ordering::Relaxed),
                tally.lost.load(Ordering::Relaxed),
                stats.lingering,
                open_fds(),
                rss_kib()
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    settle(&lab);
    let (fds1, rss1, tasks1) = (open_fds(), rss_kib(), lab.alive_tasks());
    trim_allocator();
    let rss_trimmed = rss_kib();
    let rss_warm = rss_warm.unwrap_or(rss1);
    let stats = lab.stats();
    let lost = tally.lost.load(Ordering::Relaxed);
    println!(
        "soak: {:?} of mixed traffic against the lab server with the crate",
        started.elapsed()
    );
    println!(
        "  requests: {} keep-alive GETs, {} reset-lab scenarios, {} clients that never close, \
         {} floods ({} MiB)",
        tally.keep_alive.load(Ordering::Relaxed),
        tally.scenarios.load(Ordering::Relaxed),
        tally.never_close.load(Ordering::Relaxed),
        tally.floods.load(Ordering::Relaxed),
        tally.flooded_bytes.load(Ordering::Relaxed) >> 20
    );
    println!("  responses lost: {lost}");
    println!("  descriptors: {fds0} at the start, {fds1} at the end");
    println!(
        "  RSS: {rss0} KiB before the traffic, {rss_warm} KiB once warm, {rss1} KiB at the end, \
         {rss_trimmed} KiB after malloc_trim"
    );
    println!("  live tasks: {tasks0} at the start, {tasks1} at the end");
    println!("  {stats:?}");
    let flat = fds1 <= fds0 && tasks1 <= tasks0 && rss1 <= rss_warm + rss_warm / 4 + 4096;
    if !flat {
        println!("  NOT FLAT: descriptors, tasks or memory grew");
    }
    lost == 0 && flat
}
