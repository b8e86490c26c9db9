//! HTTP/2 (h2c, prior knowledge) through `LingerIo`, with graceful shutdown
//! in a hand-written hyper-util accept loop, over loopback.
//!
//! hyper's HTTP/2 server ends a connection it shuts down gracefully with a
//! GOAWAY, lets the streams in flight finish, then closes the IO through
//! `poll_shutdown`: the lingering close runs inside the connection's task,
//! which `GracefulShutdown` waits for.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use linger::{LingerBody, LingerConfig, LingerLayer, LingerListener, LingerShutdown};
use support::client::read_to_end_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tower::Layer;

/// Concurrent streams on the one connection.
const STREAMS: usize = 6;
/// Each response's body.
const BODY: usize = 64 << 10;
/// How long the handler sleeps before it answers.
const SLOW: Duration = Duration::from_millis(300);
/// The lingers' deadline once the shutdown has begun.
const SHORT: Duration = Duration::from_millis(500);
/// Every await's bound.
const WAIT: Duration = Duration::from_secs(10);
/// The most connections a test server accepts.
const MAX_CONNECTIONS: usize = 16;

struct Server {
    addr: SocketAddr,
    lingers: LingerShutdown,
    /// One message per handler call, sent before it sleeps.
    started: mpsc::UnboundedReceiver<()>,
    stop: oneshot::Sender<()>,
    /// Resolves to how long the shutdown took, from its start to the last
    /// connection closed and no linger left.
    finished: tokio::task::JoinHandle<Duration>,
}

async fn slow(
    req: Request<LingerBody<Incoming>>,
    started: mpsc::UnboundedSender<()>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    assert_eq!(req.version(), http::Version::HTTP_2);
    let _ = started.send(());
    tokio::time::sleep(SLOW).await;
    Ok(Response::new(Full::from(vec![b's'; BODY])))
}

async fn start() -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = LingerListener::with_config(tcp, LingerConfig::new().with_short_deadline(SHORT));
    let lingers = listener.shutdown_handle();
    let (started_tx, started) = mpsc::unbounded_channel();
    let (stop, mut stop_rx) = oneshot::channel::<()>();
    let shutdown = lingers.clone();
    let finished = tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        for _ in 0..MAX_CONNECTIONS {
            let (io, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                _ = &mut stop_rx => break,
            };
            let started = started_tx.clone();
            let svc = LingerLayer::with_handle(io.handle().clone())
                .layer(tower::service_fn(move |req| slow(req, started.clone())));
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);
        let began = Instant::now();
        shutdown.begin();
        graceful.shutdown().await;
        shutdown.wait().await;
        began.elapsed()
    });
    Server {
        addr,
        lingers,
        started,
        stop,
        finished,
    }
}

