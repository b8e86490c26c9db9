//! TLS trials for the tests of TLS servers: a rustls client runs one close
//! scenario against a server and tells, from what it decrypted and how the
//! TCP connection ended, whether the response arrived whole and the close
//! was clean.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client;

use super::client::first_response;
use super::tls::tcp_end_is_clean;

/// How long the pipelining client waits before it reads.
const PAUSE: Duration = Duration::from_millis(100);
/// The rejected upload: 16 MiB.
const UPLOAD: usize = 16 << 20;
/// Bytes of padding in the pipelined request: well past hyper's first read.
const EXTRA: usize = 64 << 10;

/// How one trial ended, from the client's side.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The whole response, nothing after it, then `close_notify`, the FIN,
    /// and no reset.
    Whole,
    /// The whole response and `close_notify`, but the TCP close after it
    /// was not clean (`seen`: what a raw read and the socket's error said).
    WholeUncleanTcp { seen: String },
    /// The response arrived whole but the TLS stream ended without
    /// `close_notify` (`UnexpectedEof`) or with an error.
    WholeThenError(ErrorKind),
    /// The response was cut short by an error (a reset, most often).
    ErrorReading { got: usize, kind: ErrorKind },
    /// `close_notify` before the response was complete.
    Truncated { got: usize },
    /// Writing the request failed: a client that stops at the first write
    /// error never sees the response.
    WriteFailed(ErrorKind),
    /// Connecting or the handshake failed.
    Connect(String),
    /// A response arrived, but not the expected one.
    Wrong(String),
    /// The trial did not finish in time.
    Timeout,
}

impl Outcome {
    pub(crate) fn is_whole(&self) -> bool {
        *self == Outcome::Whole
    }
}

pub(crate) async fn connect(
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    rcvbuf: Option<u32>,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    super::tls::connect(addr, super::tls::client_config(cert), rcvbuf).await
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{extra_headers}\r\n").into_bytes()
}

/// Reads until `close_notify`, an error or the trial deadline, then judges
/// what arrived against the expected status and body length.
async fn read_and_judge(
    tls: &mut client::TlsStream<TcpStream>,
    status: u16,
    body_len: usize,
) -> Outcome {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    // Bounded by the trial's timeout and by a count far above what a 1 MiB
    // response needs.
    let mut ended = None;
    for _ in 0..100_000 {
        match tls.read(&mut buf).await {
            Ok(0) => {
                ended = Some(Ok(()));
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                ended = Some(Err(e.kind()));
                break;
            }
        }
    }
    let Some(ended) = ended else {
        return Outcome::Wrong(format!("no end after {} bytes", got.len()));
    };
    let complete = match first_response(&got) {
        Some(Ok((head, len))) => {
            let got_status = head.status;
            if got_status != status || len != got.len() || len < body_len {
                return Outcome::Wrong(format!(
                    "status {got_status} ({status} expected), response {len} bytes of {} read",
                    got.len()
                ));
            }
            true
        }
        Some(Err(e)) => return Outcome::Wrong(e),
        None => false,
    };
    match (complete, ended) {
        (true, Ok(())) => tcp_end(tls.get_mut().0).await,
        (true, Err(kind)) => Outcome::WholeThenError(kind),
        (false, Ok(())) => Outcome::Truncated { got: got.len() },
        (false, Err(kind)) => Outcome::ErrorReading {
            got: got.len(),
            kind,
        },
    }
}

/// After `close_notify`: whether the TCP connection ended with a FIN and no
/// reset.
async fn tcp_end(tcp: &mut TcpStream) -> Outcome {
    match tcp_end_is_clean(tcp).await {
        Ok(()) => Outcome::Whole,
        Err(seen) => Outcome::WholeUncleanTcp { seen },
    }
}

/// `GET /close/1048576` and a 64 KiB padded GET in one write over TLS, a
/// 16 KiB receive buffer, a pause, then read everything.
pub(crate) async fn pipelined_after_close(
    addr: SocketAddr,
    cert: CertificateDer<'static>,
) -> Outcome {
    let mut tls = match connect(addr, cert, Some(16 << 10)).await {
        Ok(tls) => tls,
        Err(e) => return Outcome::Connect(e.to_string()),
    };
    let pad = format!("X-Pad: {}\r\n", "p".repeat(EXTRA));
    let request = [get("/close/1048576", ""), get("/ok", &pad)].concat();
    if let Err(e) = tls.write_all(&request).await {
        return Outcome::WriteFailed(e.kind());
    }
    if let Err(e) = tls.flush().await {
        return Outcome::WriteFailed(e.kind());
    }
    tokio::time::sleep(PAUSE).await;
    read_and_judge(&mut tls, 200, 1 << 20).await
}

