//! When the close lingers: what each mode decides from the input, the
//! connection's marks and the peer's state, and that it half-closes before
//! it drains.

use linger::LingerMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_test::{assert_pending, assert_ready_ok, task};

use crate::harness::{config, counts, expect_eof, pipe, served, within, REQUEST};
use crate::support::stats::Ends;

#[tokio::test]
async fn on_half_closes_then_drains_until_the_peer_closes() {
    let (mut io, mut peer) = served(config(LingerMode::On)).await;
    let handle = io.handle().clone();
    let mut shutdown = task::spawn(io.shutdown());

    assert_pending!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                lingering: 1,
                ..Ends::default()
            },
            0,
        )
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
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            13,
        )
    );
}

#[tokio::test]
async fn on_without_input_closes_at_once() {
    let (mut io, mut peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    assert_ready_ok!(task::spawn(io.shutdown()).poll());
    expect_eof(&mut peer).await;
    assert_eq!(counts(&handle), (Ends::default(), 0));
}

#[tokio::test]
async fn on_without_input_lingers_when_marked_closing() {
    let (mut io, peer) = pipe(config(LingerMode::On));
    let handle = io.handle().clone();
    handle.mark_closing();
    let mut shutdown = task::spawn(io.shutdown());
    assert_pending!(shutdown.poll());
    assert_eq!(counts(&handle).0.lingering, 1);
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            0,
        )
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
    assert_eq!(counts(&handle).0.lingering, 1);
    drop(peer);
    assert_ready_ok!(shutdown.poll());
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            0,
        )
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
    assert_eq!(counts(&handle), (Ends::default(), 0));
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
        assert_eq!(counts(&handle), (Ends::default(), 0), "{mode:?}");
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
        assert_eq!(counts(&handle), (Ends::default(), 0), "{mode:?}");
    }
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
        (
            Ends {
                started: 1,
                lingering: 1,
                ..Ends::default()
            },
            0,
        )
    );
    drop(peer);
    assert!(shutdown.is_woken());
    assert_ready_ok!(shutdown.poll());
    let done = counts(&handle);
    assert_eq!((done.0.peer_closed, done.1), (1, REQUEST.len() as u64));
}
