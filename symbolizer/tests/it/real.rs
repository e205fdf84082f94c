//! Real-node cases: a binary rebuilt at the same path, the byte-bounded binary cache, a
//! process in its own mount namespace, stripped binaries with separate debug files, Go
//! binaries with and without a symbol table, Node.js JIT frames, and malformed inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use profiler_model::Frame;
use symbolizer::{Config, Symbolizer};

use crate::common::{Fixture, SRC, compile, fixtures, require_root, skip};

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("symbolizer-real")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Builds `variant.c` with its function called `name`.
fn variant(dir: &Path, name: &str) -> PathBuf {
    compile(
        "gcc",
        &format!("{SRC}/variant.c"),
        &dir.join(format!("variant-{name}")),
        &["-O1", "-g", &format!("-DNAME={name}")],
    )
    .expect("compile variant.c")
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| &*f.name).collect()
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?}: {status}");
}

#[test]
fn a_binary_rebuilt_at_the_same_path_is_never_served_stale_names() {
    if fixtures("a_binary_rebuilt_at_the_same_path_is_never_served_stale_names").is_none() {
        return;
    }
    let dir = scratch("rebuilt");
    let alpha = variant(&dir, "ember_variant_alpha");
    let beta = variant(&dir, "ember_variant_beta");
    let path = dir.join("app");
    let mut sym = Symbolizer::new(Config::default());

    // 1. The old binary runs at `app`.
    std::fs::copy(&alpha, &path).expect("install alpha");
    let old = Fixture::spawn(&path);
    assert_eq!(
        names(&sym.symbolize_user_stack(old.pid(), &[old.addr("fn")])),
        ["ember_variant_alpha"]
    );

    // 2. Rebuilt as a new file at the same path while the old process still runs: both
    //    processes get their own names.
    std::fs::copy(&beta, dir.join("app.new")).expect("stage beta");
    std::fs::rename(dir.join("app.new"), &path).expect("replace app");
    let new = Fixture::spawn(&path);
    assert_eq!(
        names(&sym.symbolize_user_stack(new.pid(), &[new.addr("fn")])),
        ["ember_variant_beta"]
    );
    assert_eq!(
        names(&sym.symbolize_user_stack(old.pid(), &[old.addr("fn")])),
        ["ember_variant_alpha"]
    );
    old.kill();
    new.kill();

    // 3. Rewritten in place (same inode) after every process exited: the cached entry
    //    for that inode is stale and must be dropped.
    std::fs::write(&path, std::fs::read(&alpha).expect("read alpha")).expect("rewrite in place");
    let again = Fixture::spawn(&path);
    assert_eq!(
        names(&sym.symbolize_user_stack(again.pid(), &[again.addr("fn")])),
        ["ember_variant_alpha"]
    );
    let stats = sym.stats();
    assert!(stats.binary_cache_stale >= 1, "{stats:?}");
}

