//! The close state machine of `LingerIo`, over in-memory IO: when it
//! lingers, the half-close before the drain, what ends the drain, the
//! counters, shutdown after completion, the close a dropped IO finishes on a
//! task, and the pass-through of vectored writes.
//!
//! Tests that depend on time run on a paused clock and move it with
//! `advance`; the shutdown future is polled by hand (`tokio_test::task`),
//! so nothing it waits on lets the paused clock auto-advance.
//!
//! - [`harness`]: the duplex pipe, the counters, bounded waits;
//! - [`modes`]: whether the close lingers;
//! - [`bounds`]: what ends a linger;
//! - [`dropped`]: shutdown after completion, and a `LingerIo` dropped
//!   before its close completed;
//! - [`vectored`]: vectored writes pass through.

mod bounds;
mod dropped;
mod harness;
mod modes;
mod vectored;

#[path = "../support/mod.rs"]
mod support;
