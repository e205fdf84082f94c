//! An [`EbpfLoader`] made without parsing the kernel's BTF.
//!
//! aya 0.14's `EbpfLoader::new()` parses all of `/sys/kernel/btf/vmlinux` (5–6 MiB, about
//! 150,000 types) before it returns, even when the caller then says `btf(None)` (aya issue
//! #1172; later aya releases load it lazily, but they need a newer toolchain than the one
//! Ember is pinned to). Ember's programs use no CO-RE relocations, so that parse was pure
//! cost: 17–18 ms of CPU, a fifth of a 5 s `ember record --all`, and a heap spike at the
//! agent's start-up that glibc does not give back.
//!
//! The loader is therefore made on a short-lived thread of its own that may not open
//! files: a seccomp filter installed on that thread alone (never the process) makes
//! `open`, `openat` and `openat2` fail with `ENOENT`, so aya's `Btf::from_sys_fs()` fails
//! at once and the loader starts without BTF, as `btf(None)` asks. The thread does nothing
//! else and exits; its filter goes with it. Where the filter cannot be installed (seccomp
//! not built into the kernel, a foreign architecture), the loader is made the usual way.

use aya::EbpfLoader;
use tracing::debug;

/// `AUDIT_ARCH_*` of the architecture this is built for (`<linux/audit.h>`), which a
/// seccomp filter must check before trusting the syscall number.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// Returns a loader with no kernel BTF, having parsed none.
pub(crate) fn loader() -> EbpfLoader<'static> {
    let make = || {
        let mut loader = EbpfLoader::new();
        // The program uses no CO-RE relocations; with the filter there is nothing to
        // drop here, without it (or on this thread) this drops what `new()` parsed.
        loader.btf(None);
        loader
    };
    without_opens(make).unwrap_or_else(make)
}

/// Runs `f` on a thread of its own on which no file can be opened (where the filter
/// cannot be installed, on one where they can: logged); `None` if no thread could be
/// started or `f` panicked.
fn without_opens<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("ember-loader".to_owned())
            .spawn_scoped(scope, || {
                if let Err(e) = deny_opens_on_this_thread() {
                    debug!(error = %e, "cannot keep aya from parsing the kernel's BTF");
                }
                f()
            })
            .ok()?
            .join()
            .ok()
    })
}

/// Installs, on the calling thread only, a seccomp filter under which every file open
/// fails with `ENOENT`. Irreversible for the thread: call it only on a thread that opens
/// nothing afterwards and then exits.
fn deny_opens_on_this_thread() -> std::io::Result<()> {
    let Some(arch) = AUDIT_ARCH else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no seccomp architecture known for this build",
        ));
    };
    let opens: &[libc::c_long] = &[
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_openat2,
    ];
    let filter = open_filter(arch, opens);
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("a handful of instructions"),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers; it affects this thread
    // (and threads and programs it would start, of which it starts none).
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, valid instructions that outlive the call (the
    // kernel copies them). Without SECCOMP_FILTER_FLAG_TSYNC the filter is this thread's
    // alone; SPEC_ALLOW leaves its speculation mitigations as they are.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            std::ptr::from_ref(&prog),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The classic-BPF program: on architecture `arch`, the syscalls `opens` return
/// `-ENOENT`; everything else (and any other architecture's calls) is allowed.
fn open_filter(arch: u32, opens: &[libc::c_long]) -> Vec<libc::sock_filter> {
    // Offsets in `struct seccomp_data`: `int nr`, then `__u32 arch`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: u16::try_from(code).expect("BPF opcodes fit 16 bits"),
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: u16::try_from(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K)
            .expect("BPF opcodes fit 16 bits"),
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let n = u8::try_from(opens.len()).expect("a few syscalls");
    let mut prog = vec![
        stmt(load, ARCH),
        // Another architecture: allow (jump over the loads and checks to ALLOW).
        jump(arch, 0, n + 1),
        stmt(load, NR),
    ];
    for (i, &nr) in opens.iter().enumerate() {
        let i = u8::try_from(i).expect("a few syscalls");
        // Matched: jump to ERRNO, past the rest of the checks and ALLOW.
        let to_errno = n - i;
        prog.push(jump(
            u32::try_from(nr).expect("syscall numbers are small"),
            to_errno,
            0,
        ));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | (libc::ENOENT as u32 & libc::SECCOMP_RET_DATA),
    ));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Seccomp_filters` count (Linux 5.9+; `None` before) in a thread's status.
    fn filters_in(status: &str) -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The calling thread's count.
    fn filters() -> Option<u32> {
        filters_in(&std::fs::read_to_string("/proc/thread-self/status").ok()?)
    }

    #[test]
    fn the_filter_denies_opens_on_its_thread_only() {
        use std::io::{Read as _, Seek as _};
        // Counted, not assumed 0: a test run under systemd or a container has filters.
        let before = filters();
        let (open, pid, inside_before, inside_after) = std::thread::spawn(|| {
            // Opened before the filter, read again after it (the kernel formats the
            // status anew at each read from the start).
            let mut status = std::fs::File::open("/proc/thread-self/status").expect("status");
            let mut text = String::new();
            status.read_to_string(&mut text).expect("status");
            let inside_before = filters_in(&text);
            deny_opens_on_this_thread().expect("seccomp filter installed");
            let open = std::fs::File::open("/proc/self/status").map_err(|e| e.raw_os_error());
            text.clear();
            status.rewind().expect("rewind");
            status.read_to_string(&mut text).expect("status again");
            (open, std::process::id(), inside_before, filters_in(&text))
        })
        .join()
        .expect("thread ran");
        assert_eq!(open.err(), Some(Some(libc::ENOENT)));
        // Other syscalls still work on the filtered thread.
        assert_eq!(pid, std::process::id());
        assert_eq!(
            inside_after,
            inside_before.map(|n| n + 1),
            "one filter more there"
        );
        // This thread (and so the rest of the process) is not filtered.
        std::fs::File::open("/proc/self/status").expect("opens work off the filtered thread");
        assert_eq!(filters(), before, "the calling thread gained no filter");
    }

    #[test]
    fn aya_cannot_read_the_kernel_btf_while_the_loader_is_made() {
        let btf = crate::btf::VMLINUX_BTF;
        let inside = without_opens(|| std::fs::read(btf).map_err(|e| e.raw_os_error()))
            .expect("the thread ran");
        assert_eq!(inside.err(), Some(Some(libc::ENOENT)));
        if std::path::Path::new(btf).exists() {
            std::fs::File::open(btf).expect("readable outside the loader's thread");
        }
        // And the loader that comes out of it loads: the e2e tests load every program
        // through `loader()`.
        let _loader = loader();
    }

    #[test]
    fn the_filter_jumps_to_errno_for_the_opens_and_to_allow_for_the_rest() {
        let prog = open_filter(0xC000_003E, &[2, 257, 437]);
        assert_eq!(prog.len(), 3 + 3 + 2);
        let errno = prog.len() - 1;
        for (i, ins) in prog.iter().enumerate().skip(3).take(3) {
            assert_eq!(
                i + 1 + usize::from(ins.jt),
                errno,
                "open check {i} jumps to ERRNO"
            );
            assert_eq!(ins.jf, 0);
        }
        assert_eq!(
            2 + usize::from(prog[1].jf),
            errno - 1,
            "other arches jump to ALLOW"
        );
    }
}