#[test]
fn the_binary_cache_is_bounded_by_bytes_and_evicts_least_recently_used() {
    if fixtures("the_binary_cache_is_bounded_by_bytes_and_evicts_least_recently_used").is_none() {
        return;
    }
    let dir = scratch("lru");
    let alpha = variant(&dir, "ember_lru_alpha");
    let beta = variant(&dir, "ember_lru_beta");
    let a = Fixture::spawn(&alpha);
    let b = Fixture::spawn(&beta);
    // What one binary is charged (its symbol and debug sections, see binary.rs).
    let mut probe = Symbolizer::new(Config::default());
    probe.symbolize_user_stack(a.pid(), &[a.addr("fn")]);
    let one = probe.stats().binary_cache_bytes;
    assert!(one > 16 << 10, "{:?}", probe.stats());
    assert!(one < std::fs::metadata(&alpha).expect("stat").len() + (16 << 10));
    // Room for one binary and a half, and no memo, so every lookup goes to the cache.
    let budget = one + one / 2;
    let mut sym = Symbolizer::new(
        Config::default()
            .with_cache_bytes(budget)
            .with_cache_entries(0),
    );
    for round in 0..3 {
        assert_eq!(
            names(&sym.symbolize_user_stack(a.pid(), &[a.addr("fn")])),
            ["ember_lru_alpha"],
            "round {round}"
        );
        assert_eq!(
            names(&sym.symbolize_user_stack(b.pid(), &[b.addr("fn")])),
            ["ember_lru_beta"],
            "round {round}"
        );
    }
    let stats = sym.stats();
    assert_eq!(stats.binary_cache_entries, 1, "{stats:?}");
    assert!(stats.binary_cache_evictions >= 5, "{stats:?}");
    assert!(stats.binary_cache_bytes <= budget, "{stats:?}");

    // A process whose binary was evicted after it exited is still named: the file kept
    // open for its mapping is registered again.
    let (a_pid, a_addr) = (a.pid(), a.addr("fn"));
    a.kill();
    std::fs::remove_file(&alpha).expect("delete alpha");
    assert_eq!(
        names(&sym.symbolize_user_stack(a_pid, &[a_addr])),
        ["ember_lru_alpha"]
    );
    let alpha = variant(&dir, "ember_lru_alpha");
    let a = Fixture::spawn(&alpha);

    // With a roomy cache, a second process of the same binary is a hit, not a reopen.
    let a2 = Fixture::spawn(&alpha);
    let mut roomy = Symbolizer::new(Config::default());
    roomy.symbolize_user_stack(a.pid(), &[a.addr("fn")]);
    let before = roomy.stats();
    roomy.symbolize_user_stack(a2.pid(), &[a2.addr("fn")]);
    let after = roomy.stats();
    assert_eq!(after.binary_cache_misses, before.binary_cache_misses);
    assert!(
        after.binary_cache_hits > before.binary_cache_hits,
        "{after:?}"
    );
    assert_eq!(
        after.binary_cache_bytes, before.binary_cache_bytes,
        "{after:?}"
    );
}

#[test]
fn a_process_in_its_own_mount_namespace_resolves_to_its_own_binary() {
    let test = "a_process_in_its_own_mount_namespace_resolves_to_its_own_binary";
    if !require_root(test) || fixtures(test).is_none() {
        return;
    }
    let dir = scratch("mntns");
    let host = variant(&dir, "ember_host_variant");
    let inner = variant(&dir, "ember_namespace_variant");
    let mount_point = dir.join("root");
    std::fs::create_dir_all(&mount_point).expect("mkdir");
    // On the host, `root/app` is the host variant.
    std::fs::copy(&host, mount_point.join("app")).expect("install host variant");
    // Inside a private mount namespace, a tmpfs hides it and holds the other variant.
    let script = format!(
        "mount -t tmpfs ember {mp} && cp {inner} {mp}/app && exec {mp}/app",
        mp = mount_point.display(),
        inner = inner.display()
    );
    let wrapper = dir.join("in-namespace.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec unshare --mount --propagation private sh -c '{script}'\n"),
    )
    .expect("write wrapper");
    run(Command::new("chmod").arg("+x").arg(&wrapper));
    let child = Fixture::spawn(&wrapper);
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("fn")]);
    assert_eq!(names(&frames), ["ember_namespace_variant"], "{frames:#?}");
    // The host's file at that path is the other binary, and a fresh host process of it
    // still gets its own names from the same symbolizer.
    let on_host = Fixture::spawn(&mount_point.join("app"));
    assert_eq!(
        names(&sym.symbolize_user_stack(on_host.pid(), &[on_host.addr("fn")])),
        ["ember_host_variant"]
    );

    // Absent on the host altogether: still resolved through the process.
    std::fs::remove_file(mount_point.join("app")).expect("remove host copy");
    let mut fresh = Symbolizer::new(Config::default());
    assert_eq!(
        names(&fresh.symbolize_user_stack(child.pid(), &[child.addr("fn")])),
        ["ember_namespace_variant"]
    );
}

