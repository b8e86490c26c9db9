//! Graceful shutdown with lingering connections, over loopback.
//!
//! Every step waits on a condition, not a clock: a handler in flight is
//! counted in, and answers only once axum has told the connections of the
//! shutdown (an idle keep-alive connection has been closed).

mod support;

use support::serial::serial;

use std::future::IntoFuture;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tower::Layer;

use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown};
use support::client::{connect, read_response, read_to_close, Head};
use support::lab::{self, Gate};
use support::runtime::runtime;
use support::scenarios::big_get;
use support::wait::wait_until;
use tokio::sync::oneshot;

const SHORT: Duration = Duration::from_millis(500);

const BOUND: Duration = Duration::from_secs(20);

/// How the server is wired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wiring {
    /// The README's: `linger::serve(listener, app).with_graceful_shutdown(signal)`.
    Serve,
    /// `axum::serve(listener, LingerLayer::new().layer(app))`, the signal
    /// through `LingerShutdown::on`.
    WholeApp,
    /// `axum::serve(listener, app.layer(LingerLayer::new()))`, the signal
    /// through `LingerShutdown::on`.
    InsideTheApp,
    /// `LingerListener::serve_with(auto::Builder, app).with_graceful_shutdown(signal)`.
    Hyper,
    /// As `WholeApp`, but the signal straight to axum's `with_graceful_shutdown`.
    SignalOnly,
    /// Plain axum.
    Plain,
}

/// The wirings that give the crate's graceful shutdown.
const CURED: [Wiring; 4] = [
    Wiring::Serve,
    Wiring::WholeApp,
    Wiring::InsideTheApp,
    Wiring::Hyper,
];

struct Server {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    shutdown: Option<LingerShutdown>,
    /// `/slow`: 256 KiB once the gate opens.
    gate: Gate,
}

impl Server {
    fn start(wiring: Wiring) -> Self {
        Self::start_with(wiring, SHORT)
    }

    fn start_with(wiring: Wiring, short: Duration) -> Self {
        let rt = runtime();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let gate = Gate::default();
        let app = || gate.route(lab::app(), "/slow", 256 << 10);
        let signal = async {
            let _ = stop_rx.await;
        };
        let (addr, served, shutdown) = rt.block_on(async {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if wiring != Wiring::Plain {
                // Clients that never close linger until the shutdown cuts
                // them, not until an idle timeout.
                let config = LingerConfig::new()
                    .with_short_deadline(short)
                    .with_idle_timeout(Duration::from_secs(120));
                let listener = LingerListener::with_config(tcp, config);
                let shutdown = listener.shutdown_handle();
                let served = match wiring {
                    Wiring::Serve => tokio::spawn(
                        linger::serve(listener, app())
                            .with_graceful_shutdown(signal)
                            .into_future(),
                    ),
                    Wiring::WholeApp => tokio::spawn(
                        axum::serve(listener, LingerLayer::new().layer(app()))
                            .with_graceful_shutdown(shutdown.on(signal))
                            .into_future(),
                    ),
                    Wiring::InsideTheApp => tokio::spawn(
                        axum::serve(listener, app().layer(LingerLayer::new()))
                            .with_graceful_shutdown(shutdown.on(signal))
                            .into_future(),
                    ),
                    Wiring::Hyper => tokio::spawn(
                        listener
                            .serve_with(
                                hyper_util::server::conn::auto::Builder::new(
                                    hyper_util::rt::TokioExecutor::new(),
                                ),
                                app(),
                            )
                            .with_graceful_shutdown(signal)
                            .into_future(),
                    ),
                    Wiring::SignalOnly | Wiring::Plain => tokio::spawn(
                        axum::serve(listener, LingerLayer::new().layer(app()))
                            .with_graceful_shutdown(signal)
                            .into_future(),
                    ),
                };
                (addr, served, Some(shutdown))
            } else {
                let served = tokio::spawn(
                    axum::serve(tcp, app())
                        .with_graceful_shutdown(signal)
                        .into_future(),
                );
                (addr, served, None)
            }
        });
        Self {
            rt,
            addr,
            stop: Some(stop),
            served: Some(served),
            shutdown,
            gate,
        }
    }

    /// Waits until `/slow` is in flight, begins the shutdown, waits until
    /// axum has told the connections (the idle keep-alive connection
    /// `idle` is closed), and lets `/slow` answer.
    fn stop_while_slow_is_in_flight(&mut self, mut idle: TcpStream) {
        wait_until(BOUND, Duration::from_millis(1), || self.gate.entered() > 0)
            .expect("/slow was entered");
        self.stop.take().unwrap().send(()).unwrap();
        let (rest, _) = read_to_close(&mut idle);
        assert!(rest.is_empty(), "the idle connection got bytes");
        drop(idle); // its linger ends with this close
        self.gate.open();
    }

