//! What a server holds: the process's open file descriptors and the
//! runtime's live tasks, and a server task checked against the counts it
//! started from.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::client::IO_TIMEOUT;
use super::wait::expect_within;

/// How long tasks and descriptors may take to go away.
pub(crate) const CLEANUP: Duration = Duration::from_secs(3);
/// Poll period while waiting for them to go away.
pub(crate) const STEP: Duration = Duration::from_millis(20);

/// The process's open file descriptors (Linux).
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// The current runtime's live tasks.
pub(crate) fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A server task on the current runtime, and the baselines it is checked
/// against. The counts are the process's: only meaningful with one such
/// test running at a time.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
    /// Open fds before the listener was bound.
    pub(crate) fds_before: usize,
    /// Open fds with the listener bound, no connection.
    pub(crate) fds_idle: usize,
    /// Alive tasks with the server running, no connection.
    pub(crate) tasks_idle: usize,
}

impl Server {
    /// Binds an ephemeral loopback port and has `serve` spawn the server
    /// task on it.
    pub(crate) async fn start(serve: impl FnOnce(TcpListener) -> JoinHandle<()>) -> Server {
        let fds_before = open_fds();
        let listener = timeout(IO_TIMEOUT, TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind timed out")
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = serve(listener);
        Server {
            addr,
            task,
            fds_before,
            fds_idle: open_fds(),
            tasks_idle: alive_tasks(),
        }
    }

    /// With the client's socket still open: the server's connection task and
    /// socket are gone. Returns how long that took.
    pub(crate) async fn expect_connection_gone(&self) -> Duration {
        let (fds, tasks) = (self.fds_idle + 1, self.tasks_idle);
        expect_within(
            &format!("connection task and socket gone (want {fds} fds, {tasks} tasks)"),
            CLEANUP,
            STEP,
            || open_fds() == fds && alive_tasks() == tasks,
        )
        .await
    }

    /// The client's socket closed too: back to the idle count.
    pub(crate) async fn expect_client_gone(&self) {
        let fds = self.fds_idle;
        expect_within("client socket closed", CLEANUP, STEP, || open_fds() == fds).await;
    }

    /// Stops the server; every fd and task it had is gone.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = timeout(IO_TIMEOUT, self.task)
            .await
            .expect("server task ended");
        let (fds, tasks) = (self.fds_before, self.tasks_idle - 1);
        expect_within(
            &format!("server fds and tasks gone (want {fds} fds, {tasks} tasks)"),
            CLEANUP,
            STEP,
            || open_fds() == fds && alive_tasks() == tasks,
        )
        .await;
    }
}
