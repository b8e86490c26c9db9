//! HTTP/1 upgrades through `LingerIo`, over loopback: a minimal
//! WebSocket-style upgrade (`Connection: upgrade`, `Upgrade: echo`, answered
//! `101`) whose upgraded connection echoes bytes, served by a hand-written
//! hyper-util accept loop.
//!
//! After the `101`, hyper hands the IO (`LingerIo` inside) to the upgrade
//! and never calls `poll_shutdown` on it: the upgraded connection closes
//! when the application drops it, and a dropped `LingerIo` decides then, on
//! a task of its own, whether to linger:
//!
//! - while live, nothing lingers: reads and writes pass through;
//! - the client closes first: the server's read sees EOF, and a `LingerIo`
//!   that saw EOF closes without lingering (nothing can be in flight);
//! - the server drops it while the client is still sending: it lingers, so
//!   the client sees a FIN, not a reset (a plain `TcpStream` resets);
//! - `ConnectionHandle::disable_linger()` from the handler opts that
//!   connection out: it closes at once (and, with input unread, the kernel
//!   resets it).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use linger::{ConnectionHandle, LingerLayer, LingerListener, LingerShutdown, LingerStats};
use support::client::{read_response_async, read_to_end_async, End};
use support::stats::settled;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower::Layer;

/// Every await's bound.
const WAIT: Duration = Duration::from_secs(10);
/// The most connections a test server accepts.
const MAX_CONNECTIONS: usize = 8;
/// Bytes the client sends after `quit`: far more than the server's echo
/// buffer, so most of them are unread when the server drops the connection.
const EXTRA: usize = 64 << 10;
/// The server's echo read buffer.
const ECHO_BUF: usize = 1024;

/// How the server's echo ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Its read returned EOF: the client closed its side.
    Eof,
    /// It read `quit` and dropped the connection without reading the rest.
    Quit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// `LingerIo` connections, `LingerLayer::with_handle`.
    Linger,
    /// As `Linger`, and the handler calls `ConnectionHandle::disable_linger()`.
    LingerDisabled,
    /// Plain `TcpStream`s, no middleware.
    Plain,
}

struct Server {
    addr: SocketAddr,
    /// With the crate: its counters.
    lingers: Option<LingerShutdown>,
    /// One message per upgraded connection, sent after the server dropped it.
    ended: mpsc::UnboundedReceiver<Ended>,
}

impl Server {
    fn stats(&self) -> LingerStats {
        self.lingers.as_ref().expect("a lingering server").stats()
    }

    /// Waits (bounded) until no connection lingers; returns the counters.
    async fn settled(&self) -> LingerStats {
        let lingers = self.lingers.as_ref().expect("a lingering server");
        settled(lingers, 0, WAIT)
            .await
            .unwrap_or_else(|stats| panic!("a linger did not end: {stats:?}"))
    }
}

/// The handler: `101` for `Upgrade: echo`, then echoes on its own task;
/// `426` for anything else.
fn respond<B>(
    mut req: Request<B>,
    handle: Option<ConnectionHandle>,
    disable_linger: bool,
    ended: mpsc::UnboundedSender<Ended>,
) -> Response<Empty<Bytes>> {
    let wants_echo = req
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"echo"));
    if !wants_echo {
        let mut res = Response::new(Empty::new());
        *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return res;
    }
    if disable_linger {
        // The upgraded protocol closes on its own terms: no linger.
        handle.expect("a LingerIo connection").disable_linger();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(Ok(upgraded)) = timeout(WAIT, on_upgrade).await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut buf = vec![0u8; ECHO_BUF];
        let mut how = None;
        // Bounded by the test's traffic; every read under a timeout.
        for _ in 0..10_000 {
            let n = match timeout(WAIT, io.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => break,
            };
            if n == 0 {
                how = Some(Ended::Eof);
                break;
            }
            if buf[..n].starts_with(b"quit") {
                how = Some(Ended::Quit);
                break;
            }
            if timeout(WAIT, io.write_all(&buf[..n])).await.is_err() {
                break;
            }
        }
        // Closed here, without a shutdown: the way a dropped WebSocket ends.
        drop(io);
        if let Some(how) = how {
            let _ = ended.send(how);
        }
    });
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    res.headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
    res.headers_mut()
        .insert(UPGRADE, http::HeaderValue::from_static("echo"));
    res
}

fn serve_connection<I, S>(io: I, svc: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<Empty<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
        let _ = timeout(WAIT, conn).await;
    });
}

async fn start(serve: Serve) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let lingers = match serve {
        Serve::Plain => {
            tokio::spawn(async move {
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((io, _)) = tcp.accept().await else {
                        continue;
                    };
                    let ended = ended_tx.clone();
                    let svc = tower::service_fn(move |req: Request<Incoming>| {
                        let res = respond(req, None, false, ended.clone());
                        async move { Ok::<_, Infallible>(res) }
                    });
                    serve_connection(io, svc);
                }
            });
            None
        }
        Serve::Linger | Serve::LingerDisabled => {
            let listener = LingerListener::new(tcp);
            let lingers = listener.shutdown_handle();
            let disable = serve == Serve::LingerDisabled;
            tokio::spawn(async move {
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((io, _)) = listener.accept().await else {
                        continue;
                    };
                    let handle = io.handle().clone();
                    let ended = ended_tx.clone();
                    let svc = LingerLayer::with_handle(handle.clone()).layer(tower::service_fn(
                        move |req| {
                            let res = respond(req, Some(handle.clone()), disable, ended.clone());
                            async move { Ok::<_, Infallible>(res) }
                        },
                    ));
                    serve_connection(io, svc);
                }
            });
            Some(lingers)
        }
    };
    Server {
        addr,
        lingers,
        ended,
    }
}

