//! 2,000 clients that receive a close response and never close, over
//! loopback: all 2,000 linger at once, a fresh client is served during the
//! hold, the listener's shutdown releases every server socket within the
//! short deadline, and memory returns near its baseline.
//!
//! The idle timeout is long (600 s) so that every linger is certainly still
//! running when the last client is in, however slowly a loaded machine
//! connects them; the release is the shutdown's short deadline, counted
//! from one moment for all. (The idle timeout itself is tested per
//! connection in `bounds.rs`.)
//!
//! Its own test binary, so that counting the process's file descriptors is
//! not disturbed by other tests; its two tests run one at a time. It needs about 4,100 descriptors (both ends
//! of every connection live in this process); if the soft limit is lower it
//! raises it with `prlimit` (up to the hard limit).

#![cfg(target_os = "linux")]

mod support;

use support::serial::serial;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use linger::LingerConfig;
use support::client::connect;
use support::lab::Lab;
use support::leaks::open_fds;
use support::wait::wait_until;

const CLIENTS: usize = 2_000;
/// The large round: what the issue of 10,000 lingers at once asks.
const MANY: usize = 10_000;
/// Far longer than connecting the clients takes, even on a heavily loaded
/// machine (10,000 took over 30 s once): only the shutdown ends the lingers.
const IDLE: Duration = Duration::from_secs(600);
/// What the shutdown cuts every linger to.
const SHORT: Duration = Duration::from_millis(500);
/// Slack on the short deadline for the release: timer granularity and the
/// time to close 2,000 sockets on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The soft limit on open files, raised towards `want` (up to the hard
/// limit) with `prlimit` if it is lower.
fn ensure_fd_limit(want: u64) -> u64 {
    let soft = || -> u64 {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        line.split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap_or(u64::MAX)
    };
    if soft() < want {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={want}:"))
            .status();
        eprintln!("raised the open-file limit to {}", soft());
    }
    soft()
}

/// Asks glibc to hand the memory it holds free back to the system, so that
/// RSS shows what is still in use: freed memory goes, a leak would stay.
#[allow(unsafe_code)]
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The RSS once the allocator has returned its free memory: trimmed until
/// it is at most `enough`, for at most 5 s (on a loaded machine the runtime's
/// last frees can come after the first trim), then whatever it is.
fn trimmed_rss(enough: u64) -> u64 {
    let mut rss = 0;
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        trim_allocator();
        rss = rss_kib();
        rss <= enough
    });
    rss
}

/// What one round measured.
#[derive(Debug)]
struct Round {
    rss_before: u64,
    rss_during: u64,
    /// Once every connection has closed: what the allocator kept.
    rss_after: u64,
    /// The same, after the allocator returned its free memory.
    rss_trimmed: u64,
}

