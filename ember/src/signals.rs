//! SIGINT/SIGTERM as a flag the main loops poll: a handler that only stores an atomic is
//! async-signal-safe, and the loops wake every 100 ms anyway.

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signo: libc::c_int) {
    SIGNAL.store(signo, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT and SIGTERM.
pub(crate) fn install() {
    for signo in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is zero-initialised and then filled in completely.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&raw mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signo, &raw const action, std::ptr::null_mut());
        }
    }
}

/// The signal received, if any.
#[must_use]
pub(crate) fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