/// Connects and upgrades; returns the client's socket after the `101` head.
async fn upgraded_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let request = "GET /echo HTTP/1.1\r\nHost: lab\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    timeout(WAIT, tcp.write_all(request.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    let head = timeout(WAIT, read_response_async(&mut tcp))
        .await
        .unwrap()
        .unwrap()
        .head;
    assert!(head.text.starts_with("http/1.1 101"), "{}", head.text);
    assert_eq!(head.header("upgrade"), Some("echo"), "{}", head.text);
    tcp
}

/// Round trips of growing size, each echoed whole, in both directions.
async fn echo_round_trips(tcp: &mut TcpStream) {
    for i in 0..8usize {
        let message: Vec<u8> = (0..(16 << i))
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect();
        timeout(WAIT, tcp.write_all(&message))
            .await
            .unwrap()
            .unwrap();
        let mut echoed = vec![0u8; message.len()];
        timeout(WAIT, tcp.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message, "round trip {i}");
    }
}

/// How the server's side of the connection ended, as the client sees it,
/// and how many bytes came before that end.
async fn server_end(tcp: &mut TcpStream) -> (End, usize) {
    let (rest, end) = read_to_end_async(tcp, WAIT).await;
    (end, rest.len())
}

/// The client sends `quit` and 64 KiB more in one write, and waits until
/// the server has dropped the upgraded connection with most of it unread.
async fn quit_with_bytes_in_flight(server: &mut Server, tcp: &mut TcpStream) {
    let mut quit = b"quit".to_vec();
    quit.extend_from_slice(&[b'x'; EXTRA]);
    timeout(WAIT, tcp.write_all(&quit)).await.unwrap().unwrap();
    let how = timeout(WAIT, server.ended.recv()).await.unwrap().unwrap();
    assert_eq!(how, Ended::Quit);
    // Let the FIN or the reset reach the client.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Echo works both ways while the connection is live, and nothing lingers;
/// when the client half-closes, the server's echo reads EOF and drops the
/// connection, which closes with a clean FIN and no linger (a `LingerIo`
/// that saw EOF has nothing to wait for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_echo_then_client_closes_first_needs_no_linger() {
    let mut server = start(Serve::Linger).await;
    let mut tcp = upgraded_client(server.addr).await;
    echo_round_trips(&mut tcp).await;
    assert_eq!(server.stats().started, 0, "lingered while live");
    echo_round_trips(&mut tcp).await;

    timeout(WAIT, tcp.shutdown()).await.unwrap().unwrap();
    let how = timeout(WAIT, server.ended.recv()).await.unwrap().unwrap();
    assert_eq!(how, Ended::Eof);
    assert_eq!(server_end(&mut tcp).await, (End::Eof, 0));
    let stats = server.settled().await;
    eprintln!("client closed first: {stats:?}");
    assert_eq!(stats.started, 0, "{stats:?}");
}

/// The server drops the upgraded connection while the client is still
/// sending: with the crate the dropped `LingerIo` lingers on its own task,
/// the client sees a FIN (EOF) and no reset, and the linger ends when the
/// client closes; a plain `TcpStream` resets the connection instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drops_while_client_sends_lingers() {
    let mut server = start(Serve::Linger).await;
    let mut tcp = upgraded_client(server.addr).await;
    echo_round_trips(&mut tcp).await;
    quit_with_bytes_in_flight(&mut server, &mut tcp).await;
    assert_eq!(server_end(&mut tcp).await, (End::Eof, 0), "with linger");
    let lingering = server.stats();
    assert_eq!((lingering.started, lingering.lingering), (1, 1));
    drop(tcp);
    let stats = server.settled().await;
    eprintln!("server dropped first, with linger: {stats:?}");
    assert_eq!(stats.started, 1, "{stats:?}");
    assert_eq!(stats.peer_closed, 1, "{stats:?}");
    assert!(stats.bytes_discarded > 0, "{stats:?}");

    let mut plain = start(Serve::Plain).await;
    let mut tcp = upgraded_client(plain.addr).await;
    echo_round_trips(&mut tcp).await;
    quit_with_bytes_in_flight(&mut plain, &mut tcp).await;
    let (end, _) = server_end(&mut tcp).await;
    eprintln!("server dropped first, plain: {end:?}");
    assert_eq!(end, End::Reset, "without linger");
}

/// `ConnectionHandle::disable_linger()` from the handler: the same drop
/// closes at once, without lingering (and, with input unread, the kernel
/// resets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_linger_from_the_handler_closes_without_lingering() {
    let mut server = start(Serve::LingerDisabled).await;
    let mut tcp = upgraded_client(server.addr).await;
    echo_round_trips(&mut tcp).await;
    quit_with_bytes_in_flight(&mut server, &mut tcp).await;
    let (end, _) = server_end(&mut tcp).await;
    let stats = server.settled().await;
    eprintln!("disable_linger: {end:?}; {stats:?}");
    assert_eq!(stats.started, 0, "{stats:?}");
    assert_eq!(end, End::Reset);
}
