//! The idle timeout of a lingering close, over real loopback sockets: a
//! client that takes its close response and then sends nothing more and
//! never closes. The harness is `support::bounds`; the bounds a client that
//! keeps sending meets are in `bounds_traffic.rs`.
//!
//! The test checks that the idle timeout ended the linger, when it did,
//! what the listener's counters say, and that no task or file descriptor
//! was left.

#![cfg(target_os = "linux")]

mod support;

use std::time::Duration;

use support::bounds::{
    config, ended, expect_reset_on_write, request_and_read_response, start_with_stats, EXTRA,
    FINE_STEP, IDLE, SCENARIO_TIMEOUT, SLACK,
};
use support::leaks::{open_fds, Server};
use support::serial::serial;
use support::stats::{assert_ends, Ends};
use support::wait::poll_until;
use support::{lab, runtime};

/// A client that sends nothing more and never closes: the idle timeout ends
/// the linger.
#[test]
fn idle_timeout_ends_a_silent_linger() {
    let _serial = serial();
    runtime::run(SCENARIO_TIMEOUT, async {
        let (server, linger) = start_with_stats().await;
        let mut client = request_and_read_response(server.addr).await;

        let limit = IDLE + SLACK + Duration::from_secs(2);
        poll_until(limit, FINE_STEP, || ended(&linger))
            .await
            .unwrap_or_else(|| panic!("linger still running: {:?}", linger.stats()));
        let ended_after = client.t0.elapsed();
        let stats = linger.stats();
        assert_ends(
            &stats,
            Ends {
                started: 1,
                idle_timeout: 1,
                ..Ends::default()
            },
        );
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
        server.expect_client_gone().await;
        server.stop().await;
    });
}

/// The same silent client against `lab::serve` itself, which gives no
/// access to stats: the end of the linger shows as the server's socket
/// closing (the fd count drops while the client's socket is still open).
#[test]
fn idle_timeout_ends_a_silent_linger_with_lab_serve() {
    let _serial = serial();
    runtime::run(SCENARIO_TIMEOUT, async {
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
        server.expect_client_gone().await;
        server.stop().await;
    });
}
