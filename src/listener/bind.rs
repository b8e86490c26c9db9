//! A TCP listener with a listen backlog fit for servers.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::listener::LingerListener;
use crate::state::config::LingerConfig;

impl LingerListener<TcpListener> {
    /// Default listen backlog of [`bind`](Self::bind): 4096 pending
    /// connections.
    ///
    /// tokio's `TcpListener::bind` (like Rust's std) listens with a backlog of
    /// 128: a burst of new connections overflows the accept queue, and each
    /// overflow is a dropped SYN (a one-second stall for that client) or, with
    /// `net.ipv4.tcp_abort_on_overflow=1`, a reset before any data. nginx uses
    /// 511. Linux caps the backlog at `net.core.somaxconn` (4096 by default
    /// since Linux 5.4).
    pub const DEFAULT_BACKLOG: u32 = 4096;

    /// Binds a TCP listener on `addr` with [`DEFAULT_BACKLOG`](Self::DEFAULT_BACKLOG) and the
    /// default [`LingerConfig`].
    ///
    /// # Example
    ///
    /// ```
    /// # async {
    /// let listener = linger::LingerListener::bind("127.0.0.1:0").await?;
    /// # Ok::<_, std::io::Error>(())
    /// # };
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, LingerConfig::new(), Self::DEFAULT_BACKLOG).await
    }

    /// Binds a TCP listener on `addr` with a listen backlog of `backlog`
    /// (the kernel caps it at `net.core.somaxconn`), lingering with
    /// `config`. Like tokio's `bind`, it sets `SO_REUSEADDR` on Unix and
    /// tries each address `addr` resolves to until one binds.
    pub async fn bind_with(
        addr: impl ToSocketAddrs,
        config: LingerConfig,
        backlog: u32,
    ) -> io::Result<Self> {
        let mut last_error = None;
        for addr in tokio::net::lookup_host(addr).await? {
            match bind_tcp(addr, backlog) {
                Ok(listener) => return Ok(Self::with_config(listener, config)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    }
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}
