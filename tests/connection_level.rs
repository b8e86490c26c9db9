//! The middleware at the connection level, over real loopback sockets:
//!
//! - in the README's wiring (`LingerLayer::new().layer(app)` served through
//!   a `LingerListener`) it finds every connection's handle with nothing
//!   else wired, and stays silent; inside the app (`Router::layer`), or over
//!   a plain `TcpListener`, it says once that it found none;
//! - a handler that marks its connection closing gets `Connection: close`
//!   on its own response, and the request pipelined behind it never runs
//!   (without the middleware it runs: shown in the same test);
//! - two servers in one process: one's shutdown leaves the other's
//!   keep-alive connections alone.

mod support;

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::routing::{get, post};
use axum::Router;
use linger::{ConnectionHandle, LingerConnectInfo, LingerLayer, LingerListener};
use support::client::{connect, read_response, read_to_close, End, Head};
use support::logs::Captured;
use tower::Layer;

/// The longest any one wait here may take.
const BOUND: Duration = Duration::from_secs(20);
/// The body of `/end`: large enough that a reset would cut it.
const END_BODY: usize = 64 << 10;
/// Padding after the pipelined request: past hyper's first read.
const PADDING: usize = 64 << 10;

fn app(executed: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/count",
            post(move || {
                executed.fetch_add(1, Ordering::SeqCst);
                async { "counted" }
            }),
        )
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::max(1024))
}

/// `/end`: the handler ends its own connection, through the handle in
/// `LingerConnectInfo`, and answers with [`END_BODY`] bytes.
fn app_with_end(executed: Arc<AtomicUsize>) -> Router {
    app(executed).route(
        "/end",
        post(
            |ConnectInfo(info): ConnectInfo<LingerConnectInfo>| async move {
                info.handle().mark_closing();
                "e".repeat(END_BODY)
            },
        ),
    )
}

/// `POST /end`, then `POST /count` and padding in the same write.
fn end_then_pipelined() -> Vec<u8> {
    let mut bytes = b"POST /end HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec();
    bytes.extend_from_slice(
        format!(
            "POST /count HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "p".repeat(PADDING)
        )
        .as_bytes(),
    );
    bytes
}

/// The heads of the next `n` responses on `stream`.
fn heads(stream: &mut std::net::TcpStream, n: usize) -> Vec<Head> {
    (0..n)
        .map(|_| read_response(stream).expect("a response").head)
        .collect()
}

#[test]
fn a_handler_that_marks_its_connection_closing_ends_it_after_this_response() {
    let rt = support::runtime::runtime();
    let executed = Arc::new(AtomicUsize::new(0));
    let (with_crate, without) = rt.block_on(async {
        let make = app_with_end(executed.clone())
            .into_make_service_with_connect_info::<LingerConnectInfo>();
        let cured = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let cured_addr = cured.get_ref().local_addr().unwrap();
        tokio::spawn(axum::serve(cured, LingerLayer::new().layer(make.clone())).into_future());
        // The same app and listener, without the middleware.
        let plain = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.get_ref().local_addr().unwrap();
        tokio::spawn(axum::serve(plain, make).into_future());
        (cured_addr, plain_addr)
    });

    // With the middleware: the handler's response says close, arrives
    // whole, the connection ends with a clean FIN, and `/count` never ran.
    let mut client = connect(with_crate, None).unwrap();
    client.write_all(&end_then_pipelined()).unwrap();
    let response = read_response(&mut client).expect("a whole response");
    assert_eq!(response.head.status, 200);
    assert!(response.head.closes(), "{}", response.head.text);
    assert_eq!(response.body.len(), END_BODY);
    let (rest, end) = read_to_close(&mut client);
    assert!(rest.is_empty(), "nothing after the response");
    assert_eq!(end, End::Eof, "a clean close, not a reset");
    assert_eq!(executed.load(Ordering::SeqCst), 0);

    // Without it: the response keeps the connection, and hyper runs the
    // pipelined `/count`.
    let mut client = connect(without, None).unwrap();
    client.write_all(&end_then_pipelined()).unwrap();
    let first = heads(&mut client, 2);
    assert!(!first[0].closes(), "{}", first[0].text);
    assert_eq!(executed.load(Ordering::SeqCst), 1);
}

