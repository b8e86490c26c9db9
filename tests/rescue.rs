//! Keep-alive rescue over loopback: a handler that answers without reading
//! a small upload no longer costs the client its connection.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use linger::{LingerConfig, LingerLayer};
use support::client::{connect, read_response};
use support::lab::{self, Close, Lab};

const UPLOADS: usize = 20;
const UPLOAD: usize = 64 << 10;

/// The lab app with lingering close and the given middleware, or plain.
fn start(layer: Option<LingerLayer>) -> Lab {
    match layer {
        Some(layer) => Lab::start(lab::app(), Close::Linger(LingerConfig::new(), layer)),
        None => Lab::plain(),
    }
}

fn upload(path: &str) -> Vec<u8> {
    let head = format!("POST {path} HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\r\n");
    [head.into_bytes(), vec![b'u'; UPLOAD]].concat()
}

/// Reads one response; returns its status and whether it closes.
fn status_and_close(stream: &mut TcpStream) -> std::io::Result<(u16, bool)> {
    let response = read_response(stream)?;
    Ok((response.head.status, response.head.closes()))
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
            connect(addr, None).unwrap()
        });
        let answer = conn
            .write_all(&upload("/reject/16"))
            .and_then(|()| status_and_close(conn));
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
    let mut stream = connect(addr, None).unwrap();
    let mut request = upload("/reject/16");
    request.extend_from_slice(b"GET /bytes/5 HTTP/1.1\r\nHost: lab\r\n\r\n");
    stream.write_all(&request).unwrap();
    assert_eq!(status_and_close(&mut stream).unwrap(), (413, false));
    assert_eq!(status_and_close(&mut stream).unwrap(), (200, false));
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    assert_eq!(status_and_close(&mut stream).unwrap(), (200, false));
}
