//! Clients nobody here wrote, curl and Python's `http.client`, upload 16 MiB
//! to a route that answers 413 without reading the body. With lingering
//! close they see the 413 every time; Python, which writes the whole body
//! before it reads, gets "Broken pipe" from a plain server instead, and
//! curl, which reads while it uploads, a 413 whose 256 KiB body a reset
//! cuts short.
//!
//! `.ci/run` installs curl and python3 when they are missing; outside CI a
//! missing tool skips its half of the test with a message.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use linger::LingerConfig;
use support::lab::Lab;
use support::scenarios::UPLOAD;

const TRIALS: usize = 5;
/// The 413's body for curl: 256 KiB. curl reads while it uploads, so a
/// short 413 reaches it before the reset from a plain server; a body this
/// long is still arriving when the reset comes, and is cut short.
const CURL_ERROR_BODY: usize = 256 << 10;
/// The most uploads a plain server gets to lose one.
const PLAIN_TRIALS: usize = 20;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing in CI");
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// What curl reported for one upload: the status code, or its error.
fn curl_upload(addr: SocketAddr, file: &std::path::Path) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            // No `Expect: 100-continue` (curl's default above 1 MiB), which
            // would get the 413 before any of the body is sent.
            "-H",
            "Expect:",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{addr}/reject/{CURL_ERROR_BODY}"))
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        code
    } else {
        format!("{code} {}", String::from_utf8_lossy(&out.stderr).trim())
    }
}

const PYTHON: &str = r#"
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
try:
    conn.request("POST", "/reject/2048", body=b"u" * int(sys.argv[3]))
    resp = conn.getresponse()
    body = resp.read()
    print(resp.status, len(body))
except Exception as e:
    print(type(e).__name__, e)
"#;

/// What Python's http.client reported for one upload.
fn python_upload(addr: SocketAddr) -> String {
    let out = Command::new("python3")
        .args(["-c", PYTHON])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(UPLOAD.to_string())
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn curl_sees_the_413() {
    if !have("curl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("linger-real-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("upload.bin");
    std::fs::write(&file, vec![b'u'; UPLOAD]).unwrap();
    let (lingering, plain) = (Lab::lingering(LingerConfig::new()), Lab::plain());
    let (with, plain) = (lingering.addr, plain.addr);
    let lingered: Vec<String> = (0..TRIALS).map(|_| curl_upload(with, &file)).collect();
    // Plainly a loss is a race: try until one is lost, at most PLAIN_TRIALS.
    let mut unlingered = Vec::new();
    for _ in 0..PLAIN_TRIALS {
        unlingered.push(curl_upload(plain, &file));
        if unlingered.last().is_some_and(|r| r != "413") {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("curl with linger: {lingered:?}\ncurl without: {unlingered:?}");
    assert!(lingered.iter().all(|r| r == "413"), "{lingered:?}");
    assert!(
        unlingered.iter().any(|r| r != "413"),
        "a plain server never failed curl here, so this test proves nothing: {unlingered:?}"
    );
}

#[test]
fn python_http_client_sees_the_413() {
    if !have("python3") {
        return;
    }
    let (lingering, plain) = (Lab::lingering(LingerConfig::new()), Lab::plain());
    let (with, plain) = (lingering.addr, plain.addr);
    let lingered: Vec<String> = (0..TRIALS).map(|_| python_upload(with)).collect();
    let unlingered: Vec<String> = (0..TRIALS).map(|_| python_upload(plain)).collect();
    eprintln!("python with linger: {lingered:?}\npython without: {unlingered:?}");
    assert!(lingered.iter().all(|r| r == "413 2048"), "{lingered:?}");
    assert!(
        unlingered.iter().any(|r| r != "413 2048"),
        "a plain server never failed Python here, so this test proves nothing: {unlingered:?}"
    );
}
