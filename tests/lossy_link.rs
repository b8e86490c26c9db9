//! Every reset-lab scenario over a lossy link: inside a network namespace
//! of the test's own, an nftables rule drops 2% of TCP packets at random on
//! loopback's output (so both ways). With the crate every response arrives
//! whole; served plainly the usual scenarios lose theirs, in the same run.
//!
//! Needs root and the `ip` and `nft` tools (iproute2, nftables), as CI has;
//! elsewhere it skips with a message. Each trial is bounded by the probe's
//! timeout.

#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use linger::LingerConfig;
use support::lab::Lab;
use support::scenarios::scenarios;

const TRIALS: usize = 3;
/// Percent of TCP packets dropped.
const LOSS: u32 = 2;

/// Drops `LOSS`% of TCP packets on output in the current namespace.
fn lose_packets() -> bool {
    let rules = format!(
        "table inet loss {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
         meta l4proto tcp numgen random mod 100 < {LOSS} counter drop\n  }}\n}}\n"
    );
    let child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let _ = child.stdin.take().unwrap().write_all(rules.as_bytes());
    child.wait().is_ok_and(|s| s.success())
}

/// What the loss rule's counter says it dropped.
fn dropped_packets() -> u64 {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "loss"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_scenario_is_whole_over_a_lossy_link() {
    if !support::netns::isolate() {
        eprintln!("skipping: this test needs a network namespace of its own (root, iproute2)");
        return;
    }
    let lossy = lose_packets();
    assert!(
        lossy || std::env::var_os("CI").is_none(),
        "nft could not install the loss rule in CI"
    );
    if !lossy {
        eprintln!("skipping: nft (nftables) could not install the loss rule");
        return;
    }
    let cured = Lab::lingering(LingerConfig::new());
    let plain = Lab::plain();
    let mut lost_plainly = 0;
    println!("| scenario, {LOSS}% loss both ways | with linger | plain axum |\n|---|---|---|");
    for scenario in scenarios() {
        let with: Vec<_> = (0..TRIALS).map(|_| scenario.run(cured.addr)).collect();
        let without: Vec<_> = (0..TRIALS).map(|_| scenario.run(plain.addr)).collect();
        let whole = |o: &[support::probe::Outcome]| o.iter().filter(|o| o.is_whole()).count();
        println!(
            "| {} | {}/{TRIALS} | {}/{TRIALS} |",
            scenario.key,
            whole(&with),
            whole(&without)
        );
        assert!(
            with.iter().all(|o| o.is_whole()),
            "{} with linger over a lossy link: {with:?}",
            scenario.key
        );
        lost_plainly += TRIALS - whole(&without);
    }
    let dropped = dropped_packets();
    println!("packets dropped by the loss rule: {dropped}");
    assert!(dropped > 0, "the loss rule dropped nothing");
    assert!(
        lost_plainly > 0,
        "nothing was lost plainly: this test proves nothing here"
    );
}
