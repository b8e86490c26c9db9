//! What every test here shares: the configuration, the counters in one
//! comparable value, a `LingerIo` over an in-memory duplex pipe with the
//! peer's end, and bounded waits.

use std::future::Future;
use std::time::Duration;

use crate::support::stats::Ends;
use linger::{ConnectionHandle, LingerConfig, LingerIo, LingerListener, LingerMode};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

pub(crate) const IDLE: Duration = Duration::from_secs(5);
pub(crate) const DEADLINE: Duration = Duration::from_secs(12);
pub(crate) const MS: Duration = Duration::from_millis(1);
pub(crate) const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The counters, comparable in one `assert_eq!`: how the lingers ended
/// (the suite's [`Ends`]) and the bytes discarded, exact over in-memory IO.
pub(crate) type Counts = (Ends, u64);

pub(crate) fn counts(handle: &ConnectionHandle) -> Counts {
    let stats = handle.stats();
    (Ends::of(&stats), stats.bytes_discarded)
}

/// The configuration the tests share: lingers in place (not the default),
/// so the shutdown future is the linger and can be polled by hand.
pub(crate) fn config(mode: LingerMode) -> LingerConfig {
    LingerConfig::new()
        .with_detach(false)
        .with_mode(mode)
        .with_idle_timeout(IDLE)
        .with_deadline(DEADLINE)
}

/// Awaits `fut`, failing the test instead of hanging. Only for futures that
/// are ready at once in the paused-clock tests (a pending one would let the
/// clock auto-advance).
pub(crate) async fn within<F: Future>(fut: F) -> F::Output {
    timeout(Duration::from_secs(5), fut)
        .await
        .expect("timed out")
}

/// A server-side `LingerIo` over a duplex pipe, and the peer's end.
pub(crate) fn pipe(config: LingerConfig) -> (LingerIo<DuplexStream>, DuplexStream) {
    let (server, peer) = duplex(64 << 10);
    (LingerIo::standalone_with_config(server, config), peer)
}

/// As [`pipe`], after the peer sent a request and the server read it.
pub(crate) async fn served(config: LingerConfig) -> (LingerIo<DuplexStream>, DuplexStream) {
    request(pipe(config)).await
}

/// As [`served`], through `listener` (whose shutdown a test can begin).
pub(crate) async fn served_by<L>(
    listener: &LingerListener<L>,
) -> (LingerIo<DuplexStream>, DuplexStream) {
    let (server, peer) = duplex(64 << 10);
    request((listener.wrap(server), peer)).await
}

/// The peer sends a request and the server reads it.
async fn request(
    (mut io, mut peer): (LingerIo<DuplexStream>, DuplexStream),
) -> (LingerIo<DuplexStream>, DuplexStream) {
    within(peer.write_all(REQUEST)).await.unwrap();
    let mut buf = [0u8; 256];
    let n = within(io.read(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], REQUEST);
    (io, peer)
}

/// The peer reads end of file: the server half-closed.
pub(crate) async fn expect_eof(peer: &mut DuplexStream) {
    let mut buf = [0u8; 64];
    assert_eq!(
        within(peer.read(&mut buf)).await.unwrap(),
        0,
        "peer sees EOF"
    );
}

/// Polls a condition on the runtime, yielding between polls, a bounded
/// number of times.
pub(crate) async fn settle(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    cond()
}

pub(crate) use crate::support::leaks::alive_tasks;
