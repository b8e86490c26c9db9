//! Figure 2, lingering memory: the server's RSS with many connections
//! lingering at once, against the same connections idle in keep-alive and
//! against none, with what the kernel charges for the sockets beside it.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{wait_stats, Server};
use crate::client::{connect, read_response, EXTRA, REQ_CLOSE, REQ_OK};
use crate::procfs::{fd_limit, kernel, Kernel, SOCKET_CACHES};
use crate::{Settings, R};

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

pub(crate) fn run(s: &Settings) -> R<()> {
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
