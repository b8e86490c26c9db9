//! What lingering closes did: how each ended, how much they discarded.

use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::time::Duration;

/// How a lingering close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LingerOutcome {
    /// The peer closed its side (EOF): the clean end.
    PeerClosed,
    /// No input arrived for the idle timeout.
    IdleTimeout,
    /// The total deadline passed.
    Deadline,
    /// The byte cap was reached.
    ByteCap,
    /// A read failed (the peer reset the connection, most often).
    Error,
    /// The short deadline passed: the linger was cut short because too
    /// many connections were lingering, or the server is shutting down.
    Shortened,
    /// The peer acknowledged everything sent and input was quiet
    /// ([`LingerConfig::with_end_when_acked`](crate::LingerConfig::with_end_when_acked)).
    Acked,
}

impl LingerOutcome {
    /// Every outcome, in the order of the variants.
    pub const ALL: [Self; 7] = [
        Self::PeerClosed,
        Self::IdleTimeout,
        Self::Deadline,
        Self::ByteCap,
        Self::Error,
        Self::Shortened,
        Self::Acked,
    ];

    /// A short name, as used in `tracing` events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::Deadline => "deadline",
            Self::ByteCap => "byte_cap",
            Self::Error => "error",
            Self::Shortened => "shortened",
            Self::Acked => "acked",
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    started: AtomicU64,
    /// Lingering now; also what the concurrency cap is checked against.
    live: AtomicUsize,
    ended: [AtomicU64; 7],
    bytes: AtomicU64,
    resets_prevented: AtomicU64,
    over_cap: AtomicU64,
}

impl Counters {
    /// Counts a linger in, unless `cap` lingers already run; returns how
    /// many were lingering before it, or `None` (counted as over the cap).
    pub(crate) fn start(&self, cap: usize) -> Option<usize> {
        let before = self.live.fetch_add(1, AcqRel);
        if before >= cap {
            self.live.fetch_sub(1, AcqRel);
            let over = self.over_cap.fetch_add(1, Relaxed) + 1;
            if over.is_power_of_two() {
                tracing::warn!(
                    max_lingering_sockets = cap,
                    over_cap = over,
                    "linger: too many sockets lingering; this close is a plain close"
                );
            }
            return None;
        }
        self.started.fetch_add(1, Release);
        Some(before)
    }

    /// Counts a linger out; returns whether it was the last one.
    pub(crate) fn end(&self, outcome: LingerOutcome, bytes: u64, prevented: bool) -> bool {
        self.bytes.fetch_add(bytes, Relaxed);
        if prevented {
            self.resets_prevented.fetch_add(1, Relaxed);
        }
        self.ended[outcome as usize].fetch_add(1, Relaxed);
        self.live.fetch_sub(1, AcqRel) == 1
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Acquire)
    }

    /// Each field is read on its own; `lingering` first, so every linger it
    /// no longer counts has its outcome counted in what follows.
    pub(crate) fn snapshot(&self) -> LingerStats {
        let lingering = self.live() as u64;
        let started = self.started.load(Acquire);
        let ended = |o: LingerOutcome| self.ended[o as usize].load(Relaxed);
        let peer_closed = ended(LingerOutcome::PeerClosed);
        let idle_timeout = ended(LingerOutcome::IdleTimeout);
        let deadline = ended(LingerOutcome::Deadline);
        let byte_cap = ended(LingerOutcome::ByteCap);
        let error = ended(LingerOutcome::Error);
        let shortened = ended(LingerOutcome::Shortened);
        let acked = ended(LingerOutcome::Acked);
        LingerStats {
            started,
            lingering,
            peer_closed,
            idle_timeout,
            deadline,
            byte_cap,
            error,
            shortened,
            acked,
            bytes_discarded: self.bytes.load(Relaxed),
            resets_prevented: self.resets_prevented.load(Relaxed),
            over_cap: self.over_cap.load(Relaxed),
        }
    }
}

/// A snapshot of a listener's lingering closes.
///
/// # Example
///
/// ```
/// # async {
/// let listener = linger::LingerListener::new(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
/// let stats = listener.stats();
/// assert_eq!(stats.lingering, 0);
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LingerStats {
    /// Lingers started.
    pub started: u64,
    /// Connections lingering now.
    pub lingering: u64,
    /// Lingers the peer ended by closing.
    pub peer_closed: u64,
    /// Lingers ended by the idle timeout.
    pub idle_timeout: u64,
    /// Lingers ended by the total deadline.
    pub deadline: u64,
    /// Lingers ended by the byte cap.
    pub byte_cap: u64,
    /// Lingers ended by a read error.
    pub error: u64,
    /// Lingers ended by the short deadline (past the concurrency cap, or
    /// during shutdown).
    pub shortened: u64,
    /// Lingers ended because everything sent was acknowledged.
    pub acked: u64,
    /// Bytes read and discarded by lingers.
    pub bytes_discarded: u64,
    /// Lingers where a plain close would have made the kernel reset the
    /// connection (Linux counts those resets as `TcpExtTCPAbortOnClose` and
    /// `TcpExtTCPAbortOnData`), and the reset could have destroyed the
    /// response: input was waiting unread when the connection was
    /// half-closed, or arrived after the FIN before the client's own. Not
    /// counted: a linger whose only input was a TLS close_notify (a client
    /// answering the server's), which arrives after the client has read
    /// everything. [`bytes_discarded`](Self::bytes_discarded) counts every
    /// byte.
    pub resets_prevented: u64,
    /// Closes made plain, without a linger, because
    /// [`max_lingering_sockets`](crate::LingerConfig::max_lingering_sockets)
    /// sockets were lingering already.
    pub over_cap: u64,
}

impl LingerStats {
    /// How many lingers ended with `outcome`.
    ///
    /// # Example
    ///
    /// ```
    /// use linger::{LingerOutcome, LingerStats};
    ///
    /// let stats = LingerStats::default();
    /// assert_eq!(stats.ended(LingerOutcome::PeerClosed), stats.peer_closed);
    /// ```
    pub const fn ended(&self, outcome: LingerOutcome) -> u64 {
        match outcome {
            LingerOutcome::PeerClosed => self.peer_closed,
            LingerOutcome::IdleTimeout => self.idle_timeout,
            LingerOutcome::Deadline => self.deadline,
            LingerOutcome::ByteCap => self.byte_cap,
            LingerOutcome::Error => self.error,
            LingerOutcome::Shortened => self.shortened,
            LingerOutcome::Acked => self.acked,
        }
    }

    /// Each outcome with how many lingers ended with it, in the order of
    /// [`LingerOutcome`]'s variants.
    pub fn by_outcome(&self) -> impl Iterator<Item = (LingerOutcome, u64)> + '_ {
        LingerOutcome::ALL
            .into_iter()
            .map(|outcome| (outcome, self.ended(outcome)))
    }
}

pub(crate) fn log_outcome(outcome: LingerOutcome, bytes: u64, prevented: bool, took: Duration) {
    tracing::debug!(
        outcome = outcome.as_str(),
        bytes,
        reset_prevented = prevented,
        micros = took.as_micros() as u64,
        "lingering close ended"
    );
}
