//! The control protocol: one command a line on stdin, one answer a line
//! on stdout.

use std::io::{self, BufRead, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use linger::LingerShutdown;

use super::Samples;

/// Answers the orchestrator on stdin; the process exits when stdin
/// closes (the orchestrator is gone).
pub(super) struct Control {
    /// The listener's counters, for a server with a `LingerListener`.
    pub(super) stats: Option<LingerShutdown>,
    pub(super) holds: Option<Samples>,
    pub(super) events: Samples,
    pub(super) micros_seen: Arc<AtomicBool>,
}

impl Control {
    /// Says the port, then answers on a thread; exits the process when
    /// stdin closes.
    pub(super) fn spawn(self, port: u16) {
        std::thread::spawn(move || {
            println!("port {port}");
            let _ = io::stdout().flush();
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let reply = self.answer(line.trim());
                let mut out = io::stdout().lock();
                if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            std::process::exit(0);
        });
    }

    fn answer(&self, cmd: &str) -> String {
        let join = |v: &Samples| {
            let v = v.lock().unwrap_or_else(|e| e.into_inner());
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        };
        match cmd {
            "stats" => match &self.stats {
                Some(s) => {
                    let st = s.stats();
                    format!(
                        "stats started={} lingering={} peer_closed={} idle_timeout={} deadline={} byte_cap={} error={} shortened={} bytes_discarded={}",
                        st.started,
                        st.lingering,
                        st.peer_closed,
                        st.idle_timeout,
                        st.deadline,
                        st.byte_cap,
                        st.error,
                        st.shortened,
                        st.bytes_discarded
                    )
                }
                None => "stats".to_string(),
            },
            "holds" => format!(
                "holds {}",
                self.holds.as_ref().map(join).unwrap_or_default()
            ),
            "events" => {
                let unit = if self.micros_seen.load(std::sync::atomic::Ordering::Relaxed) {
                    "us"
                } else {
                    "ms"
                };
                format!("events unit={unit} {}", join(&self.events))
            }
            "clear" => {
                if let Some(h) = &self.holds {
                    h.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                "cleared".to_string()
            }
            other => format!("unknown {other}"),
        }
    }
}
