//! File-descriptor exhaustion while connections linger: the process's
//! open-file limit is lowered so that `accept` fails with EMFILE while
//! lingers hold descriptors. Nothing panics, the lingers end by their idle
//! timeout, and the server then accepts and answers the clients that
//! waited in the accept queue.
//!
//! A test binary of its own: the limit is the process's.

#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use linger::LingerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use support::lab::Lab;
use support::leaks::open_fds;
use support::logs::Captured;

/// Descriptors the server may open beyond those it has at the start.
const HEADROOM: u64 = 24;
/// Clients: more than the headroom, so that some wait while it is spent.
const CLIENTS: usize = 40;
const IDLE: Duration = Duration::from_secs(1);
const BOUND: Duration = Duration::from_secs(30);

#[allow(unsafe_code)]
fn set_soft_fd_limit(soft: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one `rlimit` we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let before = limit.rlim_cur;
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        before
    }
}

#[test]
fn accept_fails_with_emfile_while_lingers_hold_descriptors_and_the_server_recovers() {
    // axum logs each failed accept: the proof that descriptors ran out.
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::ERROR)
        .init();
    let lab = Lab::lingering(LingerConfig::new().with_idle_timeout(IDLE));
    // The client sockets exist before the limit is lowered: connecting
    // takes no new descriptor.
    let sockets: Vec<Socket> = (0..CLIENTS)
        .map(|_| Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let previous = set_soft_fd_limit(open_fds() as u64 + HEADROOM);

    let started = Instant::now();
    let mut clients: Vec<TcpStream> = Vec::new();
    for socket in sockets {
        socket.connect(&lab.addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        // A close response, and bytes behind it so that it lingers.
        stream
            .write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nxyz")
            .unwrap();
        clients.push(stream);
    }
    // Every client gets its whole response: the first ones at once, the
    // rest once the lingers' idle timeout has freed descriptors.
    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        let read = client.read_to_end(&mut got);
        assert!(
            read.is_ok() && got.ends_with(&[b'b'; 16]),
            "client {i}: {read:?}, {} bytes",
            got.len()
        );
    }
    let took = started.elapsed();
    set_soft_fd_limit(previous);
    let stats = lab
        .wait_for(BOUND, Duration::from_millis(10), |s| {
            s.started >= CLIENTS as u64 && s.lingering == 0
        })
        .unwrap_or_else(|s| panic!("lingers did not end: {s:?}"));
    eprintln!("{CLIENTS} clients, {HEADROOM} descriptors of headroom: all answered in {took:?}; {stats:?}");
    assert!(
        stats.idle_timeout >= 1,
        "no linger held a descriptor to its end: {stats:?}"
    );
    let log = captured.text();
    assert!(
        log.contains("Too many open files"),
        "accept never failed for want of descriptors: {log}"
    );
    // The server serves again.
    let mut fresh = support::client::connect(lab.addr, None).unwrap();
    fresh
        .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = support::client::read_response(&mut fresh).unwrap();
    assert_eq!(response.head.status, 200);
}
