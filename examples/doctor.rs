//! The reset doctor: which causes of connection resets are happening on
//! this host now, and what to do about each (Linux).
//!
//! ```text
//! cargo run --example doctor                 # samples the kernel's TCP counters for 10 s
//! cargo run --example doctor -- --seconds 60
//! ```
//!
//! It reads `/proc/net/netstat`, `/proc/net/snmp`, the listening sockets
//! (as `ss -ltn` does) and two settings, for the network namespace it runs
//! in, and needs no root. Run it beside your server while clients see
//! `ECONNRESET`; it tells a close with unread input (the lingering-close
//! problem) from an overflowing accept queue, from data arriving after a
//! close, from timeouts. Everything it prints comes from
//! `linger::doctor::Diagnosis`, which a server can also serve itself.

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    use linger::doctor::{Diagnosis, TcpCounters};
    use std::time::{Duration, Instant};

    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = match args.iter().position(|a| a == "--seconds") {
        Some(at) => args
            .get(at + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("--seconds takes a whole number");
                std::process::exit(2)
            }),
        None => 10,
    };
    eprintln!("sampling the kernel's TCP counters for {seconds} s ...");
    let before = TcpCounters::read()?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let diagnosis = Diagnosis::between(&before, &TcpCounters::read()?, started.elapsed())?;
    println!("{diagnosis}");
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the doctor reads Linux's /proc: it runs on Linux only");
    std::process::exit(2);
}