/// `POST /reject/2048` with a 16 MiB body, all written (and flushed) before
/// reading: any write error fails the trial.
pub(crate) async fn upload_write_first(addr: SocketAddr, cert: CertificateDer<'static>) -> Outcome {
    let mut tls = match connect(addr, cert, None).await {
        Ok(tls) => tls,
        Err(e) => return Outcome::Connect(e.to_string()),
    };
    let head = format!(
        "POST /reject/2048 HTTP/1.1\r\nHost: lab\r\nContent-Length: {UPLOAD}\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    if let Err(e) = tls.write_all(head.as_bytes()).await {
        return Outcome::WriteFailed(e.kind());
    }
    let chunk = vec![b'u'; 64 << 10];
    for _ in 0..UPLOAD / chunk.len() {
        if let Err(e) = tls.write_all(&chunk).await {
            return Outcome::WriteFailed(e.kind());
        }
    }
    if let Err(e) = tls.flush().await {
        return Outcome::WriteFailed(e.kind());
    }
    read_and_judge(&mut tls, 413, 2048).await
}

/// Runs `trial` against `addr` `trials` times from a client runtime of its
/// own, each bounded by `limit`.
pub(crate) fn run_trials<F, Fut>(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    trials: usize,
    limit: Duration,
    trial: F,
) -> Vec<Outcome>
where
    F: Fn(SocketAddr, CertificateDer<'static>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (0..trials)
        .map(|_| {
            client.block_on(async {
                tokio::time::timeout(limit, trial(addr, cert.clone()))
                    .await
                    .unwrap_or(Outcome::Timeout)
            })
        })
        .collect()
}

/// A TLS server of a test's own, served with the crate or without it.
pub(crate) trait TlsServer: Sized {
    /// Serves the lab app, with lingering close if `linger`.
    fn start(linger: bool) -> Self;
    fn addr(&self) -> SocketAddr;
    fn cert(&self) -> CertificateDer<'static>;
    /// With the crate: its shutdown handle, which reads its counters.
    fn lingers(&self) -> Option<linger::LingerShutdown>;

    /// Runs `trial` `trials` times, each bounded by `limit`.
    fn trials<F, Fut>(&self, trials: usize, limit: Duration, trial: F) -> Vec<Outcome>
    where
        F: Fn(SocketAddr, CertificateDer<'static>) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        run_trials(self.addr(), &self.cert(), trials, limit, trial)
    }

    /// The counters once `started` lingers have begun and none lingers
    /// (bounded by `limit`: the last counters read, otherwise).
    fn settled_stats(&self, started: u64, limit: Duration) -> linger::LingerStats {
        let lingers = self.lingers().expect("a lingering server");
        super::stats::wait_for(
            limit,
            Duration::from_millis(5),
            || lingers.stats(),
            |s| s.started >= started && s.lingering == 0,
        )
        .unwrap_or_else(|s| s)
    }
}

/// Every one of `trials` trials with the crate is whole and its linger
/// ended by the client's close; at least one without it is not (in the
/// same run, so the test can fail).
pub(crate) fn cured<S, F, Fut>(name: &str, trials: usize, limit: Duration, trial: F)
where
    S: TlsServer,
    F: Fn(SocketAddr, CertificateDer<'static>) -> Fut + Copy,
    Fut: std::future::Future<Output = Outcome>,
{
    let server = S::start(true);
    let with = server.trials(trials, limit, trial);
    let stats = server.settled_stats(trials as u64, limit);
    eprintln!("{name} with linger: {with:?}\n  {stats:?}");
    assert!(with.iter().all(Outcome::is_whole), "{name}: {with:?}");
    assert_eq!(stats.started, trials as u64, "{stats:?}");
    assert_eq!(stats.peer_closed, trials as u64, "{stats:?}");
    drop(server);

    let without = S::start(false).trials(trials, limit, trial);
    eprintln!("{name} without linger: {without:?}");
    assert!(
        without.iter().any(|o| !o.is_whole()),
        "{name} never failed without linger, so this test proves nothing here: {without:?}"
    );
}