    /// Waits for `axum::serve` to return, and no more: whether it did
    /// within `bound`.
    fn finished_within(&mut self, bound: Duration) -> bool {
        let served = self.served.take().unwrap();
        self.rt.block_on(async move {
            tokio::time::timeout(bound, served)
                .await
                .is_ok_and(|joined| joined.unwrap().is_ok())
        })
    }

    /// Clients that each take a close response and never close: each
    /// connection lingers.
    fn lingering_clients(&self, n: usize) -> Vec<TcpStream> {
        let clients: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut s = connect(self.addr, None).unwrap();
                s.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
                    .unwrap();
                let head = read_response(&mut s).unwrap().head;
                assert!(head.text.starts_with("http/1.1 200"));
                s
            })
            .collect();
        let shutdown = self.shutdown.as_ref().unwrap();
        wait_until(BOUND, Duration::from_millis(1), || {
            shutdown.stats().lingering == n as u64
        })
        .expect("every connection lingers");
        clients
    }
}

/// A keep-alive connection that has had one answer and waits idle.
fn idle_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut idle = connect(addr, None).unwrap();
    idle.write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().head.status, 200);
    idle
}

/// Reads to the end; whether it was a clean EOF with no reset after it.
fn clean_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let (rest, end) = read_to_close(stream);
    (rest, end.is_clean())
}

/// Graceful shutdown while a keep-alive client is mid-conversation: the
/// request in flight gets its whole response, marked `Connection: close`; a
/// large request pipelined behind it is drained rather than reset; the
/// close is a FIN; and the server finishes once the client has closed.
#[test]
fn graceful_shutdown_mid_conversation() {
    let _serial = serial();
    for wiring in CURED.into_iter().chain([Wiring::Plain]) {
        let linger = wiring != Wiring::Plain;
        let mut server = Server::start(wiring);
        let idle = idle_connection(server.addr);
        let mut stream = connect(server.addr, Some(16 << 10)).unwrap();
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let head = read_response(&mut stream).unwrap().head;
        assert!(head.text.starts_with("http/1.1 200"));
        let request = [
            b"GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec(),
            big_get("/ok"),
        ]
        .concat();
        stream.write_all(&request).unwrap();
        server.stop_while_slow_is_in_flight(idle);
        let (got, clean) = clean_end(&mut stream);
        let whole = got.len() > 256 << 10 && got.ends_with(&[b's'; 64]);
        let says_close = Head::parse(&got).is_some_and(|head| head.is_ok_and(|h| h.closes()));
        drop(stream);
        let finished = server.finished_within(Duration::from_secs(5));
        if linger {
            assert!(
                whole && clean,
                "{wiring:?}: {} bytes, clean {clean}",
                got.len()
            );
            assert!(
                says_close,
                "{wiring:?}: the last response did not say Connection: close"
            );
            assert!(finished, "{wiring:?}: graceful shutdown did not finish");
        } else {
            assert!(
                !(whole && clean),
                "without linger this test cannot fail here"
            );
        }
    }
}

/// Shutdown begins while a request is in flight and other connections
/// linger with clients that never close: the response in flight is whole,
/// every linger is cut to the short deadline, and the whole shutdown
/// finishes within it (plus slack). The in-flight client never closes
/// either: its linger, begun after the shutdown, runs in place, and
/// `serve` returns only once it has ended.
#[test]
fn shutdown_shortens_lingers_and_finishes_within_the_bound() {
    let _serial = serial();
    for wiring in CURED {
        shortens_lingers_and_finishes_within_the_bound(wiring);
    }
}

fn shortens_lingers_and_finishes_within_the_bound(wiring: Wiring) {
    let mut server = Server::start(wiring);
    let shutdown = server.shutdown.clone().unwrap();
    // Three clients that get a close response and never close.
    let mut lingering = server.lingering_clients(3);
    // A request in flight.
    let idle = idle_connection(server.addr);
    let mut busy = connect(server.addr, None).unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let began = Instant::now();
    server.stop_while_slow_is_in_flight(idle);
    let res = read_response(&mut busy).unwrap();
    assert!(res.head.closes(), "{}", res.head.text);
    assert_eq!(res.body.len(), 256 << 10);
    let (_, clean) = clean_end(&mut busy);
    assert!(clean, "the busy connection was reset");
    // `busy` stays open: its linger began after the shutdown, in place,
    // so axum's `serve` returns only once the short deadline has cut it.
    assert!(
        server.finished_within(SHORT + Duration::from_secs(2)),
        "{wiring:?}: shutdown took too long: {shutdown:?}"
    );
    let took = began.elapsed();
    assert!(
        took >= SHORT - Duration::from_millis(50),
        "lingers ended early: {took:?}"
    );
    // The lingering clients saw a clean end (FIN), not a reset.
    for s in &mut lingering {
        let (rest, clean) = clean_end(s);
        assert!(rest.is_empty() && clean);
    }
    let stats = shutdown.stats();
    assert_eq!(stats.lingering, 0, "{wiring:?}: {stats:?}");
    assert_eq!(stats.shortened, 4, "{wiring:?}: {stats:?}");
    drop(busy);
}

