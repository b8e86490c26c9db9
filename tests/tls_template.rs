//! The TLS template, `examples/tls.rs`, run as a user runs it (the example
//! binary `cargo test --all-features` builds), probed over loopback:
//!
//! - a client that opens TCP and never sends its ClientHello does not hold
//!   up another client's request: the template runs handshakes off the
//!   accept path. The same app behind a listener that handshakes inside
//!   `accept` (the template's old shape) answers the second client only
//!   once the silent one's handshake has timed out: shown in the same test;
//! - its app serves, keeps alive, and ends a rejected upload with a 413 that
//!   says `Connection: close`, then `close_notify` and a clean FIN.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use linger::{LingerLayer, LingerListener};
use support::tls::{client_config_trusting_any, connect, self_signed_acceptor, TestTlsListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Layer;

/// The bound on each wait of these tests.
const BOUND: Duration = Duration::from_secs(30);

/// The TLS example, running; killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    /// Starts the example binary on a free loopback port and waits (bounded)
    /// for the address it logs.
    fn start() -> Self {
        let deps = std::env::current_exe().expect("the test binary's path");
        let bin = deps
            .parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("examples").join("tls"))
            .expect("target/<profile>/examples");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo test --all-features` (it builds the examples) \
             or `cargo build --all-features --example tls` first",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .env("PORT", "0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the TLS example");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on https://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(BOUND) {
            Ok(addr) => addr.parse().expect("the logged address"),
            Err(e) => {
                let _ = child.kill();
                panic!("the example did not say where it listens: {e}");
            }
        };
        Self { child, addr }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS `GET /` with `Connection: close`: the body, and how long it took.
fn hello(addr: SocketAddr) -> (String, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(BOUND, async {
            let started = Instant::now();
            let mut tls = connect(addr, client_config_trusting_any(), None)
                .await
                .unwrap();
            tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await.unwrap();
            (
                String::from_utf8_lossy(&got).into_owned(),
                started.elapsed(),
            )
        })
        .await
        .expect("the request was answered within the bound")
    })
}

/// Whether the server still holds `silent` open: a read finds nothing yet
/// (rather than EOF or a reset).
fn still_open(silent: &mut TcpStream) -> bool {
    silent.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!(silent.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn a_client_that_never_sends_its_hello_holds_up_no_other_client() {
    let example = Example::start();
    let mut silent = support::client::connect(example.addr, None).unwrap();
    let (got, took) = hello(example.addr);
    eprintln!("template: the second client's request took {took:?}");
    assert!(got.ends_with("\r\n\r\nhello\n"), "{got}");
    assert!(
        still_open(&mut silent),
        "answered only after the silent client's handshake ended"
    );

    // The old shape: the handshake inside `accept`, one at a time. The
    // second client is answered only after the silent one's handshake timed
    // out and its connection was dropped.
    let rt = support::runtime::runtime();
    let addr = rt.block_on(async {
        let (acceptor, _cert) = self_signed_acceptor();
        let inner = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.get_ref().local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
        let listener = TestTlsListener { inner, acceptor };
        tokio::spawn(async move { axum::serve(listener, LingerLayer::new().layer(app)).await });
        addr
    });
    let mut silent = support::client::connect(addr, None).unwrap();
    let (got, took) = hello(addr);
    eprintln!("handshake inside accept: the second client's request took {took:?}");
    assert!(got.ends_with("\r\n\r\nhello\n"), "{got}");
    assert!(
        !still_open(&mut silent),
        "the sequential listener answered before the silent handshake ended"
    );
}

#[test]
fn the_template_serves_and_ends_a_rejected_upload_cleanly() {
    let example = Example::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(BOUND, async {
            let mut tls = connect(example.addr, client_config_trusting_any(), None)
                .await
                .unwrap();
            let requests = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n\
                            some bytes\
                            GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            tls.write_all(requests.as_bytes()).await.unwrap();
            let first = support::client::read_response_async(&mut tls)
                .await
                .unwrap();
            assert_eq!(first.body, b"10 bytes\n");
            let second = support::client::read_response_async(&mut tls)
                .await
                .unwrap();
            assert_eq!(second.body, b"hello\n");
            assert!(!second.head.closes());

            // Over the 1 MiB limit: a 413 before the body is read, with
            // `Connection: close`, then close_notify and a clean FIN.
            let head = format!(
                "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                2 << 20
            );
            tls.write_all(head.as_bytes()).await.unwrap();
            // Past the limit, so the app rejects it; the rest stays unsent.
            tls.write_all(&vec![b'u'; 1280 << 10]).await.unwrap();
            let rejected = support::client::read_response_async(&mut tls)
                .await
                .unwrap();
            assert_eq!(rejected.head.status, 413);
            assert!(rejected.head.closes(), "{}", rejected.head.text);
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            let clean = support::tls::tcp_end_is_clean(tls.get_mut().0).await;
            assert_eq!(clean, Ok(()));
        })
        .await
        .expect("within the bound")
    });
}
