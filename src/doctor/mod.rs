//! A doctor for connection resets (Linux): which causes of `ECONNRESET`
//! are happening on this host now, told apart from the kernel's own
//! counters, and what to do about each.
//!
//! An operator who sees resets cannot tell from the client's error which
//! cause it was. The kernel can: it counts each reset by why it sent it.
//! [`Diagnosis::between`] compares two samples of the counters taken an
//! interval apart and reads the listening sockets and two settings; its
//! `Display` says in plain words what it found. `examples/doctor.rs` is the
//! command-line form; a server can also serve it.
//!
//! Everything is read from `/proc` for the network namespace the process
//! runs in, and needs no privileges.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use linger::doctor::{Diagnosis, TcpCounters};
//!
//! let before = TcpCounters::read()?;
//! std::thread::sleep(Duration::from_secs(10));
//! let diagnosis = Diagnosis::between(&before, &TcpCounters::read()?, Duration::from_secs(10))?;
//! println!("{diagnosis}");
//! # Ok::<_, std::io::Error>(())
//! ```

mod kernel;

use std::fmt;
use std::io;
use std::time::Duration;

pub use kernel::{KernelSettings, ListenSocket, TcpCounters};

/// A cause of resets the doctor can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// A connection was closed with input still unread
    /// (`TcpExtTCPAbortOnClose`): the close sent a reset that can destroy
    /// the response. The cure: a lingering close.
    CloseWithUnreadInput,
    /// Data arrived on a connection already closed (`TcpExtTCPAbortOnData`):
    /// the reset answers a pipelined request or the rest of an upload sent
    /// after the close. The cure: a lingering close.
    DataAfterClose,
    /// The accept queue of a listening socket was full
    /// (`TcpExtListenOverflows`): a handshake was dropped (the client stalls
    /// a second and more) or, with `tcp_abort_on_overflow`, reset before any
    /// data. The cure: a larger listen backlog, a faster accept loop.
    AcceptQueueOverflow,
    /// Connections were given up after retransmissions went unanswered
    /// (`TcpExtTCPAbortOnTimeout`): the peer vanished or the path lost
    /// packets. Not a server bug; look at the network.
    Timeout,
    /// Closes with `SO_LINGER` set to zero (`TcpExtTCPAbortOnLinger`): a
    /// deliberate reset by a program on this host.
    ZeroLinger,
    /// Connections reset for lack of memory (`TcpExtTCPAbortOnMemory`).
    Memory,
}

impl Cause {
    /// The counter that counts it, as `nstat` names it.
    pub const fn counter(self) -> &'static str {
        match self {
            Self::CloseWithUnreadInput => "TcpExtTCPAbortOnClose",
            Self::DataAfterClose => "TcpExtTCPAbortOnData",
            Self::AcceptQueueOverflow => "TcpExtListenOverflows",
            Self::Timeout => "TcpExtTCPAbortOnTimeout",
            Self::ZeroLinger => "TcpExtTCPAbortOnLinger",
            Self::Memory => "TcpExtTCPAbortOnMemory",
        }
    }

    const ALL: [Self; 6] = [
        Self::CloseWithUnreadInput,
        Self::DataAfterClose,
        Self::AcceptQueueOverflow,
        Self::Timeout,
        Self::ZeroLinger,
        Self::Memory,
    ];

    fn explain(self, n: u64, settings: &KernelSettings) -> String {
        match self {
            Self::CloseWithUnreadInput => format!(
                "{n} connection(s) were closed while the client's input was still unread: each \
                 close sent a reset, which can destroy the response before the client reads it \
                 (an early 413, a response with a pipelined request behind it). Serve with a \
                 lingering close: linger's LingerListener and LingerLayer."
            ),
            Self::DataAfterClose => format!(
                "{n} reset(s) answered data that arrived after the server had closed: a pipelined \
                 request or the rest of an upload. Serve with a lingering close: linger's \
                 LingerListener and LingerLayer."
            ),
            Self::AcceptQueueOverflow => format!(
                "the accept queue of a listening socket overflowed {n} time(s): each one {} \
                 Listen with a larger backlog (linger's LingerListener::bind uses 4096; tokio's \
                 and std's bind use 128){}.",
                if settings.tcp_abort_on_overflow {
                    "reset a client before any data (tcp_abort_on_overflow is on)."
                } else {
                    "dropped a handshake, stalling that client a second or more."
                },
                if settings.somaxconn < 4096 {
                    format!(
                        ", and raise net.core.somaxconn (now {})",
                        settings.somaxconn
                    )
                } else {
                    String::new()
                }
            ),
            Self::Timeout => format!(
                "{n} connection(s) were given up after unanswered retransmissions: the peer \
                 vanished or the path loses packets. Look at the network, not the server."
            ),
            Self::ZeroLinger => format!(
                "{n} connection(s) were reset on purpose by a close with SO_LINGER 0 on this host."
            ),
            Self::Memory => format!(
                "{n} connection(s) were reset because TCP ran short of memory: check \
                 net.ipv4.tcp_mem and the number of open sockets."
            ),
        }
    }
}