/// Builds `inline.c` with DWARF, then splits its debug info out and strips it.
fn split_debug(dir: &Path) -> (PathBuf, PathBuf) {
    let full = compile(
        "gcc",
        &format!("{SRC}/inline.c"),
        &dir.join("app"),
        &["-O2", "-g", "-fno-omit-frame-pointer"],
    )
    .expect("compile inline.c");
    let debug = dir.join("app.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    run(Command::new("strip").arg("--strip-all").arg(&full));
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&full));
    (full, debug)
}

fn build_id_hex(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build-id")
        .to_owned()
}

#[test]
fn a_stripped_binary_resolves_through_its_debug_file_by_debuglink_and_by_build_id() {
    if fixtures("a_stripped_binary_resolves_through_its_debug_file_by_debuglink_and_by_build_id")
        .is_none()
    {
        return;
    }
    let dir = scratch("debuglink");
    let (app, debug) = split_debug(&dir);
    let child = Fixture::spawn(&app);
    let stack = [child.addr("inlined"), child.addr("return")];
    let no_dirs = || Config::default().with_debug_dirs(Vec::new());

    // 1. `.gnu_debuglink`, debug file next to the binary.
    let mut sym = Symbolizer::new(no_dirs());
    let frames = sym.symbolize_user_stack(child.pid(), &stack);
    assert_eq!(
        names(&frames),
        ["caller_ends_in_call", "outer_fn", "inlined_square"],
        "{frames:#?}"
    );
    assert!(frames[2].inlined && frames[2].line.is_some());
    assert_eq!(sym.stats().debug_files_found, 1);

    // 2. In `.debug/` next to it.
    let dot_debug = dir.join(".debug");
    std::fs::create_dir_all(&dot_debug).expect("mkdir .debug");
    std::fs::rename(&debug, dot_debug.join("app.debug")).expect("move");
    let mut sym = Symbolizer::new(no_dirs());
    assert_eq!(
        names(&sym.symbolize_user_stack(child.pid(), &stack))[..2],
        ["caller_ends_in_call", "outer_fn"]
    );

    // 3. A debug file whose CRC does not match is refused: `module+0xoffset`.
    let mut bytes = std::fs::read(dot_debug.join("app.debug")).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dot_debug.join("app.debug"), &bytes).expect("corrupt");
    let mut sym = Symbolizer::new(no_dirs());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("park")]);
    assert!(frames[0].name.starts_with("app+0x"), "{frames:#?}");
    bytes[last] ^= 0xff;

    // 4. By build-id under a configured debug directory (the -dbgsym layout), with the
    //    debug link's target gone.
    std::fs::remove_dir_all(&dot_debug).expect("remove .debug");
    let debug_root = dir.join("usr-lib-debug");
    let id = build_id_hex(&app);
    let by_id = debug_root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&by_id).expect("mkdir build-id dir");
    std::fs::write(by_id.join(format!("{}.debug", &id[2..])), &bytes).expect("install");
    let mut sym = Symbolizer::new(Config::default().with_debug_dirs(vec![debug_root.clone()]));
    assert_eq!(
        names(&sym.symbolize_user_stack(child.pid(), &stack))[..2],
        ["caller_ends_in_call", "outer_fn"]
    );
    assert_eq!(sym.stats().debug_files_found, 1);

    // 5. No debug file anywhere: `module+0xoffset`, with the build-id kept for later.
    std::fs::remove_dir_all(&debug_root).expect("remove debug root");
    let mut sym = Symbolizer::new(no_dirs());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("park")]);
    assert!(frames[0].name.starts_with("app+0x"), "{frames:#?}");
    assert!(
        matches!(&frames[0].location, profiler_model::Location::File { build_id: Some(b), .. } if !b.is_empty()),
        "{frames:#?}"
    );
}

