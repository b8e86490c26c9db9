//! After the close: `shutdown` again once it completed, a `LingerIo`
//! dropped before its close completed (finished on a task, or plainly
//! outside a runtime), and detached lingers (the default), which stay in
//! place once the shutdown has begun.

use std::time::Duration;

use linger::{LingerIo, LingerListener, LingerMode};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok, task};

use crate::harness::{
    alive_tasks, config, counts, expect_eof, pipe, served, served_by, settle, within, REQUEST,
};
use crate::support::stats::Ends;

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
    assert_eq!(counts(&handle), (Ends::default(), 0));
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
    assert!(settle(|| counts(&handle).0.lingering == 1).await);
    within(peer.write_all(b"discarded")).await.unwrap();
    drop(peer);
    assert!(
        settle(|| counts(&handle).0.lingering == 0).await,
        "{:?}",
        counts(&handle)
    );
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                peer_closed: 1,
                ..Ends::default()
            },
            9,
        )
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
    assert_eq!(counts(&handle), (Ends::default(), 0));
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
        settle(|| counts(&handle).0.lingering == 0).await,
        "{:?}",
        counts(&handle)
    );
    assert_eq!(
        counts(&handle),
        (
            Ends {
                started: 1,
                deadline: 1,
                ..Ends::default()
            },
            2,
        )
    );
    drop(peer);
}

#[test]
fn dropped_outside_a_runtime_closes_plainly() {
    let (server, mut peer) = duplex(1024);
    let mut io = LingerIo::standalone_with_config(server, config(LingerMode::On));
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
    assert_eq!(counts(&handle), (Ends::default(), 0));
}

/// Detached (the default): `shutdown` is ready once the IO has half-closed,
/// and the linger goes on on a task of its own, counted, until the peer
/// closes. Once the listener's shutdown has begun, the same close runs in
/// place: `shutdown` is the linger, as the server's graceful shutdown
/// needs.
#[tokio::test]
async fn detached_until_the_shutdown_begins() {
    let listener = LingerListener::with_config((), config(LingerMode::On).with_detach(true));
    for begun in [false, true] {
        if begun {
            listener.shutdown_handle().begin();
        }
        let (mut io, mut peer) = served_by(&listener).await;
        let tasks = alive_tasks();
        let mut shutdown = task::spawn(io.shutdown());
        if begun {
            assert_pending!(shutdown.poll(), "in place once the shutdown began");
            assert_eq!(alive_tasks(), tasks);
        } else {
            assert_ready_ok!(shutdown.poll(), "detached: ready after the half-close");
            assert_eq!(alive_tasks(), tasks + 1, "a task runs the linger");
        }
        expect_eof(&mut peer).await;
        assert!(settle(|| listener.stats().lingering == 1).await);
        drop(peer);
        if begun {
            assert_ready_ok!(shutdown.poll());
        }
        drop(shutdown);
        assert!(settle(|| listener.stats().lingering == 0).await);
        assert!(settle(|| alive_tasks() == tasks).await, "the task ended");
    }
    assert_eq!(listener.stats().peer_closed, 2);
}

/// A `LingerIo` dropped before its close began is counted from the moment
/// it is handed to its task, before that task has run: `wait` does not
/// resolve until its linger has ended.
#[tokio::test]
async fn wait_covers_a_close_handed_off_before_its_drain_started() {
    let listener = LingerListener::with_config((), config(LingerMode::On));
    let lingers = listener.shutdown_handle();
    let (io, mut peer) = served_by(&listener).await;
    drop(io); // the close is handed off; its task has not run yet
    assert_eq!(listener.stats().lingering, 0, "no drain has started");
    let mut wait = task::spawn(lingers.wait());
    assert_pending!(wait.poll(), "wait resolved with a close still to run");
    expect_eof(&mut peer).await;
    drop(peer);
    assert!(settle(|| listener.stats().peer_closed == 1).await);
    assert!(
        settle(|| wait.poll().is_ready()).await,
        "wait did not resolve"
    );
}
