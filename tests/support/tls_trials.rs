//! TLS trials for the tests of TLS servers: the reset lab's close scenarios
//! ([`super::scenarios`]) run over a blocking rustls client
//! ([`TlsClient`]) against a server of the test's own, served with the
//! crate and without it, and judged as a reset-lab [`Outcome`].
//!
//! A trial is whole when the whole response arrived, then `close_notify`,
//! then the TCP FIN with no reset after it.

use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::probe::Outcome;
use super::scenarios::{pipelined_after_close_over, reject_upload_write_first_over};
use super::tls::TlsClient;

/// One blocking trial against a TLS server at an address, trusting its
/// certificate.
pub(crate) type Trial = fn(SocketAddr, CertificateDer<'static>) -> Outcome;

/// The reset lab's `pipelined-after-1mib-close` over TLS: `GET
/// /close/1048576` and a 64 KiB padded GET in one write, a 16 KiB receive
/// buffer, a pause, then read everything.
pub(crate) fn pipelined_after_close(addr: SocketAddr, cert: CertificateDer<'static>) -> Outcome {
    pipelined_after_close_over(|| TlsClient::connect(addr, cert, Some(16 << 10)), None)
}

/// The reset lab's `reject-upload-write-first` over TLS: `POST
/// /reject/2048` with a 16 MiB body, all written (and flushed) before
/// reading; any write error fails the trial.
pub(crate) fn upload_write_first(addr: SocketAddr, cert: CertificateDer<'static>) -> Outcome {
    reject_upload_write_first_over(|| TlsClient::connect(addr, cert, None))
}

/// Runs `trial` against `addr` `trials` times, one after another, each on
/// a thread of its own and bounded by `limit`.
pub(crate) fn run_trials(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    trials: usize,
    limit: Duration,
    trial: Trial,
) -> Vec<Outcome> {
    (0..trials)
        .map(|_| {
            let cert = cert.clone();
            within(limit, move || trial(addr, cert))
        })
        .collect()
}

/// What `trial` returns within `limit`. A trial still running then is a
/// timeout (`got` 0: what it read stays with it), and its thread is left
/// to end by itself, its every wait bounded.
fn within(limit: Duration, trial: impl FnOnce() -> Outcome + Send + 'static) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone only if the trial took too long.
        let _ = tx.send(trial());
    });
    match rx.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => Outcome::Timeout { got: 0 },
        Err(RecvTimeoutError::Disconnected) => Outcome::Wrong("the trial panicked".into()),
    }
}

/// A TLS server of a test's own, served with the crate or without it.
pub(crate) trait TlsServer: Sized {
    /// Serves the lab app, with lingering close if `linger`.
    fn start(linger: bool) -> Self;
    fn addr(&self) -> SocketAddr;
    fn cert(&self) -> CertificateDer<'static>;
    /// With the crate: its shutdown handle, which reads its counters.
    fn lingers(&self) -> Option<linger::LingerShutdown>;

    /// Runs `trial` `trials` times, each bounded by `limit`.
    fn trials(&self, trials: usize, limit: Duration, trial: Trial) -> Vec<Outcome> {
        run_trials(self.addr(), &self.cert(), trials, limit, trial)
    }

    /// The counters once `started` lingers have begun and none lingers
    /// (bounded by `limit`: the last counters read, otherwise).
    fn settled_stats(&self, started: u64, limit: Duration) -> linger::LingerStats {
        let lingers = self.lingers().expect("a lingering server");
        super::stats::wait_for(
            limit,
            Duration::from_millis(5),
            || lingers.stats(),
            |s| s.started >= started && s.lingering == 0,
        )
        .unwrap_or_else(|s| s)
    }
}

/// Every one of `trials` trials with the crate is whole and its linger
/// ended by the client's close; at least one without it is not (in the
/// same run, so the test can fail).
pub(crate) fn cured<S: TlsServer>(name: &str, trials: usize, limit: Duration, trial: Trial) {
    let server = S::start(true);
    let with = server.trials(trials, limit, trial);
    let stats = server.settled_stats(trials as u64, limit);
    eprintln!("{name} with linger: {with:?}\n  {stats:?}");
    assert!(with.iter().all(Outcome::is_whole), "{name}: {with:?}");
    assert_eq!(stats.started, trials as u64, "{stats:?}");
    assert_eq!(stats.peer_closed, trials as u64, "{stats:?}");
    drop(server);

    let without = S::start(false).trials(trials, limit, trial);
    eprintln!("{name} without linger: {without:?}");
    assert!(
        without.iter().any(|o| !o.is_whole()),
        "{name} never failed without linger, so this test proves nothing here: {without:?}"
    );
}
