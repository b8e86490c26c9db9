//! Lingering close on axum-server over real TLS sockets: the lab app served
//! by axum-server with `RustlsAcceptor`, once alone and once with
//! `LingerAcceptor` nested inside it. Each scenario fails with axum-server
//! alone (in the same run, so the test can fail) and is whole with the
//! crate: an early 413 to a client that writes a 16 MiB body first, a
//! pipelined request after a close response, and a graceful shutdown in the
//! middle of a conversation.

#![cfg(feature = "axum-server")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use linger::{LingerAcceptor, LingerConfig, LingerShutdown};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::lab::{self, Gate};
use support::tls_trials::{pipelined_after_close, upload_write_first, TlsServer, Trial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Trials per scenario and server.
const TRIALS: usize = 4;
/// The bound on one trial, and on each wait here.
const BOUND: Duration = Duration::from_secs(20);

fn rustls_config() -> (RustlsConfig, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (RustlsConfig::from_config(Arc::new(config)), cert)
}

struct Server {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    handle: axum_server::Handle<SocketAddr>,
    lingers: Option<LingerShutdown>,
    /// `/slow`: 256 KiB once the gate opens.
    gate: Gate,
}

impl TlsServer for Server {
    fn start(linger: bool) -> Self {
        let rt = support::runtime::runtime();
        let (config, cert) = rustls_config();
        let handle = axum_server::Handle::new();
        let gate = Gate::default();
        let make = gate
            .route(lab::app(), "/slow", 256 << 10)
            .into_make_service();
        let lingering = LingerAcceptor::with_config(
            LingerConfig::new().with_short_deadline(Duration::from_secs(1)),
        );
        let lingers = linger.then(|| lingering.shutdown_handle());
        let server = axum_server::bind("127.0.0.1:0".parse().unwrap()).handle(handle.clone());
        rt.spawn(async move {
            let served = if linger {
                server
                    .acceptor(RustlsAcceptor::new(config).acceptor(lingering))
                    .serve(make)
                    .await
            } else {
                server
                    .acceptor(RustlsAcceptor::new(config))
                    .serve(make)
                    .await
            };
            if let Err(e) = served {
                eprintln!("axum-server stopped: {e}");
            }
        });
        let addr = rt
            .block_on(async { tokio::time::timeout(BOUND, handle.listening()).await })
            .expect("listening in time")
            .expect("an address");
        Self {
            rt,
            addr,
            cert,
            handle,
            lingers,
            gate,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    fn lingers(&self) -> Option<LingerShutdown> {
        self.lingers.clone()
    }
}

fn cured(name: &str, trial: Trial) {
    support::tls_trials::cured::<Server>(name, TRIALS, BOUND, trial);
}

#[test]
fn early_413_to_a_client_that_writes_the_whole_upload_first() {
    cured("reject-upload-write-first", upload_write_first);
}

#[test]
fn pipelined_request_after_a_1_mib_close_response() {
    cured("pipelined-after-1mib-close", pipelined_after_close);
}

/// What the client of a graceful shutdown saw: the response in flight,
/// whether it said `Connection: close`, and whether the connection ended
/// with close_notify and a clean FIN.
#[derive(Debug)]
struct ShutdownSeen {
    body: usize,
    says_close: bool,
    clean: Result<(), String>,
}

/// A keep-alive TLS client is mid-conversation: `/slow` is in flight with a
/// 64 KiB request pipelined behind it when the shutdown begins.
fn shutdown_mid_conversation(server: &Server) -> ShutdownSeen {
    let config = support::tls::client_config(server.cert.clone());
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tls = client
        .block_on(support::tls::connect(server.addr, config, Some(16 << 10)))
        .unwrap();
    let request = [
        b"GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec(),
        support::scenarios::big_get("/ok"),
    ]
    .concat();
    client.block_on(tls.write_all(&request)).unwrap();
    // The handler is running: begin the shutdown, then let it answer once
    // axum-server has told the connections (an idle one closes).
    support::wait::wait_until(BOUND, Duration::from_millis(1), || {
        server.gate.entered() > 0
    })
    .expect("the handler was entered");
    let mut idle = client
        .block_on(support::tls::connect(
            server.addr,
            support::tls::client_config(server.cert.clone()),
            None,
        ))
        .unwrap();
    if let Some(lingers) = &server.lingers {
        lingers.begin();
    }
    server.handle.graceful_shutdown(Some(BOUND));
    let mut byte = [0u8; 1];
    let _ = client.block_on(async { tokio::time::timeout(BOUND, idle.read(&mut byte)).await });
    server.gate.open();
    client.block_on(async {
        let mut got = Vec::new();
        let read = tokio::time::timeout(BOUND, tls.read_to_end(&mut got)).await;
        let head = support::client::Head::parse(&got).and_then(Result::ok);
        let body = head.as_ref().map_or(0, |h| got.len() - h.len);
        let clean = match read {
            Ok(Ok(_)) => support::tls::tcp_end_is_clean(tls.get_mut().0).await,
            Ok(Err(e)) => Err(format!("TLS read: {e}")),
            Err(_) => Err("no end in time".into()),
        };
        ShutdownSeen {
            body,
            says_close: head.is_some_and(|h| h.closes()),
            clean,
        }
    })
}

#[test]
fn graceful_shutdown_in_the_middle_of_a_conversation() {
    let server = Server::start(true);
    let with = shutdown_mid_conversation(&server);
    eprintln!("with LingerAcceptor: {with:?}");
    assert_eq!(with.body, 256 << 10, "{with:?}");
    assert!(with.says_close, "{with:?}");
    assert_eq!(with.clean, Ok(()), "{with:?}");
    let lingers = server.lingers.clone().unwrap();
    server
        .rt
        .block_on(async { tokio::time::timeout(BOUND, lingers.wait()).await })
        .expect("every linger ended");
    drop(server);

    let server = Server::start(false);
    let without = shutdown_mid_conversation(&server);
    eprintln!("with axum-server alone: {without:?}");
    assert!(
        without.body != 256 << 10 || without.clean.is_err(),
        "axum-server alone delivered it whole, so this proves nothing: {without:?}"
    );
}
