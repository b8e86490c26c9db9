//! A network namespace of the test's own, where the kernel's TCP counters
//! count only what the test does.

/// Moves the calling thread into a new network namespace with its loopback
/// up, so that every socket it and the threads it starts afterwards open
/// (a runtime's workers, say) lives there, and the kernel's counters read
/// from this thread count nothing else. Needs root (`CAP_SYS_ADMIN`) and
/// `ip` (iproute2); returns whether it isolated the thread. In CI (`CI`
/// set, as root) failing to is a failure; elsewhere the test runs in the
/// shared namespace, and says so.
pub(crate) fn isolate() -> bool {
    let isolated = unshare_net() && loopback_up();
    if !isolated {
        assert!(
            std::env::var_os("CI").is_none(),
            "could not make a network namespace in CI (root and iproute2 needed)"
        );
        eprintln!(
            "note: running in the shared network namespace (not root, or no `ip`): \
             other traffic on this host can disturb the kernel's counters"
        );
    }
    isolated
}

#[allow(unsafe_code)]
fn unshare_net() -> bool {
    // SAFETY: unshare takes a flag and no pointers; it changes the calling
    // thread's network namespace only.
    unsafe { libc::unshare(libc::CLONE_NEWNET) == 0 }
}

fn loopback_up() -> bool {
    std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success())
}
