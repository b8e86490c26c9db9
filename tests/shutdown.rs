//! Graceful shutdown with lingering connections, over loopback.
//!
//! A test binary of its own: beginning a shutdown is seen by every
//! middleware of the process that has no handle (the minimal axum form), so
//! it must not share a process with tests that expect keep-alive.

#[path = "../examples/reset_lab/lab.rs"]
mod lab;
#[path = "../examples/reset_lab/probe.rs"]
mod probe;

use std::future::IntoFuture;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use linger::{LingerConfig, LingerLayer, LingerListener, LingerShutdown};
use tokio::sync::oneshot;

const SHORT: Duration = Duration::from_millis(500);

/// One test at a time: a shutdown begun by one would close the other's
/// keep-alive connections (see the module docs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn app() -> Router {
    lab::app().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            vec![b's'; 256 << 10]
        }),
    )
}

struct Server {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    shutdown: Option<LingerShutdown>,
}

impl Server {
    fn start(linger: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let signal = async {
            let _ = stop_rx.await;
        };
        let (addr, served, shutdown) = rt.block_on(async {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if linger {
                let config = LingerConfig::new().with_short_deadline(SHORT);
                let listener = LingerListener::with_config(tcp, config);
                let shutdown = listener.shutdown_handle();
                let served = tokio::spawn(
                    axum::serve(listener, app().layer(LingerLayer::new()))
                        .with_graceful_shutdown(shutdown.on(signal))
                        .into_future(),
                );
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
        }
    }

    fn stop(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    /// Waits for the server's graceful shutdown, and for every linger.
    fn finished_within(&mut self, bound: Duration) -> bool {
        let served = self.served.take().unwrap();
        let shutdown = self.shutdown.clone();
        self.rt.block_on(async move {
            tokio::time::timeout(bound, async move {
                let _ = served.await;
                if let Some(shutdown) = shutdown {
                    shutdown.wait().await;
                }
            })
            .await
            .is_ok()
        })
    }
}

fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "EOF in head: {bytes:?}");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

/// Reads to the end; whether it was a clean EOF with no reset after it.
fn clean_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut rest = Vec::new();
    let ok = stream.read_to_end(&mut rest).is_ok();
    std::thread::sleep(Duration::from_millis(20));
    (rest, ok && matches!(stream.take_error(), Ok(None)))
}

/// Graceful shutdown while a keep-alive client is mid-conversation: the
/// request in flight gets its whole response, marked `Connection: close`; a
/// large request pipelined behind it is drained rather than reset; the
/// close is a FIN; and the server finishes once the client has closed.
#[test]
fn graceful_shutdown_mid_conversation() {
    let _serial = serial();
    for linger in [true, false] {
        let mut server = Server::start(linger);
        let mut stream = probe::connect(server.addr, Some(16 << 10)).unwrap();
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let (head, _) = read_response(&mut stream);
        assert!(head.starts_with("http/1.1 200"));
        let pipelined = format!(
            "GET /ok HTTP/1.1\r\nHost: lab\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(probe::EXTRA)
        );
        stream
            .write_all(format!("GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n{pipelined}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        server.stop();
        // Read after the server has written the response and closed.
        std::thread::sleep(Duration::from_millis(400));
        let (got, clean) = clean_end(&mut stream);
        let whole = got.len() > 256 << 10 && got.ends_with(&[b's'; 64]);
        let says_close = String::from_utf8_lossy(&got[..got.len().min(512)])
            .to_ascii_lowercase()
            .contains("connection: close");
        drop(stream);
        let finished = server.finished_within(Duration::from_secs(5));
        if linger {
            assert!(
                whole && clean,
                "with linger: {} bytes, clean {clean}",
                got.len()
            );
            assert!(
                says_close,
                "the last response did not say Connection: close"
            );
            assert!(finished, "graceful shutdown did not finish");
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
/// finishes within it (plus slack).
#[test]
fn shutdown_shortens_lingers_and_finishes_within_the_bound() {
    let _serial = serial();
    let mut server = Server::start(true);
    let shutdown = server.shutdown.clone().unwrap();
    // Three clients that get a close response and never close.
    let mut lingering: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = probe::connect(server.addr, None).unwrap();
            s.write_all(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
                .unwrap();
            let (head, _) = read_response(&mut s);
            assert!(head.starts_with("http/1.1 200"));
            s
        })
        .collect();
    // A request in flight.
    let mut busy = probe::connect(server.addr, None).unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    server.stop();
    let (head, body) = read_response(&mut busy);
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body.len(), 256 << 10);
    let (_, clean) = clean_end(&mut busy);
    assert!(clean, "the busy connection was reset");
    drop(busy);
    assert!(
        server.finished_within(SHORT + Duration::from_secs(2)),
        "shutdown took too long: {:?}",
        shutdown
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
    assert_eq!(stats.lingering, 0, "{stats:?}");
    assert_eq!(stats.shortened, 3, "{stats:?}");
}
