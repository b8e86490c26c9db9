//! The tokio runtime the tests' servers run on.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

/// A multi-threaded runtime with two worker threads and every driver on:
/// the shape of a small server, and no more threads than the 2-core
/// machines the suite must pass on.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `future` on a [`runtime`] of its own, failing the test if it takes
/// longer than `limit`, and drops the runtime (and every task left on it)
/// before returning.
pub(crate) fn run<F: Future>(limit: Duration, future: F) -> F::Output {
    let rt = runtime();
    let output = rt.block_on(async {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
    });
    drop(rt);
    output
}
