//! `ember agent` end to end: windows written to the store, read back through the store's
//! own query path.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use profiler_agent::store::{Query, Store, StoreConfig};
use profiler_model::{LabelFilter, folded};

use crate::common::{Folded, ember, example, privileged, tempdir};

fn start_agent(dir: &std::path::Path, window: &str) -> Child {
    ember()
        .args(["agent", "-F", "99", "--window", window, "--data-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember agent")
}

fn signal(child: &Child, signo: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signo) };
}

#[test]
fn agent_stores_windows_that_show_the_split() {
    let Some(_p) = privileged("agent_stores_windows_that_show_the_split") else {
        return;
    };
    let dir = tempdir();
    let agent = start_agent(dir.path(), "2s");
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new(example("split"))
        .arg("6")
        .stderr(Stdio::null())
        .status()
        .expect("running split");
    assert!(status.success());
    signal(&agent, libc::SIGTERM);
    let out = agent.wait_with_output().expect("waiting for the agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("agent stopped after"), "{err}");

    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopening the store");
    assert!(store.stats().windows >= 3, "windows: {:?}", store.stats());
    let profile = store
        .query(&Query::new(0, u64::MAX).with_filter(LabelFilter::parse("comm=split").unwrap()))
        .expect("query");
    let mut text = Vec::new();
    folded::write(&profile, folded::Options::default(), &mut text).unwrap();
    let w = Folded::parse(&String::from_utf8(text).unwrap());
    let a = w.share("fn_a");
    let b = w.share("fn_b");
    eprintln!(
        "agent: {} split samples, fn_a {a:.3}, fn_b {b:.3}",
        w.total()
    );
    assert!(w.total() > 300, "too few samples: {}", w.total());
    assert!(
        (a - 0.70).abs() <= 0.05 && (b - 0.30).abs() <= 0.05,
        "fn_a {a} fn_b {b}"
    );
}

#[test]
fn a_killed_agent_loses_at_most_the_open_window() {
    let Some(_p) = privileged("a_killed_agent_loses_at_most_the_open_window") else {
        return;
    };
    let dir = tempdir();
    let mut agent = start_agent(dir.path(), "1s");
    std::thread::sleep(Duration::from_millis(3600));
    signal(&agent, libc::SIGKILL);
    agent.wait().expect("reaping the agent");
    let windows = {
        let store = Store::open(dir.path(), StoreConfig::default()).expect("reopening");
        let stats = store.stats();
        assert_eq!(stats.corrupt_skipped, 0, "{stats:?}");
        assert!(
            stats.windows >= 2,
            "windows closed before the kill were lost: {stats:?}"
        );
        stats.windows
    };
    // The next agent opens the same store and carries on.
    let agent = start_agent(dir.path(), "1s");
    std::thread::sleep(Duration::from_millis(1800));
    signal(&agent, libc::SIGINT);
    let out = agent.wait_with_output().expect("waiting");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopening");
    assert!(store.stats().windows > windows);
}
