//! Lingering close under TLS, over loopback: the lab app served over
//! `TlsStream<LingerIo<TcpStream>>` with the middleware around the whole app
//! (it finds each connection's handle under TLS), and the same TLS server
//! over a plain `TcpListener` to show the tests can fail here. The trials'
//! client is a blocking rustls one running the reset lab's scenarios (the
//! `close_notify` test's is tokio-rustls), trusting a certificate made at
//! test time.
//!
//! A clean end under TLS is the server's `close_notify` (rustls's reader
//! returns `Ok(0)`) followed by the TCP FIN (a raw read returns 0) and no
//! reset left pending on the socket.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use linger::{LingerLayer, LingerListener, LingerShutdown};
use rustls::pki_types::CertificateDer;
use support::lab;
use support::probe::Outcome;
use support::tls::{self_signed_acceptor, TestTlsListener};
use support::tls_trials::{pipelined_after_close, upload_write_first, TlsServer, Trial};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tower::Layer;

/// Trials per scenario and server.
const TRIALS: usize = 4;
/// The longest one trial may take, all of its awaits together.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(20);

struct Server {
    /// Serves until the test drops it.
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    /// With the crate: its counters.
    shutdown: Option<LingerShutdown>,
}

impl TlsServer for Server {
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

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    fn lingers(&self) -> Option<LingerShutdown> {
        self.shutdown.clone()
    }
}

fn cured(name: &str, trial: Trial) {
    support::tls_trials::cured::<Server>(name, TRIALS, TRIAL_TIMEOUT, trial);
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

/// A client that reads its close response to the server's `close_notify`,
/// answers with its own, then closes: the linger discards that alert and
/// nothing else, which a plain close would have answered with a harmless
/// reset after the client had read everything. It is counted as bytes
/// discarded, not as a reset prevented. A pipelined request is.
#[test]
fn a_client_answering_close_notify_is_no_reset_prevented() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(true);
    let config = support::tls::client_config(server.cert.clone());
    server.rt.block_on(async {
        let mut tls = support::tls::connect(server.addr, config, None)
            .await
            .unwrap();
        tls.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        timeout(TRIAL_TIMEOUT, tls.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got.ends_with(&[b'b'; 16]));
        // The client's close_notify, then its FIN.
        tls.shutdown().await.unwrap();
    });
    let stats = server.settled_stats(1, TRIAL_TIMEOUT);
    assert_eq!(stats.started, 1, "{stats:?}");
    assert!(
        stats.bytes_discarded > 0,
        "no close_notify was discarded: {stats:?}"
    );
    assert_eq!(stats.resets_prevented, 0, "{stats:?}");

    let with = server.trials(TRIALS, TRIAL_TIMEOUT, pipelined_after_close);
    assert!(with.iter().all(Outcome::is_whole), "{with:?}");
    let stats = server.settled_stats(1 + TRIALS as u64, TRIAL_TIMEOUT);
    assert_eq!(stats.resets_prevented, TRIALS as u64, "{stats:?}");
}
