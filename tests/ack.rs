//! Ending a linger once the peer has acknowledged everything
//! (`LingerConfig::with_end_when_acked`), over loopback.

#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use linger::LingerConfig;
use support::client::connect;
use support::lab::Lab;
use support::scenarios::scenarios;

/// Every reset-lab scenario still delivers every response whole with the
/// early end on.
#[test]
fn every_scenario_stays_whole() {
    let lab = Lab::lingering(LingerConfig::new().with_end_when_acked(true));
    let addr = lab.addr;
    for scenario in scenarios() {
        for _ in 0..3 {
            let outcome = scenario.run(addr);
            assert!(outcome.is_whole(), "{}: {outcome:?}", scenario.key);
        }
    }
}

/// A client that reads its close response and never closes is released once
/// its TCP has acknowledged everything and input is quiet, instead of being
/// held for the idle timeout.
#[test]
fn acknowledged_linger_ends_early() {
    let quiet = Duration::from_millis(50);
    let base = LingerConfig::new().with_ack_quiet(quiet);
    for on in [true, false] {
        let lab = Lab::lingering(base.with_end_when_acked(on));
        let addr = lab.addr;
        let mut client = connect(addr, None).unwrap();
        // Extra bytes so the server lingers in mode On.
        client
            .write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nxyz")
            .unwrap();
        let began = Instant::now();
        let mut got = Vec::new();
        // EOF (the server's FIN) comes at once; the client keeps its socket.
        client.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(&[b'b'; 16]));
        // Wait, bounded, for the linger to end.
        let bound = Duration::from_secs(2).saturating_sub(began.elapsed());
        let ended = lab
            .wait_for(bound, Duration::from_millis(5), |s| {
                s.lingering == 0 && s.started == 1
            })
            .ok()
            .map(|_| began.elapsed());
        let s = lab.stats();
        if on {
            let took = ended.expect("the acknowledged linger did not end");
            assert!(took >= quiet, "ended before input was quiet: {took:?}");
            assert_eq!(s.acked, 1, "{s:?}");
        } else {
            assert_eq!(ended, None, "without the option the linger waits: {s:?}");
            assert_eq!((s.lingering, s.acked), (1, 0), "{s:?}");
        }
        drop(client);
    }
}
