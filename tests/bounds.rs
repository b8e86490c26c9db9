//! The bounds of a lingering close, over real loopback sockets.
//!
//! The reset-lab app is served through [`LingerListener`] with short bounds,
//! and a raw tokio `TcpStream` client sends `GET /close/16` plus 64 KiB of
//! bytes the server never reads, so the server lingers after its response.
//! Then the client stays silent, trickles, or floods, and the test checks
//! that the matching bound ended the linger, when it did, what the
//! listener's counters say, and that no task or file descriptor was left.
//!
//! Every test takes [`SERIAL`] and builds and drops its own runtime while
//! holding it: the fd table is the process's, so fd counts are only
//! meaningful with one test at a time.

#[path = "../examples/reset_lab/lab.rs"]
mod lab;

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown, LingerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const IDLE: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(1);
const MAX_BYTES: u64 = 1 << 20;
/// Loose upper slack on every timing bound: the lower bounds are strict.
const SLACK: Duration = Duration::from_millis(1500);
/// Bytes sent after the request, well past hyper's first 8 KiB read.
const EXTRA: usize = 64 << 10;
/// The most one drain read takes (the crate's scratch buffer).
const READ_CHUNK: u64 = 64 << 10;
/// How often the trickling client sends a byte: well inside the idle
/// timeout, so only the deadline can end the linger.
const TRICKLE: Duration = Duration::from_millis(100);
/// The flooding client stops after this many bytes even if no write fails.
const FLOOD_LIMIT: u64 = 64 * MAX_BYTES;
/// Backstop for any single network wait.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Backstop for a whole scenario.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll period when timing the end of a linger.
const FINE_STEP: Duration = Duration::from_millis(5);
/// Poll period when waiting for tasks and fds to go away.
const STEP: Duration = Duration::from_millis(20);
/// How long tasks and fds may take to go away.
const CLEANUP: Duration = Duration::from_secs(3);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config() -> LingerConfig {
    LingerConfig::new()
        .with_idle_timeout(IDLE)
        .with_deadline(DEADLINE)
        .with_max_bytes(MAX_BYTES)
}

/// Runs `scenario` on a runtime of its own, under [`SCENARIO_TIMEOUT`], and
/// drops the runtime before returning (so before the caller's [`SERIAL`]
/// guard is released).
fn run<F: Future<Output = ()>>(scenario: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        timeout(SCENARIO_TIMEOUT, scenario)
            .await
            .expect("scenario timed out")
    });
    drop(rt);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Polls `cond` every `step` until it holds, for at most `limit`; returns
/// how long it took, or `None`.
async fn poll_until(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    let max_polls = limit.as_millis() / step.as_millis() + 1;
    for _ in 0..max_polls {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(step).await;
    }
    cond().then(|| start.elapsed())
}

async fn expect_within(what: &str, limit: Duration, cond: impl FnMut() -> bool) -> Duration {
    match poll_until(limit, STEP, cond).await {
        Some(took) => took,
        None => panic!("{what}: not within {limit:?}"),
    }
}

/// Serves the lab app as `lab::serve` does, on a listener the caller made
/// (so it could keep the listener's shutdown handle, which reads its stats).
async fn serve_lab(listener: LingerListener<TcpListener>) {
    if let Err(e) = axum::serve(listener, lab::app().layer(LingerLayer::new())).await {
        eprintln!("server stopped: {e}");
    }
}

/// Starts [`serve_lab`] with [`config`]; returns the server and the
/// listener's stats reader.
async fn start_with_stats() -> (Server, LingerShutdown) {
    let mut stats = None;
    let server = Server::start(|tcp| {
        let listener = LingerListener::with_config(tcp, config());
        stats = Some(listener.shutdown_handle());
        tokio::spawn(serve_lab(listener))
    })
    .await;
    (server, stats.expect("stats handle"))
}

/// Exactly one linger started, and it has ended.
fn ended(stats: &LingerShutdown) -> bool {
    let stats = stats.stats();
    stats.started == 1 && stats.lingering == 0
}

/// A running server and the baselines it is checked against.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Open fds before the listener was bound.
    fds_before: usize,
    /// Open fds with the listener bound, no connection.
    fds_idle: usize,
    /// Alive tasks with the server running, no connection.
    tasks_idle: usize,
}