/// One stream: the status and body of `GET /slow/{i}`.
async fn get(
    mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    i: usize,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    let req = Request::get(format!("http://lab/slow/{i}"))
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Graceful shutdown begins while `STREAMS` requests are in the handler:
/// each response arrives whole; hyper sends GOAWAY, then closes the
/// connection through `LingerIo::poll_shutdown`, which lingers (the client
/// sent bytes) until the client, seeing the FIN, closes too; the shutdown
/// finishes well before the short deadline would have cut that linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_with_streams_in_flight() {
    let mut server = start().await;

    let tcp = timeout(WAIT, TcpStream::connect(server.addr))
        .await
        .unwrap()
        .unwrap();
    let (sender, conn) = timeout(
        WAIT,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
    )
    .await
    .unwrap()
    .unwrap();
    let client_conn = tokio::spawn(conn);
    let streams: Vec<_> = (0..STREAMS)
        .map(|i| tokio::spawn(get(sender.clone(), i)))
        .collect();
    drop(sender);

    // Every handler is running (and sleeping) before the shutdown begins.
    for _ in 0..STREAMS {
        timeout(WAIT, server.started.recv())
            .await
            .expect("a handler did not start")
            .unwrap();
    }
    assert_eq!(server.lingers.stats().started, 0, "lingered while live");
    server.stop.send(()).unwrap();

    for (i, stream) in streams.into_iter().enumerate() {
        let (status, body) = timeout(WAIT, stream)
            .await
            .unwrap_or_else(|_| panic!("stream {i} timed out"))
            .unwrap()
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(status, StatusCode::OK, "stream {i}");
        assert_eq!(body.len(), BODY, "stream {i}");
        assert!(body.iter().all(|&b| b == b's'), "stream {i}");
    }

    // The client's connection ends cleanly: the server's GOAWAY, then FIN.
    let client_end = timeout(WAIT, client_conn).await.unwrap().unwrap();
    assert!(client_end.is_ok(), "client connection: {client_end:?}");

    let took = timeout(WAIT, server.finished)
        .await
        .expect("the server's shutdown did not finish")
        .unwrap();
    let stats = server.lingers.stats();
    eprintln!("shutdown took {took:?}; {stats:?}");
    // The one connection lingered, and the client's close (not the short
    // deadline) ended it.
    assert_eq!(stats.started, 1, "{stats:?}");
    assert_eq!(stats.peer_closed, 1, "{stats:?}");
    assert_eq!(stats.shortened, 0, "{stats:?}");
    assert_eq!(stats.lingering, 0, "{stats:?}");
    // Within the handler's sleep plus the short deadline (a bound, not a
    // performance figure: a linger cut by the deadline would also fit).
    assert!(took < SLOW + SHORT + Duration::from_secs(2), "{took:?}");
}

/// A raw HTTP/2 client that answers the server's PINGs (hyper's graceful
/// GOAWAY waits for one round trip) but, once it has the final GOAWAY,
/// neither reads nor closes: graceful shutdown still finishes, the
/// connection's linger cut by the short deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_with_a_client_that_never_closes() {
    let server = start().await;
    let mut tcp = timeout(WAIT, TcpStream::connect(server.addr))
        .await
        .unwrap()
        .unwrap();
    // The preface and an empty SETTINGS frame.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&frame(0x4, 0, &[]));
    timeout(WAIT, tcp.write_all(&hello)).await.unwrap().unwrap();
    // Let the server read it before the shutdown begins.
    let first = timeout(WAIT, read_frame(&mut tcp)).await.unwrap().unwrap();
    assert_eq!(first.0, 0x4, "the server's SETTINGS first");
    server.stop.send(()).unwrap();

    let mut final_goaway = false;
    for _ in 0..100 {
        let (kind, flags, payload) = timeout(WAIT, read_frame(&mut tcp)).await.unwrap().unwrap();
        match (kind, flags & 1) {
            // SETTINGS, PING: acknowledge.
            (0x4, 0) => tcp.write_all(&frame(0x4, 1, &[])).await.unwrap(),
            (0x6, 0) => tcp.write_all(&frame(0x6, 1, &payload)).await.unwrap(),
            // GOAWAY: the graceful one names stream 2^31-1, the final one
            // the last stream processed (none: 0).
            (0x7, _) if payload[..4] != [0x7f, 0xff, 0xff, 0xff] => {
                final_goaway = true;
                break;
            }
            _ => {}
        }
    }
    assert!(final_goaway, "no final GOAWAY");

    let took = timeout(WAIT, server.finished)
        .await
        .expect("the server's shutdown did not finish")
        .unwrap();
    let stats = server.lingers.stats();
    eprintln!("shutdown took {took:?}; {stats:?}");
    assert_eq!(stats.started, 1, "{stats:?}");
    assert_eq!(stats.shortened, 1, "{stats:?}");
    assert_eq!(stats.lingering, 0, "{stats:?}");
    assert!(took >= SHORT - Duration::from_millis(50), "{took:?}");
    assert!(took < SHORT + Duration::from_secs(2), "{took:?}");
    // The server's side ended with a FIN after the GOAWAY, not a reset.
    let (rest, end) = read_to_end_async(&mut tcp, WAIT).await;
    assert!(
        end.is_clean() && rest.is_empty(),
        "{end:?}, {} bytes",
        rest.len()
    );
}

/// An HTTP/2 frame on stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Reads one frame: its type, flags and payload.
async fn read_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await?;
    Ok((head[3], head[4], payload))
}
