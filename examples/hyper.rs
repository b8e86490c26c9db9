//! A hand-written hyper 1 accept loop with lingering close: a template to copy.
//!
//! ```text
//! cargo run --example hyper                # listens on 127.0.0.1:3000
//! PORT=8080 cargo run --example hyper      # or on another port
//! RUST_LOG=linger=debug cargo run --example hyper   # log every lingering close
//! ```
//!
//! Then, from another shell:
//!
//! ```text
//! curl http://127.0.0.1:3000/
//! curl --data-binary 'some bytes' http://127.0.0.1:3000/upload
//! head -c 2097152 /dev/zero > bigfile
//! curl -v --data-binary @bigfile http://127.0.0.1:3000/upload   # 413, not a reset
//! ```
//!
//! Stop it with Ctrl-C.

use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use linger::{LingerBody, LingerLayer, LingerListener};
use tokio::net::TcpListener;
use tower::Layer;

/// The largest upload `/upload` reads.
const UPLOAD_LIMIT: usize = 1024 * 1024;
/// How long shutdown waits for open connections (lingering ones included).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
        Err(_) => 3000,
    };
    // Every connection `accept` returns is a `LingerIo`: its close
    // half-closes, then drains the client's input (bounded by the listener's
    // `LingerConfig`: 5 s idle, 30 s total, 64 MiB) before it closes.
    // `LingerListener::with_config` takes other bounds.
    let listener = LingerListener::new(TcpListener::bind(("127.0.0.1", port)).await?);
    tracing::info!("listening on http://{}", listener.get_ref().local_addr()?);

    // HTTP/1 and HTTP/2, chosen per connection from its first bytes.
    let server = auto::Builder::new(TokioExecutor::new());
    // Counts the open connections and tells them to stop at shutdown.
    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());

    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = ctrl_c.as_mut() => break,
        };

        // The middleware holds this connection's handle: it marks the
        // connection as closing when a response ends it (here: the 413,
        // whose request body is left unread) and adds `Connection: close`.
        let svc =
            LingerLayer::with_handle(io.handle().clone()).layer(tower::service_fn(handle_request));
        let svc = TowerToHyperService::new(svc);

        let conn = server.serve_connection_with_upgrades(TokioIo::new(io), svc);
        // `into_owned` detaches the connection from `server`, so it can move
        // onto its own task.
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });

        // HTTP/1 only? Use hyper's own builder instead of `auto`:
        //
        //     use hyper::server::conn::http1;
        //     let conn = http1::Builder::new()
        //         .serve_connection(TokioIo::new(io), svc)
        //         .with_upgrades(); // only if you serve upgrades (WebSocket)
        //     let conn = graceful.watch(conn);
        //
        // The lingering close is the same: hyper closes by calling the
        // IO's `poll_shutdown`, which is what `LingerIo` implements.
    }

    // Stop accepting. `begin` cuts every linger to the short deadline (2 s)
    // and keeps the lingers that begin from now on in place, in their
    // connection's future; `graceful` tells hyper to finish its connections
    // (responses still in flight say `Connection: close`), and `wait`
    // covers the lingers on tasks of their own: those detached before the
    // shutdown (the default) and those of connections hyper dropped after
    // an error.
    let lingers = listener.shutdown_handle();
    drop(listener);
    lingers.begin();
    tracing::info!("shutting down: {} connection(s) open", graceful.count());
    let all_closed = async {
        graceful.shutdown().await;
        lingers.wait().await;
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, all_closed).await {
        Ok(()) => tracing::info!("all connections closed: {:?}", lingers.stats()),
        Err(_) => tracing::warn!("gave up waiting for connections after {SHUTDOWN_GRACE:?}"),
    }
    Ok(())
}

/// The application: `GET /` says hello, `POST /upload` returns the length
/// of the body it read. The request body is a [`LingerBody`], which tells
/// the middleware whether it was read to its end.
async fn handle_request(
    req: Request<LingerBody<Incoming>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Response::new(Full::from("hello\n")),
        (&Method::POST, "/upload") => upload(req.into_body()).await,
        _ => status(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// Reads the whole body, at most [`UPLOAD_LIMIT`] bytes, and returns its length.
async fn upload(body: LingerBody<Incoming>) -> Response<Full<Bytes>> {
    // Over the limit: answer 413 without reading the rest (at once, if
    // `Content-Length` already says so). The middleware adds
    // `Connection: close`, and the lingering close keeps this response from
    // being destroyed by a TCP reset while the client is still sending.
    if body.size_hint().lower() > UPLOAD_LIMIT as u64 {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    match Limited::new(body, UPLOAD_LIMIT).collect().await {
        Ok(body) => Response::new(Full::from(format!("{} bytes\n", body.to_bytes().len()))),
        Err(e) if e.is::<LengthLimitError>() => status(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => status(StatusCode::BAD_REQUEST),
    }
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(format!("{status}\n")));
    *response.status_mut() = status;
    response
}
