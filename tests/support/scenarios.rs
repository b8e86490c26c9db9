//! The reset-lab close scenarios: each runs one trial against any server
//! serving the lab contract ([`super::lab::app`]) and says, as an
//! [`Outcome`], whether the response arrived whole or how it was lost.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::client::{self, PendingError};
use super::probe::{exchange, exchange_over, judge, Outcome, TRIAL_TIMEOUT};

/// How long the scenarios that "read after a pause" wait before reading.
pub(crate) const PAUSE: Duration = Duration::from_millis(100);
/// The upload the reject scenarios send.
pub(crate) const UPLOAD: usize = 16 << 20;
/// Bytes a client sends after the request that ends the connection: well
/// past hyper's first read (8 KiB, which can grow to 16 KiB), so most of
/// them are still in the server's kernel buffer when it closes.
pub(crate) const EXTRA: usize = 64 << 10;

/// One close scenario.
#[derive(Clone, Copy)]
pub(crate) struct Scenario {
    /// Short identifier, used on the command line and in JSON.
    pub(crate) key: &'static str,
    /// What it does.
    pub(crate) about: &'static str,
    run: fn(SocketAddr) -> Outcome,
}

impl Scenario {
    pub(crate) fn run(&self, addr: SocketAddr) -> Outcome {
        (self.run)(addr)
    }
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

/// Every scenario, in table order.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            key: "reject-upload-write-first",
            about: "POST 16 MiB to /reject/2048, writing it all before reading; stop at the first write error (Python's http.client)",
            run: reject_upload_write_first,
        },
        Scenario {
            key: "reject-upload-interleaved",
            about: "POST 16 MiB to /reject/2048 while reading (curl)",
            run: |addr| reject_upload_interleaved(addr, 2048, None),
        },
        Scenario {
            key: "reject-upload-256k-body",
            about: "POST 16 MiB to /reject/262144 while reading: a 256 KiB error body; 16 KiB receive buffer",
            run: |addr| reject_upload_interleaved(addr, 256 << 10, Some(16 << 10)),
        },
        Scenario {
            key: "pipelined-after-1mib-close",
            about: "GET /close/1048576 and a 64 KiB pipelined GET in one write; 16 KiB receive buffer; read after a pause",
            run: |addr| pipelined_after_close(addr, None),
        },
        Scenario {
            key: "pipelined-late",
            about: "as above, the pipelined GET in its own write 10 ms later",
            run: |addr| pipelined_after_close(addr, Some(Duration::from_millis(10))),
        },
        Scenario {
            key: "404-pipelined-2k-window",
            about: "GET /missing (2 KiB 404, close) and a 64 KiB pipelined GET; 2 KiB receive buffer; read after a pause",
            run: missing_pipelined,
        },
        Scenario {
            key: "client-close-extra-bytes",
            about: "GET /bytes/65536 with Connection: close, then 64 KiB more bytes; 16 KiB receive buffer; read after a pause",
            run: client_close_extra,
        },
        Scenario {
            key: "malformed-extra-bytes",
            about: "a malformed request (automatic 400) and 64 KiB more bytes; read after a pause",
            run: malformed_extra,
        },
        Scenario {
            key: "control-close",
            about: "GET /close/65536 and nothing more: the control",
            run: control,
        },
    ]
}

/// Looks a scenario up by key.
pub(crate) fn scenario(key: &str) -> Scenario {
    scenarios()
        .into_iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no scenario {key}"))
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{extra_headers}\r\n").into_bytes()
}

/// A GET made larger than hyper's first read by a padding header.
pub(crate) fn big_get(path: &str) -> Vec<u8> {
    get(path, &format!("X-Pad: {}\r\n", "p".repeat(EXTRA)))
}

fn upload_head(path: &str, len: usize) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\r\n")
        .into_bytes()
}

fn write_upload(stream: &mut TcpStream, path: &str) -> std::io::Result<()> {
    stream.write_all(&upload_head(path, UPLOAD))?;
    let chunk = vec![b'u'; 64 << 10];
    for _ in 0..UPLOAD / chunk.len() {
        stream.write_all(&chunk)?;
    }
    Ok(())
}

