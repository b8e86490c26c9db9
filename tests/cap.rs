//! The cap on connections lingering at once: past it, a linger gets the
//! short deadline instead of the full bounds, and the number of full-length
//! lingers never exceeds the cap; and the hard cap on lingering sockets.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use linger::LingerConfig;
use support::client::connect;
use support::lab::Lab;

const CAP: usize = 3;
const CLIENTS: usize = 10;
const SHORT: Duration = Duration::from_millis(300);

#[test]
fn past_the_cap_lingers_are_short_and_the_cap_holds() {
    let config = LingerConfig::new()
        .with_idle_timeout(Duration::from_secs(10))
        .with_deadline(Duration::from_secs(10))
        .with_max_lingering(CAP)
        .with_short_deadline(SHORT);
    let lab = Lab::lingering(config);
    let addr = lab.addr;
    // Clients that take a close response, send a byte more, and never close.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut c = connect(addr, None).unwrap();
            c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nx")
                .unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            assert!(got.ends_with(&[b'b'; 16]));
            c
        })
        .collect();
    let began = Instant::now();
    // Every linger past the cap ends at the short deadline; the first CAP
    // keep their full bounds.
    let mut most = 0;
    lab.wait_for(SHORT * 10, Duration::from_millis(5), |s| {
        most = most.max(s.lingering);
        s.shortened == (CLIENTS - CAP) as u64
    })
    .unwrap_or_else(|s| panic!("short lingers did not end: {s:?}"));
    let s = lab.stats();
    assert_eq!(s.lingering, CAP as u64, "{s:?}");
    assert_eq!(s.started, CLIENTS as u64, "{s:?}");
    assert!(most <= CLIENTS as u64);
    drop(clients);
    // The full-length lingers end when their clients close.
    let bound = Duration::from_secs(5).saturating_sub(began.elapsed());
    lab.wait_for(bound, Duration::from_millis(5), |s| s.lingering == 0)
        .unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(lab.stats().peer_closed, CAP as u64);
}

/// The hard cap: twice `max_lingering_sockets` clients that never close
/// leave exactly the cap lingering, the rest closed plainly and counted,
/// and the server still serves. The same clients against the default cap
/// all linger: the cap is what held.
#[test]
fn the_hard_cap_holds_against_twice_as_many_clients_that_never_close() {
    const SOCKETS: usize = 8;
    for cap in [Some(SOCKETS), None] {
        let mut config = LingerConfig::new()
            .with_idle_timeout(Duration::from_secs(60))
            .with_max_lingering(SOCKETS);
        if let Some(cap) = cap {
            config = config.with_max_lingering_sockets(cap);
        }
        let lab = Lab::lingering(config);
        let clients: Vec<_> = (0..2 * SOCKETS)
            .map(|_| {
                let mut c = connect(lab.addr, None).unwrap();
                c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
                    .unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                assert!(got.ends_with(&[b'b'; 16]));
                c
            })
            .collect();
        let s = lab
            .wait_for(Duration::from_secs(20), Duration::from_millis(5), |s| {
                s.lingering + s.over_cap == 2 * SOCKETS as u64
            })
            .unwrap_or_else(|s| panic!("the closes were not all decided: {s:?}"));
        match cap {
            Some(cap) => {
                assert_eq!(s.lingering, cap as u64, "{s:?}");
                assert_eq!(s.over_cap, (2 * SOCKETS - cap) as u64, "{s:?}");
            }
            None => assert_eq!(s.lingering, 2 * SOCKETS as u64, "{s:?}"),
        }
        // Still serving.
        let mut fresh = connect(lab.addr, None).unwrap();
        fresh
            .write_all(b"GET /close/2 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        fresh.read_to_end(&mut got).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        drop((fresh, clients));
        lab.wait_for(Duration::from_secs(20), Duration::from_millis(5), |s| {
            s.lingering == 0
        })
        .unwrap_or_else(|s| panic!("{s:?}"));
    }
}
