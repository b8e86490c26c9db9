//! TLS for the tests: a certificate made at test time, a server listener
//! that runs the handshake over any axum listener's IO, and rustls clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

/// How long the test listener waits for one handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS acceptor with a self-signed certificate for `localhost`, made now
/// (HTTP/1.1 by ALPN), and that certificate.
pub(crate) fn self_signed_acceptor() -> (TlsAcceptor, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("a valid certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (TlsAcceptor::from(Arc::new(config)), cert)
}

/// An axum listener that runs the TLS handshake over what `inner` accepts,
/// one at a time (enough for well-behaved test clients).
pub(crate) struct TestTlsListener<L> {
    pub(crate) inner: L,
    pub(crate) acceptor: TlsAcceptor,
}

impl<L: axum::serve::Listener> axum::serve::Listener for TestTlsListener<L> {
    type Io = tokio_rustls::server::TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, peer) = self.inner.accept().await;
            let handshake = self.acceptor.accept(io);
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A client configuration that trusts `cert` only.
pub(crate) fn client_config(cert: CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client configuration that accepts any server certificate (and checks
/// its signatures): for a server whose certificate the test cannot see,
/// the TLS example's, made at its start.
pub(crate) fn client_config_trusting_any() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to `addr` as `localhost`; `rcvbuf` is set before
/// connecting so the window the server sees is small from the first segment.
pub(crate) async fn connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    rcvbuf: Option<u32>,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(addr).await?;
    let connector = TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// After `close_notify`: whether the TCP connection ended with a FIN (a raw
/// read returns 0 within 5 s) and no reset pending on the socket; what was
/// seen otherwise.
pub(crate) async fn tcp_end_is_clean(tcp: &mut TcpStream) -> Result<(), String> {
    let mut byte = [0u8; 1];
    let raw = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pending = tcp.take_error();
    match (raw, pending) {
        (Ok(Ok(0)), Ok(None)) => Ok(()),
        (raw, pending) => Err(format!("raw read {raw:?}, pending error {pending:?}")),
    }
}