fn reject_upload_write_first(addr: SocketAddr) -> Outcome {
    reject_upload_write_first_over(|| client::connect(addr, None))
}

/// [`reject_upload_write_first`] over any stream `connect` opens (a TLS
/// client, say): `POST /reject/2048` with a 16 MiB body, all of it written
/// before reading; any write error fails the trial.
pub(crate) fn reject_upload_write_first_over<S: Read + Write + PendingError>(
    connect: impl FnOnce() -> io::Result<S>,
) -> Outcome {
    let mut upload = upload_head("/reject/2048", UPLOAD);
    upload.resize(upload.len() + UPLOAD, b'u');
    exchange_over(connect, &[&upload], Duration::ZERO, Duration::ZERO, 413)
}

fn reject_upload_interleaved(addr: SocketAddr, body: usize, rcvbuf: Option<usize>) -> Outcome {
    let started = Instant::now();
    let Ok(mut stream) = client::connect(addr, rcvbuf) else {
        return Outcome::Wrong("connect failed".into());
    };
    let Ok(mut writer) = stream.try_clone() else {
        return Outcome::Wrong("clone failed".into());
    };
    let path = format!("/reject/{body}");
    std::thread::scope(|s| {
        // Like curl: stop sending once the server stops taking the body.
        let writing = s.spawn(move || write_upload(&mut writer, &path));
        let (bytes, end) = client::read_to_end(&mut stream, started + TRIAL_TIMEOUT);
        // Unblock the writer if it is still stuck in a full send buffer.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let wrote = writing.join().unwrap_or(Ok(()));
        match judge(&bytes, end, 413) {
            // The reset went to the blocked writer; the reader saw only EOF.
            Outcome::Truncated { got }
                if wrote.is_err_and(|e| e.kind() == ErrorKind::ConnectionReset) =>
            {
                Outcome::ResetReading { got }
            }
            outcome => outcome,
        }
    })
}

/// A close response and a pipelined request behind it: in the same write,
/// or in a write of its own `gap` later.
fn pipelined_after_close(addr: SocketAddr, gap: Option<Duration>) -> Outcome {
    pipelined_after_close_over(|| client::connect(addr, Some(16 << 10)), gap)
}

/// [`pipelined_after_close`] over any stream `connect` opens (a Unix
/// socket or a TLS client, say): a 1 MiB close response, and a 64 KiB
/// padded request pipelined behind it.
pub(crate) fn pipelined_after_close_over<S: Read + Write + PendingError>(
    connect: impl FnOnce() -> io::Result<S>,
    gap: Option<Duration>,
) -> Outcome {
    let (first, second) = (get("/close/1048576", ""), big_get("/ok"));
    let together = [first.as_slice(), second.as_slice()].concat();
    match gap {
        Some(gap) => exchange_over(connect, &[&first, &second], gap, PAUSE, 200),
        None => exchange_over(connect, &[&together], Duration::ZERO, PAUSE, 200),
    }
}

fn missing_pipelined(addr: SocketAddr) -> Outcome {
    let request = [get("/missing", ""), big_get("/ok")].concat();
    exchange(addr, Some(2 << 10), &[&request], Duration::ZERO, PAUSE, 404)
}

fn client_close_extra(addr: SocketAddr) -> Outcome {
    let request = [
        get("/bytes/65536", "Connection: close\r\n"),
        vec![b'x'; EXTRA],
    ]
    .concat();
    exchange(
        addr,
        Some(16 << 10),
        &[&request],
        Duration::ZERO,
        PAUSE,
        200,
    )
}

fn malformed_extra(addr: SocketAddr) -> Outcome {
    let request = [
        b"GET /ok HTTP/1.1\r\nHost: lab\r\nthis is not a header\r\n\r\n".to_vec(),
        vec![b'x'; EXTRA],
    ]
    .concat();
    exchange(addr, None, &[&request], Duration::ZERO, PAUSE, 400)
}

fn control(addr: SocketAddr) -> Outcome {
    let request = get("/close/65536", "");
    exchange(addr, None, &[&request], Duration::ZERO, Duration::ZERO, 200)
}
