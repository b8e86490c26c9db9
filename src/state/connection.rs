//! [`ConnectionHandle`]: one connection's state, shared by its
//! [`LingerIo`](crate::LingerIo) and the [`Linger`](crate::Linger) middleware;
//! [`AsConnectionHandle`]: how the middleware finds it in a connection's IO.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::state::body::BodySlot;
use crate::state::config::LingerConfig;
use crate::state::group::Group;
use crate::state::stats::LingerStats;

const CLOSING: u8 = 1;
const NO_LINGER: u8 = 2;
/// The connection's IO is gone (closed, or handed to its linger's task).
const ENDED: u8 = 4;
/// One task reads this connection and another at once (see `current`).
const SHARED_TASK: u8 = 8;

struct Conn {
    flags: AtomicU8,
    listener: Arc<Group>,
    /// The request body the middleware tracks on this connection.
    body: BodySlot,
}

/// A handle to one connection, shared by its [`LingerIo`](crate::LingerIo)
/// and the [`Linger`](crate::Linger) middleware, and through them with the
/// connection's listener (its configuration, counters and shutdown).
///
/// Cloning is one reference-count increment; every method is a single atomic
/// operation, so the keep-alive path takes no lock and allocates nothing.
///
/// # Example
///
/// ```
/// use linger::LingerIo;
///
/// let (server, _client) = tokio::io::duplex(64);
/// let io = LingerIo::standalone(server);
/// let handle = io.handle().clone();
/// assert!(!handle.is_closing());
/// handle.mark_closing();
/// assert!(handle.is_closing());
/// ```
#[derive(Clone)]
pub struct ConnectionHandle {
    conn: Arc<Conn>,
}

impl ConnectionHandle {
    pub(crate) fn new(listener: Arc<Group>) -> Self {
        Self {
            conn: Arc::new(Conn {
                flags: AtomicU8::new(0),
                listener,
                body: BodySlot::new(),
            }),
        }
    }

    /// Ends the connection after the current response: if the response has
    /// not left the [`Linger`](crate::Linger) middleware yet, it gets
    /// `Connection: close` and hyper reads no further request; otherwise the
    /// next response does. The close lingers (in
    /// [`LingerMode::On`](crate::LingerMode::On) too).
    #[inline]
    pub fn mark_closing(&self) {
        self.conn.flags.fetch_or(CLOSING, Ordering::Release);
    }

    /// Whether the connection was marked as ending.
    #[inline]
    pub fn is_closing(&self) -> bool {
        self.conn.flags.load(Ordering::Acquire) & CLOSING != 0
    }

    /// Opts this connection out of lingering: its close is a plain
    /// half-close, as with [`LingerMode::Off`](crate::LingerMode::Off).
    /// Use it for an upgraded connection whose protocol has its own close
    /// handshake.
    pub fn disable_linger(&self) {
        self.conn.flags.fetch_or(NO_LINGER, Ordering::Release);
    }

    /// Whether [`disable_linger`](Self::disable_linger) was called.
    #[inline]
    pub fn is_linger_disabled(&self) -> bool {
        self.conn.flags.load(Ordering::Acquire) & NO_LINGER != 0
    }

    /// Whether the listener this connection belongs to has begun to shut
    /// down ([`LingerShutdown::begin`](crate::LingerShutdown::begin)).
    #[inline]
    pub fn is_shutting_down(&self) -> bool {
        self.conn.listener.is_shutting_down()
    }

    /// The configuration this connection lingers with.
    pub fn config(&self) -> LingerConfig {
        self.conn.listener.config
    }

    /// The counters of this connection's listener.
    pub fn stats(&self) -> LingerStats {
        self.conn.listener.counters.snapshot()
    }

    /// Whether the response in progress ends the connection, as far as the
    /// connection knows: it was marked closing, or its listener's shutdown
    /// has begun.
    #[inline]
    pub(crate) fn ends_after_response(&self) -> bool {
        self.is_closing() || self.is_shutting_down()
    }

    /// The slot that tracks this connection's request bodies.
    #[inline]
    pub(crate) fn body(&self) -> &BodySlot {
        &self.conn.body
    }

    pub(crate) fn listener(&self) -> &Arc<Group> {
        &self.conn.listener
    }

    /// The address of the connection's shared state: equal for two handles
    /// exactly when they are handles to the same connection, while either
    /// lives.
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.conn) as usize
    }

    pub(crate) fn mark_ended(&self) {
        self.conn.flags.fetch_or(ENDED, Ordering::Release);
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.conn.flags.load(Ordering::Acquire) & ENDED != 0
    }

    pub(crate) fn mark_shared_task(&self) {
        self.conn.flags.fetch_or(SHARED_TASK, Ordering::Release);
    }

    pub(crate) fn shares_task(&self) -> bool {
        self.conn.flags.load(Ordering::Acquire) & SHARED_TASK != 0
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("closing", &self.is_closing())
            .field("linger_disabled", &self.is_linger_disabled())
            .finish_non_exhaustive()
    }
}

/// An IO that can name its connection's [`ConnectionHandle`]: how the
/// [`Linger`](crate::Linger) middleware, used as axum's make-service, finds
/// the handle of each connection it is given.
///
/// Implemented by [`LingerIo`](crate::LingerIo) (the handle), by TLS
/// streams over an IO that implements it (with the `tokio-rustls` feature),
/// and by tokio's plain `TcpStream` and `UnixStream` (no handle: the
/// middleware then warns once that closes do not linger). Implement it for
/// your own wrapper around a `LingerIo`.
///
/// # Example
///
/// ```
/// use linger::{AsConnectionHandle, ConnectionHandle, LingerIo};
///
/// struct Metered<T> {
///     inner: T,
/// }
///
/// impl<T: AsConnectionHandle> AsConnectionHandle for Metered<T> {
///     fn connection_handle(&self) -> Option<&ConnectionHandle> {
///         self.inner.connection_handle()
///     }
/// }
///
/// let io = Metered { inner: LingerIo::standalone(tokio::io::duplex(64).0) };
/// assert!(io.connection_handle().is_some());
/// ```
pub trait AsConnectionHandle {
    /// The connection's handle, if it has one.
    fn connection_handle(&self) -> Option<&ConnectionHandle>;
}

impl AsConnectionHandle for tokio::net::TcpStream {
    fn connection_handle(&self) -> Option<&ConnectionHandle> {
        None
    }
}

#[cfg(unix)]
impl AsConnectionHandle for tokio::net::UnixStream {
    fn connection_handle(&self) -> Option<&ConnectionHandle> {
        None
    }
}

#[cfg(feature = "tokio-rustls")]
impl<T: AsConnectionHandle> AsConnectionHandle for tokio_rustls::server::TlsStream<T> {
    fn connection_handle(&self) -> Option<&ConnectionHandle> {
        self.get_ref().0.connection_handle()
    }
}
