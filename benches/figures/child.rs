//! A server child process: this binary's `serve` mode, started pinned to
//! core 0, answering `stats`, `holds`, `events` and `clear` on its stdin.

use std::collections::BTreeMap;
use std::env;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs::{cpu_ns, cpus_allowed, rss_kib};
use crate::R;

/// A server child process pinned to core 0, with its control pipe.
pub(crate) struct Server {
    child: Child,
    pid: u32,
    pub(crate) port: u16,
    stdin: ChildStdin,
    lines: Receiver<String>,
    label: String,
}

/// A server's answer to `stats`: counter name to value.
pub(crate) struct Stats(BTreeMap<String, u64>);

impl Stats {
    /// A counter, 0 when absent.
    pub(crate) fn get(&self, k: &str) -> u64 {
        self.0.get(k).copied().unwrap_or(0)
    }
}

impl Server {
    /// Starts `figures serve <args>` pinned to core 0 and reads its port.
    pub(crate) fn start(label: &str, args: &[&str]) -> R<Self> {
        let exe = env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(exe)
            .arg("serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start server {label} under taskset: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        let mut srv = Self {
            child,
            pid,
            port: 0,
            stdin,
            lines,
            label: label.to_string(),
        };
        let first = srv
            .lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("server {label} did not start"))?;
        srv.port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("server {label} said {first:?}"))?;
        let pinned = cpus_allowed(Some(pid)).unwrap_or_default();
        if pinned != "0" {
            return Err(format!(
                "server {label} runs on CPUs {pinned:?}, not core 0"
            ));
        }
        Ok(srv)
    }

    /// Sends one command; returns the answer line.
    pub(crate) fn ask(&mut self, cmd: &str) -> R<String> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("server {}: {e}", self.label))?;
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("server {} did not answer {cmd:?}", self.label))
    }

    /// The server's `LingerStats` (empty for a server without a listener).
    pub(crate) fn stats(&mut self) -> R<Stats> {
        let line = self.ask("stats")?;
        let map = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Ok(Stats(map))
    }

    /// CPU time of every thread of the server, ns.
    pub(crate) fn cpu_ns(&self) -> R<u64> {
        cpu_ns(self.pid)
    }

    /// The server's resident set, KiB.
    pub(crate) fn rss_kib(&self) -> R<i64> {
        rss_kib(self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the server's stats until `done` holds (bounded by `limit`).
pub(crate) fn wait_stats(
    srv: &mut Server,
    limit: Duration,
    done: impl Fn(&Stats) -> bool,
) -> R<Stats> {
    let deadline = Instant::now() + limit;
    loop {
        let st = srv.stats()?;
        if done(&st) {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let all: Vec<String> = st.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(format!(
                "server {}: stats did not reach the expected state within {limit:?}: {}",
                srv.label,
                all.join(" ")
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