/// Serves the lab app with `config`, has `CLIENTS` clients take a close
/// response and never close, and checks the shutdown releases them all.
fn hold(config: LingerConfig, label: &str, count: usize) -> Round {
    let lab = Lab::lingering(config);
    let addr = lab.addr;
    // Warm up the runtime and allocator with one request, then measure.
    let mut warm = connect(addr, None).unwrap();
    warm.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let _ = warm.read_to_end(&mut Vec::new());
    drop(warm);
    std::thread::sleep(Duration::from_millis(100));
    trim_allocator();
    let (fds_before, rss_before) = (open_fds(), rss_kib());

    let mut clients: Vec<TcpStream> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut c = connect(addr, None).unwrap();
        // The extra bytes make the server linger; then the client goes quiet.
        c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nxyz")
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap(); // the response, then the FIN
        assert!(got.ends_with(&[b'b'; 16]));
        clients.push(c);
    }
    // A client sees the FIN a moment before the server counts its linger.
    let held = lab
        .wait_for(SLACK, Duration::from_millis(1), |s| {
            s.lingering >= count as u64
        })
        .unwrap_or_else(|s| s);
    let (fds_during, rss_during) = (open_fds(), rss_kib());
    assert_eq!(held.lingering, count as u64, "{label}: {held:?}");

    // A fresh client is served while the 2,000 linger.
    let mut fresh = connect(addr, None).unwrap();
    fresh
        .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    fresh.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"ok"));
    drop(fresh);

    // The shutdown releases every server socket, clients still open.
    let shutdown = lab.lingers.clone().expect("a lingering lab");
    let begun = Instant::now();
    shutdown.begin();
    lab.wait_for(SHORT + SLACK, Duration::from_millis(10), |s| {
        s.lingering == 0
    })
    .unwrap_or_else(|s| panic!("{label}: still lingering after {:?}: {s:?}", SHORT + SLACK));
    let released = begun.elapsed();
    // The server's descriptors are gone once its tasks have dropped them.
    let mut fds_server_gone = open_fds();
    let bound = (SHORT + SLACK).saturating_sub(begun.elapsed());
    wait_until(bound, Duration::from_millis(10), || {
        fds_server_gone = open_fds();
        fds_server_gone <= fds_before + count
    });
    let stats = lab.stats();
    drop(clients);
    std::thread::sleep(Duration::from_millis(200));
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    drop(lab);
    let rss_trimmed = trimmed_rss(rss_before + rss_during.saturating_sub(rss_before) / 10 + 2048);

    eprintln!(
        "{label}: {count} clients that never close, idle timeout {IDLE:?}:\n  \
         fds: before {fds_before}, holding {fds_during}, after the idle timeout (clients still open) \
         {fds_server_gone}, after the clients closed {fds_after}\n  \
         RSS KiB: before {rss_before}, holding {rss_during} (+{} KiB: {} B per connection, \
         both ends in this process), after {rss_after}, after malloc_trim {rss_trimmed}\n  \
         all released {released:?} after the shutdown began\n  {stats:?}",
        rss_during.saturating_sub(rss_before),
        rss_during.saturating_sub(rss_before) * 1024 / count as u64,
    );
    assert_eq!(stats.shortened, count as u64, "{label}: {stats:?}");
    // The clients, the warm-up and the fresh client all lingered.
    assert_eq!(stats.started, count as u64 + 2, "{label}: {stats:?}");
    assert!(
        fds_during >= fds_before + 2 * count,
        "{label}: the server did not hold the sockets"
    );
    assert!(
        fds_server_gone <= fds_before + count,
        "{label}: server sockets leaked: {fds_server_gone}"
    );
    assert!(
        fds_after <= fds_before,
        "{label}: descriptors leaked: {fds_before} -> {fds_after}"
    );
    // What the hold took comes back, most runs; now and then (about one
    // run in six under load here) the allocator keeps it all after the
    // trim. Whether it leaks is what the test asks of two holds in a row.
    let grown = rss_during.saturating_sub(rss_before);
    if rss_trimmed > rss_before + grown / 10 + 2048 {
        eprintln!(
            "note: {label}: the allocator kept the memory: {rss_before} -> {rss_during} -> \
             {rss_trimmed} KiB"
        );
    }
    Round {
        rss_before,
        rss_during,
        rss_after,
        rss_trimmed,
    }
}

#[test]
fn two_thousand_clients_that_never_close() {
    let _serial = serial();
    let limit = ensure_fd_limit(2 * CLIENTS as u64 + 512);
    assert!(
        limit >= 2 * CLIENTS as u64 + 256,
        "open-file limit {limit} too low"
    );
    let config = LingerConfig::new()
        .with_idle_timeout(IDLE)
        .with_deadline(IDLE)
        .with_short_deadline(SHORT)
        .with_max_lingering(2 * CLIENTS);

    // Detached lingers (the default) hold the socket and a few hundred bytes.
    let detached = hold(config, "detached (default)", CLIENTS);
    // In place, hyper's connection buffers stay allocated while the linger
    // runs. Without a trim the allocator keeps what was freed, and a second
    // hold reuses it rather than growing.
    let in_place = config.with_detach(false);
    let first = hold(in_place, "in place", CLIENTS);
    let second = hold(in_place, "in place, again", CLIENTS);
    // A leak keeps every hold's memory; the allocator, under load, now and
    // then keeps one hold's (and the next hold then takes fresh memory).
    let kept = |r: &Round| {
        r.rss_trimmed > r.rss_before + r.rss_during.saturating_sub(r.rss_before) / 10 + 2048
    };
    assert!(
        !(kept(&first) && kept(&second)),
        "memory did not come back after either hold: {first:?} then {second:?}"
    );
    if !kept(&first) {
        assert!(
            second.rss_during <= first.rss_during + first.rss_during / 10,
            "memory grew from one hold to the next: {first:?} then {second:?}"
        );
    }
    assert!(
        detached.rss_during < first.rss_during,
        "{detached:?} {first:?}"
    );
    let _ = (detached.rss_before, detached.rss_after, second.rss_trimmed);
}