/// By default a linger runs on a task of its own, which axum's graceful
/// shutdown does not see. Through `LingerShutdown::on` (the README's form,
/// no call after `serve`), `serve` returns only once those lingers have
/// ended, cut to the short deadline. The same server with the signal
/// handed straight to axum returns while they still run.
#[test]
fn the_readme_graceful_shutdown_waits_for_detached_lingers() {
    let _serial = serial();
    for wiring in CURED.into_iter().chain([Wiring::SignalOnly]) {
        let mut server = Server::start(wiring);
        let shutdown = server.shutdown.clone().unwrap();
        let mut lingering = server.lingering_clients(3);
        server.stop.take().unwrap().send(()).unwrap();
        assert!(server.finished_within(BOUND), "serve did not return");
        let stats = shutdown.stats();
        if wiring != Wiring::SignalOnly {
            assert_eq!(
                stats.lingering, 0,
                "{wiring:?}: serve returned before the lingers ended: {stats:?}"
            );
            assert_eq!(stats.shortened, 3, "{wiring:?}: {stats:?}");
            for s in &mut lingering {
                let (rest, clean) = clean_end(s);
                assert!(rest.is_empty() && clean, "a lingering client saw a reset");
            }
        } else {
            // axum returned with the lingers still running (their idle
            // timeout is 120 s): a process that exits now resets them.
            assert_eq!(stats.lingering, 3, "{stats:?}");
            shutdown.begin();
            server.rt.block_on(shutdown.wait());
        }
    }
}

/// While the shutdown waits for the detached lingers (here held by a
/// client that never closes, under a long short deadline), axum has not
/// begun its own shutdown: a keep-alive connection is still served, and
/// its response says `Connection: close` (the same request before the
/// signal did not); a connection made meanwhile is accepted and answered
/// whole, with `Connection: close`, and a clean close. Beside it, the
/// signal handed straight to axum: a connection made after the signal gets
/// no response at all (refused, or reset when axum drops the listener).
#[test]
fn while_the_shutdown_waits_new_connections_are_answered_and_closed() {
    let _serial = serial();
    for wiring in CURED {
        let mut server = Server::start_with(wiring, Duration::from_secs(60));
        let mut keep_alive = idle_connection(server.addr);
        let holder = server.lingering_clients(1);
        server.stop.take().unwrap().send(()).unwrap();
        let shutdown = server.shutdown.clone().unwrap();
        wait_until(BOUND, Duration::from_millis(1), || shutdown.is_begun())
            .expect("shutdown begun");

        keep_alive
            .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let res = read_response(&mut keep_alive).unwrap();
        assert!(
            res.head.closes(),
            "{wiring:?}, during the wait: {}",
            res.head.text
        );
        assert_eq!(res.body, b"ok");
        let (_, clean) = clean_end(&mut keep_alive);
        assert!(clean, "{wiring:?}: the keep-alive connection was reset");
        drop(keep_alive); // its linger, in place, ends with this close

        let mut late = connect(server.addr, None).unwrap();
        late.write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let res = read_response(&mut late).expect("a connection made during the wait is answered");
        assert!(
            res.head.closes(),
            "{wiring:?}, made during the wait: {}",
            res.head.text
        );
        assert_eq!(res.body, b"ok");
        let (rest, clean) = clean_end(&mut late);
        assert!(
            rest.is_empty() && clean,
            "{wiring:?}: the late connection was reset"
        );
        drop(late);
        // The holder closes: its linger ends, the wait ends, axum shuts
        // down and drops the listener: connects are refused from then on.
        drop(holder);
        assert!(
            server.finished_within(BOUND),
            "{wiring:?}: serve did not return"
        );
        assert_eq!(
            connect(server.addr, None).map(drop).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionRefused),
            "{wiring:?}: the listening socket is still open"
        );
    }

    // The signal straight to axum: it stops accepting at once, so a
    // connection made after the signal is never answered.
    let mut server = Server::start_with(Wiring::SignalOnly, Duration::from_secs(60));
    let holder = server.lingering_clients(1);
    server.stop.take().unwrap().send(()).unwrap();
    let shutdown = server.shutdown.clone().unwrap();
    assert!(server.finished_within(BOUND), "serve did not return");
    let answered = connect(server.addr, None).ok().and_then(|mut late| {
        late.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .ok()?;
        read_response(&mut late).ok()
    });
    assert!(
        answered.is_none(),
        "with the signal straight to axum a late connection was answered"
    );
    drop(holder);
    shutdown.begin();
    server.rt.block_on(shutdown.wait());
}
