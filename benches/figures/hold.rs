//! Figure 4, hold time: how long after its response the server keeps a
//! well-behaved client's socket.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{wait_stats, Server};
use crate::client::{connect, read_response, REQ_CLOSE, REQ_OK};
use crate::load::Load;
use crate::summary::percentiles;
use crate::{Settings, R};

pub(crate) fn run(s: &Settings) -> R<()> {
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
