//! The close state machine of `LingerIo`, over in-memory IO: when it
//! lingers, the half-close before the drain, what ends the drain, the
//! counters, shutdown after completion, the close a dropped IO finishes on a
//! task, and the pass-through of vectored writes.
//!
//! Tests that depend on time run on a paused clock and move it with
//! `advance`; the shutdown future is polled by hand (`tokio_test::task`),
//! so nothing it waits on lets the paused clock auto-advance.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use linger::{Handle, LingerConfig, LingerIo, LingerMode, LingerStats};
use tokio::io::ReadBuf;
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::{advance, timeout};
use tokio_test::{assert_pending, assert_ready_ok, task};

const IDLE: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(12);
const MS: Duration = Duration::from_millis(1);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
/// The most one drain read takes (the crate's scratch buffer).
const READ_CHUNK: u64 = 64 << 10;

/// The counters, comparable in one `assert_eq!`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    started: u64,
    lingering: u64,
    peer_closed: u64,
    idle_timeout: u64,
    deadline: u64,
    byte_cap: u64,
    error: u64,
    shortened: u64,
    acked: u64,
    bytes: u64,
}

impl From<LingerStats> for Counts {
    fn from(s: LingerStats) -> Self {
        Counts {
            started: s.started,
            lingering: s.lingering,
            peer_closed: s.peer_closed,
            idle_timeout: s.idle_timeout,
            deadline: s.deadline,
            byte_cap: s.byte_cap,
            error: s.error,
            shortened: s.shortened,
            acked: s.acked,
            bytes: s.bytes_discarded,
        }
    }
}

fn counts(handle: &Handle) -> Counts {
    handle.stats().into()
}

fn config(mode: LingerMode) -> LingerConfig {
    LingerConfig::new()
        .with_mode(mode)
        .with_idle_timeout(IDLE)
        .with_deadline(DEADLINE)
}

/// Awaits `fut`, failing the test instead of hanging. Only for futures that
/// are ready at once in the paused-clock tests (a pending one would let the
/// clock auto-advance).
async fn within<F: Future>(fut: F) -> F::Output {
    timeout(Duration::from_secs(5), fut)
        .await
        .expect("timed out")
}

/// A server-side `LingerIo` over a duplex pipe, and the peer's end.
fn pipe(config: LingerConfig) -> (LingerIo<DuplexStream>, DuplexStream) {
    let (server, peer) = duplex(64 << 10);
    (LingerIo::with_config(server, config), peer)
}

/// As [`pipe`], after the peer sent a request and the server read it.
async fn served(config: LingerConfig) -> (LingerIo<DuplexStream>, DuplexStream) {
    let (mut io, mut peer) = pipe(config);
    within(peer.write_all(REQUEST)).await.unwrap();
    let mut buf = [0u8; 256];
    let n = within(io.read(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], REQUEST);
    (io, peer)
}

/// The peer reads end of file: the server half-closed.
async fn expect_eof(peer: &mut DuplexStream) {
    let mut buf = [0u8; 64];
    assert_eq!(
        within(peer.read(&mut buf)).await.unwrap(),
        0,
        "peer sees EOF"
    );
}

