//! Symbolization on a real node, end to end: a process storm (children that live about
//! 20 ms, long gone when their samples are drained) and a process in its own mount
//! namespace, recorded by `ember record`.

use std::path::Path;
use std::process::Command;

use crate::common::{Folded, ember, example, privileged, run, tempdir};

/// The user frames of a folded stack, root first (kernel frames end in `_[k]`).
fn user_frames(stack: &str) -> Vec<&str> {
    stack
        .split(';')
        .skip(1)
        .filter(|f| !f.ends_with("_[k]"))
        .collect()
}

fn unnamed(frame: &str) -> bool {
    frame == "[unknown]" || frame.contains("+0x")
}

#[test]
fn storm_children_that_live_20ms_are_named() {
    let Some(_p) = privileged("storm_children_that_live_20ms_are_named") else {
        return;
    };
    let storm = example("storm");
    let dir = tempdir();
    let out_path = dir.path().join("storm.folded");
    // 4 s of 20 ms children, 3 at a time; 499 Hz so each child gets a few samples.
    let out = run(ember()
        .args(["record", "-F", "499", "-o"])
        .arg(&out_path)
        .arg("--")
        .arg(&storm)
        .args(["4", "20", "3"]));
    assert!(out.status.success(), "ember record failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let children: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("storm printed no child count: {stdout}"));
    assert!(children >= 40, "only {children} children ran");
    let folded = Folded::read(&out_path).process("storm");
    let total = folded.total();
    assert!(total >= 300, "too few storm samples: {total}");
    let hot: u64 = [
        "storm_hot_alpha",
        "storm_hot_beta",
        "storm_hot_gamma",
        "storm_hot_delta",
    ]
    .iter()
    .map(|f| {
        let n = folded.with_frame(f);
        assert!(n > 0, "{f} never appears named: {:#?}", folded.lines);
        n
    })
    .sum();
    // A leaf (the sampled instruction) is always real code: it must be named.
    let leaf_unnamed = folded.count_where(|frames| {
        let stack = frames.join(";");
        user_frames(&stack).last().is_some_and(|f| unnamed(f))
    });
    let any_unnamed = folded.count_where(|frames| {
        let stack = frames.join(";");
        user_frames(&stack).iter().any(|f| unnamed(f))
    });
    // Inside execve the user registers are the replaced image's: one `[exec]` frame, never
    // frames named or walked against the new image.
    let in_exec = |frames: &[&str]| frames.iter().any(|f| f.contains("sys_execve_[k]"));
    let exec_samples = folded.count_where(|frames| in_exec(frames));
    let exec_wrong = folded
        .count_where(|frames| in_exec(frames) && user_frames(&frames.join(";")) != ["[exec]"]);
    assert_eq!(
        exec_wrong, 0,
        "samples inside execve with other user frames"
    );
    let share = |n: u64| n as f64 / total as f64 * 100.0;
    eprintln!(
        "storm: {:.2}% of samples inside execve, shown as [exec]",
        share(exec_samples)
    );
    eprintln!(
        "storm: {children} children, {total} samples, hot {:.1}%, leaf unnamed {:.2}%, any frame unnamed {:.2}%",
        share(hot),
        share(leaf_unnamed),
        share(any_unnamed)
    );
    assert!(
        share(hot) >= 80.0,
        "named hot functions only {:.1}%",
        share(hot)
    );
    assert!(
        share(leaf_unnamed) < 2.0,
        "{:.2}% of storm samples have an unnamed leaf",
        share(leaf_unnamed)
    );
    // Frames above the leaf come from frame-pointer walks through glibc, which has no
    // frame pointers: garbage return addresses there are the unwinder's, not ours.
    assert!(
        share(any_unnamed) < 5.0,
        "{:.2}% of storm samples have an unnamed frame",
        share(any_unnamed)
    );
}

#[test]
fn a_process_in_its_own_mount_namespace_is_recorded_with_its_own_names() {
    let Some(_p) =
        privileged("a_process_in_its_own_mount_namespace_is_recorded_with_its_own_names")
    else {
        return;
    };
    let dir = tempdir();
    let src = dir.path().join("ns.c");
    // Two builds of one program that differ only in the hot function's name.
    std::fs::write(
        &src,
        "#include <time.h>\n\
         static volatile unsigned long sink;\n\
         __attribute__((noinline)) void HOT(double s) { struct timespec a, b; \
           clock_gettime(CLOCK_MONOTONIC, &a); unsigned long x = 1; do { \
           for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1; \
           clock_gettime(CLOCK_MONOTONIC, &b); } while ((b.tv_sec - a.tv_sec) + \
           (b.tv_nsec - a.tv_nsec) / 1e9 < s); sink = x; }\n\
         int main(void) { HOT(3.0); return 0; }\n",
    )
    .expect("write source");
    let build = |name: &str| {
        let out = dir.path().join(name);
        let status = Command::new("gcc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer"])
            .arg(format!("-DHOT={name}"))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run gcc");
        assert!(status.success());
        out
    };
    let host = build("ember_ns_host_fn");
    let inner = build("ember_ns_inner_fn");
    let mount_point = dir.path().join("mnt");
    std::fs::create_dir_all(&mount_point).expect("mkdir");
    std::fs::copy(&host, mount_point.join("app")).expect("install host variant");
    let script = format!(
        "mount -t tmpfs ember {mp} && cp {inner} {mp}/app && exec {mp}/app",
        mp = mount_point.display(),
        inner = inner.display()
    );
    let out_path = dir.path().join("ns.folded");
    let out = run(ember()
        .args(["record", "-F", "199", "-o"])
        .arg(&out_path)
        .args([
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script));
    assert!(out.status.success(), "ember record failed");
    let folded = Folded::read(&out_path).process("app");
    let inner_n = folded.with_frame("ember_ns_inner_fn");
    assert!(
        inner_n >= 200,
        "the namespaced binary's function got {inner_n} samples: {:#?}",
        folded.lines
    );
    assert_eq!(
        folded.with_frame("ember_ns_host_fn"),
        0,
        "named from the host's file"
    );
    assert!(Path::new(&mount_point.join("app")).exists());
}

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", url])
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one metric line, e.g. `ember_binary_cache_bytes`.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

#[test]
fn the_agent_names_a_storm_and_reports_its_binary_cache() {
    let Some(_p) = privileged("the_agent_names_a_storm_and_reports_its_binary_cache") else {
        return;
    };
    let dir = tempdir();
    let (mut agent, base) = crate::common::start_agent_with_api(&dir.path().join("store"), "2s");
    let status = Command::new(example("storm"))
        .args(["3", "20", "2"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running storm");
    // Let the window holding the last samples close.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let folded = curl(&format!(
        "{base}/api/v1/profile?from=now-1h&to=now&filter=comm=storm&format=folded"
    ));
    let metrics = curl(&format!("{base}/metrics"));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    assert!(status.success(), "storm failed");

    let storm = Folded::parse(&folded);
    let total = storm.total();
    let hot = storm.count_where(|f| f.iter().any(|x| x.starts_with("storm_hot_")));
    eprintln!("agent storm: {total} samples, {hot} in named hot functions");
    eprintln!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("ember_binary_cache") || l.starts_with("ember_process"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(total >= 100, "too few storm samples: {total}");
    assert!(
        hot as f64 >= 0.8 * total as f64,
        "only {hot} of {total} storm samples in named hot functions"
    );
    assert!(
        metric(&metrics, "ember_process_captures_total") >= 20,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "ember_binary_cache_bytes") > 0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "ember_binary_cache_entries") > 0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "ember_binary_cache_requests_total{result=\"hit\"}"
        ) > 0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "ember_binary_cache_requests_total{result=\"miss\"}"
        ) > 0,
        "{metrics}"
    );
    assert!(
        metrics.contains("ember_binary_cache_evictions_total "),
        "{metrics}"
    );
}
