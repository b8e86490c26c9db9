//! Linux TCP specifics of the drain: discarding without a copy, and asking
//! the kernel whether every byte sent has been acknowledged.
//!
//! [`LingerIo`](crate::LingerIo) picks these when its IO is tokio's
//! `TcpStream` on Linux, and the generic paths otherwise.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Discards up to `scratch.len()` bytes of queued input without copying
/// them: Linux's `recv(MSG_TRUNC)` on TCP drops the bytes in the kernel and
/// returns how many there were (`Ready(Ok(0))` is EOF).
pub(crate) fn discard(
    tcp: &mut TcpStream,
    scratch: &mut [MaybeUninit<u8>],
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let socket = socket2::SockRef::from(&*tcp);
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_io(Interest::READABLE, || {
            socket.recv_with_flags(scratch, libc::MSG_TRUNC)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// Reads up to `buf.len()` bytes of queued input into `buf`
/// (`Ready(Ok(0))` is EOF).
pub(crate) fn read(
    tcp: &mut TcpStream,
    buf: &mut [u8],
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// Bytes of the send queue the peer has not acknowledged yet, the FIN
/// counting as one (`ioctl(SIOCOUTQ)`): 0 once the peer's TCP has the whole
/// response and the half-close.
///
/// This is the crate's one `unsafe` block: neither socket2, rustix nor nix
/// offers `SIOCOUTQ` or `TCP_INFO` safely. The call is sound: the file
/// descriptor is borrowed from a live `TcpStream` for the duration of the
/// call, and `SIOCOUTQ` writes exactly one `c_int` through a pointer to a
/// local `c_int`.
#[allow(unsafe_code)]
pub(crate) fn unacked(tcp: &TcpStream) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: see above; the fd is valid while `tcp` is borrowed, and the
    // out pointer is to a properly aligned, writable `c_int`.
    let rc = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued.max(0) as usize)
}
