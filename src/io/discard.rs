//! How the drain reads and forgets, chosen once per IO type: the Linux TCP
//! paths for tokio's `TcpStream`, a read into a per-thread scratch buffer
//! otherwise.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Reads one drain poll makes before it yields, so that a flooding peer
/// cannot hold a worker thread: a linger discards at most
/// `DRAIN_READS_PER_POLL * DRAIN_READ_LEN` bytes (1 MiB) per poll.
pub(super) const DRAIN_READS_PER_POLL: usize = 16;
/// The most one drain read discards: the size of the per-thread scratch
/// buffer, and the length asked of `recv(MSG_TRUNC)`.
pub(super) const DRAIN_READ_LEN: usize = 64 * 1024;

thread_local! {
    /// Where lingers on this thread read what they discard: one buffer per
    /// worker thread, none per connection. Never read back, so never
    /// initialised.
    static SCRATCH: RefCell<Box<[MaybeUninit<u8>]>> =
        RefCell::new(vec![MaybeUninit::uninit(); DRAIN_READ_LEN].into_boxed_slice());
}

/// What the drain does with the IO, chosen once per type at construction:
/// the Linux TCP paths for tokio's `TcpStream`, the generic ones otherwise.
pub(super) struct Ops<T> {
    /// Reads once and forgets what was read: `Ready(Ok(0))` is EOF.
    pub(super) discard: fn(&mut T, &mut Context<'_>) -> Poll<io::Result<usize>>,
    /// Bytes sent but not yet acknowledged, where the IO can tell.
    pub(super) unacked: fn(&T) -> Option<usize>,
}

impl<T> Clone for Ops<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Ops<T> {}

/// The drain's operations for `T`: on Linux, when `T` is tokio's
/// `TcpStream`, `recv(MSG_TRUNC)` (the kernel drops the bytes without
/// copying them) and `SIOCOUTQ`; otherwise a read into the thread's scratch
/// buffer, and no acknowledgement information.
pub(super) fn ops_for<T: AsyncRead + Unpin + 'static>() -> Ops<T> {
    #[cfg(target_os = "linux")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<tokio::net::TcpStream>() {
        use std::any::Any;
        return Ops {
            discard: |io, cx| match (io as &mut dyn Any).downcast_mut() {
                Some(tcp) => with_scratch(|scratch| super::linux::discard(tcp, scratch, cx)),
                None => discard_copy(io, cx),
            },
            unacked: |io| {
                let tcp = (io as &dyn Any).downcast_ref()?;
                super::linux::unacked(tcp).ok()
            },
        };
    }
    Ops {
        discard: discard_copy::<T>,
        unacked: |_| None,
    }
}

/// Reads once into the thread's scratch buffer.
fn discard_copy<T: AsyncRead + Unpin>(io: &mut T, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    with_scratch(|scratch| {
        let mut buf = ReadBuf::uninit(scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    })
}

/// Lends the thread's scratch buffer, or a small stack buffer in the
/// unlikely case it is already lent (a discard nested in another).
fn with_scratch<R>(f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut [MaybeUninit::uninit(); 4096]),
    })
}
