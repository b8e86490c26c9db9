//! [`LingerIo`]: an IO whose shutdown half-closes, then drains under bounds.
//!
//! - `close`: the close itself, as a state machine (flush, half-close,
//!   drain), and the hand-off of an unfinished close to a task of its own;
//! - `drain`: the bounded read-and-discard after the half-close;
//! - `discard`: how the drain reads and forgets, per IO type;
//! - `linux`: the Linux TCP specifics (`recv(MSG_TRUNC)`, `SIOCOUTQ`).

mod close;
mod discard;
mod drain;
#[cfg(target_os = "linux")]
mod linux;

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::state::config::LingerConfig;
use crate::state::connection::{AsConnectionHandle, ConnectionHandle};
use crate::state::current;
use crate::state::group::{DetachedLinger, Group};

use close::{hand_off, Phase};
use discard::{ops_for, Ops};

/// Wraps a connection's IO so that closing it is a lingering close.
///
/// Reads and writes (vectored ones included) go straight to the inner IO.
/// [`poll_shutdown`](AsyncWrite::poll_shutdown) flushes, half-closes the
/// inner IO (for TCP, `shutdown(Write)`: the FIN follows the last response
/// byte), then, when the connection should linger (see
/// [`LingerMode`](crate::LingerMode)), reads and discards input until the peer closes, a read
/// fails, or a bound of the [`LingerConfig`] is reached, and only then
/// returns `Ready(Ok(()))`. The caller closes the socket by dropping the IO.
///
/// If the IO is dropped without a completed shutdown (hyper's error paths:
/// a service or IO error, a header-read timeout, a cancelled version
/// sniff), the same half-close and bounded drain run on a task of their
/// own, so those closes do not reset the connection either.
///
/// Lingering needs a tokio runtime with its timer enabled (as `axum::serve`
/// and `#[tokio::main]` have). On Linux, when `T` is tokio's `TcpStream`,
/// the drain discards with `recv(MSG_TRUNC)`: the kernel drops the bytes
/// without copying them. Other IOs are read into one 64 KiB scratch buffer
/// per thread; no lingering connection holds a buffer of its own. A drain
/// makes at most 16 reads of at most 64 KiB (1 MiB) each time it is polled,
/// then yields, so that a flooding peer cannot hold a worker thread.
///
/// # Example
///
/// ```
/// use hyper_util::rt::TokioIo;
/// use linger::{LingerConfig, LingerIo};
///
/// # async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (stream, _peer) = listener.accept().await?;
/// let io = TokioIo::new(LingerIo::standalone_with_config(stream, LingerConfig::new()));
/// // hand `io` to hyper's `serve_connection`
/// # Ok::<_, std::io::Error>(())
/// # };
/// ```
pub struct LingerIo<T> {
    io: Option<T>,
    handle: ConnectionHandle,
    /// A read returned at least one byte from the peer.
    read_any: bool,
    /// A read returned end of file.
    eof: bool,
    phase: Phase,
    /// Moves the IO and the rest of its close onto a task of its own, and
    /// says whether it did; set by the constructors, where `T: Send +
    /// 'static` is known.
    hand_off: fn(&mut LingerIo<T>, DetachedLinger) -> bool,
    /// How the drain reads and what it can ask the kernel.
    ops: Ops<T>,
}

impl<T> LingerIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Wraps `io`, a connection of no listener, with the default
    /// [`LingerConfig`]: it is a group of its own, counted, capped and shut
    /// down by nothing else. Use [`LingerListener::wrap`](crate::LingerListener::wrap)
    /// for a connection that belongs to a listener.
    pub fn standalone(io: T) -> Self {
        Self::standalone_with_config(io, LingerConfig::new())
    }

    /// As [`standalone`](Self::standalone), lingering with `config`.
    pub fn standalone_with_config(io: T, config: LingerConfig) -> Self {
        Self::with_listener(io, Group::new(config))
    }

    pub(crate) fn with_listener(io: T, listener: Arc<Group>) -> Self {
        Self {
            io: Some(io),
            handle: ConnectionHandle::new(listener),
            read_any: false,
            eof: false,
            phase: Phase::Open,
            hand_off: hand_off::<T>,
            ops: ops_for::<T>(),
        }
    }
}

impl<T> LingerIo<T> {
    /// The handle shared with the middleware.
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    /// A reference to the inner IO; `None` once a shutdown handed it to a
    /// linger of its own ([`LingerConfig::with_detach`]).
    pub fn get_ref(&self) -> Option<&T> {
        self.io.as_ref()
    }

    /// A mutable reference to the inner IO, as [`get_ref`](Self::get_ref).
    /// Reading from it directly hides that input from the lingering
    /// decision.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.io.as_mut()
    }

    /// A pinned mutable reference to the inner IO, as
    /// [`get_ref`](Self::get_ref).
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Option<Pin<&mut T>>
    where
        T: Unpin,
    {
        self.get_mut().get_mut().map(Pin::new)
    }

    /// Unwraps the inner IO, which then does not linger when it is closed;
    /// `None` as for [`get_ref`](Self::get_ref).
    pub fn into_inner(mut self) -> Option<T> {
        self.phase = Phase::Closed;
        self.io.take()
    }

    /// The inner IO, or `NotConnected` once it was handed to a detached
    /// linger.
    #[inline]
    fn pinned(&mut self) -> io::Result<Pin<&mut T>>
    where
        T: Unpin,
    {
        match self.io.as_mut() {
            Some(io) => Ok(Pin::new(io)),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the IO was handed to a linger of its own",
            )),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for LingerIo<T> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = this.pinned()?.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if buf.filled().len() > before {
                this.read_any = true;
                current::enter(&this.handle);
            } else if buf.remaining() > 0 {
                this.eof = true;
            }
        }
        res
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingerIo<T> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pinned()?.poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pinned()?.poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(T::is_write_vectored)
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().pinned()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

impl<T: fmt::Debug> fmt::Debug for LingerIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Open => "open",
            Phase::Closing(..) => "closing",
            Phase::Draining(_) => "draining",
            Phase::Closed => "closed",
        };
        f.debug_struct("LingerIo")
            .field("io", &self.io)
            .field("phase", &phase)
            .field("handle", &self.handle)
            .finish()
    }
}

impl<T> AsConnectionHandle for LingerIo<T> {
    fn connection_handle(&self) -> Option<&ConnectionHandle> {
        Some(&self.handle)
    }
}
