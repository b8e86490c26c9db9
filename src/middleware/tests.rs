//! Unit tests of the middleware's decisions, over in-memory services.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::CONNECTION;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::middleware::rules::has_close;
use crate::{ConnectionHandle, LingerBody, LingerIo, LingerLayer};

type Body = Full<bytes::Bytes>;

/// A service that counts its calls and answers what `respond` builds,
/// after reading the request body only if `read_body`.
fn app(
    calls: Arc<AtomicUsize>,
    read_body: bool,
    respond: fn() -> Response<Body>,
) -> impl Service<
    Request<LingerBody<Body>>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<LingerBody<Body>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if read_body {
                let _ = req.into_body().collect().await;
            }
            Ok::<_, Infallible>(respond())
        }
    })
}

fn ok() -> Response<Body> {
    Response::new(Body::from("ok"))
}

fn handle() -> ConnectionHandle {
    LingerIo::standalone(tokio::io::duplex(16).0)
        .handle()
        .clone()
}

fn post(body: &'static str) -> Request<Body> {
    Request::post("/").body(Body::from(body)).unwrap()
}

fn closes(res: &Response<Body>) -> bool {
    has_close(res.headers())
}

#[tokio::test]
async fn keep_alive_response_is_untouched() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), true, ok));
    let res = svc.oneshot(post("body")).await.unwrap();
    assert!(!closes(&res));
    assert!(!handle.is_closing());
}

#[tokio::test]
async fn unread_body_closes_and_marks() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone())
        .without_rescue()
        .layer(app(Default::default(), false, ok));
    let res = svc.oneshot(post("unread")).await.unwrap();
    assert!(closes(&res));
    assert!(handle.is_closing());
}

#[tokio::test]
async fn small_unread_body_is_rescued() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), false, ok));
    let res = svc.oneshot(post("unread")).await.unwrap();
    assert!(!closes(&res));
    assert!(!handle.is_closing());
}

#[tokio::test]
async fn unread_body_over_the_rescue_bound_closes() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone())
        .with_rescue(3, Duration::from_millis(50))
        .layer(app(Default::default(), false, ok));
    let res = svc.oneshot(post("unread")).await.unwrap();
    assert!(closes(&res));
    assert!(handle.is_closing());
}

#[tokio::test]
async fn response_close_is_left_to_hyper() {
    let handle = handle();
    let respond = || {
        let mut res = ok();
        res.headers_mut()
            .insert(CONNECTION, http::HeaderValue::from_static("close"));
        res
    };
    let svc =
        LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), true, respond));
    let res = svc.oneshot(post("")).await.unwrap();
    assert_eq!(res.headers().get_all(CONNECTION).iter().count(), 1);
    assert!(!handle.is_closing());
}

#[tokio::test]
async fn a_handler_marking_its_connection_closing_gets_connection_close() {
    let handle = handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let marker = handle.clone();
    let svc = LingerLayer::with_handle(handle.clone()).layer(tower::service_fn(
        move |_req: Request<LingerBody<Body>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            marker.mark_closing();
            async { Ok::<_, Infallible>(ok()) }
        },
    ));
    let res = svc.oneshot(post("")).await.unwrap();
    assert!(closes(&res));
    assert!(handle.is_closing());
}

#[tokio::test]
async fn a_request_on_a_connection_marked_earlier_is_served_and_closes() {
    let handle = handle();
    handle.mark_closing();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = LingerLayer::with_handle(handle).layer(app(calls.clone(), true, ok));
    let res = svc.oneshot(post("body")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(closes(&res));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_close_is_left_to_hyper() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), true, ok));
    let mut req = post("read");
    req.headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("close"));
    let res = svc.oneshot(req).await.unwrap();
    assert!(!closes(&res));
    assert!(!handle.is_closing());
}

#[tokio::test]
async fn no_rescue_when_the_request_ends_the_connection() {
    let handle = handle();
    let svc = LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), false, ok));
    let mut req = post("unread");
    *req.version_mut() = Version::HTTP_10;
    let res = svc.oneshot(req).await.unwrap();
    assert!(closes(&res));
    assert!(handle.is_closing());
}

#[tokio::test]
async fn handle_is_found_in_request_extensions() {
    let handle = handle();
    let svc = LingerLayer::new()
        .without_rescue()
        .layer(app(Default::default(), false, ok));
    let mut req = post("unread");
    req.extensions_mut().insert(handle.clone());
    svc.oneshot(req).await.unwrap();
    assert!(handle.is_closing());
}

#[tokio::test]
async fn http2_passes_through() {
    let handle = handle();
    // Without the rescue, an unread body ends an HTTP/1 connection (the
    // same request in 1.1 closes: `unread_body_over_the_rescue_bound_closes`);
    // an HTTP/2 request is never touched.
    let svc = LingerLayer::with_handle(handle.clone())
        .without_rescue()
        .layer(app(Default::default(), false, ok));
    let mut req = post("unread");
    *req.version_mut() = Version::HTTP_2;
    let res = svc.oneshot(req).await.unwrap();
    assert!(!closes(&res));
    assert!(!handle.is_closing());
}

#[tokio::test]
async fn switching_protocols_is_never_touched() {
    let handle = handle();
    let respond = || {
        let mut res = ok();
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        res
    };
    // The body is left unread and no rescue is allowed: any other status
    // would get `Connection: close` and mark the connection.
    let svc = LingerLayer::with_handle(handle.clone())
        .without_rescue()
        .layer(app(Default::default(), false, respond));
    let res = svc.oneshot(post("unread")).await.unwrap();
    assert!(!closes(&res));
    assert!(!handle.is_closing());
}
