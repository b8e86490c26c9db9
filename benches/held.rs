//! How many sockets a server still holds 100 ms after a burst of 1,000
//! close responses to clients that read the response but never close, with
//! and without `LingerConfig::with_end_when_acked`.
//!
//! ```text
//! cargo bench --bench held
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use linger::LingerConfig;
use support::client::connect;
use support::lab::Lab;
use support::wait::wait_until;

const BURST: usize = 1_000;
const AFTER: Duration = Duration::from_millis(100);

struct Figures {
    held_after: u64,
    acked: u64,
    all_released: Option<Duration>,
}

fn burst(config: LingerConfig) -> Figures {
    let lab = Lab::lingering(config);
    let addr = lab.addr;
    let mut clients: Vec<TcpStream> = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let mut c = connect(addr, None).unwrap();
        // A byte after the request so the server lingers in mode On.
        c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nx")
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(&[b'b'; 16]), "incomplete response");
        clients.push(c);
    }
    let burst_done = Instant::now();
    let mut held_after = None;
    let mut all_released = None;
    let bound = Duration::from_secs(2).saturating_sub(burst_done.elapsed());
    wait_until(bound, Duration::from_millis(1), || {
        let lingering = lab.stats().lingering;
        if held_after.is_none() && burst_done.elapsed() >= AFTER {
            held_after = Some(lingering);
        }
        if lingering == 0 && all_released.is_none() {
            all_released = Some(burst_done.elapsed());
        }
        held_after.is_some() && all_released.is_some()
    });
    let held_after = held_after.unwrap_or(0);
    let acked = lab.stats().acked;
    drop(clients);
    Figures {
        held_after,
        acked,
        all_released,
    }
}

fn main() {
    let base = LingerConfig::new().with_max_lingering(2 * BURST);
    println!("sockets held {AFTER:?} after a burst of {BURST} close responses to clients that read and never close");
    println!(
        "| end_when_acked | held after {AFTER:?} | ended acked | all released after the burst |"
    );
    println!("|---|---|---|---|");
    for on in [true, false] {
        let f = burst(base.with_end_when_acked(on));
        let released = f
            .all_released
            .map_or("not within 2 s (idle timeout 5 s)".to_string(), |d| {
                format!("{d:.0?}")
            });
        println!(
            "| {} | {} of {BURST} | {} | {released} |",
            if on { "on" } else { "off" },
            f.held_after,
            f.acked
        );
    }
}
