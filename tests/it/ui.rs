//! The web UI in a real browser: `ember agent` serves the page, the `split` workload gives it
//! a known profile, and `tests/browser/ui.test.mjs` (Node + playwright-core + Debian's
//! chromium) clicks through it, checking what is drawn and saving screenshots.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{example, privileged, repo_root, start_agent_with_api, tempdir};

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

#[test]
fn the_web_ui_shows_the_split_in_a_real_browser() {
    let Some(_p) = privileged("the_web_ui_shows_the_split_in_a_real_browser") else {
        return;
    };
    let Some(browser_dir) = browser_tools() else {
        return;
    };
    let dir = tempdir();
    let (mut agent, base) = start_agent_with_api(dir.path(), "2s");
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new(example("split"))
        .arg("6")
        .stderr(Stdio::null())
        .status()
        .expect("running split");
    assert!(status.success());
    // Let the last windows of the workload reach the store.
    std::thread::sleep(Duration::from_secs(3));

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&out_dir).expect("creating the screenshot directory");
    let out = Command::new("node")
        .arg(browser_dir.join("ui.test.mjs"))
        .arg(&base)
        .arg(&out_dir)
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
