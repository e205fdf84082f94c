//! Errors of the sample stage, each worded for the person who has to fix it.

use std::io;

/// Why sampling could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// This binary was built without the eBPF object (`AYA_BUILD_SKIP=1`).
    #[error(
        "this `ember` was built without its eBPF program (AYA_BUILD_SKIP); rebuild with \
         `scripts/bootstrap.sh && cargo build --release`"
    )]
    NoObject,

    /// The kernel refused to create maps or load the program for lack of privileges.
    #[error(
        "permission denied loading the eBPF program: {}",
        super::probe::privilege_hint()
    )]
    Permission {
        /// The kernel's error.
        #[source]
        source: io::Error,
    },

    /// The verifier rejected the program.
    #[error(
        "the kernel's verifier rejected the eBPF program `{program}`; verifier log:\n{log}\nthe kernel's error"
    )]
    Verifier {
        /// Program name.
        program: String,
        /// The syscall's error.
        #[source]
        source: io::Error,
        /// The verifier's own words.
        log: String,
    },

    /// Opening a perf event failed on a CPU.
    #[error("cannot open a cpu-clock perf event on CPU {cpu}: {hint}")]
    PerfEvent {
        /// The CPU.
        cpu: u32,
        /// What to do about it.
        hint: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },

    /// Something Ember cannot do without is missing on this node (a privilege, a kernel
    /// feature).
    #[error("cannot sample on this node: {what}; {fix}")]
    Unsupported {
        /// What is missing.
        what: String,
        /// What to do about it.
        fix: String,
    },

    /// The unwinder that was asked for cannot run on this kernel.
    #[error("{0}")]
    Unwinder(String),

    /// A target process does not exist.
    #[error("no such process: {pid} (is the PID right, and is it still running?)")]
    NoSuchProcess {
        /// The process id.
        pid: u32,
    },

    /// Any other eBPF failure (a missing map, an attach error, ...).
    #[error("{context}")]
    Ebpf {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SampleError {
    pub(crate) fn ebpf(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SampleError::Ebpf {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// The hint for a failed `perf_event_open`, from the error and `perf_event_paranoid`.
pub(crate) fn perf_event_hint(err: &io::Error) -> String {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => format!(
            "permission denied (kernel.perf_event_paranoid is {paranoid}); run ember as root or \
             with CAP_PERFMON, or lower it with `sysctl kernel.perf_event_paranoid=-1`"
        ),
        Some(libc::ENOENT | libc::ENODEV | libc::EOPNOTSUPP) => {
            "this kernel or CPU has no cpu-clock software event".to_owned()
        }
        Some(libc::EMFILE) => "too many open files; raise `ulimit -n`".to_owned(),
        _ => format!("{err}"),
    }
}

/// Whether an I/O error is a permission error.
pub(crate) fn is_permission(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}
