//! HTTPS with lingering close: axum over rustls through a custom listener. A
//! template to copy.
//!
//! ```text
//! cargo run --example tls                 # listens on https://127.0.0.1:3443
//! PORT=8443 cargo run --example tls       # or on another port
//! RUST_LOG=linger=debug cargo run --example tls   # log every lingering close
//! ```
//!
//! Then, from another shell (`-k`: the certificate is self-signed, made at
//! startup, so curl cannot verify it):
//!
//! ```text
//! curl -k https://127.0.0.1:3443/
//! curl -k --data-binary 'some bytes' https://127.0.0.1:3443/upload
//! head -c 2097152 /dev/zero > bigfile
//! curl -k -v --data-binary @bigfile https://127.0.0.1:3443/upload   # 413, not a reset
//! ```
//!
//! Stop it with Ctrl-C.
//!
//! The layering is TLS over `LingerIo` over TCP: `TlsStream<LingerIo<TcpStream>>`.
//! When hyper ends a connection it calls the TLS stream's `poll_shutdown`,
//! so the close goes out on the wire in this order: rustls's `close_notify`
//! alert, then `LingerIo`'s half-close (the FIN after the last byte), then
//! the bounded drain of whatever the client still sends, then the close.
//! The drain reads below TLS: it discards raw TCP bytes and never decrypts.

// `tests/tls.rs` reuses this file's listener and certificate helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerIo, LingerLayer, LingerListener, LingerShutdown};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The largest upload `/upload` reads.
const UPLOAD_LIMIT: usize = 1024 * 1024;
/// How long a client may take over its TLS handshake. Handshakes run inside
/// the listener's `accept`, one at a time, so this also bounds how long one
/// slow client can hold up the next accept.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for lingering connections after axum is done.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An `axum::serve::Listener` that accepts TCP connections as `LingerIo`s
/// and runs the TLS handshake over them.
///
/// Accept errors are logged and retried (after a short sleep: out of file
/// descriptors, say); failed or timed-out handshakes are logged and skipped.
/// A connection dropped after a failed handshake still closes lingering (the
/// client did send its hello), so an alert rustls wrote is not lost to a reset.
///
/// Handshakes here are sequential. A server that must take many slow
/// handshakes at once does them in its connection tasks instead: a
/// hand-written hyper-util loop (see `examples/hyper.rs`) that calls
/// `LingerListener::accept`, then `acceptor.accept(io)` on the spawned task.
pub(crate) struct TlsListener {
    inner: LingerListener<TcpListener>,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Serves TLS with `acceptor` on the connections `inner` accepts.
    pub(crate) fn new(inner: LingerListener<TcpListener>, acceptor: TlsAcceptor) -> Self {
        Self { inner, acceptor }
    }

    /// Graceful shutdown for the lingering connections (see `main`).
    pub(crate) fn shutdown_handle(&self) -> LingerShutdown {
        self.inner.shutdown_handle()
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<LingerIo<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // `LingerListener<TcpListener>`'s own `accept` (an `io::Result`),
            // not the axum trait's, so the errors are ours to handle.
            let (io, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(io)).await {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.get_ref().local_addr()
    }
}

/// A TLS acceptor with a self-signed certificate for `localhost`, made now,
/// and that certificate (for a client that should trust it).
///
/// For the example and the tests only: a real server loads its own
/// certificate chain and key (from PEM files, say, with
/// `rustls::pki_types::pem::PemObject`) instead.
pub(crate) fn self_signed_acceptor() -> (TlsAcceptor, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    // ring, named explicitly: no process-wide default provider needed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a valid certificate and key");
    // HTTP/1.1 only, as `curl` negotiates it by ALPN. For HTTP/2 over TLS
    // add `b"h2".to_vec()` first: axum's server picks the protocol from the
    // connection's first bytes, whatever ALPN said.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (TlsAcceptor::from(Arc::new(config)), cert)
}

/// The application: `GET /` says hello, `POST /upload` returns the length
/// of the body it read, at most [`UPLOAD_LIMIT`] bytes (413 past it).
///
/// `LingerLayer::new()` is the minimal form: through this custom listener
/// it finds no connection `Handle` in the request (no `LingerConnectInfo`),
/// and that is fine. It still makes every response that ends its
/// connection say `Connection: close` (the 413 whose body it left unread,
/// here), and each `LingerIo` decides on its own, from what it saw, to
/// linger: over TLS the client always sent bytes (its hello at least), so a
/// connection lingers whenever the client has not closed first.
pub(crate) fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { format!("{} bytes\n", body.len()) }),
        )
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .layer(LingerLayer::new())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // `RUST_LOG=linger=debug` shows how each lingering close ended.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().expect("PORT must be a port number"),
        Err(_) => 3443,
    };
    // A real server loads its own certificate here.
    let (acceptor, _cert) = self_signed_acceptor();
    // The default bounds: 5 s idle, 30 s total, 64 MiB;
    // `LingerListener::with_config` takes others.
    let tcp = LingerListener::new(TcpListener::bind(("127.0.0.1", port)).await?);
    let listener = TlsListener::new(tcp, acceptor);
    let shutdown = listener.shutdown_handle();
    tracing::info!(
        "listening on https://{} (self-signed: use curl -k)",
        axum::serve::Listener::local_addr(&listener)?
    );

    // Ctrl-C begins the shutdown: axum stops accepting and waits for its
    // connections (a linger hyper runs through `poll_shutdown` is part of
    // them); every linger is cut to the short deadline (2 s).
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    axum::serve(listener, app())
        .with_graceful_shutdown(shutdown.on(ctrl_c))
        .await?;
    // Then the lingers of connections hyper dropped without a shutdown
    // (after an error), which run on tasks of their own.
    match tokio::time::timeout(SHUTDOWN_GRACE, shutdown.wait()).await {
        Ok(()) => tracing::info!("all connections closed: {:?}", shutdown.stats()),
        Err(_) => tracing::warn!("gave up waiting for lingers after {SHUTDOWN_GRACE:?}"),
    }
    Ok(())
}
