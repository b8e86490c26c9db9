//! `LingerIo` passes vectored writes, and whether its IO writes vectored,
//! through to the inner IO.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use linger::LingerIo;
use tokio::io::{
    duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf,
};

use crate::harness::within;

/// An IO that says whether it writes vectored, and counts vectored writes.
struct Vectored {
    inner: DuplexStream,
    vectored: bool,
    calls: Arc<AtomicUsize>,
}

impl AsyncRead for Vectored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Vectored {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Gather, as a vectored IO would, so the whole write lands.
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        Pin::new(&mut self.inner).poll_write(cx, &all)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn vectored_writes_are_forwarded() {
    for vectored in [true, false] {
        let (server, mut peer) = duplex(1024);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut io = LingerIo::standalone(Vectored {
            inner: server,
            vectored,
            calls: calls.clone(),
        });
        assert_eq!(io.is_write_vectored(), vectored);
        let bufs = [IoSlice::new(b"HTTP/1.1 "), IoSlice::new(b"200 OK\r\n")];
        let n = within(io.write_vectored(&bufs)).await.unwrap();
        assert_eq!(n, 17);
        assert_eq!(calls.load(Ordering::Relaxed), 1, "went to the inner IO");
        let mut got = [0u8; 17];
        within(peer.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n");
    }
    // And for stock IOs: whatever the inner IO says.
    let (server, _peer) = duplex(64);
    let expected = server.is_write_vectored();
    assert_eq!(LingerIo::standalone(server).is_write_vectored(), expected);
    let mock = tokio_test::io::Builder::new().build();
    let expected = mock.is_write_vectored();
    assert_eq!(LingerIo::standalone(mock).is_write_vectored(), expected);
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let (tcp, _) = within(listener.accept()).await.unwrap();
    assert!(tcp.is_write_vectored());
    assert!(LingerIo::standalone(tcp).is_write_vectored());
}
