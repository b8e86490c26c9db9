//! What the figures read from /proc: a process's CPU time and RSS, the
//! kernel's socket memory, CPU pinning, the fd limit, the machine.

use std::collections::BTreeMap;
use std::fs;

use crate::R;

/// Sum over the process's threads of the run time in
/// /proc/PID/task/TID/schedstat (ns); falls back to utime+stime ticks.
pub(crate) fn cpu_ns(pid: u32) -> R<u64> {
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        let mut total = 0u64;
        let mut any = false;
        for task in tasks.flatten() {
            let path = task.path().join("schedstat");
            if let Some(ns) = fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
        if any {
            return Ok(total);
        }
    }
    let ticks = stat_ticks(&format!("/proc/{pid}/stat"), false)
        .ok_or_else(|| format!("cannot read CPU time of {pid}"))?;
    Ok(ticks * TICK_NS)
}

/// Nanoseconds per clock tick of /proc/*/stat and /proc/stat (USER_HZ).
pub(crate) const TICK_NS: u64 = 10_000_000;

/// utime+stime of a /proc/PID/stat, plus cutime+cstime (the children
/// waited for) when `children`, in ticks.
pub(crate) fn stat_ticks(path: &str, children: bool) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    // After the comm: field 3 (state) is index 0; utime is field 14.
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let own = field(14)? + field(15)?;
    Some(if children {
        own + field(16)? + field(17)?
    } else {
        own
    })
}

/// A process's resident set (VmRSS), KiB.
pub(crate) fn rss_kib(pid: u32) -> R<i64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| e.to_string())?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

/// System-wide kernel memory counters, for what the sockets cost the kernel.
#[derive(Clone, Default)]
pub(crate) struct Kernel {
    /// /proc/net/sockstat `TCP: mem`, pages (socket buffer memory).
    pub(crate) tcp_mem_pages: i64,
    /// /proc/meminfo `Slab`, KiB.
    pub(crate) slab_kib: i64,
    /// /proc/slabinfo: active objects × object size, bytes, per cache.
    pub(crate) caches: BTreeMap<String, i64>,
}

pub(crate) const SOCKET_CACHES: [&str; 6] = [
    "TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
];

pub(crate) fn kernel() -> Kernel {
    let sockstat = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp_mem_pages = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            t.iter()
                .position(|w| *w == "mem")
                .and_then(|i| t.get(i + 1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let slab_kib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut caches = BTreeMap::new();
    for line in fs::read_to_string("/proc/slabinfo")
        .unwrap_or_default()
        .lines()
    {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() > 3 && SOCKET_CACHES.contains(&t[0]) {
            if let (Ok(active), Ok(size)) = (t[1].parse::<i64>(), t[3].parse::<i64>()) {
                caches.insert(t[0].to_string(), active * size);
            }
        }
    }
    Kernel {
        tcp_mem_pages,
        slab_kib,
        caches,
    }
}

pub(crate) fn cpus_allowed(pid: Option<u32>) -> Option<String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

pub(crate) fn fd_limit() -> Option<u64> {
    fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

pub(crate) fn cpu_count() -> usize {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

pub(crate) fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}
