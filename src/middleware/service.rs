//! [`Linger`]: the middleware that makes a response that ends its
//! connection say so.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use tower_service::Service;

use crate::connection::ConnectionHandle;
use crate::middleware::body::{InnerBody, LingerBodies, LingerBody};
use crate::middleware::future::{ResponseFuture, Tracked};
use crate::middleware::rescue::Rescue;

/// Middleware that makes a response that ends its HTTP/1 connection say
/// `Connection: close`, where hyper would not write it, and tells the
/// connection's [`LingerIo`](crate::LingerIo) to linger.
///
/// hyper writes `Connection: close` itself when the request asked for it,
/// for HTTP/1.0 without keep-alive, and during its graceful shutdown. The
/// cases it cannot see when it encodes the response head are the
/// middleware's:
///
/// - the handler answered without reading the request body to its end (an
///   early 413, say): the response gets `Connection: close` and the
///   connection's handle is marked closing, unless a small remainder can be
///   discarded instead (the keep-alive rescue, see
///   [`LingerLayer`](crate::LingerLayer));
/// - the connection was marked closing
///   ([`ConnectionHandle::mark_closing`], by a handler or an inner
///   middleware) before the response left the middleware: the response gets
///   `Connection: close`, so hyper ends the connection after it and reads no
///   request pipelined behind it;
/// - the listener's shutdown has begun
///   ([`LingerShutdown::begin`](crate::LingerShutdown::begin)) before the
///   server's own: while [`LingerShutdown::on`](crate::LingerShutdown::on)
///   waits for the detached lingers, axum has not told hyper yet, and each
///   response gets `Connection: close`, so keep-alive connections end
///   after their current request.
///
/// Responses that keep their connection, HTTP/2 requests and
/// `101 Switching Protocols` responses pass through untouched.
///
/// # Where the handle comes from
///
/// - Around the whole app, as axum's make-service
///   (`axum::serve(listener, LingerLayer::new().layer(app))`, with `app`
///   a `Router` or any axum make-service, `into_make_service_with_connect_info`
///   included): from each connection's IO, through [`AsConnectionHandle`]
///   (a [`LingerIo`](crate::LingerIo), a TLS stream over one). The app is
///   wrapped once per connection.
/// - In a hand-written hyper loop: [`LingerLayer::with_handle`](crate::LingerLayer::with_handle).
/// - Inside the app (`Router::layer`), which never sees the connection: a
///   [`ConnectionHandle`] request extension, or axum's
///   `ConnectInfo<LingerConnectInfo>`.
///
/// Without a handle the unread-body rule still applies and the
/// [`LingerIo`](crate::LingerIo) decides on its own from what it saw, but a
/// handler's `mark_closing` cannot reach the middleware: it warns once
/// (per layer) through `tracing`.
///
/// # The inner service's request body
///
/// `W` says what request body the inner service receives
/// ([`InnerBody`](crate::InnerBody)): by default `LingerBody<B>`, for any
/// `B`; around a whole axum app, axum's own `Body`
/// ([`AxumBodies`](crate::AxumBodies)), so that a request without a body
/// costs no allocation.
///
/// [`AsConnectionHandle`]: crate::AsConnectionHandle
pub struct Linger<S, W = LingerBodies> {
    inner: S,
    conn: Conn,
    rescue: Option<Rescue>,
    bodies: PhantomData<fn() -> W>,
}

/// What the middleware knows of its connection.
#[derive(Clone)]
enum Conn {
    Known(ConnectionHandle),
    /// Look for the handle in each request; the flag says whether the
    /// middleware has warned that it found none.
    Unknown(Arc<AtomicBool>),
}

impl<S> Linger<S> {
    /// Wraps `inner`, as [`LingerLayer::new`](crate::LingerLayer::new) does.
    pub fn new(inner: S) -> Self {
        Self::with_parts(inner, None, Some(Rescue::DEFAULT), &Arc::default())
    }
}

impl<S> Linger<S> {
    /// The middleware with the default settings, for the connection of
    /// `handle`.
    #[cfg(feature = "axum-server")]
    pub(crate) fn for_handle(inner: S, handle: ConnectionHandle) -> Self {
        Self::with_parts(inner, Some(handle), Some(Rescue::DEFAULT), &Arc::default())
    }
}