fn go_binary(dir: &Path, stripped: bool) -> Option<PathBuf> {
    let go = Path::new("/usr/lib/go-1.19/bin/go");
    if !go.exists() {
        return None;
    }
    let out = dir.join(if stripped { "hot-stripped" } else { "hot" });
    let mut cmd = Command::new(go);
    cmd.arg("build").arg("-o").arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg(format!("{SRC}/hot.go"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "");
    run(&mut cmd);
    Some(out)
}

#[test]
fn go_functions_are_named_with_and_without_a_symbol_table() {
    let test = "go_functions_are_named_with_and_without_a_symbol_table";
    let dir = scratch("go");
    let Some(full) = go_binary(&dir, false) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: golang-1.19-go is not installed (scripts/bootstrap.sh --test)"
        );
        skip(test, "golang-1.19-go is not installed");
        return;
    };
    let stripped = go_binary(&dir, true).expect("go present");
    let nm = Command::new("nm").arg(&stripped).output().expect("nm");
    assert!(
        !String::from_utf8_lossy(&nm.stdout).contains("emberGoHotLoop"),
        "-s -w should strip the symbol table"
    );
    for binary in [&full, &stripped] {
        let child = Fixture::spawn(binary);
        let mut sym = Symbolizer::new(Config::default());
        // The entry, and an address inside the loop body.
        let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("fn") + 8]);
        assert_eq!(
            names(&frames).last().copied(),
            Some("main.emberGoHotLoop"),
            "{}: {frames:#?}",
            binary.display()
        );
        // The stripped binary can only have been named from its `.gopclntab`.
        let expected_tables = u64::from(binary == &stripped);
        assert_eq!(
            sym.stats().go_tables_loaded,
            expected_tables,
            "{:?}",
            sym.stats()
        );
    }
}

#[test]
fn node_jit_frames_are_named_from_its_perf_map() {
    let test = "node_jit_frames_are_named_from_its_perf_map";
    let node = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("node"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/bin/node"));
    if !node.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: nodejs is not installed"
        );
        skip(test, "nodejs is not installed");
        return;
    }
    let script = "function emberJsHotFunction(n){let a=0;for(let i=0;i<n;i++){a=(a*31+i)|0}return a}\
                  let s=0;console.log('ready');for(;;){s+=emberJsHotFunction(100000)}";
    // node writes `isolate-*-v8.log` files into its working directory.
    let cwd = scratch("node");
    let mut child = Command::new(&node)
        .current_dir(&cwd)
        .arg("--perf-basic-prof")
        .arg("-e")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn node");
    let pid = child.id();
    let map = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    // Wait for the optimised function to appear in the map.
    let (start, size) = wait_for_perf_map_entry(Path::new(&map), "emberJsHotFunction")
        .expect("node wrote emberJsHotFunction to its perf map");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("node maps");
    let in_anon_exec = maps.lines().any(|l| {
        let mut f = l.split_whitespace();
        let range = f.next().unwrap_or("");
        let perms = f.next().unwrap_or("");
        let path = f.nth(3);
        let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
        let lo = u64::from_str_radix(lo, 16).unwrap_or(0);
        let hi = u64::from_str_radix(hi, 16).unwrap_or(0);
        perms.contains('x') && path.is_none() && (lo..hi).contains(&start)
    });
    assert!(
        in_anon_exec,
        "JIT code is not in an anonymous executable mapping"
    );
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(pid, &[start + size / 2]);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&map);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].name.contains("emberJsHotFunction"), "{frames:#?}");
    assert!(sym.stats().perf_map_reads >= 1);
}

#[test]
fn garbage_dwarf_and_unreadable_proc_entries_are_skipped_not_fatal() {
    if fixtures("garbage_dwarf_and_unreadable_proc_entries_are_skipped_not_fatal").is_none() {
        return;
    }
    let dir = scratch("garbage");
    let app = variant(&dir, "ember_garbage_dwarf");
    // Overwrite .debug_info and .debug_line with noise.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let noise_file = dir.join("noise.bin");
    std::fs::write(&noise_file, &noise).expect("noise");
    run(Command::new("objcopy")
        .arg(format!(
            "--update-section=.debug_info={}",
            noise_file.display()
        ))
        .arg(format!(
            "--update-section=.debug_line={}",
            noise_file.display()
        ))
        .arg(format!(
            "--update-section=.debug_abbrev={}",
            noise_file.display()
        ))
        .arg(&app));
    let child = Fixture::spawn(&app);
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(child.pid(), &[child.addr("fn"), child.addr("fn") + 4]);
    assert_eq!(frames.len(), 2);
    // blazesym falls back to the ELF symbol table or gives up: either way, no crash and
    // no invented name.
    for frame in &frames {
        assert!(
            &*frame.name == "ember_garbage_dwarf"
                || frame.name.starts_with("variant-ember_garbage_dwarf+0x"),
            "{frames:#?}"
        );
    }
    // A kernel thread has no user address space: `[unknown]`, never a panic.
    let frames = sym.symbolize_user_stack(2, &[0x40_1000]);
    assert_eq!(names(&frames), ["[unknown]"]);
}