/// 10,000 lingering connections at once: the clients, which never close,
/// are a Python process of their own (tests/clients/hold.py), so that each
/// process needs some 10,000 descriptors, under the usual hard limit. All
/// are released by the shutdown's short deadline, the server's descriptors
/// go, and its memory comes back near its baseline.
fn hold_many(config: LingerConfig, label: &str) -> Round {
    let lab = Lab::lingering(config);
    trim_allocator();
    let (fds_before, rss_before) = (open_fds(), rss_kib());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hold.py");
    let mut python = std::process::Command::new("python3")
        .arg(script)
        .arg(lab.addr.ip().to_string())
        .arg(lab.addr.port().to_string())
        .arg(MANY.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (CI installs it)");
    let stdout = python.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let line = std::io::BufReader::new(stdout).lines().next();
        let _ = tx.send(line);
    });
    let held = rx.recv_timeout(Duration::from_secs(300));
    assert!(
        matches!(&held, Ok(Some(Ok(line))) if *line == format!("held {MANY}")),
        "{label}: the clients did not all get their response: {held:?}"
    );
    let lingering = lab
        .wait_for(SLACK, Duration::from_millis(5), |s| {
            s.lingering >= MANY as u64
        })
        .unwrap_or_else(|s| panic!("{label}: not all lingering: {s:?}"));
    let (fds_during, rss_during) = (open_fds(), rss_kib());
    let shutdown = lab.lingers.clone().expect("a lingering lab");
    let begun = Instant::now();
    shutdown.begin();
    lab.wait_for(SHORT + SLACK, Duration::from_millis(10), |s| {
        s.lingering == 0
    })
    .unwrap_or_else(|s| panic!("{label}: still lingering: {s:?}"));
    let released = begun.elapsed();
    // The clients may go now (and take our end of their stdin pipe).
    drop(python.stdin.take());
    let _ = python.wait();
    let mut fds_after = open_fds();
    wait_until(SLACK, Duration::from_millis(10), || {
        fds_after = open_fds();
        fds_after <= fds_before
    });
    let stats = lab.stats();
    drop(lab);
    let grown = rss_during.saturating_sub(rss_before);
    let rss_trimmed = trimmed_rss(rss_before + grown / 10 + 2048);
    eprintln!(
        "{label}: {MANY} lingering at once ({lingering:?})\n  fds: before {fds_before}, \
         holding {fds_during}, after {fds_after}\n  server RSS KiB: before {rss_before}, holding \
         {rss_during} (+{grown} KiB: {} B per lingering connection), after malloc_trim \
         {rss_trimmed}\n  all released {released:?} after the shutdown began\n  {stats:?}",
        grown * 1024 / MANY as u64
    );
    assert!(
        fds_during >= fds_before + MANY,
        "{label}: the server did not hold them"
    );
    assert!(
        fds_after <= fds_before,
        "{label}: descriptors leaked: {fds_after}"
    );
    assert_eq!(stats.shortened, MANY as u64, "{label}: {stats:?}");
    assert!(
        rss_trimmed <= rss_before + grown / 10 + 2048,
        "{label}: memory did not come back: {rss_before} -> {rss_during} -> {rss_trimmed} KiB"
    );
    Round {
        rss_before,
        rss_during,
        rss_after: rss_trimmed,
        rss_trimmed,
    }
}

#[test]
fn ten_thousand_lingers_at_once() {
    let _serial = serial();
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "python3 is missing in CI");
        eprintln!("skipping: the clients are a python3 process, and python3 is not installed");
        return;
    }
    let limit = ensure_fd_limit(MANY as u64 + 512);
    assert!(
        limit >= MANY as u64 + 256,
        "open-file limit {limit} too low"
    );
    let config = LingerConfig::new()
        .with_idle_timeout(IDLE)
        .with_deadline(IDLE)
        .with_short_deadline(SHORT)
        .with_max_lingering(2 * MANY);
    let detached = hold_many(config, "10,000 detached (default)");
    let in_place = hold_many(config.with_detach(false), "10,000 in place");
    assert!(
        detached.rss_during < in_place.rss_during,
        "{detached:?} {in_place:?}"
    );
    // The README's figure: under 2 KiB of the server's memory per detached
    // lingering connection (about 1 KiB measured), beside the kernel's
    // socket; in place it is about 21 KiB, which this bound fails.
    let per_connection =
        |round: &Round| round.rss_during.saturating_sub(round.rss_before) * 1024 / MANY as u64;
    assert!(
        per_connection(&detached) < 2048,
        "{} B per detached lingering connection: {detached:?}",
        per_connection(&detached)
    );
    assert!(
        per_connection(&in_place) >= 2048,
        "in place under the bound too, so it cannot fail: {in_place:?}"
    );
}
