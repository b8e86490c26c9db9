//! [`Linger`]: the middleware that makes a response that ends its
//! connection say so.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use tower_service::Service;

use crate::middleware::body::{LingerBodies, LingerBody, SlotRef};
use crate::middleware::future::{Check, ResponseFuture, TrackedBody};
use crate::middleware::rescue::Rescue;
use crate::state::body::BodySlot;
use crate::state::connection::ConnectionHandle;
use crate::state::current::{self, Lookup};

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
///   (`axum::serve(listener, LingerLayer::new().layer(app))`, with `app` a
///   `Router` or any axum make-service,
///   `into_make_service_with_connect_info` included): from each
///   connection's IO, through [`AsConnectionHandle`] (a
///   [`LingerIo`](crate::LingerIo), a TLS stream over one). The app is
///   wrapped once per connection.
/// - Inside the app (`Router::layer(LingerLayer::new())`), which never sees
///   the connection: from the connection the running task reads. Each
///   [`LingerIo`](crate::LingerIo) records its handle with the id of the
///   tokio task that reads it, and the middleware, called by hyper from
///   that task, finds it with one thread-local look-up. Where the call runs
///   on another task (behind a `tower::buffer::Buffer`), or one task reads
///   several connections at once, it finds none rather than a wrong one,
///   and then looks for a [`ConnectionHandle`] request extension or axum's
///   `ConnectInfo<LingerConnectInfo>`.
/// - Served by [`linger::serve`](crate::serve()) or
///   [`LingerListener::serve_with`](crate::LingerListener::serve_with), and
///   in a hand-written hyper loop
///   ([`LingerLayer::with_handle`](crate::LingerLayer::with_handle)): the
///   connection's own, given. With the `hyper` feature the middleware is
///   hyper's service too (over hyper's `Incoming` body), so a hand-written
///   loop hands it to hyper as it is.
///
/// Without a handle the unread-body rule still applies and the
/// [`LingerIo`](crate::LingerIo) decides on its own from what it saw, but a
/// handler's `mark_closing` cannot reach the middleware. Where the server's
/// connections are not `LingerIo`s at all (a plain `TcpListener`), closes
/// cannot linger, and the middleware says so once (per layer) through
/// `tracing`.
///
/// # The inner service's request body
///
/// The inner service receives `Request<LingerBody<B>>` for a request body
/// `B` (hyper's `Incoming`, say). Served as axum's make-service, or by
/// [`linger::serve`](crate::serve()), the app receives axum's own `Body`
/// instead, untouched when the middleware does not track it (or, from
/// `linger::serve`, hyper's body in the box axum makes anyway), so that a
/// request without a body costs no allocation of the middleware's. The
/// second type parameter records which of the two; the constructors choose
/// it, and no user names it.
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

impl<S, W> Linger<S, W> {
    /// The middleware with the default settings, for the connection of
    /// `handle`.
    #[cfg(any(feature = "axum", feature = "axum-server"))]
    pub(crate) fn for_handle(inner: S, handle: ConnectionHandle) -> Self {
        Self {
            inner,
            conn: Conn::Known(handle),
            rescue: Some(Rescue::DEFAULT),
            bodies: PhantomData,
        }
    }

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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Linger<S, LingerBodies>
where
    S: Service<Request<LingerBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: http_body::Body + Unpin + Send + 'static,
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
        let check = self.check(&req);
        let (parts, body) = req.into_parts();
        let body = match &check {
            Check::Body(tracked) => tracked.wrap(body),
            Check::Nothing | Check::Connection(_) => LingerBody::untracked(body),
        };
        ResponseFuture {
            check,
            rescuing: None,
            inner: self.inner.call(Request::from_parts(parts, body)),
        }
    }
}

impl<S, W> Linger<S, W> {
    /// What the response to `req` will need checked; a body to track gets
    /// its ticket.
    #[inline(always)]
    pub(crate) fn check<B: http_body::Body>(&self, req: &Request<B>) -> Check {
        if req.version() >= Version::HTTP_2 {
            return Check::Nothing;
        }
        let handle = match &self.conn {
            Conn::Known(handle) => Some(handle.clone()),
            Conn::Unknown(warned) => find_handle(req.extensions(), warned),
        };
        if req.body().is_end_stream() {
            // Nothing to track (a GET, say): only a marked connection can
            // change the response.
            return match handle {
                Some(handle) => Check::Connection(handle),
                None => Check::Nothing,
            };
        }
        self.track(handle, req.version())
    }

    /// [`check`](Self::check) for a request with a body to track.
    #[inline(never)]
    fn track(&self, handle: Option<ConnectionHandle>, version: Version) -> Check {
        // The connection's slot tracks the body; one of its own where the
        // connection is unknown.
        let slot = match handle {
            Some(handle) => SlotRef::Connection(handle),
            None => SlotRef::Request(Arc::new(BodySlot::new())),
        };
        let ticket = slot.get().begin();
        Check::Body(TrackedBody {
            slot,
            ticket,
            rescue: self.rescue,
            // HTTP/1.0 only: a header lookup on every request with a body
            // would cost more than the rare rescue it saves (a 1.1 request
            // that says `Connection: close` and whose body goes unread).
            request_ends: version <= Version::HTTP_10,
        })
    }
}

/// The handle of the connection a request arrived on: the one the running
/// task reads (a `LingerIo` records it, see `state::current`), else one the
/// request carries as an extension or in axum's connect-info. Warns once,
/// through `warned`, where the server's connections are not `LingerIo`s.
#[inline(never)]
fn find_handle(extensions: &http::Extensions, warned: &AtomicBool) -> Option<ConnectionHandle> {
    let lookup = current::lookup();
    if let Lookup::Found(handle) = lookup {
        return Some(handle);
    }
    if let Some(handle) = current::carried(extensions) {
        return Some(handle);
    }
    if matches!(lookup, Lookup::NoLingerIo)
        && !warned.load(Ordering::Relaxed)
        && !warned.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "linger: LingerLayer sees a connection that is not a LingerIo, so its closes do \
             not linger: serve the app with `linger::serve(listener, app)`, or give \
             `axum::serve` a `linger::LingerListener` instead of a `TcpListener`"
        );
    }
    None
}