#[test]
fn a_stored_profile_is_resymbolized_once_debug_info_appears() {
    if fixtures("a_stored_profile_is_resymbolized_once_debug_info_appears").is_none() {
        return;
    }
    let dir = scratch("resymbolize");
    let (app, debug) = split_debug(&dir);
    // Keep the debug file out of reach while sampling.
    let stash = dir.join("stash.debug");
    std::fs::rename(&debug, &stash).expect("stash debug file");
    let child = Fixture::spawn(&app);
    let mut sym = Symbolizer::new(Config::default().with_debug_dirs(Vec::new()));
    let stack =
        sym.symbolize_user_stack(child.pid(), &[child.addr("inlined"), child.addr("return")]);
    assert!(stack.iter().all(Frame::is_unnamed), "{stack:#?}");
    child.kill();

    let mut profile = profiler_model::Profile::new(profiler_model::ProfileMeta::default());
    let labels = profiler_model::Labels::default();
    profile.add(&labels, &stack, 7);
    profile.add(
        &labels,
        &[Frame::named("main", profiler_model::FrameKind::User)],
        3,
    );

    // Nothing found yet: unchanged.
    let debug_root = dir.join("debug-root");
    let config = Config::default().with_debug_dirs(vec![debug_root.clone()]);
    let mut resym = symbolizer::Resymbolizer::new(&config);
    let same = resym.resymbolize(&profile);
    assert_eq!(resym.frames_renamed(), 0);
    assert_eq!(same.total(), 10);

    // The -dbgsym layout appears: frames are renamed, inlined frames expanded.
    let id = build_id_hex(&app);
    let by_id = debug_root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&by_id).expect("mkdir");
    std::fs::rename(&stash, by_id.join(format!("{}.debug", &id[2..]))).expect("install");
    for exact in [false, true] {
        let mut resym = symbolizer::Resymbolizer::new(&config);
        if exact {
            resym.add_binary(&app).expect("add binary");
        }
        let renamed = resym.resymbolize(&profile);
        assert_eq!(renamed.total(), 10);
        let mut stacks: Vec<(Vec<String>, u64)> = renamed
            .stacks()
            .map(|s| {
                (
                    s.frames
                        .iter()
                        .map(|&f| renamed.frame(f).name.to_string())
                        .collect(),
                    s.count,
                )
            })
            .collect();
        stacks.sort();
        assert_eq!(
            stacks,
            [
                (
                    vec![
                        "caller_ends_in_call".to_owned(),
                        "outer_fn".to_owned(),
                        "inlined_square".to_owned()
                    ],
                    7
                ),
                (vec!["main".to_owned()], 3),
            ],
            "exact layout: {exact}"
        );
        assert_eq!(resym.frames_renamed(), 2);
    }
}

