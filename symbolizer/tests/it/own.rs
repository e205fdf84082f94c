//! This test process's own code and memory: Rust functions, data, heap, the vDSO, and
//! addresses that are not code at all.

use profiler_model::{FrameKind, Location};
use symbolizer::{Config, Symbolizer};

/// The line of `hot_fn`'s signature, which its first instruction is attributed to.
const HOT_FN_LINE: u32 = line!() + 2;
#[inline(never)]
pub fn hot_fn(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(31)
}

#[inline(never)]
pub fn generic_fn<T: Copy>(x: T) -> T {
    std::hint::black_box(x)
}

static DATA: [u8; 64] = [7; 64];

fn pid() -> u32 {
    std::process::id()
}

#[test]
fn rust_functions_are_named_demangled_with_file_and_line() {
    let mut sym = Symbolizer::new(Config::default());
    let addr = hot_fn as *const () as u64;
    let frames = sym.symbolize_user_stack(pid(), &[addr]);
    assert_eq!(frames.len(), 1, "{frames:#?}");
    let frame = &frames[0];
    assert_eq!(&*frame.name, "it::own::hot_fn");
    assert_eq!(frame.kind, FrameKind::User);
    assert!(!frame.inlined);
    assert!(
        frame
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("tests/it/own.rs")),
        "{frame:?}"
    );
    assert_eq!(frame.line, Some(HOT_FN_LINE));
    let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
    assert_eq!(frame.module.as_deref(), Some(&*exe.to_string_lossy()));
    let Location::File { build_id, offset } = &frame.location else {
        panic!("not a file location: {frame:?}");
    };
    assert!(build_id.is_some(), "the test binary has a build-id");
    assert!(*offset > 0 && *offset < addr);

    let generic = sym.symbolize_user_stack(pid(), &[generic_fn::<u32> as *const () as u64]);
    assert!(
        generic[0].name.starts_with("it::own::generic_fn"),
        "{generic:?}"
    );
}

#[test]
fn the_same_offset_twice_is_a_cache_hit_and_the_binary_is_opened_once() {
    let mut sym = Symbolizer::new(Config::default());
    let addr = hot_fn as *const () as u64;
    let first = sym.symbolize_user_stack(pid(), &[addr]);
    let stats = sym.stats();
    assert_eq!((stats.offset_cache_hits, stats.offset_cache_misses), (0, 1));
    assert_eq!(stats.binaries_opened, 1);
    assert_eq!(stats.maps_reads, 1);

    let second = sym.symbolize_user_stack(pid(), &[addr]);
    assert_eq!(first, second);
    let stats = sym.stats();
    assert_eq!((stats.offset_cache_hits, stats.offset_cache_misses), (1, 1));
    assert_eq!(stats.binaries_opened, 1);
    assert_eq!(stats.maps_reads, 1, "known mappings are not re-read");
}

#[test]
fn options_turn_off_source_locations_and_demangling() {
    let addr = hot_fn as *const () as u64;
    let mut plain = Symbolizer::new(Config::default().with_code_info(false).with_demangle(false));
    let frames = plain.symbolize_user_stack(pid(), &[addr]);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].name.starts_with("_ZN"), "{:?}", frames[0].name);
    assert_eq!((frames[0].file.as_deref(), frames[0].line), (None, None));
}

#[test]
fn data_heap_and_garbage_addresses_are_unnamed_not_dropped() {
    let mut sym = Symbolizer::new(Config::default());
    let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
    let exe_name = exe
        .file_name()
        .expect("exe name")
        .to_string_lossy()
        .into_owned();

    // Read-only data of our own binary: a file mapping, but not code.
    let data = sym.symbolize_user_stack(pid(), &[DATA.as_ptr() as u64 + 8]);
    assert_eq!(data.len(), 1);
    assert!(
        data[0].name.starts_with(&format!("{exe_name}+0x")),
        "{data:?}"
    );
    assert!(matches!(data[0].location, Location::File { .. }));

    // Heap memory: no file.
    let boxed = Box::new(42_u64);
    let heap = sym.symbolize_user_stack(pid(), &[&raw const *boxed as u64]);
    assert_eq!(&*heap[0].name, "[unknown]");
    assert!(matches!(heap[0].location, Location::Virtual { .. }));

    // Garbage, including 0 as a return address (which has no byte before it).
    let before = sym.stats();
    let garbage = [0, 1, 0x10, u64::MAX, u64::MAX - 1, 0, 0xdead_beef];
    let frames = sym.symbolize_user_stack(pid(), &garbage);
    assert_eq!(frames.len(), garbage.len());
    assert!(
        frames
            .iter()
            .all(|f| &*f.name == "[unknown]" && f.kind == FrameKind::User)
    );
    let after = sym.stats();
    assert_eq!(
        after.frames_unnamed - before.frames_unnamed,
        garbage.len() as u64
    );
    assert!(
        after.maps_reads - before.maps_reads <= 1,
        "re-read at most once per stack"
    );
    // Another such stack at once: the mappings were read moments ago, so not again (a
    // garbage outermost frame in every sample must not cost a read of /proc each).
    let again = sym.stats().maps_reads;
    let _ = sym.symbolize_user_stack(pid(), &garbage);
    let _ = sym.symbolize_user_stack(pid(), &garbage);
    assert!(
        sym.stats().maps_reads - again <= 1,
        "re-read at most once per 200 ms"
    );
    assert!(sym.symbolize_user_stack(pid(), &[]).is_empty());
}

#[test]
fn vdso_functions_are_named() {
    let text = std::fs::read_to_string("/proc/self/maps").expect("read own maps");
    let Some(vdso) = text.lines().find(|l| l.ends_with("[vdso]")) else {
        crate::common::skip("vdso_functions_are_named", "this process has no vDSO");
        return;
    };
    let (start, end) = vdso
        .split_once(' ')
        .and_then(|(range, _)| range.split_once('-'))
        .expect("maps range");
    let start = u64::from_str_radix(start, 16).expect("hex");
    let end = u64::from_str_radix(end, 16).expect("hex");
    let mut sym = Symbolizer::new(Config::default());
    let addrs: Vec<u64> = (start..end).step_by(16).collect();
    let frames = sym.symbolize_user_stack(pid(), &addrs);
    assert!(
        frames
            .iter()
            .any(|f| f.name.contains("clock_gettime") && f.module.as_deref() == Some("[vdso]")),
        "no vDSO function found among {} frames",
        frames.len()
    );
}

#[test]
fn every_executable_mapping_symbolizes_without_panicking() {
    let text = std::fs::read_to_string("/proc/self/maps").expect("read own maps");
    let mut addrs = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let start = u64::from_str_radix(start, 16).expect("hex");
        let end = u64::from_str_radix(end, 16).expect("hex");
        if perms.contains('x') {
            addrs.extend((0..32).map(|i| start + (end - start) / 32 * i));
            addrs.extend([end - 1, end]);
        }
    }
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(pid(), &addrs);
    assert!(frames.len() >= addrs.len());
    assert!(
        frames
            .iter()
            .any(|f| !f.is_unnamed() && f.module.as_deref().is_some_and(|m| m.contains("libc.so"))),
        "no libc function among {frames:#?}"
    );
}
