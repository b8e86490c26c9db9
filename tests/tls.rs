//! Lingering close under TLS, over loopback: the lab app served through
//! `examples/tls.rs`'s `TlsListener` (`TlsStream<LingerIo<TcpStream>>`), and
//! the same TLS server over a plain `TcpListener` to show the tests can fail
//! here. The client is tokio-rustls, trusting a certificate made at test
//! time.
//!
//! A clean end under TLS is the server's `close_notify` (rustls's reader
//! returns `Ok(0)`) followed by the TCP FIN (a raw read returns 0) and no
//! reset left pending on the socket.

#[path = "../examples/reset_lab/lab.rs"]
mod lab;
#[path = "../examples/tls.rs"]
mod tls_example;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linger::{LingerLayer, LingerListener, LingerShutdown, LingerStats};
use rustls::pki_types::{CertificateDer, ServerName};
use tls_example::TlsListener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

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

/// The same TLS server without the crate: a plain `TcpListener` under the
/// same acceptor.
struct PlainTlsListener {
    inner: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for PlainTlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Bounded only by the test: the server runtime is dropped with it.
        loop {
            let Ok((tcp, peer)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if let Ok(Ok(tls)) = timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (acceptor, cert) = tls_example::self_signed_acceptor();
        let (addr, shutdown) = rt.block_on(async {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if linger {
                let listener = TlsListener::new(LingerListener::new(tcp), acceptor);
                let shutdown = listener.shutdown_handle();
                tokio::spawn(async move {
                    axum::serve(listener, lab::app().layer(LingerLayer::new()))
                        .await
                        .ok();
                });
                (addr, Some(shutdown))
            } else {
                let listener = PlainTlsListener {
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
    /// was not clean (`raw` says what a raw read saw, `pending` the
    /// socket's error).
    WholeUncleanTcp { raw: String, pending: String },
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

fn client_config(cert: CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS connection to `addr`; `rcvbuf` is set before connecting so the
/// window the server sees is small from the first segment.
async fn connect(
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    rcvbuf: Option<u32>,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(addr).await?;
    let connector = TlsConnector::from(Arc::new(client_config(cert)));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\n{extra_headers}\r\n").into_bytes()
}

/// The status and total length of the first response in `bytes`, once it is
/// complete.
fn first_response(bytes: &[u8]) -> Option<Result<(u16, usize), String>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad head: {head:?}"));
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("no content-length: {head:?}"));
    match (status, length) {
        (Ok(status), Ok(length)) => {
            (bytes.len() >= head_end + length).then_some(Ok((status, head_end + length)))
        }
        (Err(e), _) | (_, Err(e)) => Some(Err(e)),
    }
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
        Some(Ok((got_status, len))) => {
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
    let mut byte = [0u8; 1];
    let raw = timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pending = tcp.take_error();
    match (raw, pending) {
        (Ok(Ok(0)), Ok(None)) => Outcome::Whole,
        (raw, pending) => Outcome::WholeUncleanTcp {
            raw: format!("{raw:?}"),
            pending: format!("{pending:?}"),
        },
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

/// The minimal template's plain paths work: hello, an upload under the
/// limit (keep-alive), and a clean TLS close when the client asks for it.
#[test]
fn template_app_serves_over_tls() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (acceptor, cert) = tls_example::self_signed_acceptor();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener::new(LingerListener::new(tcp), acceptor);
        tokio::spawn(async move { axum::serve(listener, tls_example::app()).await.ok() });
        timeout(TRIAL_TIMEOUT, async {
            let mut tls = connect(addr, cert, None).await.unwrap();
            let upload = "POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: 10\r\n\r\n\
                          some bytes\
                          GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
            tls.write_all(upload.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            let mut got = Vec::new();
            tls.read_to_end(&mut got).await.unwrap();
            let got = String::from_utf8(got).unwrap();
            assert!(got.contains("\r\n\r\n10 bytes\n"), "{got}");
            assert!(got.ends_with("\r\n\r\nhello\n"), "{got}");
            assert_eq!(tcp_end(tls.get_mut().0).await, Outcome::Whole);
        })
        .await
        .expect("timed out");
    });
}
