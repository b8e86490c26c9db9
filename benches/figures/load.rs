//! Load detection: how much CPU other processes of the machine used
//! meanwhile, and waiting (bounded) for them to go quiet.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs::{stat_ticks, TICK_NS};

/// Other processes' CPU, in % of one core, above which a measurement is
/// disturbed (this bench shares its machine with whatever else runs).
pub(crate) const DISTURBED: f64 = 15.0;

/// A snapshot to tell how much CPU other processes of the machine used.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    at: Instant,
    /// Busy ticks of all CPUs (/proc/stat).
    busy: u64,
    /// This process's ticks, and its waited-for children's (wrk).
    me: u64,
}

impl Load {
    /// The counters now.
    pub(crate) fn now() -> Self {
        let busy = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_string();
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal ...
                let total: u64 = v.iter().take(8).sum();
                Some(total - v.get(3)? - v.get(4)?)
            })
            .unwrap_or(0);
        Self {
            at: Instant::now(),
            busy,
            me: stat_ticks("/proc/self/stat", true).unwrap_or(0),
        }
    }

    /// CPU other processes used since `self`, in % of one core; `ours_ns`
    /// is what our servers used meanwhile.
    pub(crate) fn foreign_pct(&self, ours_ns: u64) -> f64 {
        let now = Self::now();
        let busy_ns = now.busy.saturating_sub(self.busy) * TICK_NS;
        let me_ns = now.me.saturating_sub(self.me) * TICK_NS;
        let other = busy_ns as f64 - me_ns as f64 - ours_ns as f64;
        (other / 1e9 / now.at.duration_since(self.at).as_secs_f64() * 100.0).max(0.0)
    }
}

/// Waits (at most `limit`) until other processes use under 10% of a core
/// over 2 s, so they do not disturb the figures; says so if they do.
pub(crate) fn wait_quiet(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        let start = Load::now();
        thread::sleep(Duration::from_secs(2));
        let other = start.foreign_pct(0);
        if other < 10.0 {
            if said {
                println!("(machine quiet again: other processes {other:.0}% of a core)");
            }
            return;
        }
        if Instant::now() > deadline {
            println!();
            println!("WARNING: other processes use {other:.0}% of a core; waited {limit:?} for quiet, measuring anyway: the CPU figures below are disturbed");
            return;
        }
        if !said {
            println!();
            println!("(waiting up to {limit:?} for the machine to be quiet: other processes use {other:.0}% of a core)");
            said = true;
        }
    }
}
