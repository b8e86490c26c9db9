//! Lingering close under TLS, over loopback: the lab app served over
//! `TlsStream<LingerIo<TcpStream>>` with the middleware around the whole app
//! (it finds each connection's handle under TLS), and the same TLS server
//! over a plain `TcpListener` to show the tests can fail here. The client is tokio-rustls, trusting a certificate made at test
//! time.
//!
//! A clean end under TLS is the server's `close_notify` (rustls's reader
//! returns `Ok(0)`) followed by the TCP FIN (a raw read returns 0) and no
//! reset left pending on the socket.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use linger::{LingerLayer, LingerListener, LingerShutdown, LingerStats};
use rustls::pki_types::CertificateDer;
use support::client::first_response;
use support::lab;
use support::tls::{self_signed_acceptor, tcp_end_is_clean, TestTlsListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client;
use tower::Layer;

/// Trials per scenario and server.
const TRIALS: usize = 4;
/// The longest one trial may take, all of its awaits together.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the pipelining client waits before it reads.
const PAUSE: Duration = Duration::from_millis(100);
/// The rejected upload: 16 MiB.
const UPLOAD: usize = 16 << 20;
/// Bytes of padding in the pipelined request: well past hyper's first read.
const EXTRA: usize = 64 << 10;

struct Server {
    /// Serves until the test drops it.
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    /// With the crate: its counters.
    shutdown: Option<LingerShutdown>,
}

impl Server {
    fn start(linger: bool) -> Self {
        let rt = support::runtime::runtime();
        let (acceptor, cert) = self_signed_acceptor();
        let (addr, shutdown) = rt.block_on(async {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if linger {
                let inner = LingerListener::new(tcp);
                let shutdown = inner.shutdown_handle();
                let listener = TestTlsListener { inner, acceptor };
                tokio::spawn(async move {
                    axum::serve(listener, LingerLayer::new().layer(lab::app()))
                        .await
                        .ok();
                });
                (addr, Some(shutdown))
            } else {
                let listener = TestTlsListener {
                    inner: tcp,
                    acceptor,
                };
                tokio::spawn(async move { axum::serve(listener, lab::app()).await.ok() });
                (addr, None)
            }
        });
        Self {
            rt,
            addr,
            cert,
            shutdown,
        }
    }

    /// Runs `trial` `TRIALS` times from a client runtime of its own.
    fn trials<F, Fut>(&self, trial: F) -> Vec<Outcome>
    where
        F: Fn(SocketAddr, CertificateDer<'static>) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (0..TRIALS)
            .map(|_| {
                client.block_on(async {
                    timeout(TRIAL_TIMEOUT, trial(self.addr, self.cert.clone()))
                        .await
                        .unwrap_or(Outcome::Timeout)
                })
            })
            .collect()
    }

    /// The counters once no connection lingers (bounded wait).
    fn settled_stats(&self) -> LingerStats {
        let shutdown = self.shutdown.clone().expect("a lingering server");
        self.rt.block_on(async {
            let _ = timeout(Duration::from_secs(10), shutdown.wait()).await;
            shutdown.stats()
        })
    }
}

/// How one trial ended, from the client's side.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
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
    fn is_whole(&self) -> bool {
        *self == Outcome::Whole
    }
}

async fn connect(
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    rcvbuf: Option<u32>,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    support::tls::connect(addr, support::tls::client_config(cert), rcvbuf).await
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
async fn pipelined_after_close(addr: SocketAddr, cert: CertificateDer<'static>) -> Outcome {
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
async fn upload_write_first(addr: SocketAddr, cert: CertificateDer<'static>) -> Outcome {
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

/// Every trial with the crate is whole, every linger ended by the client's
/// close; at least one trial without it is not.
fn cured<F, Fut>(name: &str, trial: F)
where
    F: Fn(SocketAddr, CertificateDer<'static>) -> Fut + Copy,
    Fut: std::future::Future<Output = Outcome>,
{
    let server = Server::start(true);
    let with = server.trials(trial);
    assert!(
        with.iter().all(Outcome::is_whole),
        "{name} with linger: {with:?}"
    );
    let stats = server.settled_stats();
    eprintln!("{name} with linger: {with:?}\n  {stats:?}");
    assert_eq!(stats.started, TRIALS as u64, "{stats:?}");
    assert_eq!(stats.peer_closed, TRIALS as u64, "{stats:?}");
    drop(server);

    let without = Server::start(false).trials(trial);
    eprintln!("{name} without linger: {without:?}");
    assert!(
        without.iter().any(|o| !o.is_whole()),
        "{name} without linger never failed over TLS, so this test proves nothing here: {without:?}"
    );
}

/// The 1 MiB body arrives whole, then `close_notify` and a FIN. Without the
/// crate the unread pipelined request makes the close a reset that destroys
/// the body: the client decrypts 0 or 16 KiB of it before `ECONNRESET`, or
/// the reset already fails the write of its pipelined request.
#[test]
fn pipelined_request_after_a_1_mib_close_response() {
    cured("pipelined-after-1mib-close", pipelined_after_close);
}

/// The 413 arrives whole after the client wrote all 16 MiB (the server's
/// lingers discard them, about 16.8 MB each with the TLS framing). Without
/// the crate the client's writes fail with a broken pipe.
#[test]
fn early_413_to_a_client_that_writes_the_whole_upload_first() {
    cured("reject-upload-write-first", upload_write_first);
}
