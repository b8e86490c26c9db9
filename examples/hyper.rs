//! A hyper 1 server with lingering close: a template to copy.
//!
//! ```text
//! cargo run --example hyper                # listens on 127.0.0.1:3000
//! head -c 2097152 /dev/zero > bigfile
//! curl -v --data-binary @bigfile http://127.0.0.1:3000/upload   # 413, not a reset
//! ```

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use linger::{LingerBody, LingerListener};

/// The largest upload `/upload` reads.
const UPLOAD_LIMIT: usize = 1024 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt::init();
    let listener = LingerListener::bind("127.0.0.1:3000").await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let lingers = listener.shutdown_handle();
    // HTTP/1 and HTTP/2, chosen per connection (`hyper::server::conn::http1::Builder`
    // for HTTP/1 alone). Each connection's service is wrapped in the
    // middleware; on Ctrl-C lingers are cut to 2 s, the socket closes once
    // they have ended, hyper finishes its connections, and this returns
    // when every linger has ended.
    listener
        .serve_with(
            auto::Builder::new(TokioExecutor::new()),
            tower::service_fn(handle),
        )
        .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    tracing::info!("stopped: {:?}", lingers.stats());
    Ok(())
}

/// `POST /upload` reads at most [`UPLOAD_LIMIT`] bytes and answers their
/// count, or 413 without reading the rest: the middleware adds
/// `Connection: close`, and the lingering close keeps the 413 from being
/// destroyed by a reset while the client is still sending.
async fn handle(req: Request<LingerBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/upload" {
        return Ok(Response::new(Full::from("hello\n")));
    }
    Ok(
        match Limited::new(req.into_body(), UPLOAD_LIMIT).collect().await {
            Ok(body) => Response::new(Full::from(format!("{} bytes\n", body.to_bytes().len()))),
            Err(_) => {
                let mut response = Response::new(Full::from("413 Payload Too Large\n"));
                *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                response
            }
        },
    )
}
