//! The web UI in a real browser: `ember agent` serves the page, the `split` workload gives it
//! a known profile, and `tests/browser/ui.test.mjs` (Node + playwright-core + Debian's
//! chromium) clicks through it, checking what is drawn and saving screenshots. A run of
//! `slowed/split` after the plain one gives the comparison view its two sides.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{example, examples, privileged, repo_root, start_agent_logged, tempdir};

/// Node and chromium, or `None` after saying why (a failure in CI).
fn browser_tools() -> Option<PathBuf> {
    let browser_dir = repo_root().join("tests/browser");
    let missing = if Command::new("node").arg("--version").output().is_err() {
        Some("`node` is not installed".to_owned())
    } else if !Path::new("/usr/bin/chromium").exists() {
        Some("/usr/bin/chromium is not installed".to_owned())
    } else if !browser_dir.join("node_modules/playwright-core").exists() {
        Some(format!(
            "playwright-core is not installed (run `npm install` in {})",
            browser_dir.display()
        ))
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser test must run in CI: {why} (scripts/bootstrap.sh --test installs them)"
        );
        crate::common::skip(
            "the web UI browser test",
            &format!("{why} (scripts/bootstrap.sh --test installs it)"),
        );
        return None;
    }
    Some(browser_dir)
}

/// Nanoseconds since the epoch, now.
fn now_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(d.as_nanos()).expect("ns fit in u64")
}

/// `ns` as RFC 3339 UTC to the millisecond, as the page's URL takes it.
fn rfc3339(ns: u64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!(
                "@{}.{:03}",
                ns / 1_000_000_000,
                ns % 1_000_000_000 / 1_000_000
            ),
        ])
        .arg("+%Y-%m-%dT%H:%M:%S.%3NZ")
        .output()
        .expect("running date");
    String::from_utf8(out.stdout)
        .expect("ASCII")
        .trim()
        .to_owned()
}

/// `GET {base}{path}` as JSON (`Null` when it cannot be read yet).
fn get_json(base: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", &format!("{base}{path}")])
        .output()
        .expect("running curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until the store holds samples of process `pid` (which ended at `ended_ns`) and a
/// window ending after `ended_ns`. On a busy machine the agent's windows stretch and its
/// samples arrive late, so some of them may land in later windows: the comparison tells
/// the runs apart by pid, and a late sample only leaves its run's range. Returns the end
/// of the newest window.
fn wait_for_samples_of(base: &str, pid: u32, ended_ns: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let end = get_json(base, "/api/v1/timeline?from=now-1h")["points"]
            .as_array()
            .and_then(|ps| ps.iter().filter_map(|p| p["end_unix_ns"].as_u64()).max())
            .unwrap_or(0);
        let samples =
            get_json(base, &format!("/api/v1/cpu?from=now-1h&filter=pid={pid}"))["total_samples"]
                .as_u64()
                .unwrap_or(0);
        if end >= ended_ns && samples > 0 {
            return end;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no window with samples of pid {pid} reached the store within 600 s (is the machine this busy?)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs a split binary for 6 s; returns its pid.
fn run_split(path: &Path) -> u32 {
    let mut child = Command::new(path)
        .arg("6")
        .stderr(Stdio::null())
        .spawn()
        .expect("running split");
    let pid = child.id();
    let status = child.wait().expect("waiting for split");
    assert!(status.success(), "{} failed", path.display());
    pid
}

#[test]
fn the_web_ui_shows_the_split_in_a_real_browser() {
    let Some(_p) = privileged("the_web_ui_shows_the_split_in_a_real_browser") else {
        return;
    };
    let Some(browser_dir) = browser_tools() else {
        return;
    };
    let dir = tempdir();
    // With --off-cpu, so the page has an off-CPU profile to switch to (its last step);
    // sampled (one switch-out in 10, waits of 1 ms or more), so that on a busy machine the
    // extra stacks to name do not delay the split runs' drains past their exit.
    let (mut agent, base, _log) = start_agent_logged(
        dir.path(),
        "2s",
        &["--off-cpu", "--off-cpu-every", "10", "--off-cpu-min", "1ms"],
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    // The plain split, then the slowed one once the first is all stored: the comparison
    // view's A and B, told apart by range and by pid.
    let plain_from = now_ns();
    let plain_pid = run_split(&example("split"));
    let slowed_from = now_ns();
    wait_for_samples_of(&base, plain_pid, slowed_from);
    let slowed_from = now_ns();
    let slowed_pid = run_split(&examples().join("slowed/split"));
    let slowed_end = now_ns();
    let stored_to = wait_for_samples_of(&base, slowed_pid, slowed_end).max(now_ns());

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::remove_dir_all(&out_dir).ok();
    std::fs::create_dir_all(&out_dir).expect("creating the screenshot directory");
    let out = Command::new("node")
        .arg(browser_dir.join("ui.test.mjs"))
        .arg(&base)
        .arg(&out_dir)
        .args([plain_from, slowed_from, slowed_from, stored_to].map(rfc3339))
        .args([plain_pid, slowed_pid].map(|p| p.to_string()))
        .current_dir(&browser_dir)
        .output()
        .expect("running node");
    agent.kill().ok();
    agent.wait().ok();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("screenshots of the web UI: {}", out_dir.display());
    assert!(
        out.status.success(),
        "tests/browser/ui.test.mjs failed ({}); screenshots in {}",
        out.status,
        out_dir.display()
    );
}