/// Polls a condition on the runtime, yielding between polls, a bounded
/// number of times.
async fn settle(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    cond()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn on_half_closes_then_drains_until_the_peer_closes() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());

    assert_pending!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            lingering: 1,
            ..Counts::default()
        }
    );
    // Half-closed first: the peer reads EOF while the server still reads.
    expect_eof(&mut peer).await;
    within(peer.write_all(b"pipelined")).await.unwrap();
    assert!(shutdown.is_woken(), "input wakes the drain");
    assert_pending!(shutdown.poll());
    within(peer.write_all(b"more")).await.unwrap();
    assert_pending!(shutdown.poll());

    drop(peer);
    assert!(shutdown.is_woken(), "the peer's close wakes the drain");
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            bytes: 13,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn on_without_input_closes_at_once() {
    let (mut io, mut peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    expect_eof(&mut peer).await;
    assert_eq!(counts(&handle), Counts::default());
}

#[tokio::test]
async fn on_without_input_lingers_when_marked_closing() {
    let (mut io, peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    handle.mark_closing();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    assert_eq!(counts(&handle).lingering, 1);
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn always_lingers_without_input() {
    let (mut io, mut peer) = pipe(config(LingerMode::Always));
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    expect_eof(&mut peer).await;
    assert_pending!(shutdown.poll());
    assert_eq!(counts(&handle).lingering, 1);
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn off_never_lingers() {
    let (mut io, mut peer) = served(config(LingerMode::Off)).await;
    // Even with unread input and the connection marked closing.
    within(peer.write_all(b"unread")).await.unwrap();
    let handle = io.handle().clone();
    handle.mark_closing();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    expect_eof(&mut peer).await;
    assert_eq!(counts(&handle), Counts::default());
}

#[tokio::test]
async fn disable_linger_turns_it_off() {
    for mode in [LingerMode::On, LingerMode::Always] {
        let (mut io, mut peer) = served(config(mode)).await;
        within(peer.write_all(b"unread")).await.unwrap();
        let handle = io.handle().clone();
        handle.mark_closing();
        handle.disable_linger();
        assert!(handle.is_linger_disabled());
        assert_ready_ok!(task::spawn(io.shutdown()).poll());
        expect_eof(&mut peer).await;
        assert_eq!(counts(&handle), Counts::default(), "{mode:?}");
    }
}

#[tokio::test]
async fn input_at_eof_before_shutdown_closes_at_once() {
    for mode in [LingerMode::On, LingerMode::Always] {
        let (mut io, mut peer) = served(config(mode)).await;
        within(peer.shutdown()).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(within(io.read(&mut buf)).await.unwrap(), 0);
        let handle = io.handle().clone();
        handle.mark_closing();
        assert_ready_ok!(task::spawn(io.shutdown()).poll());
        expect_eof(&mut peer).await;
        assert_eq!(counts(&handle), Counts::default(), "{mode:?}");
    }
}

#[tokio::test]
async fn peer_closed_but_eof_unread_ends_in_the_first_poll() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    within(peer.write_all(b"tail")).await.unwrap();
    within(peer.shutdown()).await.unwrap();
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            bytes: 4,
            ..Counts::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_ends_the_linger_and_input_resets_it() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());

    advance(IDLE - MS).await;
    assert_pending!(shutdown.poll());
    // Input restarts the idle timeout.
    within(peer.write_all(b"x")).await.unwrap();
    assert_pending!(shutdown.poll());
    advance(IDLE - MS).await;
    assert!(!shutdown.is_woken());
    assert_pending!(shutdown.poll());

    advance(2 * MS).await;
    assert!(shutdown.is_woken(), "the idle timer wakes the drain");
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            idle_timeout: 1,
            bytes: 1,
            ..Counts::default()
        }
    );
    // The peer is still open: the bound ended it, not the peer.
    drop(peer);
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_a_trickling_linger() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());

    // A byte every 3 s keeps the 5 s idle timeout away, past 12 s.
    let step = Duration::from_secs(3);
    for _ in 0..3 {
        advance(step).await;
        within(peer.write_all(b"t")).await.unwrap();
        assert_pending!(shutdown.poll());
    }
    // At 9 s; the deadline is at 12 s.
    advance(step - MS).await;
    assert_pending!(shutdown.poll());
    advance(2 * MS).await;
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            deadline: 1,
            bytes: 3,
            ..Counts::default()
        }
    );
    drop(peer);
}