#[test]
fn a_captured_process_symbolizes_after_it_exited_and_its_binary_was_deleted() {
    if fixtures("a_captured_process_symbolizes_after_it_exited_and_its_binary_was_deleted")
        .is_none()
    {
        return;
    }
    let dir = scratch("capture");
    let app = variant(&dir, "ember_captured_fn");
    let child = Fixture::spawn(&app);
    let (pid, addr) = (child.pid(), child.addr("fn"));
    // Taken on another thread, as the agent's capture thread does: the capture is `Send`.
    let capture = std::thread::spawn(move || symbolizer::ProcessCapture::take(pid))
        .join()
        .expect("capture thread")
        .expect("capture a live process");
    assert!(capture.open_files() >= 1);
    child.kill();
    std::fs::remove_file(&app).expect("delete the binary");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());

    // Without the capture the process is gone: `[unknown]`.
    let mut blind = Symbolizer::new(Config::default());
    assert_eq!(
        names(&blind.symbolize_user_stack(pid, &[addr])),
        ["[unknown]"]
    );

    let mut sym = Symbolizer::new(Config::default());
    sym.add_capture(capture);
    assert_eq!(
        names(&sym.symbolize_user_stack(pid, &[addr])),
        ["ember_captured_fn"]
    );
    assert_eq!(sym.stats().captures_adopted, 1);
    // A dead pid cannot be captured.
    assert!(symbolizer::ProcessCapture::take(pid).is_err());
}

#[test]
fn a_jit_in_its_own_pid_and_mount_namespace_is_named_from_its_own_perf_map() {
    let test = "a_jit_in_its_own_pid_and_mount_namespace_is_named_from_its_own_perf_map";
    if !require_root(test) {
        return;
    }
    let Some(node) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("node"))
            .find(|p| p.is_file())
    }) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: nodejs is not installed"
        );
        skip(test, "nodejs is not installed");
        return;
    };
    // node is pid 1 of a new pid namespace, with a private /tmp: its perf map is
    // /tmp/perf-1.map there, and nowhere on the host.
    let script = format!(
        "mount -t tmpfs ember /tmp && exec {} --perf-basic-prof -e \
         'function emberNsJsFunction(n){{let a=0;for(let i=0;i<n;i++){{a=(a*31+i)|0}}return a}}\
          let s=0;for(;;){{s+=emberNsJsFunction(100000)}}'",
        node.display()
    );
    let cwd = scratch("node-ns");
    let mut unshare = Command::new("unshare")
        .current_dir(&cwd)
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let unshare_guard = scopeguard(unshare.id());
    // Find node: the child of unshare.
    let mut node_pid = None;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
                .unwrap_or_default();
        node_pid = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if node_pid.is_some() {
            break;
        }
    }
    let pid = node_pid.expect("node started under unshare");
    // Killing node, pid 1 of its namespace, ends the namespace; unshare then exits.
    let node_guard = scopeguard(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "node is not pid 1 of its namespace: {status}"
    );
    assert!(!Path::new(&format!("/tmp/perf-{pid}.map")).exists());
    let inner_map = format!("/proc/{pid}/root/tmp/perf-1.map");
    let (start, size) = wait_for_perf_map_entry(Path::new(&inner_map), "emberNsJsFunction")
        .expect("node wrote emberNsJsFunction to its own perf map");
    let mut sym = Symbolizer::new(Config::default());
    let frames = sym.symbolize_user_stack(pid, &[start + size / 2]);
    drop(node_guard);
    let _ = unshare.wait();
    drop(unshare_guard);
    assert!(frames[0].name.contains("emberNsJsFunction"), "{frames:#?}");
}

/// Kills process `pid` (and so its pid namespace) when dropped, should the test panic.
fn scopeguard(pid: u32) -> impl Drop {
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .arg("-9")
                .arg(self.0.to_string())
                .status();
        }
    }
    Kill(pid)
}

/// Waits up to 10 s for a JIT to write `function` to the perf map at `map`, and returns the
/// entry's start address and size (the last entry, as a re-optimised function is appended).
fn wait_for_perf_map_entry(map: &Path, function: &str) -> Option<(u64, u64)> {
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let text = std::fs::read_to_string(map).unwrap_or_default();
        let entry = text
            .lines()
            .rev()
            .find(|l| l.contains(function))
            .and_then(|l| {
                let mut p = l.split(' ');
                Some((
                    u64::from_str_radix(p.next()?, 16).ok()?,
                    u64::from_str_radix(p.next()?, 16).ok()?,
                ))
            });
        if entry.is_some() {
            return entry;
        }
    }
    None
}
