//! A raw-socket HTTP/1.1 client that runs the close scenarios against any
//! server serving the reset-lab contract, and says, per trial, whether the
//! response arrived whole (every byte, then a clean EOF) or how it was lost.
//!
//! Blocking std sockets on purpose: it shares no code with the server side,
//! and every wait has a timeout.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long a trial may wait in all before it counts as a timeout.
pub(crate) const TRIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the scenarios that "read after a pause" wait before reading.
pub(crate) const PAUSE: Duration = Duration::from_millis(100);

/// How one trial ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The whole response, then a clean EOF.
    Whole,
    /// The whole response, but the connection was reset after it (instead
    /// of, or after, the FIN): delivered, but not a clean close.
    ResetAfter,
    /// A reset before the response was complete.
    ResetReading { got: usize },
    /// The connection ended (EOF) before the response was complete.
    Truncated { got: usize },
    /// Writing the request failed (reset or broken pipe): a client that
    /// stops at the first write error never sees the response.
    WriteFailed(String),
    /// Nothing more arrived in time.
    Timeout { got: usize },
    /// A response arrived, but not the expected one.
    Wrong(String),
}

impl Outcome {
    /// The whole response, then a clean close.
    pub(crate) fn is_whole(&self) -> bool {
        matches!(self, Outcome::Whole)
    }

    /// The whole response arrived, clean close or not.
    pub(crate) fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Whole | Outcome::ResetAfter)
    }

    /// The failure category shown in tables.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Outcome::Whole => "whole",
            Outcome::ResetAfter => "whole, then reset",
            Outcome::ResetReading { .. } => "reset while reading",
            Outcome::Truncated { .. } => "truncated",
            Outcome::WriteFailed(_) => "reset/broken pipe while writing",
            Outcome::Timeout { .. } => "timeout",
            Outcome::Wrong(_) => "wrong response",
        }
    }
}

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

pub(crate) const UPLOAD: usize = 16 << 20;

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
            run: |addr| reject_upload_interleaved(addr, 2048),
        },
        Scenario {
            key: "reject-upload-256k-body",
            about: "POST 16 MiB to /reject/262144 while reading: a 256 KiB error body",
            run: |addr| reject_upload_interleaved(addr, 256 << 10),
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

/// A connected client socket; `rcvbuf` is set before connecting so the
/// window the server sees is small from the first segment.
pub(crate) fn connect(addr: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{extra_headers}\r\n").into_bytes()
}

/// Bytes a client sends after the request that ends the connection: well
/// past hyper's first read (8 KiB, which can grow to 16 KiB), so most of
/// them are still in the server's kernel buffer when it closes.
pub(crate) const EXTRA: usize = 64 << 10;

/// A GET made larger than hyper's first read by a padding header.
fn big_get(path: &str) -> Vec<u8> {
    get(path, &format!("X-Pad: {}\r\n", "p".repeat(EXTRA)))
}

/// How long the client waits after EOF before it asks its socket whether a
/// reset followed the FIN.
const SETTLE: Duration = Duration::from_millis(20);

/// Reads to EOF, an error, or the trial deadline.
///
/// A reset that arrives after the FIN does not show in `read` on Linux (the
/// socket is in CLOSE_WAIT: reads return EOF and the reset leaves `EPIPE` in
/// `SO_ERROR`), so after EOF the socket's pending error is checked too.
fn read_all(stream: &mut TcpStream, started: Instant) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        if started.elapsed() > TRIAL_TIMEOUT {
            return (got, End::Timeout);
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(SETTLE);
                return match stream.take_error() {
                    Ok(None) => (got, End::Eof),
                    _ => (got, End::EofThenReset),
                };
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, End::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, End::Reset),
            Err(e) => return (got, End::Other(e.to_string())),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    EofThenReset,
    Reset,
    Timeout,
    Other(String),
}

/// The length of the first response in `bytes` if it is complete, with its
/// status; `None` while incomplete.
fn first_response(bytes: &[u8]) -> Option<Result<(u16, usize), String>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return Some(Err(format!("bad status line: {:?}", head.lines().next())));
    };
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let Some(length) = length else {
        return Some(Err("response without content-length".into()));
    };
    (bytes.len() >= head_end + length).then_some(Ok((status, head_end + length)))
}

/// Judges what a client read against the status it expected.
fn judge(bytes: &[u8], end: End, status: u16) -> Outcome {
    match first_response(bytes) {
        Some(Ok((got_status, _))) if got_status != status => {
            Outcome::Wrong(format!("status {got_status}, expected {status}"))
        }
        Some(Err(e)) => Outcome::Wrong(e),
        Some(Ok(_)) => match end {
            End::Eof => Outcome::Whole,
            End::Reset | End::EofThenReset => Outcome::ResetAfter,
            End::Timeout => Outcome::Timeout { got: bytes.len() },
            End::Other(e) => Outcome::Wrong(e),
        },
        None => match end {
            End::Eof | End::EofThenReset => Outcome::Truncated { got: bytes.len() },
            End::Reset => Outcome::ResetReading { got: bytes.len() },
            End::Timeout => Outcome::Timeout { got: bytes.len() },
            End::Other(e) => Outcome::Wrong(e),
        },
    }
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
    let mut upload = upload_head("/reject/2048", UPLOAD);
    upload.resize(upload.len() + UPLOAD, b'u');
    exchange(addr, None, &[&upload], Duration::ZERO, Duration::ZERO, 413)
}

fn reject_upload_interleaved(addr: SocketAddr, body: usize) -> Outcome {
    let started = Instant::now();
    let Ok(mut stream) = connect(addr, None) else {
        return Outcome::Wrong("connect failed".into());
    };
    let Ok(mut writer) = stream.try_clone() else {
        return Outcome::Wrong("clone failed".into());
    };
    let path = format!("/reject/{body}");
    std::thread::scope(|s| {
        // Like curl: stop sending once the server stops taking the body.
        let writing = s.spawn(move || write_upload(&mut writer, &path));
        let (bytes, end) = read_all(&mut stream, started);
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

/// One client that sends `writes` (the first at once, each later one after
/// `gap`), waits `pause`, reads to the end, and judges the first response
/// against `status`. `rcvbuf` sets its receive buffer before it connects.
fn exchange(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
    writes: &[&[u8]],
    gap: Duration,
    pause: Duration,
    status: u16,
) -> Outcome {
    let started = Instant::now();
    let Ok(mut stream) = connect(addr, rcvbuf) else {
        return Outcome::Wrong("connect failed".into());
    };
    for (i, bytes) in writes.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        if let Err(e) = stream.write_all(bytes) {
            return Outcome::WriteFailed(e.kind().to_string());
        }
    }
    std::thread::sleep(pause);
    let (bytes, end) = read_all(&mut stream, started);
    judge(&bytes, end, status)
}

/// A close response and a pipelined request behind it: in the same write,
/// or in a write of its own `gap` later.
fn pipelined_after_close(addr: SocketAddr, gap: Option<Duration>) -> Outcome {
    let (first, second) = (get("/close/1048576", ""), big_get("/ok"));
    let together = [first.as_slice(), second.as_slice()].concat();
    match gap {
        Some(gap) => exchange(addr, Some(16 << 10), &[&first, &second], gap, PAUSE, 200),
        None => exchange(
            addr,
            Some(16 << 10),
            &[&together],
            Duration::ZERO,
            PAUSE,
            200,
        ),
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
