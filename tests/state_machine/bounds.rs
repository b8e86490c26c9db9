//! What ends a linger: the peer's close, the idle timeout, the deadline,
//! the byte cap, a read error; the drain's fairness under a flood; bounds
//! too large for the clock.

use std::io;
use std::time::Duration;

use linger::{LingerConfig, LingerIo, LingerMode};

/// The most one drain read discards, as `LingerIo`'s docs say: 64 KiB.
const DRAIN_READ_LEN: usize = 64 * 1024;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok, task};

use crate::harness::{config, counts, expect_eof, served, within, IDLE, MS, REQUEST};
use crate::support::stats::Ends;

/// The most one drain read takes.
const READ_LEN: u64 = DRAIN_READ_LEN as u64;

#[tokio::test]
async fn peer_closed_but_eof_unread_ends_in_the_first_poll() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    within(peer.write_all(b"tail")).await.unwrap();
    within(peer.shutdown()).await.unwrap();
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            4,
        )
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
        (
            Ends {
                started: 1,
                idle_timeout: 1,
                ..Ends::default()
            },
            1,
        )
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
        (
            Ends {
                started: 1,
                deadline: 1,
                ..Ends::default()
            },
            3,
        )
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
    let (ends, bytes) = counts(&handle);
    assert!((MAX..MAX + READ_LEN).contains(&bytes), "{bytes}");
    assert_eq!(
        ends,
        Ends {
            started: 1,
            byte_cap: 1,
            ..Ends::default()
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
    let mut io = LingerIo::standalone_with_config(mock, config(LingerMode::On));
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
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            4000,
        )
    );
}

#[tokio::test]
async fn a_read_error_ends_the_linger() {
    let mock = tokio_test::io::Builder::new()
        .read(REQUEST)
        .read_error(io::ErrorKind::ConnectionReset.into())
        .build();
    let mut io = LingerIo::standalone_with_config(mock, config(LingerMode::On));
    let mut buf = [0u8; 256];
    assert_eq!(within(io.read(&mut buf)).await.unwrap(), REQUEST.len());
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                error: 1,
                ..Ends::default()
            },
            0,
        )
    );
}

/// No bound, however large, overflows the clock: `Duration::MAX` lingers
/// until the peer closes.
#[tokio::test(start_paused = true)]
async fn unbounded_looking_bounds_do_not_overflow() {
    let config = LingerConfig::new()
        .with_detach(false)
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
    assert_eq!(counts(&handle).0.peer_closed, 1);
}

/// An IO whose half-close never completes (a TLS close_notify behind a
/// window that never opens, say).
struct StuckClose;

impl tokio::io::AsyncRead for StuckClose {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncWrite for StuckClose {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
}

/// A half-close that blocks fails with `TimedOut` at the deadline; once
/// the listener's shutdown begins, at the short deadline from then.
#[tokio::test(start_paused = true)]
async fn a_blocked_half_close_is_bounded_and_cut_by_the_shutdown() {
    let config = config(LingerMode::On).with_short_deadline(Duration::from_secs(1));
    for shut_down in [false, true] {
        let listener = linger::LingerListener::with_config((), config);
        let mut io = listener.wrap(StuckClose);
        let mut shutdown = task::spawn(io.shutdown());
        assert_pending!(shutdown.poll());
        advance(Duration::from_secs(5)).await;
        assert_pending!(shutdown.poll());
        if shut_down {
            listener.shutdown_handle().begin();
            assert_pending!(shutdown.poll());
            advance(Duration::from_secs(1) + MS).await;
        } else {
            advance(config.deadline()).await;
        }
        let ended = shutdown.poll();
        assert!(
            matches!(&ended, std::task::Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut),
            "shut down {shut_down}: {ended:?}"
        );
    }
}
