//! What the kernel counts, read before and after (Linux): the listen
//! backlog of `LingerListener::bind` against tokio's, the resets the linger
//! prevents (`LingerStats::resets_prevented` beside the kernel's
//! `TcpExtTCPAbortOnClose`), and the doctor's diagnosis of both.
//!
//! The counters are per network namespace: each test moves its thread
//! (and the runtimes it starts) into a namespace of its own, so that no
//! other traffic on the host is counted (root, as in CI; elsewhere they run
//! in the shared namespace, one at a time, and say so).

#![cfg(target_os = "linux")]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use linger::doctor::{Cause, Diagnosis, KernelSettings, TcpCounters};
use linger::{LingerConfig, LingerListener};
use support::lab::Lab;
use support::scenarios::{scenario, scenarios};

/// One test at a time: they read counters the whole namespace shares.
static COUNTERS: Mutex<()> = Mutex::new(());

fn counters_lock() -> MutexGuard<'static, ()> {
    COUNTERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connections in the burst.
const BURST: usize = 2000;
/// The bound on each phase of a burst.
const BOUND: Duration = Duration::from_secs(30);

/// What a burst of [`BURST`] concurrent connects did to a listener that
/// does not accept until the burst is over.
#[derive(Debug)]
struct Burst {
    /// `TcpExtListenOverflows` grew by this much.
    overflows: u64,
    /// Connects that completed before the listener accepted anything.
    completed_unaccepted: usize,
    /// Connects that completed in the end, once it accepted.
    completed: usize,
}

