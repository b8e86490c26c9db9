//! The client side of the cost benchmark: blocking sockets, every read and
//! write bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

/// A bound on each read and write; valgrind makes the server slow.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub(crate) enum Workload {
    /// Keep-alive `GET /ok` on one connection.
    Get,
    /// The same, round-robin over this many open connections.
    GetOver(usize),
    /// Keep-alive `POST /echo` with a 1 KiB body the handler reads.
    Post,
    /// `GET /ok` with `Connection: close`, one connection each: the accept,
    /// the close, and with the crate the half-close and its linger.
    Close,
    /// An upload answered 413 unread, one connection each.
    Reject,
}

impl Workload {
    pub(crate) const ALL: [Self; 6] = [
        Self::Get,
        Self::GetOver(32),
        Self::GetOver(1000),
        Self::Post,
        Self::Close,
        Self::Reject,
    ];

    /// What runs unless `--workloads` says otherwise.
    pub(crate) const DEFAULT: [Self; 4] = [Self::Get, Self::Post, Self::Close, Self::Reject];

    pub(crate) fn name(self) -> String {
        match self {
            Self::Get => "get".into(),
            Self::GetOver(n) => format!("get-over-{n}"),
            Self::Post => "post".into(),
            Self::Close => "close".into(),
            Self::Reject => "reject".into(),
        }
    }
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads one response with a `Content-Length` body; returns its status.
fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Result<u16, String> {
    let mut buf = [0u8; 16 << 10];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or("bad status")?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("no content-length")?;
            if pending.len() >= end + 4 + len {
                pending.drain(..end + 4 + len);
                return Ok(status);
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err("EOF before a whole response".into()),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends `requests` requests of `workload` and reads every answer.
pub(crate) fn drive(port: u16, workload: Workload, requests: usize) -> Result<(), String> {
    let mut pending = Vec::new();
    match workload {
        Workload::Get | Workload::Post => {
            let request = match workload {
                Workload::Get => b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                _ => {
                    let mut r =
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n".to_vec();
                    r.resize(r.len() + 1024, b'p');
                    r
                }
            };
            let mut stream = connect(port)?;
            for _ in 0..requests {
                stream.write_all(&request).map_err(|e| e.to_string())?;
                read_response(&mut stream, &mut pending)?;
            }
        }
        Workload::GetOver(n) => {
            let streams: Result<Vec<TcpStream>, String> = (0..n).map(|_| connect(port)).collect();
            let mut streams = streams?;
            for i in 0..requests {
                let stream = &mut streams[i % n];
                stream
                    .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                read_response(stream, &mut pending)?;
            }
        }
        Workload::Close => {
            for _ in 0..requests {
                let mut stream = connect(port)?;
                stream
                    .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                read_response(&mut stream, &mut pending)?;
                pending.clear();
                // The server's FIN: the connection is done on its side.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
        }
        Workload::Reject => {
            let mut request =
                b"POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n".to_vec();
            request.resize(request.len() + 65536, b'u');
            for _ in 0..requests {
                let mut stream = connect(port)?;
                // The server may answer and close before it has read it all:
                // a write error is part of the workload.
                let _ = stream.write_all(&request);
                let status = read_response(&mut stream, &mut pending);
                pending.clear();
                if let Ok(status) = status {
                    if status != 413 {
                        return Err(format!("expected 413, got {status}"));
                    }
                }
                // Close, ending the server's linger, if any.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
        }
    }
    Ok(())
}

/// Tells the server to exit.
pub(crate) fn exit(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    stream
        .write_all(b"GET /exit HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    read_response(&mut stream, &mut Vec::new()).map(|_| ())
}

/// Waits for the server to exit, killing it at `limit`.
pub(crate) fn wait(child: &mut Child, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("server exited with {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let _ = child.kill();
    Err("server did not exit in time".into())
}
