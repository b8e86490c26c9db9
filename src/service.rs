//! [`Linger`]: the middleware that decides which responses end their connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::header::{HeaderMap, CONNECTION};
use http::{Request, Response, Version};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::LingerBody;
use crate::future::{Decision, ResponseFuture};
use crate::handle::{any_shutting_down, lingering_is_wired, Handle};
use crate::layer::{LingerLayer, Rescue};

/// Middleware that makes a response that ends its connection say so, and
/// tells the connection's [`LingerIo`](crate::LingerIo) to linger.
///
/// For each HTTP/1 request it decides whether the response ends the
/// connection: the response carries `Connection: close`, the request asked
/// for close, the request is HTTP/1.0 without keep-alive, the handler
/// answered without reading the request body to its end, or the server is
/// shutting down ([`LingerShutdown`](crate::LingerShutdown); without a
/// handle, any listener of the process shutting down counts). Such a response
/// gets `Connection: close` if it lacks it, and the connection's
/// [`Handle`] is marked closing. A request that arrives on a connection
/// already marked closing is answered `503` with `Connection: close`
/// without calling the inner service: the client may retry it elsewhere.
/// HTTP/2 requests pass through unchanged. `101 Switching Protocols`
/// responses are never touched.
///
/// The handle is found, in this order, in the middleware itself
/// ([`LingerLayer::with_handle`](crate::LingerLayer::with_handle), for
/// hand-written hyper accept loops), as a [`Handle`] request extension, or
/// in axum's `ConnectInfo<LingerConnectInfo>`. Without one, the
/// `Connection: close` part still works, and the [`LingerIo`](crate::LingerIo)
/// decides on its own from what it saw.
///
/// Build it with [`LingerLayer`](crate::LingerLayer).
#[derive(Debug, Clone)]
pub struct Linger<S> {
    inner: S,
    handle: Option<Handle>,
    rescue: Option<Rescue>,
}

impl<S> Linger<S> {
    /// Wraps `inner`, as [`LingerLayer::new`](crate::LingerLayer::new) does.
    pub fn new(inner: S) -> Self {
        LingerLayer::new().layer(inner)
    }

    pub(crate) fn from_layer(inner: S, handle: Option<Handle>, rescue: Option<Rescue>) -> Self {
        Self {
            inner,
            handle,
            rescue,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Linger<S>
where
    S: Service<Request<LingerBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: http_body::Body + Unpin,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.version() >= Version::HTTP_2 {
            return ResponseFuture::new(self.inner.call(req.map(LingerBody::untracked)), None);
        }
        let handle = match &self.handle {
            Some(handle) => Some(handle.clone()),
            None => find_handle(req.extensions()),
        };
        if handle.as_ref().is_some_and(Handle::is_closing) {
            return ResponseFuture::refused();
        }
        let shutting_down = match &handle {
            Some(handle) => handle.is_shutting_down(),
            None => any_shutting_down(),
        };
        let ends = shutting_down || request_ends_connection(&req);
        let (parts, body) = req.into_parts();
        let (body, tracker) = LingerBody::track(body);
        let inner = self.inner.call(Request::from_parts(parts, body));
        let decision = Decision {
            ends,
            tracker,
            handle,
            rescue: self.rescue,
        };
        ResponseFuture::new(inner, Some(decision))
    }
}

fn find_handle(extensions: &http::Extensions) -> Option<Handle> {
    if !lingering_is_wired() {
        warn_not_wired();
        return None;
    }
    if let Some(handle) = extensions.get::<Handle>() {
        return Some(handle.clone());
    }
    #[cfg(feature = "axum")]
    {
        use crate::listener::LingerConnectInfo;
        use axum::extract::ConnectInfo;
        if let Some(ConnectInfo(info)) =
            extensions.get::<ConnectInfo<LingerConnectInfo<std::net::SocketAddr>>>()
        {
            return Some(info.handle().clone());
        }
        #[cfg(unix)]
        if let Some(ConnectInfo(info)) =
            extensions.get::<ConnectInfo<LingerConnectInfo<tokio::net::unix::SocketAddr>>>()
        {
            return Some(info.handle().clone());
        }
    }
    None
}

fn warn_not_wired() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.load(Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "linger: LingerLayer is in use but no connection is wrapped in LingerIo \
             (serve with LingerListener): responses get `Connection: close`, \
             but closes do not linger"
        );
    }
}

/// Whether the request itself ends the connection: `Connection: close`, or
/// HTTP/1.0 (and older) without `Connection: keep-alive`.
fn request_ends_connection<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    if req.version() <= Version::HTTP_10 {
        !has_token(headers, "keep-alive")
    } else {
        has_token(headers, "close")
    }
}

/// Whether `Connection` lists `close`.
pub(crate) fn has_close(headers: &HeaderMap) -> bool {
    has_token(headers, "close")
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LingerIo;
    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;
    use tower::ServiceExt;

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

    fn handle() -> Handle {
        LingerIo::new(tokio::io::duplex(16).0).handle().clone()
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
        let svc =
            LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), false, ok));
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
    async fn response_close_marks_without_a_second_header() {
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
        assert!(handle.is_closing());
    }

    #[tokio::test]
    async fn request_on_a_closing_connection_is_refused_without_calling_the_service() {
        let handle = handle();
        handle.mark_closing();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = LingerLayer::with_handle(handle).layer(app(calls.clone(), true, ok));
        let res = svc.oneshot(post("side effect")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(closes(&res));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
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
        let svc =
            LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), false, ok));
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
        let svc =
            LingerLayer::with_handle(handle.clone()).layer(app(Default::default(), false, respond));
        let mut req = post("");
        req.headers_mut()
            .insert(CONNECTION, http::HeaderValue::from_static("close"));
        let res = svc.oneshot(req).await.unwrap();
        assert!(!closes(&res));
        assert!(!handle.is_closing());
    }

    fn req(version: Version, connection: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().version(version);
        if let Some(value) = connection {
            builder = builder.header(CONNECTION, value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn request_close_rules() {
        assert!(!request_ends_connection(&req(Version::HTTP_11, None)));
        assert!(request_ends_connection(&req(
            Version::HTTP_11,
            Some("close")
        )));
        assert!(request_ends_connection(&req(
            Version::HTTP_11,
            Some("Upgrade, CLOSE ")
        )));
        assert!(!request_ends_connection(&req(
            Version::HTTP_11,
            Some("closed")
        )));
        assert!(request_ends_connection(&req(Version::HTTP_10, None)));
        assert!(!request_ends_connection(&req(
            Version::HTTP_10,
            Some("Keep-Alive")
        )));
        assert!(request_ends_connection(&req(Version::HTTP_09, None)));
    }
}
