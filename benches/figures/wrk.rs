//! Driving wrk: start it pinned to core 1, wait for it (bounded), read its
//! report.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::R;

/// Starts wrk against `/ok` on `port`, pinned to core 1.
pub(crate) fn wrk_spawn(port: u16, secs: u64, conns: usize) -> R<Child> {
    Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://127.0.0.1:{port}/ok"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))
}

/// Waits for a wrk run (bounded); returns (requests, requests/s).
pub(crate) fn wrk_finish(child: Child, secs: u64) -> R<(u64, f64)> {
    let out = wait_output(child, Duration::from_secs(secs + 30), "wrk")?;
    let text = String::from_utf8_lossy(&out);
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("unexpected wrk output:\n{text}"))?;
    if let Some(bad) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        return Err(format!("wrk reported errors: {}", bad.trim()));
    }
    Ok((requests, rps))
}

pub(crate) fn wrk_version() -> String {
    Command::new("wrk")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split(" Copyright").next().unwrap_or(l).to_string())
        })
        .unwrap_or_else(|| "wrk not found".into())
}

/// Waits for a child with a deadline (then kills it); returns its stdout.
fn wait_output(mut child: Child, limit: Duration, what: &str) -> R<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().unwrap_or_default();
                if !status.success() {
                    return Err(format!(
                        "{what} failed ({status}): {}",
                        String::from_utf8_lossy(&out)
                    ));
                }
                return Ok(out);
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {limit:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
