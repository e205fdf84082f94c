//! Kernel stacks against the running kernel's `/proc/kallsyms`.

use profiler_model::{FrameKind, Location};
use symbolizer::{Config, Symbolizer};

use crate::common::require_root;

/// The address of a global text symbol in /proc/kallsyms.
fn kallsyms_addr(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    text.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let addr = fields.next()?;
        let kind = fields.next()?;
        (matches!(kind, "T" | "t") && fields.next()? == name)
            .then(|| u64::from_str_radix(addr, 16).ok())
            .flatten()
    })
}

#[test]
fn kernel_functions_from_kallsyms_are_named() {
    if !require_root("kernel_functions_from_kallsyms_are_named") {
        return;
    }
    let syscall = kallsyms_addr("do_syscall_64").expect("do_syscall_64 in kallsyms");
    let schedule = kallsyms_addr("schedule").expect("schedule in kallsyms");
    assert_ne!(syscall, 0, "kallsyms hides addresses although we are root");

    let mut sym = Symbolizer::new(Config::default());
    // Leaf first: inside schedule, called from (the return address) do_syscall_64 + 1, whose
    // lookup at `addr - 1` is do_syscall_64's first byte.
    let frames = sym.symbolize_kernel_stack(&[schedule + 4, syscall + 1]);
    let names: Vec<_> = frames.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["do_syscall_64", "schedule"]);
    assert!(
        frames
            .iter()
            .all(|f| f.kind == FrameKind::Kernel && !f.inlined)
    );
    assert_eq!(frames[0].location, Location::Kernel { addr: syscall + 1 });
    assert_eq!(frames[1].location, Location::Kernel { addr: schedule + 4 });

    let garbage = sym.symbolize_kernel_stack(&[0, 42, 0x7fff_0000_0000, u64::MAX]);
    assert!(
        garbage
            .iter()
            .all(|f| &*f.name == "[unknown]" && f.kind == FrameKind::Kernel)
    );
    let stats = sym.stats();
    assert_eq!(stats.frames_unnamed, 4);
    // Only u64::MAX of the garbage is in the kernel half and gets looked up (and refused).
    assert_eq!(stats.kernel_cache_misses, 3);
}
