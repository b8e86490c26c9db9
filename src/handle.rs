//! The per-connection handle shared by [`LingerIo`](crate::LingerIo) and the middleware.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::LingerConfig;
use crate::stats::{Counters, LingerStats};

/// Set once any connection handle exists in this process, so the middleware
/// can tell "lingering is not wired" from "wired, but the handle is not in
/// this request".
static WIRED: AtomicBool = AtomicBool::new(false);

pub(crate) fn lingering_is_wired() -> bool {
    WIRED.load(Ordering::Relaxed)
}

const CLOSING: u8 = 1;
const NO_LINGER: u8 = 2;

/// How many listeners have begun to shut down, for middleware that has no
/// handle to ask.
static SHUTTING_DOWN: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn any_shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::Relaxed) > 0
}

/// State shared by every connection of one listener (or one standalone
/// [`LingerIo`](crate::LingerIo)): the configuration, the counters, and the
/// shutdown signal.
pub(crate) struct Shared {
    pub(crate) config: LingerConfig,
    pub(crate) counters: Counters,
    pub(crate) shutdown: CancellationToken,
    /// Whether this listener counts in [`SHUTTING_DOWN`].
    counted: AtomicBool,
    /// Woken when the last linger ends.
    pub(crate) idle: Notify,
}

impl Shared {
    pub(crate) fn new(config: LingerConfig) -> Arc<Self> {
        WIRED.store(true, Ordering::Relaxed);
        Arc::new(Self {
            config,
            counters: Counters::default(),
            shutdown: CancellationToken::new(),
            counted: AtomicBool::new(false),
            idle: Notify::new(),
        })
    }

    pub(crate) fn begin_shutdown(&self) {
        if !self.counted.swap(true, Ordering::AcqRel) {
            SHUTTING_DOWN.fetch_add(1, Ordering::Relaxed);
        }
        self.shutdown.cancel();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            SHUTTING_DOWN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

struct Conn {
    flags: AtomicU8,
    shared: Arc<Shared>,
}

/// A handle to one connection, shared by its [`LingerIo`](crate::LingerIo)
/// and the [`Linger`](crate::Linger) middleware.
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
/// let io = LingerIo::new(server);
/// let handle = io.handle().clone();
/// assert!(!handle.is_closing());
/// handle.mark_closing();
/// assert!(handle.is_closing());
/// ```
#[derive(Clone)]
pub struct Handle {
    conn: Arc<Conn>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            conn: Arc::new(Conn {
                flags: AtomicU8::new(0),
                shared,
            }),
        }
    }

    /// Marks the connection as ending after the current response: it lingers
    /// on close in [`LingerMode::On`](crate::LingerMode::On), and the
    /// middleware refuses any further request that arrives on it.
    pub fn mark_closing(&self) {
        self.conn.flags.fetch_or(CLOSING, Ordering::Release);
    }

    /// Whether the connection was marked as ending.
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
    pub fn is_linger_disabled(&self) -> bool {
        self.conn.flags.load(Ordering::Acquire) & NO_LINGER != 0
    }

    /// Whether the server this connection belongs to has begun to shut
    /// down ([`LingerShutdown::begin`](crate::LingerShutdown::begin)).
    pub fn is_shutting_down(&self) -> bool {
        self.conn.shared.is_shutting_down()
    }

    /// The configuration this connection lingers with.
    pub fn config(&self) -> LingerConfig {
        self.conn.shared.config
    }

    /// The counters of this connection's listener.
    pub fn stats(&self) -> LingerStats {
        self.conn.shared.counters.snapshot()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.conn.shared
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("closing", &self.is_closing())
            .field("linger_disabled", &self.is_linger_disabled())
            .finish_non_exhaustive()
    }
}