/// What the doctor found over one interval.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// How long the interval was.
    pub interval: Duration,
    /// Each cause seen in the interval, with how many times.
    pub causes: Vec<(Cause, u64)>,
    /// Listening sockets whose accept queue was at least nine tenths full
    /// at the end of the interval.
    pub full_queues: Vec<ListenSocket>,
    /// Listening sockets with a backlog under 512 (tokio's and std's 128).
    pub small_backlogs: Vec<ListenSocket>,
    /// The kernel settings read at the end.
    pub settings: KernelSettings,
    /// Resets sent in the interval, whatever the cause (`TcpOutRsts`).
    pub resets_sent: u64,
}

impl Diagnosis {
    /// Diagnoses the interval between two samples of the counters, reading
    /// the listening sockets and the settings now.
    pub fn between(
        before: &TcpCounters,
        after: &TcpCounters,
        interval: Duration,
    ) -> io::Result<Self> {
        let grown = after.since(before);
        let causes = Cause::ALL
            .into_iter()
            .map(|cause| (cause, grown.get(cause.counter())))
            .filter(|&(_, n)| n > 0)
            .collect();
        let sockets = ListenSocket::all()?;
        Ok(Self {
            interval,
            causes,
            full_queues: sockets
                .iter()
                .filter(|s| s.backlog > 0 && u64::from(s.queued) * 10 >= u64::from(s.backlog) * 9)
                .copied()
                .collect(),
            small_backlogs: sockets
                .iter()
                .filter(|s| s.backlog < 512)
                .copied()
                .collect(),
            settings: KernelSettings::read()?,
            resets_sent: grown.get("TcpOutRsts"),
        })
    }

    /// How many times `cause` was seen.
    pub fn count(&self, cause: Cause) -> u64 {
        self.causes
            .iter()
            .find(|(c, _)| *c == cause)
            .map_or(0, |&(_, n)| n)
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "over {:.1} s: {} reset(s) sent by this host's TCP",
            self.interval.as_secs_f64(),
            self.resets_sent
        )?;
        if self.causes.is_empty() {
            writeln!(f, "- no resets from the causes the doctor knows")?;
        }
        for &(cause, n) in &self.causes {
            writeln!(
                f,
                "- {} [{}]",
                cause.explain(n, &self.settings),
                cause.counter()
            )?;
        }
        for s in &self.full_queues {
            writeln!(
                f,
                "- the accept queue of {} is full now ({} of {}): the server does not accept \
                 fast enough, or its backlog is too small",
                s.local, s.queued, s.backlog
            )?;
        }
        for s in &self.small_backlogs {
            writeln!(
                f,
                "- {} listens with a backlog of {}: a burst of connections overflows it",
                s.local, s.backlog
            )?;
        }
        write!(
            f,
            "settings: net.core.somaxconn = {}, net.ipv4.tcp_abort_on_overflow = {}",
            self.settings.somaxconn,
            u8::from(self.settings.tcp_abort_on_overflow)
        )
    }
}
