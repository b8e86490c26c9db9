//! One reset-lab trial from the client's side: send, read to the end, and
//! judge whether the response arrived whole (every byte, then a clean EOF)
//! or how it was lost.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{self, End, PendingError};

/// How long a trial may wait in all before it counts as a timeout.
pub(crate) const TRIAL_TIMEOUT: Duration = Duration::from_secs(15);

/// How one trial ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The whole response, then a clean EOF.
    Whole,
    /// The whole response, but the connection was reset after it (instead
    /// of, or after, the FIN): delivered, but not a clean close.
    ResetAfter,
    /// A reset before the response was complete.
    ResetReading { got: usize },
    /// The connection ended (EOF) before the response was complete.
    Truncated { got: usize },
    /// Writing the request failed (reset or broken pipe): a client that
    /// stops at the first write error never sees the response.
    WriteFailed(String),
    /// Nothing more arrived in time.
    Timeout { got: usize },
    /// A response arrived, but not the expected one.
    Wrong(String),
}

impl Outcome {
    /// The whole response, then a clean close.
    pub(crate) fn is_whole(&self) -> bool {
        matches!(self, Outcome::Whole)
    }

    /// The whole response arrived, clean close or not.
    pub(crate) fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Whole | Outcome::ResetAfter)
    }

    /// The failure category shown in tables.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Outcome::Whole => "whole",
            Outcome::ResetAfter => "whole, then reset",
            Outcome::ResetReading { .. } => "reset while reading",
            Outcome::Truncated { .. } => "truncated",
            Outcome::WriteFailed(_) => "reset/broken pipe while writing",
            Outcome::Timeout { .. } => "timeout",
            Outcome::Wrong(_) => "wrong response",
        }
    }
}

/// Judges what a client read, and how its input ended, against the status
/// it expected.
pub(crate) fn judge(bytes: &[u8], end: End, status: u16) -> Outcome {
    match client::first_response(bytes) {
        Some(Ok((head, _))) if head.status != status => {
            Outcome::Wrong(format!("status {}, expected {status}", head.status))
        }
        Some(Err(e)) => Outcome::Wrong(e),
        Some(Ok(_)) => match end {
            End::Eof => Outcome::Whole,
            End::Reset | End::EofThenReset => Outcome::ResetAfter,
            End::Timeout => Outcome::Timeout { got: bytes.len() },
            End::Other(e) => Outcome::Wrong(e),
        },
        None => match end {
            End::Eof | End::EofThenReset => Outcome::Truncated { got: bytes.len() },
            End::Reset => Outcome::ResetReading { got: bytes.len() },
            End::Timeout => Outcome::Timeout { got: bytes.len() },
            End::Other(e) => Outcome::Wrong(e),
        },
    }
}

/// One client that sends `writes` (the first at once, each later one after
/// `gap`), waits `pause`, reads to the end, and judges the first response
/// against `status`. `rcvbuf` sets its receive buffer before it connects.
pub(crate) fn exchange(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
    writes: &[&[u8]],
    gap: Duration,
    pause: Duration,
    status: u16,
) -> Outcome {
    exchange_over(|| client::connect(addr, rcvbuf), writes, gap, pause, status)
}

/// [`exchange`] over any stream `connect` opens (a Unix socket or a TLS
/// client, say).
pub(crate) fn exchange_over<S: Read + Write + PendingError>(
    connect: impl FnOnce() -> io::Result<S>,
    writes: &[&[u8]],
    gap: Duration,
    pause: Duration,
    status: u16,
) -> Outcome {
    let started = Instant::now();
    let mut stream = match connect() {
        Ok(stream) => stream,
        Err(e) => return Outcome::Wrong(format!("connect failed: {e}")),
    };
    for (i, bytes) in writes.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        // The flush sends what a buffering stream (TLS) still holds, and
        // reports the write errors it met; a socket's is a no-op.
        if let Err(e) = stream.write_all(bytes).and_then(|()| stream.flush()) {
            return Outcome::WriteFailed(e.kind().to_string());
        }
    }
    std::thread::sleep(pause);
    let (bytes, end) = client::read_to_end(&mut stream, started + TRIAL_TIMEOUT);
    judge(&bytes, end, status)
}
