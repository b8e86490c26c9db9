//! TLS for the tests: a certificate made at test time, a server listener
//! that runs the handshake over any axum listener's IO, and rustls clients:
//! tokio-rustls ones, and a blocking one the reset lab's scenarios run over
//! ([`TlsClient`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

use super::client::PendingError;

/// How long the test listener, and the blocking client, wait for one
/// handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the clients wait, after the raw read that saw the FIN, before
/// they ask the socket whether a reset followed it.
const SETTLE: Duration = Duration::from_millis(20);

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
    tokio::time::sleep(SETTLE).await;
    let pending = tcp.take_error();
    match (raw, pending) {
        (Ok(Ok(0)), Ok(None)) => Ok(()),
        (raw, pending) => Err(format!("raw read {raw:?}, pending error {pending:?}")),
    }
}

/// A blocking TLS client over a [`super::client::connect`]ed socket (every
/// read and write bounded by [`super::client::IO_TIMEOUT`]), for the reset
/// lab's scenarios over TLS.
///
/// Its [`PendingError`] is the clean end under TLS: once the TLS stream has
/// read `close_notify` (`Ok(0)`), the TCP connection must end with a FIN (a
/// raw read returns 0 within the read timeout) and no reset pending;
/// anything else is reported as an error, which
/// [`super::client::read_to_end`] counts as an EOF then a reset. A TLS
/// stream that ends without `close_notify` fails its read with
/// `UnexpectedEof` instead, and a reset with `ConnectionReset`.
#[derive(Debug)]
pub(crate) struct TlsClient {
    tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl TlsClient {
    /// Connects to `addr` as `localhost`, trusting `cert` only, and
    /// completes the handshake within [`HANDSHAKE_TIMEOUT`]; `rcvbuf` is
    /// set before connecting, as [`super::client::connect`] does.
    pub(crate) fn connect(
        addr: SocketAddr,
        cert: CertificateDer<'static>,
        rcvbuf: Option<usize>,
    ) -> io::Result<Self> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut tcp = super::client::connect(addr, rcvbuf)?;
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let mut conn = rustls::ClientConnection::new(Arc::new(client_config(cert)), name)
            .map_err(io::Error::other)?;
        // Each call reads or writes at least once, each bounded by the
        // socket's timeouts, or fails.
        while conn.is_handshaking() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no TLS handshake in time",
                ));
            }
            conn.complete_io(&mut tcp)?;
        }
        Ok(Self {
            tls: rustls::StreamOwned::new(conn, tcp),
        })
    }
}

impl Read for TlsClient {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(buf)
    }
}

impl Write for TlsClient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tls.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush()
    }
}

impl PendingError for TlsClient {
    /// After `close_notify`: `None` if the TCP connection ended with a FIN
    /// and no reset; otherwise an error saying what was seen.
    fn pending_error(&self) -> io::Result<Option<io::Error>> {
        let mut tcp = &self.tls.sock;
        let mut byte = [0u8; 1];
        // Bounded by the socket's read timeout.
        let raw = tcp.read(&mut byte);
        std::thread::sleep(SETTLE);
        let pending = tcp.take_error();
        Ok(match (raw, pending) {
            (Ok(0), Ok(None)) => None,
            (raw, pending) => Some(io::Error::other(format!(
                "after close_notify: raw read {raw:?}, pending error {pending:?}"
            ))),
        })
    }
}
