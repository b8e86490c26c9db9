//! The client side: blocking sockets with timeouts, and the requests the
//! figures send.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::R;

pub(crate) const REQ_OK: &[u8] = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
pub(crate) const REQ_CLOSE: &[u8] = b"GET /close/16 HTTP/1.1\r\nHost: x\r\n\r\n";
/// Bytes a client sends after its request: input the server has not asked
/// for, so it lingers (as a pipelined request or an upload tail would).
pub(crate) const EXTRA: &[u8] = b"XXXX";

pub(crate) fn connect(port: u16) -> R<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(c)
}

pub(crate) struct Response {
    pub(crate) status: u16,
    /// `Connection: close`.
    pub(crate) close: bool,
    pub(crate) body_len: usize,
}

/// Reads one response with a Content-Length body, and nothing past it.
pub(crate) fn read_response(c: &mut TcpStream) -> R<Response> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() > deadline || buf.len() > 1 << 20 {
            return Err("response too slow or too large".into());
        }
        let n = c.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let body_len: usize = header("content-length:")
            .and_then(|v| v.parse().ok())
            .ok_or("response without Content-Length")?;
        let close = header("connection:").is_some_and(|v| v.contains("close"));
        if buf.len() >= end + 4 + body_len {
            return Ok(Response {
                status,
                close,
                body_len,
            });
        }
    }
}
