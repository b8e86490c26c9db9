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

/// The first bytes a linger discarded: enough to tell a TLS close_notify
/// (the client answering the server's own) from input a plain close would
/// have been reset by.
#[derive(Clone, Copy, Default)]
pub(super) struct InputHead {
    bytes: [u8; 5],
    len: usize,
}

impl InputHead {
    /// How many more bytes it wants.
    fn wanted(&self) -> usize {
        self.bytes.len() - self.len
    }

    fn record(&mut self, read: &[u8]) {
        let n = read.len().min(self.wanted());
        self.bytes[self.len..self.len + n].copy_from_slice(&read[..n]);
        self.len += n;
    }

    /// Whether `total` discarded bytes that began with this head are one
    /// TLS alert record and nothing more: a close_notify in TLS 1.2
    /// (content type 21, at most 26 bytes with an AEAD's nonce and tag) or
    /// in TLS 1.3 (an encrypted record of type 23 of at most 26 bytes,
    /// which no HTTP request fits in). HTTP/1 and HTTP/2 input never starts
    /// with either byte.
    pub(super) fn is_only_a_tls_alert(&self, total: u64) -> bool {
        let [kind, major, _, high, low] = self.bytes;
        let length = u64::from(u16::from_be_bytes([high, low]));
        self.len == self.bytes.len()
            && (kind == 21 || kind == 23)
            && major == 3
            && length <= 26
            && total == length + 5
    }
}

/// What the drain does with the IO, chosen once per type at construction:
/// the Linux TCP paths for tokio's `TcpStream`, the generic ones otherwise.
pub(super) struct Ops<T> {
    /// Reads once and forgets what was read, but for its first bytes, which
    /// go to the head: `Ready(Ok(0))` is EOF.
    pub(super) discard: fn(&mut T, &mut Context<'_>, &mut InputHead) -> Poll<io::Result<usize>>,
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
            discard: |io, cx, head| match (io as &mut dyn Any).downcast_mut() {
                Some(tcp) if head.wanted() > 0 => {
                    // Copy the first bytes, to know what they were; no more.
                    let mut first = [0u8; 5];
                    let wanted = head.wanted();
                    let n = ready!(super::linux::read(tcp, &mut first[..wanted], cx))?;
                    head.record(&first[..n]);
                    Poll::Ready(Ok(n))
                }
                Some(tcp) => with_scratch(|scratch| super::linux::discard(tcp, scratch, cx)),
                None => discard_copy(io, cx, head),
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
fn discard_copy<T: AsyncRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    head: &mut InputHead,
) -> Poll<io::Result<usize>> {
    with_scratch(|scratch| {
        let mut buf = ReadBuf::uninit(scratch);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        head.record(buf.filled());
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
