//! How long, and how much, a lingering close may read before it gives up.

use std::time::Duration;

/// When a connection lingers on close (nginx's `lingering_close` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LingerMode {
    /// Never linger: half-close and close at once, as hyper does on its own.
    Off,
    /// Linger when input is unread or may still arrive: the server has read
    /// bytes from the peer on this connection (a request, part of an upload)
    /// and the peer has not closed its side, or the middleware marked the
    /// connection, or input the server never read is waiting at the close.
    /// A peer that already closed, or that sent nothing, is closed at once.
    #[default]
    On,
    /// Linger on every close whose read side is still open, even for a peer
    /// that never sent a byte.
    Always,
}

/// Bounds of a lingering close. Every linger ends at the first bound reached:
/// the peer closes (EOF), a read fails, no input for [`idle_timeout`], the
/// [`deadline`] since the half-close passes, or [`max_bytes`] are discarded.
/// Durations are saturated some thirty years ahead rather than overflow, so
/// `Duration::MAX` (or `u64::MAX` bytes) is accepted but lets a linger run
/// as long as the peer keeps it going: choose bounds you mean.
///
/// The defaults follow the servers that have done this for decades:
///
/// | bound | default | anchor |
/// |---|---|---|
/// | [`idle_timeout`] | 5 s ([`LingerConfig::DEFAULT_IDLE_TIMEOUT`]) | nginx `lingering_timeout` 5 s; several TCP retransmission timeouts, so a client on a lossy link still gets its chance |
/// | [`deadline`] | 30 s ([`LingerConfig::DEFAULT_DEADLINE`]) | nginx `lingering_time` 30 s, Apache `MAX_SECS_TO_LINGER` 30 s |
/// | [`max_bytes`] | 64 MiB ([`LingerConfig::DEFAULT_MAX_BYTES`]) | neither has one; large enough that a client uploading a rejected 16 MiB body before it reads still gets the 413, small enough that a flood costs a few milliseconds of CPU |
/// | [`max_lingering`] | 1024 ([`LingerConfig::DEFAULT_MAX_LINGERING`]) | full-length lingers at once per listener; past it a linger gets the short deadline instead of holding a socket for 30 s |
/// | [`short_deadline`] | 2 s ([`LingerConfig::DEFAULT_SHORT_DEADLINE`]) | Apache's short linger when stopping; used past [`max_lingering`] and while the server shuts down |
/// | [`max_lingering_sockets`] | 4 × [`max_lingering`], at least 4096 ([`LingerConfig::DEFAULT_MAX_LINGERING_SOCKETS`]) | the hard cap: sockets lingering at once per listener, short lingers and detached ones included; past it a close is a plain close, so a flood of clients that never close cannot hold more file descriptors than this |
///
/// [`idle_timeout`]: LingerConfig::idle_timeout
/// [`deadline`]: LingerConfig::deadline
/// [`max_bytes`]: LingerConfig::max_bytes
/// [`max_lingering`]: LingerConfig::max_lingering
/// [`max_lingering_sockets`]: LingerConfig::max_lingering_sockets
/// [`short_deadline`]: LingerConfig::short_deadline
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use linger::{LingerConfig, LingerMode};
///
/// let config = LingerConfig::new()
///     .with_mode(LingerMode::Always)
///     .with_idle_timeout(Duration::from_secs(2))
///     .with_deadline(Duration::from_secs(10))
///     .with_max_bytes(1 << 20);
/// assert_eq!(config.max_bytes(), 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LingerConfig {
    mode: LingerMode,
    idle_timeout: Duration,
    deadline: Duration,
    max_bytes: u64,
    max_lingering: usize,
    /// `None`: four times `max_lingering`.
    max_lingering_sockets: Option<usize>,
    short_deadline: Duration,
    end_when_acked: bool,
    ack_quiet: Duration,
    detach: bool,
}

impl LingerConfig {
    /// Default [`LingerConfig::idle_timeout`]: 5 seconds (nginx `lingering_timeout`).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`LingerConfig::deadline`]: 30 seconds (nginx `lingering_time`, Apache).
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
    /// Default [`LingerConfig::max_bytes`]: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
    /// Default [`LingerConfig::max_lingering_sockets`] with the default
    /// [`max_lingering`](Self::max_lingering): 4096 connections. Unless set,
    /// the hard cap is four times `max_lingering`, and at least this.
    pub const DEFAULT_MAX_LINGERING_SOCKETS: usize = 4 * Self::DEFAULT_MAX_LINGERING;
    /// Default [`LingerConfig::max_lingering`]: 1024 connections.
    pub const DEFAULT_MAX_LINGERING: usize = 1024;
    /// Default [`LingerConfig::short_deadline`]: 2 seconds (Apache's short linger).
    pub const DEFAULT_SHORT_DEADLINE: Duration = Duration::from_secs(2);
    /// Default [`LingerConfig::ack_quiet`]: 20 milliseconds.
    pub const DEFAULT_ACK_QUIET: Duration = Duration::from_millis(20);

