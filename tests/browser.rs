//! Real browsers, where users meet this bug: Debian's Firefox ESR and
//! Chromium, headless, driven by puppeteer-core (`tests/clients/browser/`),
//! upload 16 MiB by `fetch` and by `XMLHttpRequest` to a route that answers
//! 413 without reading the body, from a page of the server's own, against
//! the lab app through `linger::serve` and served plainly, in the same run.
//!
//! Firefox loses the early 413 to plain axum (a `NetworkError`: the reset
//! reaches it while it is still uploading) and gets every one with the
//! crate. Chromium gets it from both: it must get it with the crate.
//!
//! Needs node, `npm install` in `tests/clients/browser` (CI does both), and
//! `/usr/bin/firefox-esr` and `/usr/bin/chromium` (Debian's packages
//! `firefox-esr` and `chromium`). Outside CI a missing piece skips the test
//! with a message; in CI it fails.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use linger::LingerConfig;
use support::lab::{self, Close, Lab};

/// Uploads per API, browser and server.
const TRIALS: usize = 5;
/// The longest one browser run may take.
const BOUND: Duration = Duration::from_secs(300);

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/browser");

/// The lab app, and a page for the browser to run its uploads from (same
/// origin, so no CORS is involved).
fn app() -> axum::Router {
    lab::app().route(
        "/page",
        get(|| async { Html("<!doctype html><title>linger</title><p>uploads") }),
    )
}

/// What one browser saw: for each page URL and API, the results in order.
type Seen = BTreeMap<(String, String), Vec<String>>;

/// Runs the driver with `kind` (`firefox` or `chrome`) against `urls`.
fn drive(kind: &str, executable: &str, urls: &[String]) -> Seen {
    let mut child = Command::new("node")
        .arg(Path::new(DRIVER).join("browser.mjs"))
        .args([kind, executable, &TRIALS.to_string()])
        .args(urls)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!("{kind}: the browser run took over {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{kind}: the driver failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Seen::new();
    for line in stdout.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(url), Some(api), Some(result)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("{kind}: a line the driver should not print: {line:?}");
        };
        seen.entry((url.to_string(), api.to_string()))
            .or_default()
            .push(result.to_string());
    }
    seen
}

/// Whether the tools are here: in CI they must be.
fn available(executables: &[&str]) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let driver = Path::new(DRIVER)
        .join("node_modules/puppeteer-core")
        .exists();
    let browsers = executables.iter().all(|e| Path::new(e).exists());
    let all = node && driver && browsers;
    if !all {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have node ({node}), puppeteer-core in {DRIVER} ({driver}) and the \
             browsers {executables:?} ({browsers})"
        );
        eprintln!(
            "skipping: node {node}, `npm install` in {DRIVER} {driver}, browsers \
             {executables:?} {browsers}"
        );
    }
    all
}

#[test]
fn browsers_get_the_early_413_with_the_crate() {
    const FIREFOX: &str = "/usr/bin/firefox-esr";
    const CHROMIUM: &str = "/usr/bin/chromium";
    if !available(&[FIREFOX, CHROMIUM]) {
        return;
    }
    let cured = Lab::start(app(), Close::Serve(LingerConfig::new()));
    let plain = Lab::start(app(), Close::Plain);
    let page = |lab: &Lab| format!("http://{}/page", lab.addr);
    let urls = [page(&cured), page(&plain)];
    for (kind, executable) in [("firefox", FIREFOX), ("chrome", CHROMIUM)] {
        let seen = drive(kind, executable, &urls);
        for api in ["fetch", "xhr"] {
            let results = |url: &String| {
                seen.get(&(url.clone(), api.to_string()))
                    .cloned()
                    .unwrap_or_default()
            };
            let (with, without) = (results(&urls[0]), results(&urls[1]));
            eprintln!("{kind} {api}: with linger {with:?}; plain axum {without:?}");
            assert_eq!(with.len(), TRIALS, "{kind} {api}: {seen:?}");
            assert!(
                with.iter().all(|r| r == "413"),
                "{kind} {api} with linger: {with:?}"
            );
            if kind == "firefox" && without.iter().all(|r| r == "413") {
                eprintln!(
                    "note: Firefox got every 413 from plain axum too: on this machine the \
                     browser test does not discriminate"
                );
            }
        }
    }
}
