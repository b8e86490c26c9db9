//! The middleware used without `LingerIo` (no listener, no handle): it still
//! adds `Connection: close`, and says once, through `tracing::warn!`, that
//! lingering is not wired.
//!
//! Its own test binary: the warning depends on no `LingerIo` existing in
//! the process.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use http::header::CONNECTION;
use http::Request;
use http_body_util::Full;
use linger::{LingerBody, LingerLayer};
use tower::{Layer, ServiceExt};

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn warns_once_and_still_says_close() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let svc = LingerLayer::new().layer(tower::service_fn(
        |_req: Request<LingerBody<Full<bytes::Bytes>>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::<bytes::Bytes>::default()))
        },
    ));
    for _ in 0..3 {
        let req = Request::get("/")
            .header(CONNECTION, "close")
            .body(Full::default())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.headers()[CONNECTION], "close");
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("WARN").count(), 1, "{log}");
    assert!(log.contains("closes do not linger"), "{log}");
}