    /// The defaults: mode [`LingerMode::On`], [`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT),
    /// [`DEFAULT_DEADLINE`](Self::DEFAULT_DEADLINE), [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            mode: LingerMode::On,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            deadline: Self::DEFAULT_DEADLINE,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_lingering: Self::DEFAULT_MAX_LINGERING,
            max_lingering_sockets: None,
            short_deadline: Self::DEFAULT_SHORT_DEADLINE,
            end_when_acked: false,
            ack_quiet: Self::DEFAULT_ACK_QUIET,
            detach: true,
        }
    }

    /// Sets when a connection lingers.
    #[must_use]
    pub const fn with_mode(mut self, mode: LingerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets how long the linger waits for input before it closes.
    #[must_use]
    pub const fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the longest a linger lasts, counted from the half-close.
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets how many bytes a linger discards before it closes.
    #[must_use]
    pub const fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets how many connections of one listener may linger with the full
    /// bounds at once; a linger that starts past it gets the
    /// [`short_deadline`](Self::short_deadline).
    #[must_use]
    pub const fn with_max_lingering(mut self, max_lingering: usize) -> Self {
        self.max_lingering = max_lingering;
        self
    }

    /// Sets the hard cap: how many sockets of one listener may linger at
    /// once, whatever their deadline. A close that would start a linger
    /// past it is a plain close (the socket closes after the half-close,
    /// and the kernel resets it if input is unread), counted in
    /// [`LingerStats::over_cap`](crate::LingerStats::over_cap) and logged
    /// as a `tracing` warning (the 1st, 2nd, 4th, 8th… time).
    #[must_use]
    pub const fn with_max_lingering_sockets(mut self, max: usize) -> Self {
        self.max_lingering_sockets = Some(max);
        self
    }

    /// Sets the deadline of a linger that starts past
    /// [`max_lingering`](Self::max_lingering), and of every linger once the
    /// server begins to shut down (see [`LingerShutdown`](crate::LingerShutdown)).
    #[must_use]
    pub const fn with_short_deadline(mut self, short_deadline: Duration) -> Self {
        self.short_deadline = short_deadline;
        self
    }

    /// Ends a linger early, before the peer closes or a bound is hit, once
    /// the kernel reports every byte sent (the FIN included) acknowledged by
    /// the peer and no input has arrived for [`ack_quiet`](Self::ack_quiet):
    /// RFC 9112's "reasonably certain that its own TCP stack has received
    /// the client's acknowledgement of the packet(s) containing the server's
    /// last response". Linux TCP only (`SIOCOUTQ`); elsewhere the normal
    /// bounds apply. Off by default.
    ///
    /// It frees the sockets of clients that read the response but do not
    /// close. The cost: a client that sends more after that moment (a
    /// pipelined request sent later than `ack_quiet`, an upload that stalls
    /// for longer) meets a reset; a Linux client still reads the response it
    /// has, other stacks may drop it.
    #[must_use]
    pub const fn with_end_when_acked(mut self, end_when_acked: bool) -> Self {
        self.end_when_acked = end_when_acked;
        self
    }

    /// Sets how long input must be quiet before
    /// [`end_when_acked`](Self::with_end_when_acked) may end a linger.
    #[must_use]
    pub const fn with_ack_quiet(mut self, ack_quiet: Duration) -> Self {
        self.ack_quiet = ack_quiet;
        self
    }

    /// Whether each linger runs on a small task of its own (the default):
    /// `poll_shutdown` half-closes, hands the socket and the drain to that
    /// task, and returns at once, so the server frees the connection's
    /// buffers (hyper's and axum's) while the socket lingers. A lingering
    /// connection then costs about 1 KiB of the server's memory beside the
    /// kernel's socket, against about 21 KiB in place (`tests/abuse.rs`,
    /// 10,000 at once; `benches/nginx_compare.sh`).
    ///
    /// Graceful shutdown still covers them: once
    /// [`LingerShutdown::begin`](crate::LingerShutdown::begin) was called,
    /// lingers that begin in `poll_shutdown` run in place, inside their
    /// connection's task, which the server's graceful shutdown waits for;
    /// the ones detached before are what
    /// [`LingerShutdown::on`](crate::LingerShutdown::on) (axum) and
    /// [`LingerShutdown::wait`](crate::LingerShutdown::wait) (any server)
    /// wait for. With `false`, every linger that begins in `poll_shutdown`
    /// runs in place. Either way, a connection dropped with its close
    /// unfinished (hyper's error paths) finishes it on a task of its own.
    #[must_use]
    pub const fn with_detach(mut self, detach: bool) -> Self {
        self.detach = detach;
        self
    }

    /// When a connection lingers.
    pub const fn mode(&self) -> LingerMode {
        self.mode
    }

    /// How long the linger waits for input before it closes.
    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The longest a linger lasts, counted from the half-close.
    pub const fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How many bytes a linger discards before it closes.
    pub const fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How many connections may linger with the full bounds at once.
    pub const fn max_lingering(&self) -> usize {
        self.max_lingering
    }

    /// How many sockets may linger at once: the hard cap; unless set, four
    /// times [`max_lingering`](Self::max_lingering), and at least
    /// [`DEFAULT_MAX_LINGERING_SOCKETS`](Self::DEFAULT_MAX_LINGERING_SOCKETS).
    pub const fn max_lingering_sockets(&self) -> usize {
        match self.max_lingering_sockets {
            Some(max) => max,
            None => {
                let four = self.max_lingering.saturating_mul(4);
                if four > Self::DEFAULT_MAX_LINGERING_SOCKETS {
                    four
                } else {
                    Self::DEFAULT_MAX_LINGERING_SOCKETS
                }
            }
        }
    }

    /// The deadline of lingers past the cap or during shutdown.
    pub const fn short_deadline(&self) -> Duration {
        self.short_deadline
    }

    /// Whether a linger ends once everything sent is acknowledged.
    pub const fn end_when_acked(&self) -> bool {
        self.end_when_acked
    }

    /// How long input must be quiet before an acknowledged linger ends.
    pub const fn ack_quiet(&self) -> Duration {
        self.ack_quiet
    }

    /// Whether lingers run on tasks of their own until the shutdown begins.
    pub const fn detach(&self) -> bool {
        self.detach
    }
}

impl Default for LingerConfig {
    fn default() -> Self {
        Self::new()
    }
}