/// `/end` again, through the handler's `ConnectionHandle` extractor.
fn app_with_end_extracted(executed: Arc<AtomicUsize>) -> Router {
    app(executed).route(
        "/end",
        post(|conn: ConnectionHandle| async move {
            conn.mark_closing();
            "e".repeat(END_BODY)
        }),
    )
}

/// `POST /end` with `/count` pipelined behind it: whether the response
/// said close, arrived whole, the close was clean, and `/count` never ran.
fn ends_after_this_response(addr: SocketAddr, executed: &AtomicUsize) -> Result<(), String> {
    let before = executed.load(Ordering::SeqCst);
    let mut client = connect(addr, None).unwrap();
    client.write_all(&end_then_pipelined()).unwrap();
    let response = read_response(&mut client).map_err(|e| format!("{e:?}"))?;
    if !response.head.closes() || response.body.len() != END_BODY {
        return Err(format!(
            "{}, {} bytes",
            response.head.text,
            response.body.len()
        ));
    }
    let (rest, end) = read_to_close(&mut client);
    if !rest.is_empty() || end != End::Eof {
        return Err(format!("{} bytes after the response, {end:?}", rest.len()));
    }
    match executed.load(Ordering::SeqCst) - before {
        0 => Ok(()),
        n => Err(format!("/count ran {n} times")),
    }
}

/// Inside the app (`Router::layer`) and through `linger::serve`, a handler
/// gets its connection's handle by extracting `ConnectionHandle`, and
/// `mark_closing` ends the connection after its response. The same app
/// and listener without the middleware keep the connection, and run the
/// pipelined request.
#[test]
fn a_handler_ends_its_connection_through_the_handle_extractor() {
    let rt = support::runtime::runtime();
    let executed = Arc::new(AtomicUsize::new(0));
    let (inside, served, without) = rt.block_on(async {
        let app = app_with_end_extracted(executed.clone());
        let inside = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let inside_addr = inside.local_addr().unwrap();
        tokio::spawn(axum::serve(inside, app.clone().layer(LingerLayer::new())).into_future());
        let served = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let served_addr = served.local_addr().unwrap();
        tokio::spawn(linger::serve(served, app.clone()).into_future());
        let plain = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(axum::serve(plain, app).into_future());
        (inside_addr, served_addr, plain_addr)
    });
    for _ in 0..3 {
        ends_after_this_response(inside, &executed).expect("inside the app");
        ends_after_this_response(served, &executed).expect("linger::serve");
    }
    assert!(
        ends_after_this_response(without, &executed).is_err(),
        "without the middleware this test cannot fail"
    );
}

const NO_HANDLE: &str = "sees a connection that is not a LingerIo";

/// Serves `wiring` on a current-thread runtime (so that a thread-local
/// `tracing` subscriber sees every task), sends three requests, one of them
/// an upload the app rejects after 4 KiB of its 1 MiB (past the keep-alive
/// rescue's bound, so the 413 ends the connection), and returns the warnings
/// logged.
fn warnings_of(wiring: impl FnOnce(Arc<AtomicUsize>) -> Wiring) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = wiring(Arc::default()).spawn().await;
        let requests = tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                let mut client = connect(addr, None).unwrap();
                client
                    .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                client
                    .write_all(
                        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
                    )
                    .unwrap();
                client.write_all(&[b'u'; 4096]).unwrap();
                let responses = heads(&mut client, 2);
                assert_eq!(responses[1].status, 413);
                assert!(responses[1].closes());
            }
        });
        tokio::time::timeout(BOUND, requests)
            .await
            .unwrap()
            .unwrap();
    });
    captured.text()
}

/// The ways to wire the middleware that these tests compare.
enum Wiring {
    /// The README's: `linger::serve`.
    Serve(Router),
    /// Around the whole app, through a `LingerListener`.
    WholeApp(Router),
    /// Inside the app, through a `LingerListener`.
    InsideTheApp(Router),
    /// Around the whole app, over tokio's plain `TcpListener`.
    NoLingerIo(Router),
    /// Inside the app, over tokio's plain `TcpListener`.
    InsideNoLingerIo(Router),
}

