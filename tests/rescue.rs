//! Keep-alive rescue over loopback: a handler that answers without reading
//! a small upload no longer costs the client its connection.

#[path = "../examples/reset_lab/lab.rs"]
mod lab;
#[path = "../examples/reset_lab/probe.rs"]
mod probe;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use linger::{LingerConfig, LingerLayer};

const UPLOADS: usize = 20;
const UPLOAD: usize = 64 << 10;

/// The lab app with lingering close and the given middleware, or plain.
fn start(layer: Option<LingerLayer>) -> lab::Lab {
    match layer {
        Some(layer) => lab::Lab::start(lab::app(), lab::Close::Linger(LingerConfig::new(), layer)),
        None => lab::Lab::plain(),
    }
}

fn upload(path: &str) -> Vec<u8> {
    let head = format!("POST {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\r\n");
    [head.into_bytes(), vec![b'u'; UPLOAD]].concat()
}

/// Reads one response; returns its status and whether it closes.
fn try_read_response(stream: &mut TcpStream) -> std::io::Result<(u16, bool)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, head.contains("connection: close")))
}

fn read_response(stream: &mut TcpStream) -> (u16, bool) {
    try_read_response(stream).unwrap()
}

/// Uploads to a route that answers 413 without reading, `UPLOADS` times, as
/// a keep-alive client that writes the whole upload before reading and
/// reconnects only when the server closes; returns the connections used and
/// the uploads whose 413 never arrived (a reset while writing or reading).
fn connections_used(addr: SocketAddr) -> (usize, usize) {
    let mut connections = 0;
    let mut lost = 0;
    let mut stream: Option<TcpStream> = None;
    for _ in 0..UPLOADS {
        let conn = stream.get_or_insert_with(|| {
            connections += 1;
            probe::connect(addr, None).unwrap()
        });
        let answer = conn
            .write_all(&upload("/reject/16"))
            .and_then(|()| try_read_response(conn));
        match answer {
            Ok((status, closes)) => {
                assert_eq!(status, 413);
                if closes {
                    let mut rest = Vec::new();
                    let _ = conn.read_to_end(&mut rest);
                    stream = None;
                }
            }
            Err(_) => {
                lost += 1;
                stream = None;
            }
        }
    }
    (connections, lost)
}

#[test]
fn small_rejected_uploads_keep_the_connection() {
    let rescued = start(Some(LingerLayer::new()));
    let closing = start(Some(LingerLayer::new().without_rescue()));
    let plain = start(None);
    let with = connections_used(rescued.addr);
    let without = connections_used(closing.addr);
    let by_hyper = connections_used(plain.addr);
    eprintln!(
        "{UPLOADS} rejected {} KiB uploads, (connections, responses lost): \
         {with:?} with rescue, {without:?} without, {by_hyper:?} with plain axum",
        UPLOAD >> 10
    );
    assert_eq!(
        with,
        (1, 0),
        "every upload after the first reused the connection"
    );
    assert_eq!(
        without,
        (UPLOADS, 0),
        "without rescue every rejected upload closes"
    );
}

/// The request pipelined behind a rescued body is served, on the same
/// connection: nothing is lost or misparsed.
#[test]
fn request_behind_a_rescued_body_is_served() {
    let lab = start(Some(LingerLayer::new()));
    let addr = lab.addr;
    let mut stream = probe::connect(addr, None).unwrap();
    let mut request = upload("/reject/16");
    request.extend_from_slice(b"GET /bytes/5 HTTP/1.1\r\nHost: lab\r\n\r\n");
    stream.write_all(&request).unwrap();
    assert_eq!(read_response(&mut stream), (413, false));
    assert_eq!(read_response(&mut stream), (200, false));
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream), (200, false));
}
