//! The harness of the bounds tests (`tests/bounds.rs`,
//! `tests/bounds_traffic.rs`): the lab app served through
//! [`LingerListener`] with short bounds, and a raw tokio `TcpStream` client
//! that sends `GET /close/16` plus 64 KiB of bytes the server never reads,
//! so the server lingers after its response.
//!
//! Every test takes `support::serial::serial()` and builds and drops its own runtime
//! ([`super::runtime::run`]) while holding it: the fd table is the
//! process's, so fd counts are only meaningful with one test at a time.

use std::io::ErrorKind;
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::client::{self, IO_TIMEOUT};
use super::lab;
use super::leaks::{Server, CLEANUP, STEP};

pub(crate) const IDLE: Duration = Duration::from_millis(300);
pub(crate) const DEADLINE: Duration = Duration::from_secs(1);
pub(crate) const MAX_BYTES: u64 = 1 << 20;
/// Loose upper slack on every timing bound, so that a loaded machine's
/// late timers do not fail a test: the lower bounds are strict. Still far
/// below the default bounds, so a bound that is not enforced fails.
pub(crate) const SLACK: Duration = Duration::from_secs(5);
/// Bytes sent after the request, well past hyper's first 8 KiB read.
pub(crate) const EXTRA: usize = 64 << 10;
/// Backstop for a whole scenario.
pub(crate) const SCENARIO_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll period when timing the end of a linger.
pub(crate) const FINE_STEP: Duration = Duration::from_millis(5);

/// The short bounds every bounds test serves with.
pub(crate) fn config() -> LingerConfig {
    LingerConfig::new()
        .with_idle_timeout(IDLE)
        .with_deadline(DEADLINE)
        .with_max_bytes(MAX_BYTES)
}

/// Serves the lab app with [`config`] and the default middleware, as
/// `lab::serve` does, on a listener kept here for its stats; returns the
/// server and the listener's stats reader.
pub(crate) async fn start_with_stats() -> (Server, LingerShutdown) {
    start_with_config(config()).await
}

/// [`start_with_stats`] with other bounds.
pub(crate) async fn start_with_config(config: LingerConfig) -> (Server, LingerShutdown) {
    let mut stats = None;
    let server = Server::start(|tcp| {
        let listener = LingerListener::with_config(tcp, config);
        stats = Some(listener.shutdown_handle());
        tokio::spawn(async move {
            if let Err(e) = lab::serve_lingering(listener, lab::app(), LingerLayer::new()).await {
                eprintln!("server stopped: {e}");
            }
        })
    })
    .await;
    (server, stats.expect("stats handle"))
}

/// Exactly one linger started, and it has ended.
pub(crate) fn ended(stats: &LingerShutdown) -> bool {
    let stats = stats.stats();
    stats.started == 1 && stats.lingering == 0
}

/// A client whose request made the server linger.
pub(crate) struct Lingering {
    pub(crate) stream: TcpStream,
    /// Just before the request was written: the linger started after this.
    pub(crate) t0: Instant,
    /// When the client read EOF, from `t0`.
    pub(crate) eof_after: Duration,
}

/// Sends `GET /close/16` and 64 KiB of unread bytes, reads the whole
/// response and the server's FIN (a clean close, no reset), and keeps the
/// socket open.
pub(crate) async fn request_and_read_response(addr: SocketAddr) -> Lingering {
    let mut stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut request = b"GET /close/16 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    request.resize(request.len() + EXTRA, b'x');
    let t0 = Instant::now();
    timeout(IO_TIMEOUT, stream.write_all(&request))
        .await
        .expect("request write timed out")
        .expect("request write");
    let (response, end) = client::read_to_end_async(&mut stream, IO_TIMEOUT).await;
    let eof_after = t0.elapsed();
    assert_eq!(end, client::End::Eof, "a clean EOF after the response");
    let text = String::from_utf8_lossy(&response);
    let head = client::Head::parse(&response)
        .expect("a response head")
        .expect("a status line");
    assert!(head.text.starts_with("http/1.1 200 "), "response: {text:?}");
    assert!(head.closes(), "response: {text:?}");
    assert_eq!(
        &response[head.len..],
        &[b'b'; 16],
        "the whole body and nothing after it"
    );
    Lingering {
        stream,
        t0,
        eof_after,
    }
}

/// Writes to a socket whose server side is closed: the server's kernel
/// answers with a reset, and a later write fails. Proves the server really
/// closed the socket, not just counted the end.
pub(crate) async fn expect_reset_on_write(stream: &mut TcpStream) -> ErrorKind {
    let start = Instant::now();
    let max_writes = CLEANUP.as_millis() / STEP.as_millis() + 1;
    for _ in 0..max_writes {
        match timeout(IO_TIMEOUT, stream.write_all(b"z")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let kind = e.kind();
                assert!(
                    matches!(kind, ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                    "write after the close failed with {e}"
                );
                return kind;
            }
            Err(_) => panic!("write after the close blocked"),
        }
        if start.elapsed() > CLEANUP {
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    panic!("writes kept succeeding after the server closed for {CLEANUP:?}");
}