impl<S, W> Linger<S, W> {
    pub(crate) fn with_parts(
        inner: S,
        handle: Option<ConnectionHandle>,
        rescue: Option<Rescue>,
        warned: &Arc<AtomicBool>,
    ) -> Self {
        let conn = match handle {
            Some(handle) => Conn::Known(handle),
            None => Conn::Unknown(warned.clone()),
        };
        Self {
            inner,
            conn,
            rescue,
            bodies: PhantomData,
        }
    }

    /// The connection's handle, when this middleware serves one connection.
    pub fn handle(&self) -> Option<&ConnectionHandle> {
        match &self.conn {
            Conn::Known(handle) => Some(handle),
            Conn::Unknown(_) => None,
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

    /// This middleware's settings for the connection of `handle`, if there
    /// is one, to wrap that connection's service in.
    #[cfg(feature = "axum")]
    pub(crate) fn for_connection<V>(&self, handle: Option<&ConnectionHandle>) -> Linger<(), V> {
        Linger {
            inner: (),
            conn: match handle {
                Some(handle) => Conn::Known(handle.clone()),
                None => self.conn.clone(),
            },
            rescue: self.rescue,
            bodies: PhantomData,
        }
    }
}

#[cfg(feature = "axum")]
impl<W> Linger<(), W> {
    /// These settings around `inner`.
    pub(crate) fn around<T>(self, inner: T) -> Linger<T, W> {
        Linger {
            inner,
            conn: self.conn,
            rescue: self.rescue,
            bodies: PhantomData,
        }
    }
}

impl<S: Clone, W> Clone for Linger<S, W> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            conn: self.conn.clone(),
            rescue: self.rescue,
            bodies: PhantomData,
        }
    }
}

impl<S: fmt::Debug, W> fmt::Debug for Linger<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linger")
            .field("inner", &self.inner)
            .field("handle", &self.handle())
            .field("rescue", &self.rescue)
            .finish()
    }
}

impl<S, W, ReqBody, ResBody> Service<Request<ReqBody>> for Linger<S, W>
where
    W: InnerBody<ReqBody>,
    S: Service<Request<W::Body>, Response = Response<ResBody>>,
    ReqBody: http_body::Body + Unpin,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.version() >= Version::HTTP_2 {
            return ResponseFuture::new(self.inner.call(W::untracked_request(req)), None);
        }
        let handle = match &self.conn {
            Conn::Known(handle) => Some(handle.clone()),
            Conn::Unknown(warned) => find_handle(req.extensions(), warned),
        };
        if req.body().is_end_stream() {
            // Nothing to track (a GET, say): the request goes on as it is,
            // and only a marked connection can change the response.
            let tracked = handle.map(|handle| Tracked {
                tracker: None,
                handle: Some(handle),
            });
            return ResponseFuture::new(self.inner.call(W::untracked_request(req)), tracked);
        }
        let (parts, body) = req.into_parts();
        // HTTP/1.0 only: a header lookup on every request with a body would
        // cost more than the rare rescue it saves (a 1.1 request that says
        // `Connection: close` and whose body goes unread).
        let ends = parts.version <= Version::HTTP_10;
        let (body, tracker) = LingerBody::track(body, self.rescue, ends);
        let tracked = Tracked {
            tracker: Some(tracker),
            handle,
        };
        let inner = self
            .inner
            .call(Request::from_parts(parts, W::tracked(body)));
        ResponseFuture::new(inner, Some(tracked))
    }
}

/// The handle a request carries, as an extension or in axum's connect-info;
/// warns once, through `warned`, if it carries none.
fn find_handle(extensions: &http::Extensions, warned: &AtomicBool) -> Option<ConnectionHandle> {
    if let Some(handle) = extensions.get::<ConnectionHandle>() {
        return Some(handle.clone());
    }
    #[cfg(feature = "axum")]
    {
        use crate::LingerConnectInfo;
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
    if !warned.load(Ordering::Relaxed) && !warned.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "linger: LingerLayer found no connection handle: closes linger only if the \
             connection is a LingerIo (serve with LingerListener), and a handler's \
             mark_closing cannot reach the middleware; wrap the whole app \
             (`axum::serve(LingerListener::bind(..).await?, LingerLayer::new().layer(app))`)"
        );
    }
    None
}
