//! A `TcpStream` behind a newtype, and a listener that accepts them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::Samples;

/// Accepts tokio TcpStreams as [`Wrapper`]s, so a `LingerListener`
/// around it gets an IO that is not `TcpStream`.
pub(super) struct WrappedListener {
    pub(super) inner: TcpListener,
    pub(super) holds: Option<Samples>,
}

impl axum::serve::Listener for WrappedListener {
    type Io = Wrapper;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Wrapper, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    let wrapper = Wrapper {
                        io,
                        last_write: None,
                        holds: self.holds.clone(),
                    };
                    return (wrapper, addr);
                }
                Err(e) => {
                    eprintln!("figures serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A TcpStream behind a newtype: delegates every read and write (so the
/// crate's drain takes the copying fallback), and optionally records
/// how long the socket stays open after its last write.
pub(super) struct Wrapper {
    io: TcpStream,
    last_write: Option<Instant>,
    holds: Option<Samples>,
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        if let (Some(at), Some(holds)) = (self.last_write, &self.holds) {
            let us = at.elapsed().as_micros() as u64;
            holds.lock().unwrap_or_else(|e| e.into_inner()).push(us);
        }
    }
}

impl Wrapper {
    fn wrote(&mut self, res: &Poll<io::Result<usize>>) {
        if self.holds.is_some() {
            if let Poll::Ready(Ok(n)) = res {
                if *n > 0 {
                    self.last_write = Some(Instant::now());
                }
            }
        }
    }
}

impl AsyncRead for Wrapper {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wrapper {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