#[tokio::test]
async fn byte_cap_ends_a_flooding_linger() {
    const MAX: u64 = 100_000;
    let (mut io, mut peer) = served(config(LingerMode::On).with_max_bytes(MAX)).await;
    let handle = io.handle().clone();
    let server = tokio::spawn(async move {
        let result = io.shutdown().await;
        drop(io);
        result
    });

    // Flood until the write fails (the server dropped its end), bounded.
    let chunk = [b'f'; 8 << 10];
    let mut sent = 0u64;
    let mut failed = false;
    for _ in 0..1000 {
        match within(peer.write(&chunk)).await {
            Ok(n) => sent += n as u64,
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "{sent} bytes flooded without a write error");
    within(server).await.unwrap().unwrap();
    let stats = counts(&handle);
    assert!(
        stats.bytes >= MAX && stats.bytes < MAX + READ_CHUNK,
        "{stats:?}"
    );
    assert_eq!(
        stats,
        Counts {
            started: 1,
            byte_cap: 1,
            bytes: stats.bytes,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn a_flood_yields_between_batches_of_reads() {
    // Input always ready: the drain must not read it all in one poll.
    let mut builder = tokio_test::io::Builder::new();
    builder.read(REQUEST);
    for _ in 0..40 {
        builder.read(&[b'f'; 100]);
    }
    let (mock, mock_handle) = builder.build_with_handle();
    let mut io = LingerIo::with_config(mock, config(LingerMode::On));
    let mut buf = [0u8; 256];
    assert_eq!(within(io.read(&mut buf)).await.unwrap(), REQUEST.len());
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());

    let mut yields = 0;
    loop {
        assert_pending!(shutdown.poll());
        if !shutdown.is_woken() {
            break;
        }
        yields += 1;
        assert!(yields < 40, "the drain kept waking itself");
    }
    assert!(yields >= 2, "40 ready reads took {} polls", yields + 1);
    drop(mock_handle);
    assert!(shutdown.is_woken());
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            bytes: 4000,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn a_read_error_ends_the_linger() {
    let mock = tokio_test::io::Builder::new()
        .read(REQUEST)
        .read_error(io::ErrorKind::ConnectionReset.into())
        .build();
    let mut io = LingerIo::with_config(mock, config(LingerMode::On));
    let mut buf = [0u8; 256];
    assert_eq!(within(io.read(&mut buf)).await.unwrap(), REQUEST.len());
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            error: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn shutdown_after_completion_is_ready_at_once() {
    // After a linger.
    let (mut io, peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    drop(shutdown);
    let after_first = counts(&handle);
    for _ in 0..3 {
        assert_ready_ok!(task::spawn(io.shutdown()).poll());
    }
    assert_eq!(counts(&handle), after_first, "no second linger");

    // After a close that did not linger.
    let (mut io, mut peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    within(peer.write_all(b"late input")).await.unwrap();
    handle.mark_closing();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    assert_eq!(counts(&handle), Counts::default());
}

#[tokio::test]
async fn dropped_without_shutdown_finishes_the_close_on_a_task() {
    let (io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let tasks = alive_tasks();
    drop(io);
    assert_eq!(alive_tasks(), tasks + 1, "a task finishes the close");

    // The task half-closes, then drains.
    expect_eof(&mut peer).await;
    assert!(settle(|| counts(&handle).lingering == 1).await);
    within(peer.write_all(b"discarded")).await.unwrap();
    drop(peer);
    assert!(
        settle(|| counts(&handle).lingering == 0).await,
        "{:?}",
        counts(&handle)
    );
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            peer_closed: 1,
            bytes: 9,
            ..Counts::default()
        }
    );
    assert!(settle(|| alive_tasks() == tasks).await, "the task ended");
}

#[tokio::test]
async fn dropped_without_reason_to_linger_spawns_nothing() {
    let (io, mut peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    let tasks = alive_tasks();
    drop(io);
    assert_eq!(alive_tasks(), tasks);
    expect_eof(&mut peer).await;
    assert_eq!(counts(&handle), Counts::default());
}

#[tokio::test(start_paused = true)]
async fn dropped_mid_linger_continues_the_same_linger() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    drop(shutdown);

    // 4 s into the linger (deadline at 12 s), hyper gives up on the IO.
    advance(Duration::from_secs(4)).await;
    drop(io);
    // Input keeps the idle timeout (5 s) away until the deadline.
    for _ in 0..2 {
        within(peer.write_all(b"t")).await.unwrap();
        // Let the task read it (yields only: the paused clock stays put).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        advance(Duration::from_secs(4)).await;
    }
    // At 12 s: the deadline of the linger that started at 0 s ends it. A
    // fresh linger from 4 s would run to 16 s.
    assert!(
        settle(|| counts(&handle).lingering == 0).await,
        "{:?}",
        counts(&handle)
    );
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            deadline: 1,
            bytes: 2,
            ..Counts::default()
        }
    );
    drop(peer);
}

#[test]
fn dropped_outside_a_runtime_closes_plainly() {
    let (server, mut peer) = duplex(1024);
    let mut io = LingerIo::with_config(server, config(LingerMode::On));
    let handle = io.handle().clone();
    // Read a request by hand: no runtime anywhere.
    let mut write = task::spawn(peer.write_all(REQUEST));
    assert_ready_ok!(write.poll());
    drop(write);
    let mut buf = [0u8; 256];
    let mut read = task::spawn(io.read(&mut buf));
    assert_eq!(assert_ready_ok!(read.poll()), REQUEST.len());
    drop(read);

    drop(io);
    let mut buf = [0u8; 16];
    let mut read = task::spawn(peer.read(&mut buf));
    assert_eq!(assert_ready_ok!(read.poll()), 0, "peer sees EOF");
    assert_eq!(counts(&handle), Counts::default());
}

/// An IO that says whether it writes vectored, and counts vectored writes.
struct Vectored {
    inner: DuplexStream,
    vectored: bool,
    calls: Arc<AtomicUsize>,
}

impl AsyncRead for Vectored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Vectored {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Gather, as a vectored IO would, so the whole write lands.
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        Pin::new(&mut self.inner).poll_write(cx, &all)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn vectored_writes_are_forwarded() {
    for vectored in [true, false] {
        let (server, mut peer) = duplex(1024);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut io = LingerIo::new(Vectored {
            inner: server,
            vectored,
            calls: calls.clone(),
        });
        assert_eq!(io.is_write_vectored(), vectored);
        let bufs = [IoSlice::new(b"HTTP/1.1 "), IoSlice::new(b"200 OK\r\n")];
        let n = within(io.write_vectored(&bufs)).await.unwrap();
        assert_eq!(n, 17);
        assert_eq!(calls.load(Ordering::Relaxed), 1, "went to the inner IO");
        let mut got = [0u8; 17];
        within(peer.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n");
    }
    // And for stock IOs: whatever the inner IO says.
    let (server, _peer) = duplex(64);
    let expected = server.is_write_vectored();
    assert_eq!(LingerIo::new(server).is_write_vectored(), expected);
    let mock = tokio_test::io::Builder::new().build();
    let expected = mock.is_write_vectored();
    assert_eq!(LingerIo::new(mock).is_write_vectored(), expected);
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let (tcp, _) = within(listener.accept()).await.unwrap();
    assert!(tcp.is_write_vectored());
    assert!(LingerIo::new(tcp).is_write_vectored());
}

#[tokio::test]
async fn on_lingers_for_input_the_server_never_read() {
    let (mut io, mut peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    // The peer's bytes wait unread when the server closes.
    within(peer.write_all(REQUEST)).await.unwrap();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    expect_eof(&mut peer).await;
    assert_eq!(
        counts(&handle),
        Counts {
            started: 1,
            lingering: 1,
            ..Counts::default()
        }
    );
    drop(peer);
    assert!(shutdown.is_woken());
    assert_ready_ok!(shutdown.poll());
    let done = counts(&handle);
    assert_eq!((done.peer_closed, done.bytes), (1, REQUEST.len() as u64));
}

/// No bound, however large, overflows the clock: `Duration::MAX` lingers
/// until the peer closes.
#[tokio::test(start_paused = true)]
async fn unbounded_looking_bounds_do_not_overflow() {
    let config = LingerConfig::new()
        .with_idle_timeout(Duration::MAX)
        .with_deadline(Duration::MAX)
        .with_short_deadline(Duration::MAX)
        .with_end_when_acked(true)
        .with_ack_quiet(Duration::MAX);
    let (io, mut peer) = served(config).await;
    let handle = io.handle().clone();
    let mut io = io;
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    expect_eof(&mut peer).await;
    advance(Duration::from_secs(3600)).await;
    assert_pending!(shutdown.poll());
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    assert_eq!(counts(&handle).peer_closed, 1);
}
