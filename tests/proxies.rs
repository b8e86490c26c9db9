//! Real reverse proxies as the clients: nginx (bodies streamed to the app,
//! upstream keep-alive), HAProxy and Apache httpd (mod_proxy_http), started
//! from their Debian packages in front of the lab app served with the crate
//! and served plainly, in the same run.
//!
//! Through each proxy, with the crate, every answer keeps its own status,
//! never a 502 or 503:
//! - an early 413 to a 16 MiB upload;
//! - a 404 that closes, with a request pipelined behind it;
//! - keep-alive traffic where the app closes after every other answer (a
//!   300 KiB body it leaves unread, past the keep-alive rescue): the crate
//!   announces each close with `Connection: close`, so the proxy never
//!   sends a request down an upstream connection the app is closing.
//!
//! Served plainly, at least one proxy answers 502/503 (or loses the answer)
//! in the same run, so the test can fail. `.ci/run` installs the proxies; a
//! missing one fails in CI and is skipped with a message elsewhere.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use linger::LingerConfig;
use support::client::{connect, read_response};
use support::lab::Lab;
use support::proxy::{Kind, Proxy};
use support::scenarios::{big_get, UPLOAD};

const TRIALS: usize = 4;
/// Requests in the keep-alive sequence.
const SEQUENCE: usize = 20;

/// The status of the first answer to `request`, written while the answer
/// is read (as curl uploads), or what went wrong.
fn status_of(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut stream = connect(addr, None).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // The proxy may stop taking the body once it has an answer.
            let _ = writer.write_all(request);
        });
        let status = read_response(&mut stream)
            .map(|r| r.head.status)
            .map_err(|e| e.to_string());
        let _ = stream.shutdown(std::net::Shutdown::Both);
        status
    })
}

fn upload() -> Vec<u8> {
    let mut request =
        format!("POST /reject/2048 HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\r\n")
            .into_bytes();
    request.resize(request.len() + UPLOAD, b'u');
    request
}

fn missing_pipelined() -> Vec<u8> {
    [
        b"GET /missing HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec(),
        big_get("/ok"),
    ]
    .concat()
}

/// [`SEQUENCE`] requests, one connection each to the proxy: odd ones a
/// 300 KiB upload the app answers 413 without reading, even ones `GET /ok`.
/// The statuses that were not the expected ones.
fn keep_alive_sequence(addr: SocketAddr) -> Vec<String> {
    let mut unreadable =
        b"POST /reject/16 HTTP/1.1\r\nHost: lab\r\nContent-Length: 307200\r\n\r\n".to_vec();
    unreadable.resize(unreadable.len() + (300 << 10), b'u');
    (0..SEQUENCE)
        .filter_map(|i| {
            let (request, expected) = if i % 2 == 1 {
                (unreadable.as_slice(), 413)
            } else {
                (
                    &b"GET /ok HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"[..],
                    200,
                )
            };
            match status_of(addr, request) {
                Ok(status) if status == expected => None,
                other => Some(format!("#{i}: {other:?}")),
            }
        })
        .collect()
}

/// Everything one proxy did in front of one server.
#[derive(Debug, Default)]
struct Seen {
    upload: Vec<Result<u16, String>>,
    missing: Vec<Result<u16, String>>,
    sequence: Vec<String>,
}

impl Seen {
    fn all_own_statuses(&self) -> bool {
        self.upload.iter().all(|s| *s == Ok(413))
            && self.missing.iter().all(|s| *s == Ok(404))
            && self.sequence.is_empty()
    }

    fn gateway_errors(&self) -> usize {
        let bad = |s: &Result<u16, String>| !matches!(s, Ok(413) | Ok(404));
        self.upload.iter().filter(|s| bad(s)).count()
            + self.missing.iter().filter(|s| bad(s)).count()
            + self.sequence.len()
    }
}

fn through(kind: Kind, upstream: SocketAddr) -> (Seen, String) {
    let proxy = Proxy::start(kind, upstream);
    let seen = Seen {
        upload: (0..TRIALS)
            .map(|_| status_of(proxy.addr, &upload()))
            .collect(),
        missing: (0..TRIALS)
            .map(|_| status_of(proxy.addr, &missing_pipelined()))
            .collect(),
        sequence: keep_alive_sequence(proxy.addr),
    };
    (seen, proxy.error_log())
}

#[test]
fn behind_real_proxies_every_answer_keeps_its_status() {
    let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.available()).collect();
    if kinds.is_empty() {
        return;
    }
    let cured = Lab::lingering(LingerConfig::new());
    let plain = Lab::plain();
    let mut plain_errors = 0;
    for kind in kinds {
        let before = cured.stats();
        let (with, log) = through(kind, cured.addr);
        let lingers = cured
            .wait_for(Duration::from_secs(40), Duration::from_millis(10), |s| {
                s.lingering == 0
            })
            .unwrap_or_else(|s| s);
        eprintln!(
            "{kind:?} in front of the crate: {with:?}\n  lingers: {} ended by the proxy's close, \
             {} by the idle timeout, {} by the byte cap, {} by errors",
            lingers.peer_closed - before.peer_closed,
            lingers.idle_timeout - before.idle_timeout,
            lingers.byte_cap - before.byte_cap,
            lingers.error - before.error
        );
        assert!(
            with.all_own_statuses(),
            "{kind:?} with the crate: {with:?}\n{log}"
        );
        // The README's figure: no linger behind a proxy reached a bound;
        // each ended with the proxy's close.
        assert_eq!(lingers.lingering, 0, "{kind:?}: {lingers:?}");
        let bounds_reached = (lingers.idle_timeout - before.idle_timeout)
            + (lingers.deadline - before.deadline)
            + (lingers.byte_cap - before.byte_cap)
            + (lingers.shortened - before.shortened);
        assert_eq!(
            bounds_reached, 0,
            "{kind:?}: a linger reached a bound: {lingers:?}"
        );
        let (without, _) = through(kind, plain.addr);
        eprintln!("{kind:?} in front of plain axum: {without:?}");
        plain_errors += without.gateway_errors();
    }
    assert!(
        plain_errors > 0,
        "no proxy ever failed in front of plain axum: this test proves nothing here"
    );
}
