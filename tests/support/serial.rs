//! One test at a time, for the tests of a binary that each load the machine
//! with a server of their own, or read process-wide counts (descriptors,
//! tasks, RSS) that another test running beside them would disturb.

use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the binary's one lock until dropped; a test that panicked while
/// holding it does not stop the others.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
