//! Server CPU time per request under load: wrk (HTTP/1.1) and h2load
//! (HTTP/2) drive each server from the other core; the figure is the server
//! process's CPU time, user and system (the sum of
//! `/proc/PID/task/*/schedstat`), over the requests the generator completed.
//! Rounds alternate the order of the servers; each round's ratio of a
//! wiring to its baseline is taken in that round.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use crate::client;
use crate::serve::{self, Wiring};

/// The load workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Load {
    /// wrk, 32 keep-alive connections, `GET /ok`.
    KeepAlive,
    /// wrk, 8 connections, `GET /ok` with `Connection: close`: one request
    /// per connection, the close (and the linger) every time.
    Close,
    /// h2load, 8 connections of 8 streams, `GET /ok` over h2c.
    Http2,
}

impl Load {
    pub(crate) const ALL: [Self; 3] = [Self::KeepAlive, Self::Close, Self::Http2];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::KeepAlive => "keep-alive",
            Self::Close => "close",
            Self::Http2 => "http2",
        }
    }
}

/// The tools the load needs, with the Debian packages that have them.
pub(crate) const TOOLS: [(&str, &str); 2] = [("wrk", "wrk"), ("h2load", "nghttp2-client")];

/// Microseconds of server CPU per request, per wiring and load, one figure
/// per round.
pub(crate) type Figures = HashMap<(Wiring, Load), Vec<f64>>;

/// Runs `rounds` rounds of `seconds` per load against every wiring.
pub(crate) fn measure(wirings: &[Wiring], rounds: usize, seconds: u64) -> Result<Figures, String> {
    let mut servers = Vec::new();
    for &wiring in wirings {
        servers.push(Server::start(wiring)?);
    }
    let result = (|| {
        for server in &servers {
            drive(Load::KeepAlive, server.port, 1)?; // warm-up
        }
        let mut figures = Figures::new();
        for round in 0..rounds {
            for load in Load::ALL {
                let order: Vec<&Server> = if round % 2 == 0 {
                    servers.iter().collect()
                } else {
                    servers.iter().rev().collect()
                };
                for server in order {
                    let before = server.cpu_ns();
                    let requests = drive(load, server.port, seconds)?;
                    // The last closes, and their lingers, end.
                    std::thread::sleep(Duration::from_millis(200));
                    let used = server.cpu_ns().saturating_sub(before);
                    figures
                        .entry((server.wiring, load))
                        .or_default()
                        .push(used as f64 / 1e3 / requests.max(1) as f64);
                }
            }
            eprintln!("load: round {}/{rounds} done", round + 1);
        }
        Ok(figures)
    })();
    for server in servers {
        server.stop();
    }
    result
}

/// Whether the machine has a second core to put the load generator on.
fn pinned() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// `program` on CPU `cpu` when the machine has two cores.
fn command_on(cpu: u8, program: &str) -> Command {
    if pinned() {
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu.to_string(), program]);
        command
    } else {
        Command::new(program)
    }
}

/// A server of the benchmark, on CPU 1.
struct Server {
    wiring: Wiring,
    child: Child,
    port: u16,
}

impl Server {
    fn start(wiring: Wiring) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = command_on(1, &exe.display().to_string());
        command.args(["serve", wiring.name()]);
        let (child, port) = serve::spawn(command)?;
        Ok(Self {
            wiring,
            child,
            port,
        })
    }

    /// Nanoseconds the server's threads have spent on a CPU.
    fn cpu_ns(&self) -> u64 {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return 0;
        };
        tasks
            .filter_map(|task| {
                let path = task.ok()?.path().join("schedstat");
                let text = std::fs::read_to_string(path).ok()?; // a thread that ended meanwhile
                text.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }

    fn stop(mut self) {
        let _ = client::exit(self.port);
        if client::wait(&mut self.child, Duration::from_secs(10)).is_err() {
            let _ = self.child.kill();
        }
    }
}

/// Runs `load` against `port` for `seconds`; the requests completed.
fn drive(load: Load, port: u16, seconds: u64) -> Result<u64, String> {
    let url = format!("http://127.0.0.1:{port}/ok");
    let (tool, args): (&str, Vec<String>) = match load {
        Load::KeepAlive => ("wrk", vec!["-t1".into(), "-c32".into()]),
        Load::Close => (
            "wrk",
            vec![
                "-t1".into(),
                "-c8".into(),
                "-H".into(),
                "Connection: close".into(),
            ],
        ),
        Load::Http2 => ("h2load", vec!["-c8".into(), "-m8".into()]),
    };
    let duration = match tool {
        "wrk" => vec!["-d".to_owned(), format!("{seconds}s")],
        _ => vec!["-D".to_owned(), seconds.to_string()],
    };
    let out = command_on(0, tool)
        .args(args)
        .args(duration)
        .arg(&url)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let done = match tool {
        "wrk" => text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in"))
            .and_then(|(n, _)| n.trim().parse().ok()),
        _ => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("requests: "))
            .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" succeeded")))
            .and_then(|n| n.trim().parse().ok()),
    };
    done.ok_or_else(|| format!("{tool} said:\n{text}"))
}

/// The median and the range of `values`.
pub(crate) fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}
