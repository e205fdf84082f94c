//! What the symbolizer's unit tests share: the one root check and skip rule of this test
//! binary (the end-to-end tests have their own in `tests/it/common`).

use std::io::Write as _;

use crate::untrusted::Owners;

/// Whether a test that needs root may run. Without root it says so on the terminal (through
/// `io::stderr()` itself, which the test harness does not capture) and returns false; under
/// `CI` a privileged test must run, so there it fails instead.
pub(crate) fn have_root(test: &str, why: &str) -> bool {
    if Owners::of(std::process::id()).is_ok_and(|o| o == Owners::ROOT) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why}, and CI is set"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    false
}
