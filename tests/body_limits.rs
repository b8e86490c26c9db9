//! Body limits are where early responses come from. axum's
//! `DefaultBodyLimit` and tower-http's `RequestBodyLimitLayer`, each at
//! 64 KiB, get a 16 MiB upload from a client that writes all of it before it
//! reads (it keeps sending after the 413): with `Content-Length` (the limit
//! trips at once or after 64 KiB), chunked (it trips mid-stream, tower-http
//! #610), with `Expect: 100-continue`, and in HTTP/1.0. Every 413 arrives
//! whole with the crate; the table printed shows which lose it plainly, and
//! at least one must, so the test can fail.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use linger::LingerConfig;
use support::client::{connect, read_response, read_to_end};
use support::lab::{Close, Lab};
use support::probe::{exchange, judge, Outcome, TRIAL_TIMEOUT};

const LIMIT: usize = 64 << 10;
const UPLOAD: usize = 16 << 20;
const TRIALS: usize = 3;

/// Builds an app behind one of the body limits.
type AppFn = fn() -> Router;

fn axum_limit() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::max(LIMIT))
}

fn tower_http_limit() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(LIMIT))
}

/// The head and body of an upload of [`UPLOAD`] bytes.
#[derive(Clone, Copy, Debug)]
enum Upload {
    ContentLength,
    Chunked,
    Expect,
    Http10,
}

impl Upload {
    const ALL: [Self; 4] = [
        Self::ContentLength,
        Self::Chunked,
        Self::Expect,
        Self::Http10,
    ];

    fn head(self) -> String {
        match self {
            Self::ContentLength => {
                format!("POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\r\n")
            }
            Self::Chunked => {
                "POST /upload HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n".into()
            }
            Self::Expect => format!(
                "POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\
                 Expect: 100-continue\r\n\r\n"
            ),
            Self::Http10 => format!("POST /upload HTTP/1.0\r\nContent-Length: {UPLOAD}\r\n\r\n"),
        }
    }

    fn body(self) -> Vec<u8> {
        match self {
            Self::Chunked => {
                let chunk = [b'u'; 16 << 10];
                let mut body = Vec::new();
                for _ in 0..UPLOAD / chunk.len() {
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(&chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                body
            }
            _ => vec![b'u'; UPLOAD],
        }
    }

    /// One client: writes the whole upload before reading, except with
    /// `Expect`, where it sends the head, waits for `100 Continue` (or the
    /// final answer), then the body.
    fn run(self, addr: SocketAddr) -> Outcome {
        let (head, body) = (self.head().into_bytes(), self.body());
        if !matches!(self, Self::Expect) {
            let request = [head, body].concat();
            return exchange(addr, None, &[&request], Duration::ZERO, Duration::ZERO, 413);
        }
        let started = Instant::now();
        let Ok(mut stream) = connect(addr, None) else {
            return Outcome::Wrong("connect failed".into());
        };
        if stream.write_all(&head).is_err() {
            return Outcome::Wrong("head not sent".into());
        }
        let first = match read_response(&mut stream) {
            Ok(first) => first,
            Err(e) => return Outcome::Wrong(format!("no interim or final answer: {e}")),
        };
        if first.head.status == 413 {
            // The final answer before the body: a whole 413, then the end.
            let (_, end) = read_to_end(&mut stream, started + TRIAL_TIMEOUT);
            return match end {
                support::client::End::Eof => Outcome::Whole,
                _ => Outcome::ResetAfter,
            };
        }
        if let Err(e) = stream.write_all(&body) {
            return Outcome::WriteFailed(e.kind().to_string());
        }
        let (bytes, end) = read_to_end(&mut stream, started + TRIAL_TIMEOUT);
        judge(&bytes, end, 413)
    }
}

#[test]
fn every_413_of_a_body_limit_arrives_whole() {
    let limits: [(&str, AppFn); 2] = [
        ("DefaultBodyLimit", axum_limit),
        ("RequestBodyLimitLayer", tower_http_limit),
    ];
    let mut lost_plainly = 0;
    println!("| limit | upload | with linger | plain axum |\n|---|---|---|---|");
    for (limit, app) in limits {
        let cured = Lab::start(
            app(),
            Close::Linger(LingerConfig::new(), linger::LingerLayer::new()),
        );
        let plain = Lab::start(app(), Close::Plain);
        for upload in Upload::ALL {
            let with: Vec<Outcome> = (0..TRIALS).map(|_| upload.run(cured.addr)).collect();
            let without: Vec<Outcome> = (0..TRIALS).map(|_| upload.run(plain.addr)).collect();
            let whole = |o: &[Outcome]| o.iter().filter(|o| o.is_delivered()).count();
            println!(
                "| {limit} | {upload:?} | {}/{TRIALS} | {}/{TRIALS} {:?} |",
                whole(&with),
                whole(&without),
                without.iter().map(Outcome::kind).collect::<Vec<_>>()
            );
            assert!(
                with.iter().all(Outcome::is_whole),
                "{limit} {upload:?} with linger: {with:?}"
            );
            lost_plainly += TRIALS - whole(&without);
        }
    }
    assert!(
        lost_plainly > 0,
        "no 413 was lost plainly: this test proves nothing here"
    );
}