impl Server {
    async fn start(serve: impl FnOnce(TcpListener) -> JoinHandle<()>) -> Server {
        let fds_before = open_fds();
        let listener = timeout(IO_TIMEOUT, TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind timed out")
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = serve(listener);
        Server {
            addr,
            task,
            fds_before,
            fds_idle: open_fds(),
            tasks_idle: alive_tasks(),
        }
    }

    /// With the client's socket still open: the server's connection task and
    /// socket are gone.
    async fn expect_connection_gone(&self) -> Duration {
        let (fds, tasks) = (self.fds_idle + 1, self.tasks_idle);
        expect_within(
            &format!("connection task and socket gone (want {fds} fds, {tasks} tasks)"),
            CLEANUP,
            || open_fds() == fds && alive_tasks() == tasks,
        )
        .await
    }

    /// Stops the server; every fd and task it had is gone.
    async fn stop(self) {
        self.task.abort();
        let _ = timeout(IO_TIMEOUT, self.task)
            .await
            .expect("server task ended");
        let (fds, tasks) = (self.fds_before, self.tasks_idle - 1);
        expect_within(
            &format!("server fds and tasks gone (want {fds} fds, {tasks} tasks)"),
            CLEANUP,
            || open_fds() == fds && alive_tasks() == tasks,
        )
        .await;
    }
}

/// A client whose request made the server linger.
struct Lingering {
    stream: TcpStream,
    /// Just before the request was written: the linger started after this.
    t0: Instant,
    /// When the client read EOF, from `t0`.
    eof_after: Duration,
}

/// Sends `GET /close/16` and 64 KiB of unread bytes, reads the whole
/// response and the server's FIN, and keeps the socket open.
async fn request_and_read_response(addr: SocketAddr) -> Lingering {
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
    let mut response = Vec::new();
    timeout(IO_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("no EOF after the response")
        .expect("clean EOF, no reset, after the response");
    let eof_after = t0.elapsed();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 "), "response: {text:?}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "response: {text:?}"
    );
    assert_eq!(body, "b".repeat(16), "the whole body and nothing after it");
    Lingering {
        stream,
        t0,
        eof_after,
    }
}

/// Writes to a socket whose server side is closed: the server's kernel
/// answers with a reset, and a later write fails. Proves the server really
/// closed the socket, not just counted the end.
async fn expect_reset_on_write(stream: &mut TcpStream) -> ErrorKind {
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

fn expect_outcomes(stats: LingerStats, idle_timeout: u64, deadline: u64, byte_cap: u64) {
    assert_eq!(stats.started, 1, "{stats:?}");
    assert_eq!(stats.lingering, 0, "{stats:?}");
    assert_eq!(stats.idle_timeout, idle_timeout, "{stats:?}");
    assert_eq!(stats.deadline, deadline, "{stats:?}");
    assert_eq!(stats.byte_cap, byte_cap, "{stats:?}");
    assert_eq!(stats.peer_closed, 0, "{stats:?}");
    assert_eq!(stats.error, 0, "{stats:?}");
    assert_eq!(stats.shortened, 0, "{stats:?}");
    assert_eq!(stats.acked, 0, "{stats:?}");
}

/// A client that sends nothing more and never closes: the idle timeout ends
/// the linger.
#[test]
fn idle_timeout_ends_a_silent_linger() {
    let _serial = serial();
    run(async {
        let (server, linger) = start_with_stats().await;
        let mut client = request_and_read_response(server.addr).await;

        let limit = IDLE + SLACK + Duration::from_secs(2);
        poll_until(limit, FINE_STEP, || ended(&linger))
            .await
            .unwrap_or_else(|| panic!("linger still running: {:?}", linger.stats()));
        let ended_after = client.t0.elapsed();
        let stats = linger.stats();
        expect_outcomes(stats, 1, 0, 0);
        assert!(
            stats.bytes_discarded > 0 && stats.bytes_discarded <= EXTRA as u64,
            "{stats:?}"
        );
        assert!(
            ended_after >= IDLE,
            "ended {ended_after:?} after the request"
        );
        assert!(
            ended_after < IDLE + SLACK,
            "ended {ended_after:?} after the request"
        );

        let gone = server.expect_connection_gone().await;
        let reset = expect_reset_on_write(&mut client.stream).await;
        eprintln!(
            "idle: EOF {:?} after the request; linger ended (stats) {:?} after it, \
             {:?} past the idle timeout; socket and task gone {:?} later; \
             {} bytes discarded; a write after the close got {reset:?}",
            client.eof_after,
            ended_after,
            ended_after - IDLE,
            gone,
            stats.bytes_discarded,
        );
        drop(client);
        expect_within("client socket closed", CLEANUP, || {
            open_fds() == server.fds_idle
        })
        .await;
        server.stop().await;
    });
}

/// The same silent client against `lab::serve` itself, which gives no
/// access to stats: the end of the linger shows as the server's socket
/// closing (the fd count drops while the client's socket is still open).
#[test]
fn idle_timeout_ends_a_silent_linger_with_lab_serve() {
    let _serial = serial();
    run(async {
        let server = Server::start(|listener| {
            tokio::spawn(lab::serve(listener, lab::app(), Some(config())))
        })
        .await;
        let mut client = request_and_read_response(server.addr).await;

        // The server's socket is open until the linger ends (had it closed
        // early, the poll below returns at once and the lower bound fails).
        let with_server_socket = server.fds_idle + 2;
        let limit = IDLE + SLACK + Duration::from_secs(2);
        poll_until(limit, FINE_STEP, || open_fds() < with_server_socket)
            .await
            .expect("the server's socket stayed open");
        let closed_after = client.t0.elapsed();
        assert!(
            closed_after >= IDLE,
            "closed {closed_after:?} after the request"
        );
        assert!(
            closed_after < IDLE + SLACK,
            "closed {closed_after:?} after the request"
        );

        server.expect_connection_gone().await;
        let reset = expect_reset_on_write(&mut client.stream).await;
        eprintln!(
            "idle (lab::serve): EOF {:?} after the request; server socket closed {:?} after it, \
             {:?} past the idle timeout; a write after the close got {reset:?}",
            client.eof_after,
            closed_after,
            closed_after - IDLE,
        );
        drop(client);
        expect_within("client socket closed", CLEANUP, || {
            open_fds() == server.fds_idle
        })
        .await;
        server.stop().await;
    });
}

/// A client that sends a byte well inside every idle timeout: only the
/// deadline ends the linger.
#[test]
fn deadline_ends_a_trickling_linger() {
    let _serial = serial();
    run(async {
        let (server, linger) = start_with_stats().await;
        let mut client = request_and_read_response(server.addr).await;

        let limit = DEADLINE + SLACK + Duration::from_secs(2);
        let mut last_write = Instant::now();
        let mut trickled = 0u32;
        let mut write_error = None;
        let mut ended_after = None;
        let max_polls = limit.as_millis() / FINE_STEP.as_millis() + 1;
        for _ in 0..max_polls {
            if ended(&linger) {
                ended_after = Some(client.t0.elapsed());
                break;
            }
            if client.t0.elapsed() > limit {
                break;
            }
            if write_error.is_none() && last_write.elapsed() >= TRICKLE {
                last_write = Instant::now();
                match timeout(IO_TIMEOUT, client.stream.write_all(b"t")).await {
                    Ok(Ok(())) => trickled += 1,
                    Ok(Err(e)) => write_error = Some(e.to_string()),
                    Err(_) => write_error = Some("timed out".into()),
                }
            }
            tokio::time::sleep(FINE_STEP).await;
        }
        let ended_after =
            ended_after.unwrap_or_else(|| panic!("linger still running: {:?}", linger.stats()));
        assert_eq!(write_error, None, "a trickle write failed before the end");
        let stats = linger.stats();
        expect_outcomes(stats, 0, 1, 0);
        assert!(
            ended_after >= DEADLINE,
            "ended {ended_after:?} after the request"
        );
        assert!(
            ended_after < DEADLINE + SLACK,
            "ended {ended_after:?} after the request"
        );

        let gone = server.expect_connection_gone().await;
        eprintln!(
            "trickle: EOF {:?} after the request; {trickled} bytes trickled; \
             linger ended (stats) {:?} after the request, {:?} past the deadline; \
             socket and task gone {:?} later; {} bytes discarded",
            client.eof_after,
            ended_after,
            ended_after - DEADLINE,
            gone,
            stats.bytes_discarded,
        );
        drop(client);
        expect_within("client socket closed", CLEANUP, || {
            open_fds() == server.fds_idle
        })
        .await;
        server.stop().await;
    });
}

/// A client that writes as fast as it can: the byte cap ends the linger,
/// and the client, which stops at its first write error, stays bounded.
#[test]
fn byte_cap_ends_a_flooding_linger() {
    let _serial = serial();
    run(async {
        let (server, linger) = start_with_stats().await;
        let mut client = request_and_read_response(server.addr).await;

        let flood_start = Instant::now();
        let chunk = vec![b'f'; 64 << 10];
        let mut flooded = 0u64;
        let write_error = loop {
            if flooded >= FLOOD_LIMIT {
                break None;
            }
            match timeout(IO_TIMEOUT, client.stream.write(&chunk)).await {
                Ok(Ok(n)) => flooded += n as u64,
                Ok(Err(e)) => break Some(e),
                Err(_) => {
                    panic!("flood write blocked: the server stopped reading but kept the socket")
                }
            }
        };
        let flood_took = flood_start.elapsed();
        let write_error = write_error.unwrap_or_else(|| {
            panic!(
                "{flooded} bytes flooded without a write error: {:?}",
                linger.stats()
            )
        });
        assert!(
            matches!(
                write_error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "flood ended with {write_error}"
        );

        let waited = poll_until(IO_TIMEOUT, FINE_STEP, || ended(&linger))
            .await
            .unwrap_or_else(|| panic!("linger still running: {:?}", linger.stats()));
        let stats = linger.stats();
        expect_outcomes(stats, 0, 0, 1);
        assert!(stats.bytes_discarded >= MAX_BYTES, "{stats:?}");
        assert!(
            stats.bytes_discarded < MAX_BYTES + READ_CHUNK,
            "read past the cap by more than one read: {stats:?}"
        );

        let gone = server.expect_connection_gone().await;
        eprintln!(
            "flood: EOF {:?} after the request; {flooded} bytes flooded in {:?} before \
             the write failed with {:?}; linger end seen {:?} after that; \
             {} bytes discarded (cap {MAX_BYTES}); socket and task gone {:?} later",
            client.eof_after,
            flood_took,
            write_error.kind(),
            waited,
            stats.bytes_discarded,
            gone,
        );
        drop(client);
        expect_within("client socket closed", CLEANUP, || {
            open_fds() == server.fds_idle
        })
        .await;
        server.stop().await;
    });
}
