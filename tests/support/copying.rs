//! A listener whose streams are tokio `TcpStream`s behind a newtype, so that
//! a [`LingerIo`](linger::LingerIo) around them takes the drain's copying
//! path (a read into the per-thread scratch buffer) instead of
//! `recv(MSG_TRUNC)`, which it keeps for `TcpStream` itself.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts [`CopyingStream`]s.
#[derive(Debug)]
pub(crate) struct CopyingListener(pub(crate) TcpListener);

impl axum::serve::Listener for CopyingListener {
    type Io = CopyingStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CopyingStream, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (CopyingStream(io), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A `TcpStream` that is not one, as far as the crate can tell: every read
/// and write goes straight to it.
#[derive(Debug)]
pub(crate) struct CopyingStream(TcpStream);

impl AsyncRead for CopyingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CopyingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
