//! Helpers shared by the integration tests, the benches and the reset-lab
//! example: the lab server, the raw-socket client, the reset-lab scenarios,
//! and bounded waits on a listener's statistics.
//!
//! A test file takes them with `mod support;`; a bench or an example with
//! `#[path = ".../tests/support/mod.rs"] mod support;`.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

pub(crate) mod bounds;
pub(crate) mod client;
pub(crate) mod copying;
pub(crate) mod lab;
pub(crate) mod leaks;
pub(crate) mod logs;
#[cfg(target_os = "linux")]
pub(crate) mod netns;
pub(crate) mod probe;
pub(crate) mod proxy;
pub(crate) mod runtime;
pub(crate) mod scenarios;
pub(crate) mod serial;
pub(crate) mod stats;
pub(crate) mod tls;
pub(crate) mod tls_trials;
pub(crate) mod wait;