impl Wiring {
    async fn spawn(self) -> SocketAddr {
        match self {
            Self::Serve(app) => {
                let listener = LingerListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.get_ref().local_addr().unwrap();
                tokio::spawn(linger::serve(listener, app).into_future());
                addr
            }
            Self::InsideNoLingerIo(app) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(axum::serve(listener, app.layer(LingerLayer::new())).into_future());
                addr
            }
            Self::WholeApp(app) => {
                let listener = LingerListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.get_ref().local_addr().unwrap();
                tokio::spawn(axum::serve(listener, LingerLayer::new().layer(app)).into_future());
                addr
            }
            Self::InsideTheApp(app) => {
                let listener = LingerListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.get_ref().local_addr().unwrap();
                tokio::spawn(axum::serve(listener, app.layer(LingerLayer::new())).into_future());
                addr
            }
            Self::NoLingerIo(app) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(axum::serve(listener, LingerLayer::new().layer(app)).into_future());
                addr
            }
        }
    }
}

#[test]
fn through_linger_serve_the_middleware_finds_every_connection_handle() {
    let log = warnings_of(|executed| Wiring::Serve(app(executed)));
    assert!(!log.contains(NO_HANDLE), "{log}");
}

#[test]
fn around_the_whole_app_the_middleware_finds_every_connection_handle() {
    let log = warnings_of(|executed| Wiring::WholeApp(app(executed)));
    assert!(!log.contains(NO_HANDLE), "{log}");
}

#[test]
fn inside_the_app_the_middleware_finds_every_connection_handle() {
    let log = warnings_of(|executed| Wiring::InsideTheApp(app(executed)));
    assert!(!log.contains(NO_HANDLE), "{log}");
}

/// Over a plain `TcpListener` nothing can linger: each form says so, once,
/// though `Router::layer` wraps each route in a service of its own, and two
/// connections were served.
#[test]
fn without_any_linger_io_the_middleware_warns_once() {
    let log = warnings_of(|executed| Wiring::NoLingerIo(app(executed)));
    assert_eq!(log.matches(NO_HANDLE).count(), 1, "{log}");
    let log = warnings_of(|executed| Wiring::InsideNoLingerIo(app(executed)));
    assert_eq!(log.matches(NO_HANDLE).count(), 1, "{log}");
}

#[test]
fn one_servers_shutdown_leaves_another_servers_connections_alone() {
    let rt = support::runtime::runtime();
    let (a, b, a_done, shutdown_a, shutdown_b, stop_a) = rt.block_on(async {
        let listener_a = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let listener_b = LingerListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (
            listener_a.get_ref().local_addr().unwrap(),
            listener_b.get_ref().local_addr().unwrap(),
        );
        let (shutdown_a, shutdown_b) = (listener_a.shutdown_handle(), listener_b.shutdown_handle());
        let (stop_a, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = shutdown_a.on(async {
            stopped.await.ok();
        });
        let a_done = tokio::spawn(
            axum::serve(listener_a, LingerLayer::new().layer(app(Arc::default())))
                .with_graceful_shutdown(signal)
                .into_future(),
        );
        tokio::spawn(
            axum::serve(listener_b, LingerLayer::new().layer(app(Arc::default()))).into_future(),
        );
        (a, b, a_done, shutdown_a, shutdown_b, stop_a)
    });
    let get = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut on_a = connect(a, None).unwrap();
    let mut on_b = connect(b, None).unwrap();
    on_a.write_all(get).unwrap();
    on_b.write_all(get).unwrap();
    assert!(!heads(&mut on_a, 1)[0].closes());
    assert!(!heads(&mut on_b, 1)[0].closes());

    // Server A shuts down: its idle keep-alive connection ends, its serve
    // future finishes.
    stop_a.send(()).unwrap();
    rt.block_on(async { tokio::time::timeout(BOUND, a_done).await })
        .expect("server A shut down in time")
        .unwrap()
        .unwrap();
    assert!(shutdown_a.is_begun());
    let (rest, _) = read_to_close(&mut on_a);
    assert!(rest.is_empty(), "server A closed its idle connection");

    // Server B: not shutting down, its connection still keeps alive.
    assert!(!shutdown_b.is_begun());
    for _ in 0..3 {
        on_b.write_all(get).unwrap();
        let response = &heads(&mut on_b, 1)[0];
        assert_eq!(response.status, 200);
        assert!(!response.closes(), "{}", response.text);
    }
    let mut fresh = connect(b, None).unwrap();
    fresh.write_all(get).unwrap();
    assert!(!heads(&mut fresh, 1)[0].closes());
}
