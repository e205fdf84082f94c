//! Fixture binaries in child processes: inlined frames, return addresses, C++ demangling,
//! one parse per binary across processes, stripped binaries and processes that exit.

use profiler_model::{FrameKind, Location};
use symbolizer::{Config, Symbolizer};

use crate::common::{Fixture, fixtures, line_of};

#[test]
fn inlined_functions_become_frames_after_their_caller() {
    let Some(fx) = fixtures("inlined_functions_become_frames_after_their_caller") else {
        return;
    };
    let child = Fixture::spawn(&fx.inline);
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("inlined")]);
    let summary: Vec<_> = frames.iter().map(|f| (&*f.name, f.inlined)).collect();
    assert_eq!(
        summary,
        [("outer_fn", false), ("inlined_square", true)],
        "{frames:#?}"
    );
    // The outer function's line is the call site of the inlined function; the inlined
    // frame's is a line of its body (the instruction after `HERE` is the compiler's pick).
    assert_eq!(frames[0].line, Some(line_of("inline.c", "CALL_LINE")));
    let body = line_of("inline.c", "INLINED_LINE")..=line_of("inline.c", "SQUARE_LINE");
    assert!(
        frames[1].line.is_some_and(|l| body.contains(&l)),
        "{frames:#?}"
    );
    for frame in &frames {
        assert!(
            frame
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("fixtures/inline.c"))
        );
        assert_eq!(frame.kind, FrameKind::User);
        assert_eq!(frame.module.as_deref(), Some(&*fx.inline.to_string_lossy()));
    }
    assert_eq!(frames[0].location, frames[1].location);

    // Without inlined functions only the outer function remains.
    let mut flat = Symbolizer::new(Config::default().with_inlined_fns(false));
    let frames = flat.symbolize_user_stack(child.pid(), &[child.addr("inlined")]);
    let names: Vec<_> = frames.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["outer_fn"]);
}

#[test]
fn a_return_address_resolves_to_the_calling_function() {
    let Some(fx) = fixtures("a_return_address_resolves_to_the_calling_function") else {
        return;
    };
    let child = Fixture::spawn(&fx.inline);
    let ret = child.addr("return");
    // The fixture is laid out so the call to `park` is the last instruction of its caller.
    assert_eq!(
        ret,
        child.addr("next"),
        "fixture layout changed: see inline.c"
    );
    let mut sym = Symbolizer::new(Config::default());

    // Leaf first: `park` was called by `caller_ends_in_call`.
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("park"), ret]);
    let names: Vec<_> = frames.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["caller_ends_in_call", "park"]);
    let Location::File { offset, .. } = frames[0].location else {
        panic!("not a file location: {:?}", frames[0]);
    };
    let Location::File {
        offset: next_offset,
        ..
    } = sym.symbolize_user_stack(child.pid(), &[ret])[0].location
    else {
        panic!("not a file location");
    };
    assert_eq!(
        offset + 1,
        next_offset,
        "the location is that of `return address - 1`"
    );

    // The same address as a leaf is the first instruction of the next function.
    let leaf = sym.symbolize_user_stack(child.pid(), &[ret]);
    assert_eq!(&*leaf[0].name, "next_fn");
}

#[test]
fn cpp_names_are_demangled() {
    let Some(fx) = fixtures("cpp_names_are_demangled") else {
        return;
    };
    let child = Fixture::spawn(&fx.cpp);
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("spin")]);
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert_eq!(&*frames[0].name, "ember::Worker<int>::spin(int)");
    assert!(
        frames[0]
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("demangle.cpp"))
    );
}

#[test]
fn two_processes_of_one_binary_parse_it_once() {
    let Some(fx) = fixtures("two_processes_of_one_binary_parse_it_once") else {
        return;
    };
    let (a, b) = (Fixture::spawn(&fx.inline), Fixture::spawn(&fx.inline));
    let mut sym = Symbolizer::new(Config::default());
    let fa = sym.symbolize_user_stack(a.pid(), &[a.addr("outer")]);
    let fb = sym.symbolize_user_stack(b.pid(), &[b.addr("outer")]);
    assert_eq!(&*fa[0].name, "outer_fn");
    // Same binary, same file offset: the second process is answered from the cache, and
    // the frames are equal although the (randomized) addresses differ.
    assert_eq!(fa, fb);
    let stats = sym.stats();
    assert_eq!(stats.binaries_opened, 1, "{stats:?}");
    assert_eq!((stats.offset_cache_hits, stats.offset_cache_misses), (1, 1));
    assert_eq!(stats.maps_reads, 2, "one maps read per process");
}

#[test]
fn an_exited_process_keeps_symbolizing_from_cached_mappings() {
    let Some(fx) = fixtures("an_exited_process_keeps_symbolizing_from_cached_mappings") else {
        return;
    };
    let child = Fixture::spawn(&fx.inline);
    let (pid, outer, inlined) = (child.pid(), child.addr("outer"), child.addr("inlined"));
    let mut sym = Symbolizer::new(Config::default());
    assert_eq!(
        &*sym.symbolize_user_stack(pid, &[outer])[0].name,
        "outer_fn"
    );
    child.kill();

    // A new offset in the same binary: the cached mappings and the open file suffice.
    let frames = sym.symbolize_user_stack(pid, &[inlined]);
    assert_eq!(&*frames[0].name, "outer_fn");
    assert_eq!(sym.stats().processes_gone, 0);

    // An address outside the cached mappings makes us look again (once the last read is
    // 200 ms old), and find it gone.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let frames = sym.symbolize_user_stack(pid, &[0x10]);
    assert_eq!(&*frames[0].name, "[unknown]");
    assert_eq!(sym.stats().processes_gone, 1);

    // Forgetting it drops the mappings: now nothing is known.
    sym.forget_process(pid);
    let frames = sym.symbolize_user_stack(pid, &[outer]);
    assert_eq!(&*frames[0].name, "[unknown]");
    assert_eq!(frames[0].location, Location::Unknown);
}

#[test]
fn a_process_gone_before_its_first_sample_gives_unknown_frames() {
    let Some(fx) = fixtures("a_process_gone_before_its_first_sample_gives_unknown_frames") else {
        return;
    };
    let child = Fixture::spawn(&fx.inline);
    let (pid, outer) = (child.pid(), child.addr("outer"));
    child.kill();
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(pid, &[outer, outer + 1, 0]);
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| &*f.name == "[unknown]"));
    // Root first: the two addresses of the vanished process have no location at all.
    assert!(
        frames[1..].iter().all(|f| f.location == Location::Unknown),
        "{frames:?}"
    );
    let stats = sym.stats();
    assert_eq!(
        (stats.processes_gone, stats.frames_unnamed, stats.maps_reads),
        (1, 3, 1)
    );
}

#[test]
fn a_stripped_binary_gives_module_plus_offset_frames() {
    let Some(fx) = fixtures("a_stripped_binary_gives_module_plus_offset_frames") else {
        return;
    };
    let child = Fixture::spawn(&fx.stripped);
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("outer")]);
    assert_eq!(frames.len(), 1);
    let Location::File { build_id, offset } = &frames[0].location else {
        panic!("not a file location: {frames:?}");
    };
    assert_eq!(&*frames[0].name, format!("inline-stripped+{offset:#x}"));
    assert!(build_id.is_some(), "gcc links with a build-id");
    assert!(frames[0].is_unnamed());
    assert_eq!(sym.stats().frames_unnamed, 1);
}
