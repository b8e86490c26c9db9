//! HTTPS with lingering close: axum over rustls through a custom listener. A
//! template to copy.
//!
//! ```text
//! cargo run --features tokio-rustls --example tls                 # listens on https://127.0.0.1:3443
//! PORT=8443 cargo run --features tokio-rustls --example tls       # or on another port
//! RUST_LOG=linger=debug cargo run --features tokio-rustls --example tls   # log every lingering close
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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use linger::{LingerIo, LingerLayer, LingerListener, LingerShutdown};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::Layer;

/// The largest upload `/upload` reads.
const UPLOAD_LIMIT: usize = 1024 * 1024;
/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may run at once; past it, accepting waits.
const MAX_HANDSHAKES: usize = 1024;
/// How long shutdown waits for lingering connections after axum is done.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An `axum::serve::Listener` that accepts TCP connections as `LingerIo`s
/// and runs each TLS handshake on a task of its own, off the accept path
/// (as axum-server and tls-listener do): a client that connects and never
/// sends its hello holds up nobody but itself, for at most
/// [`HANDSHAKE_TIMEOUT`]. At most [`MAX_HANDSHAKES`] run at once.
///
/// Accept errors are logged and retried after a short sleep (out of file
/// descriptors, say); failed or timed-out handshakes are logged and
/// dropped. A connection dropped after a failed handshake still closes
/// lingering (the client did send its hello), so an alert rustls wrote is
/// not lost to a reset.
struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<LingerIo<TcpStream>>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Serves TLS with `acceptor` on the connections `inner` accepts. The
    /// accept loop runs on a task of its own, until this listener is
    /// dropped.
    fn new(inner: LingerListener<TcpListener>, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local_addr = inner.get_ref().local_addr()?;
        let (ready, handshaken) = mpsc::channel(64);
        tokio::spawn(accept_loop(inner, acceptor, ready));
        Ok(Self {
            handshaken,
            local_addr,
        })
    }
}

async fn accept_loop(
    inner: LingerListener<TcpListener>,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<LingerIo<TcpStream>>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        // `LingerListener<TcpListener>`'s own `accept` (an `io::Result`),
        // not the axum trait's, so the errors are ours to handle.
        let accepted = tokio::select! {
            accepted = inner.accept() => accepted,
            () = ready.closed() => return,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<LingerIo<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (it never does while we hold the
            // receiver): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// A TLS acceptor with a self-signed certificate for `localhost`, made now,
/// and that certificate (for a client that should trust it).
///
/// For the example only: a real server loads its own
/// certificate chain and key (from PEM files, say, with
/// `rustls::pki_types::pem::PemObject`) instead.
fn self_signed_acceptor() -> (TlsAcceptor, CertificateDer<'static>) {
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
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { format!("{} bytes\n", body.len()) }),
        )
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
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
    let tcp = LingerListener::bind(("127.0.0.1", port)).await?;
    let shutdown: LingerShutdown = tcp.shutdown_handle();
    let listener = TlsListener::new(tcp, acceptor)?;
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
    // `LingerLayer` around the whole app finds each connection's handle
    // under TLS (`TlsStream<LingerIo<_>>`, with linger's `tokio-rustls`
    // feature) and makes the 413 that leaves its upload unread say
    // `Connection: close`.
    axum::serve(listener, LingerLayer::new().layer(app()))
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