/// Opens [`BURST`] connections at once to `listener`, which accepts nothing
/// until every connect completed or the queue overflowed (bounded); then
/// accepts everything and waits (bounded) for the rest of the connects.
async fn burst(listener: tokio::net::TcpListener) -> Burst {
    let addr = listener.local_addr().unwrap();
    let before = TcpCounters::read().unwrap();
    let completed = Arc::new(AtomicUsize::new(0));
    let (hold, held) = tokio::sync::watch::channel(());
    let clients: Vec<_> = (0..BURST)
        .map(|_| {
            let (completed, mut held) = (completed.clone(), held.clone());
            tokio::spawn(async move {
                let connect = tokio::net::TcpStream::connect(addr);
                if let Ok(Ok(stream)) = tokio::time::timeout(BOUND, connect).await {
                    completed.fetch_add(1, Ordering::SeqCst);
                    let _ = held.changed().await;
                    drop(stream);
                }
            })
        })
        .collect();
    let overflows = || {
        TcpCounters::read()
            .unwrap()
            .since(&before)
            .get("TcpExtListenOverflows")
    };
    let _ = tokio::time::timeout(BOUND, async {
        while completed.load(Ordering::SeqCst) < BURST && overflows() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // A moment for the connects under way to land, overflowing or not.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let completed_unaccepted = completed.load(Ordering::SeqCst);
    let overflows = overflows();
    let acceptor = tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    let _ = tokio::time::timeout(BOUND, async {
        while completed.load(Ordering::SeqCst) < BURST {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let _ = hold.send(());
    for client in clients {
        let _ = client.await;
    }
    acceptor.abort();
    Burst {
        overflows,
        completed_unaccepted,
        completed: completed.load(Ordering::SeqCst),
    }
}

#[test]
fn a_burst_overflows_tokios_backlog_and_not_the_crates() {
    let _lock = counters_lock();
    support::netns::isolate();
    let settings = KernelSettings::read().unwrap();
    assert!(
        settings.somaxconn as usize > BURST,
        "net.core.somaxconn is {}: raise it above {BURST} for this test (the kernel caps \
         every backlog there)",
        settings.somaxconn
    );
    let rt = support::runtime::runtime();
    let plain = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        burst(listener).await
    });
    let cured = rt.block_on(async {
        let listener = LingerListener::bind("127.0.0.1:0").await.unwrap();
        burst(listener.into_inner()).await
    });
    eprintln!("tokio's bind (backlog 128): {plain:?}\nLingerListener::bind: {cured:?}");
    assert!(
        plain.overflows > 0,
        "tokio's backlog never overflowed: {plain:?}"
    );
    assert!(plain.completed_unaccepted < BURST, "{plain:?}");
    assert_eq!(cured.overflows, 0, "{cured:?}");
    assert_eq!(cured.completed_unaccepted, BURST, "{cured:?}");
    assert_eq!((plain.completed, cured.completed), (BURST, BURST));
}

/// Runs scenario `key` once against `addr`, waits for the server's lingers
/// to end (bounded) and returns whether the response was whole and how the
/// kernel's abort counters and the lingers' counters grew meanwhile.
fn one_run(
    lab: &Lab,
    key: &str,
    mut run: impl FnMut(SocketAddr) -> bool,
) -> (bool, u64, Option<Prevented>) {
    let aborts = |c: &TcpCounters| c.get("TcpExtTCPAbortOnClose") + c.get("TcpExtTCPAbortOnData");
    let stats_before = lab.lingers.as_ref().map(|l| l.stats());
    let before = TcpCounters::read().unwrap();
    let whole = run(lab.addr);
    let stats_after = lab.lingers.as_ref().map(|lingers| {
        let started = stats_before.map_or(0, |s| s.started);
        support::stats::wait_for(
            BOUND,
            Duration::from_millis(5),
            || lingers.stats(),
            |s| s.lingering == 0 && (s.started > started || s.peer_closed + s.error > 0),
        )
        .unwrap_or_else(|last| last)
    });
    // The plain server's reset leaves as it closes: give it a moment to be
    // counted (bounded; no wait is needed for correctness of the crate's
    // side, which must stay at zero).
    let mut grown = 0;
    support::wait::wait_until(
        Duration::from_millis(500),
        Duration::from_millis(10),
        || {
            grown = aborts(&TcpCounters::read().unwrap().since(&before));
            grown > 0
        },
    );
    let delta = match (stats_before, stats_after) {
        (Some(b), Some(a)) => Some(Prevented {
            started: a.started - b.started,
            resets_prevented: a.resets_prevented - b.resets_prevented,
        }),
        _ => None,
    };
    eprintln!("{key}: whole={whole} kernel aborts +{grown} stats {delta:?}");
    (whole, grown, delta)
}

/// How the lingers' counters grew over one run.
#[derive(Debug, Clone, Copy)]
struct Prevented {
    started: u64,
    resets_prevented: u64,
}

impl Prevented {
    fn lingered(&self) -> bool {
        self.started > 0
    }
}

#[test]
fn the_linger_counts_the_resets_it_prevents_and_the_kernel_sends_none() {
    let _lock = counters_lock();
    support::netns::isolate();
    // The crate first, so that no reset of the plain server's, sent late,
    // is counted against it.
    let cured = Lab::lingering(LingerConfig::new());
    let mut prevented = Vec::new();
    for s in scenarios() {
        let (whole, aborts, stats) = one_run(&cured, s.key, |addr| s.run(addr).is_whole());
        assert!(whole, "{}", s.key);
        assert_eq!(
            aborts, 0,
            "{}: the kernel sent a reset with the crate",
            s.key
        );
        prevented.push((s.key, stats.unwrap()));
    }
    // Keep-alive traffic: 100 requests on one connection, then the client
    // closes first. Nothing to prevent.
    let (whole, aborts, stats) = one_run(&cured, "keep-alive", |addr| {
        use std::io::Write;
        let mut client = support::client::connect(addr, None).unwrap();
        (0..100).all(|_| {
            client
                .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            support::client::read_response(&mut client).is_ok_and(|r| r.head.status == 200)
        })
    });
    assert!(whole);
    assert_eq!(aborts, 0);
    assert_eq!(stats.unwrap().resets_prevented, 0);
    drop(cured);

    let plain = Lab::plain();
    let mut failed_plainly = 0;
    for (s, (key, stats)) in scenarios().into_iter().zip(prevented) {
        let (whole, aborts, _) = one_run(&plain, s.key, |addr| s.run(addr).is_whole());
        if !whole {
            failed_plainly += 1;
            assert!(aborts > 0, "{key}: lost plainly without a kernel abort");
            assert!(stats.resets_prevented >= 1, "{key}: {stats:?}");
        }
        if key == "control-close" {
            assert!(whole && stats.lingered());
            assert_eq!(stats.resets_prevented, 0, "{key}: {stats:?}");
        }
    }
    assert!(failed_plainly > 0, "no scenario failed plainly");
}

/// One client's run against a server: whether its response was whole.
type Case = Box<dyn Fn(SocketAddr) -> bool>;

/// A client that asks for close, reads its response to the end, and closes.
fn clean_close(addr: SocketAddr) -> bool {
    use std::io::Write;
    let mut client = support::client::connect(addr, None).unwrap();
    client
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let whole = support::client::read_response(&mut client).is_ok_and(|r| r.body == b"ok");
    let (rest, end) = support::client::read_to_close(&mut client);
    whole && rest.is_empty() && end.is_clean()
}

/// `resets_prevented` counts what the kernel resets without the linger:
/// for each case, the count the lingering server gives equals the kernel's
/// `TcpExtTCPAbortOnClose` + `TcpExtTCPAbortOnData` for the same case
/// against the same server with the linger off (`LingerMode::Off`), in a
/// network namespace of this test's own. A client that closes cleanly
/// counts 0 on both sides; a pipelined request 1.
#[test]
fn resets_prevented_matches_the_kernels_resets_with_the_linger_off() {
    let _lock = counters_lock();
    support::netns::isolate();
    let aborts = |c: &TcpCounters| c.get("TcpExtTCPAbortOnClose") + c.get("TcpExtTCPAbortOnData");
    let on = Lab::lingering(LingerConfig::new());
    let off = Lab::lingering(LingerConfig::new().with_mode(linger::LingerMode::Off));
    let mut cases: Vec<(&str, Case)> = vec![
        ("clean-close", Box::new(clean_close)),
        (
            "pipelined",
            Box::new(|addr| scenario("pipelined-after-1mib-close").run(addr).is_whole()),
        ),
    ];
    for s in scenarios() {
        cases.push((s.key, Box::new(move |addr| s.run(addr).is_whole())));
    }
    let mut resets = 0;
    for (key, run) in &cases {
        // With the linger: how many of this case's lingers prevented one.
        let before = on.stats();
        assert!(run(on.addr), "{key}: not whole with the linger");
        let after = on
            .wait_for(BOUND, Duration::from_millis(5), |s| {
                s.lingering == 0 && s.started > before.started
            })
            .unwrap_or_else(|s| panic!("{key}: the linger did not end: {s:?}"));
        let prevented = after.resets_prevented - before.resets_prevented;

        // Without it: how many resets the kernel sent (given a moment to
        // count a reset that leaves as the socket closes; bounded). Some
        // cases are races a plain server now and then wins (it read all
        // the input before its close): a case the linger counted is run
        // again, at most PLAIN_TRIES times, until the kernel resets it.
        const PLAIN_TRIES: usize = 5;
        let mut sent = 0;
        for _ in 0..if prevented > 0 { PLAIN_TRIES } else { 1 } {
            let kernel_before = TcpCounters::read().unwrap();
            run(off.addr);
            support::wait::wait_until(
                Duration::from_millis(500),
                Duration::from_millis(10),
                || {
                    sent = aborts(&TcpCounters::read().unwrap().since(&kernel_before));
                    sent >= prevented.max(1)
                },
            );
            if sent == prevented {
                break;
            }
        }
        eprintln!("{key}: resets prevented {prevented}, kernel resets with the linger off {sent}");
        assert_eq!(prevented, sent, "{key}");
        resets += sent;
        match *key {
            "clean-close" => assert_eq!(prevented, 0),
            "pipelined" => assert_eq!(prevented, 1),
            _ => {}
        }
    }
    assert!(resets > 0, "no case made the kernel reset");
}

#[test]
fn the_doctor_tells_an_overflowing_queue_from_closes_with_unread_input() {
    let _lock = counters_lock();
    support::netns::isolate();
    let rt = support::runtime::runtime();

    // An accept queue overflowed on purpose: a listener that accepts
    // nothing, with tokio's backlog of 128, and 300 connects.
    let before = TcpCounters::read().unwrap();
    let (listener, clients) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..300)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        (listener, clients)
    });
    let overflow =
        Diagnosis::between(&before, &TcpCounters::read().unwrap(), Duration::ZERO).unwrap();
    eprintln!("--- accept queue overflow ---\n{overflow}");
    let addr = listener.local_addr().unwrap();
    assert!(overflow.count(Cause::AcceptQueueOverflow) > 0, "{overflow}");
    assert!(
        overflow.full_queues.iter().any(|s| s.local == addr),
        "{overflow}"
    );
    assert!(
        overflow.small_backlogs.iter().any(|s| s.local == addr),
        "{overflow}"
    );
    assert!(overflow.to_string().contains("accept queue"), "{overflow}");
    drop(listener);
    rt.block_on(async {
        for client in clients {
            let _ = client.await;
        }
    });

    // A plain server's close with a pipelined request unread, then the
    // same with the crate.
    let pipelined = scenario("pipelined-after-1mib-close");
    let plain = Lab::plain();
    let before = TcpCounters::read().unwrap();
    assert!(!pipelined.run(plain.addr).is_whole());
    let mut closes = None;
    support::wait::wait_until(BOUND, Duration::from_millis(10), || {
        let d = Diagnosis::between(&before, &TcpCounters::read().unwrap(), Duration::ZERO).unwrap();
        let seen = d.count(Cause::CloseWithUnreadInput) + d.count(Cause::DataAfterClose) > 0;
        closes = Some(d);
        seen
    })
    .expect("the plain close shows in the counters");
    let closes = closes.unwrap();
    eprintln!("--- plain axum, pipelined request after a close ---\n{closes}");
    assert!(closes.to_string().contains("lingering close"), "{closes}");

    let cured = Lab::lingering(LingerConfig::new());
    let before = TcpCounters::read().unwrap();
    assert!(pipelined.run(cured.addr).is_whole());
    let _ = support::stats::wait_for(
        BOUND,
        Duration::from_millis(5),
        || cured.stats(),
        |s| s.started >= 1 && s.lingering == 0,
    );
    let clean = Diagnosis::between(&before, &TcpCounters::read().unwrap(), Duration::ZERO).unwrap();
    eprintln!("--- with linger, the same ---\n{clean}");
    assert_eq!(clean.count(Cause::CloseWithUnreadInput), 0, "{clean}");
    assert_eq!(clean.count(Cause::DataAfterClose), 0, "{clean}");
}
