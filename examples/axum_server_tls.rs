//! HTTPS with lingering close on axum-server, the way most axum apps serve
//! TLS: a template to copy.
//!
//! ```text
//! cargo run --features axum-server --example axum_server_tls       # https://127.0.0.1:3443
//! PORT=8443 cargo run --features axum-server --example axum_server_tls
//! ```
//!
//! Then, from another shell (`-k`: the certificate is self-signed, made at
//! startup):
//!
//! ```text
//! curl -k https://127.0.0.1:3443/
//! head -c 2097152 /dev/zero > bigfile
//! curl -k -v --data-binary @bigfile https://127.0.0.1:3443/upload   # 413, not a reset
//! ```
//!
//! `LingerAcceptor` sits inside axum-server's `RustlsAcceptor`: it wraps the
//! TCP stream in a `LingerIo` before the handshake, so a close goes out as
//! rustls's close_notify, then the FIN, then the bounded drain; and it wraps
//! the app in the `Linger` middleware with that connection's handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use linger::LingerAcceptor;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a graceful shutdown lets connections finish.
const GRACE: Duration = Duration::from_secs(10);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { format!("{} bytes\n", body.len()) }),
        )
        .layer(DefaultBodyLimit::max(1024 * 1024))
}

/// A rustls configuration with a self-signed certificate for `localhost`,
/// made now. A real server loads its own (`RustlsConfig::from_pem_file`).
fn self_signed() -> RustlsConfig {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("a valid certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    RustlsConfig::from_config(Arc::new(config))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().expect("PORT must be a port number"),
        Err(_) => 3443,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // The default bounds: 5 s idle, 30 s total, 64 MiB;
    // `LingerAcceptor::with_config` takes others.
    let lingering = LingerAcceptor::new();
    let lingers = lingering.shutdown_handle();
    let handle = axum_server::Handle::new();

    // Ctrl-C: axum-server stops accepting and hyper makes the responses in
    // flight say `Connection: close`; `begin` cuts every linger to the short
    // deadline (2 s).
    let stopping = handle.clone();
    let shutdown = lingers.clone();
    tokio::spawn(async move {
        tokio::signal::ctrl_c().await.ok();
        shutdown.begin();
        stopping.graceful_shutdown(Some(GRACE));
    });

    println!("listening on https://{addr} (self-signed: use curl -k)");
    axum_server::bind(addr)
        .acceptor(RustlsAcceptor::new(self_signed()).acceptor(lingering))
        .handle(handle)
        .serve(app().into_make_service())
        .await?;
    // Lingers on tasks of their own: those detached before the shutdown
    // (the default) and those of connections axum-server dropped at the end
    // of the grace period. Lingers that began after `begin` ran in place,
    // and axum-server waited for them.
    let _ = tokio::time::timeout(GRACE, lingers.wait()).await;
    println!("stopped: {:?}", lingers.stats());
    Ok(())
}
