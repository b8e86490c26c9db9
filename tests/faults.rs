//! Faults on purpose, over loopback, each bounded in time:
//!
//! - a client that resets (`SO_LINGER` 0) in the middle of a linger: the
//!   linger ends at once as an error, and no task or descriptor is left;
//! - a client that half-closes and keeps reading (to a hyper server that
//!   allows half-closes): its response arrives whole, and nothing lingers;
//! - a graceful shutdown with 1,000 requests in flight and lingers running:
//!   no response is lost, and the shutdown ends within the short deadline
//!   plus slack.

#![cfg(target_os = "linux")]

mod support;

use support::serial::serial;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use axum::Router;
use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown, LingerStats};
use support::client::read_response_async;
use support::lab;
use support::leaks::Server;
use support::wait::poll_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Layer;

/// Longer than any test here waits: only the fault may end a linger.
const IDLE: Duration = Duration::from_secs(60);
/// The bound on each wait.
const BOUND: Duration = Duration::from_secs(20);

/// The lab app through the crate with [`IDLE`], on a server checked for
/// leaks; the listener's shutdown handle beside it.
async fn start(config: LingerConfig, app: Router) -> (Server, LingerShutdown) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = Server::start(move |listener| {
        let listener = LingerListener::with_config(listener, config);
        let _ = tx.send(listener.shutdown_handle());
        tokio::spawn(async move {
            let _ = axum::serve(listener, LingerLayer::new().layer(app)).await;
        })
    })
    .await;
    (server, rx.await.unwrap())
}

async fn stats_until(lingers: &LingerShutdown, done: impl Fn(&LingerStats) -> bool) -> LingerStats {
    poll_until(BOUND, Duration::from_millis(2), || done(&lingers.stats()))
        .await
        .unwrap_or_else(|| panic!("not reached within {BOUND:?}: {:?}", lingers.stats()));
    lingers.stats()
}

#[test]
fn a_client_that_resets_mid_linger_ends_it_at_once() {
    let _serial = serial();
    support::runtime::run(BOUND * 2, async {
        let config = LingerConfig::new()
            .with_idle_timeout(IDLE)
            .with_deadline(IDLE);
        let (server, lingers) = start(config, lab::app()).await;
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client
            .write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .await
            .unwrap();
        let response = read_response_async(&mut client).await.unwrap();
        assert!(response.head.closes());
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap(); // the FIN
        stats_until(&lingers, |s| s.lingering == 1).await;

        // The reset: SO_LINGER 0, then close.
        let started = Instant::now();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let stats = stats_until(&lingers, |s| s.lingering == 0).await;
        eprintln!(
            "the reset ended the linger {:?} after it: {stats:?}",
            started.elapsed()
        );
        assert_eq!(
            (stats.error, stats.peer_closed, stats.idle_timeout),
            (1, 0, 0),
            "{stats:?}"
        );
        server.expect_client_gone().await;
        server.stop().await;
    });
}

/// hyper drops a request whose client half-closed while it was being
/// served unless its connection allows half-closes (`axum::serve` does not;
/// a hyper-util loop can, and that is the server here). The linger is no
/// obstacle: the response arrives whole, and with the client's FIN already
/// read there is nothing to linger for.
#[test]
fn a_client_that_half_closes_and_keeps_reading_gets_its_response() {
    let _serial = serial();
    support::runtime::run(BOUND * 2, async {
        let config = LingerConfig::new()
            .with_idle_timeout(IDLE)
            .with_deadline(IDLE);
        let listener = LingerListener::with_config(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            config,
        );
        let addr = listener.get_ref().local_addr().unwrap();
        let lingers = listener.shutdown_handle();
        tokio::spawn(async move {
            let (io, _) = listener.accept().await.unwrap();
            let svc = LingerLayer::with_handle(io.handle().clone()).layer(lab::app());
            let mut http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            http.http1().half_close(true);
            let _ = http
                .serve_connection(
                    hyper_util::rt::TokioIo::new(io),
                    hyper_util::service::TowerToHyperService::new(svc),
                )
                .await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /bytes/1048576 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap(); // FIN: nothing more from this client
        let response = read_response_async(&mut client).await.unwrap();
        assert_eq!(response.body.len(), 1 << 20);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(BOUND, client.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");
        // The server read the client's FIN: nothing to linger for.
        let stats = lingers.stats();
        assert_eq!((stats.started, stats.lingering), (0, 0), "{stats:?}");
    });
}

/// Requests in flight when the shutdown begins.
const IN_FLIGHT: usize = 1000;
/// Clients lingering (never closing) when it begins.
const LINGERING: usize = 100;
const SHORT: Duration = Duration::from_secs(1);

#[test]
fn graceful_shutdown_with_a_thousand_requests_in_flight_loses_none() {
    let _serial = serial();
    support::runtime::run(BOUND * 3, async {
        let gate = support::lab::Gate::default();
        let app = gate.route(lab::app(), "/slow", 16 << 10);
        let listener = LingerListener::bind_with(
            "127.0.0.1:0",
            LingerConfig::new()
                .with_idle_timeout(IDLE)
                .with_short_deadline(SHORT),
            linger::LingerListener::DEFAULT_BACKLOG,
        )
        .await
        .unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let lingers = listener.shutdown_handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(
            axum::serve(listener, LingerLayer::new().layer(app))
                .with_graceful_shutdown(lingers.on(async {
                    stopped.await.ok();
                }))
                .into_future(),
        );

        // Clients that take a close response and never close.
        let mut idle = Vec::new();
        for _ in 0..LINGERING {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
                .await
                .unwrap();
            read_response_async(&mut c).await.unwrap();
            idle.push(c);
        }
        // The requests in flight.
        let clients: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                tokio::spawn(async move {
                    let mut c = TcpStream::connect(addr).await?;
                    c.write_all(b"GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n")
                        .await?;
                    let response = read_response_async(&mut c).await?;
                    let mut rest = Vec::new();
                    c.read_to_end(&mut rest).await?;
                    Ok::<_, std::io::Error>((response, rest.is_empty()))
                })
            })
            .collect();
        poll_until(BOUND, Duration::from_millis(5), || {
            gate.entered() == IN_FLIGHT
        })
        .await
        .expect("every request reached its handler");

        let began = Instant::now();
        stop.send(()).unwrap();
        poll_until(BOUND, Duration::from_millis(1), || lingers.is_begun())
            .await
            .unwrap();
        gate.open();
        let (mut whole, mut said_close) = (0, 0);
        for client in clients {
            let (response, nothing_after) = client.await.unwrap().expect("a whole response");
            assert_eq!(response.body.len(), 16 << 10);
            assert!(nothing_after);
            whole += 1;
            // axum tells each connection of the shutdown on its own task:
            // a handler released first may answer before hyper knows.
            said_close += usize::from(response.head.closes());
        }
        tokio::time::timeout(BOUND, served)
            .await
            .expect("axum's graceful shutdown finished")
            .unwrap()
            .unwrap();
        tokio::time::timeout(BOUND, lingers.wait())
            .await
            .expect("every linger ended");
        let took = began.elapsed();
        let stats = lingers.stats();
        eprintln!(
            "{whole} responses whole, {said_close} saying Connection: close; \
             shutdown took {took:?}; {stats:?}"
        );
        assert_eq!(whole, IN_FLIGHT);
        assert!(took < SHORT + Duration::from_secs(10), "took {took:?}");
        assert_eq!(stats.lingering, 0);
        assert!(stats.shortened >= LINGERING as u64, "{stats:?}");
        drop(idle);
    });
}
