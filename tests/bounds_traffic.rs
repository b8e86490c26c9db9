//! The bounds a lingering close puts on a client that keeps sending, over
//! real loopback sockets: the deadline ends a linger whose client trickles,
//! the byte cap one whose client floods. The harness is `support::bounds`;
//! the idle timeout is in `bounds.rs`.
//!
//! Each test checks that the matching bound ended the linger, when it did,
//! what the listener's counters say, and that no task or file descriptor
//! was left.

#![cfg(target_os = "linux")]

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use support::bounds::{
    ended, request_and_read_response, start_with_stats, DEADLINE, FINE_STEP, MAX_BYTES,
    SCENARIO_TIMEOUT, SLACK,
};
use support::client::IO_TIMEOUT;
use support::runtime;
use support::serial::serial;
use support::stats::{assert_ends, Ends};
use support::wait::poll_until;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// The most one drain read takes (the crate's scratch buffer).
const READ_CHUNK: u64 = 64 << 10;
/// How often the trickling client sends a byte: well inside the idle
/// timeout, so only the deadline can end the linger.
const TRICKLE: Duration = Duration::from_millis(100);
/// The flooding client stops after this many bytes even if no write fails.
const FLOOD_LIMIT: u64 = 64 * MAX_BYTES;

/// A client that sends a byte every 100 ms, well inside an idle timeout of
/// 5 s (50 times as long, so that a loaded machine's late trickle cannot
/// reach it): only the deadline ends the linger.
#[test]
fn deadline_ends_a_trickling_linger() {
    let _serial = serial();
    runtime::run(SCENARIO_TIMEOUT, async {
        let config = support::bounds::config().with_idle_timeout(Duration::from_secs(5));
        let (server, linger) = support::bounds::start_with_config(config).await;
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
        assert_ends(
            &stats,
            Ends {
                started: 1,
                deadline: 1,
                ..Ends::default()
            },
        );
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
        server.expect_client_gone().await;
        server.stop().await;
    });
}

/// A client that writes as fast as it can: the byte cap ends the linger,
/// and the client, which stops at its first write error, stays bounded.
#[test]
fn byte_cap_ends_a_flooding_linger() {
    let _serial = serial();
    runtime::run(SCENARIO_TIMEOUT, async {
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
        assert_ends(
            &stats,
            Ends {
                started: 1,
                byte_cap: 1,
                ..Ends::default()
            },
        );
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
        server.expect_client_gone().await;
        server.stop().await;
    });
}
