//! The CI recipe of the README (`examples/ci/profile-gate.sh`) run as CI runs it: a first run
//! keeps the baseline, the unchanged workload passes, the deliberately slowed one (fn_b twice
//! as heavy: 30 % → 46 %) trips the gate with exit 1 and says which function and by how much.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{Folded, examples, privileged, repo_root, share_agrees, share_bound, tempdir};

fn gate(
    dir: &Path,
    baseline: &Path,
    out: &str,
    workload: &Path,
    extra_env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("examples/ci/profile-gate.sh"))
        .arg(baseline)
        .arg(dir.join(out))
        .arg("--")
        .arg(workload)
        .arg("3")
        .env("EMBER", env!("CARGO_BIN_EXE_ember"))
        .env_remove("RUST_LOG");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("running profile-gate.sh");
    eprintln!(
        "--- profile-gate {out} (exit {:?})\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn the_ci_recipe_passes_unchanged_code_and_fails_the_slowed_variant() {
    let Some(_p) = privileged("the_ci_recipe_passes_unchanged_code_and_fails_the_slowed_variant")
    else {
        return;
    };
    let dir = tempdir();
    let baseline = dir.path().join("baseline.folded");
    let split = examples().join("split");
    let slowed = examples().join("slowed/split");

    // No baseline yet: record, say so, pass; the artifact becomes the baseline.
    let first = gate(dir.path(), &baseline, "first", &split, &[]);
    assert_eq!(first.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&first.stderr).contains("no baseline"));
    let artifact = dir.path().join("first/profile.folded");
    let base = Folded::read(&artifact).process("split");
    // 3 s at 999 Hz is ~3,000 samples on an idle CPU; other work on the machine lowers it.
    assert!(base.total() > 1000, "{} samples", base.total());
    assert!(
        share_agrees(base.share("fn_b"), 0.30, base.total()),
        "{} (± {:.3})",
        base.share("fn_b"),
        share_bound(0.30, base.total())
    );
    std::fs::copy(&artifact, &baseline).unwrap();

    // Unchanged code passes the default 5-point gate and a named one.
    let same = gate(
        dir.path(),
        &baseline,
        "same",
        &split,
        &[("EMBER_FAIL_ON", "fn_b>+5%")],
    );
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stderr).contains("2 gate(s) passed"));
    for f in ["profile.folded", "diff.svg", "diff.folded"] {
        assert!(dir.path().join("same").join(f).exists(), "{f}");
    }

    // The slowed variant trips both gates, naming fn_b and its growth.
    let slow = gate(
        dir.path(),
        &baseline,
        "slow",
        &slowed,
        &[("EMBER_FAIL_ON", "fn_b>+5%")],
    );
    assert_eq!(slow.status.code(), Some(1));
    let err = String::from_utf8_lossy(&slow.stderr);
    assert!(
        err.contains("gate tripped: --fail-on-regression 5%: `fn_b` self share"),
        "{err}"
    );
    assert!(
        err.contains("gate tripped: --fail-on 'fn_b>+5%': `fn_b` total share"),
        "{err}"
    );
    assert!(
        !err.contains("`fn_a`"),
        "fn_a shrank and must not trip: {err}"
    );
    let new = Folded::read(&dir.path().join("slow/profile.folded")).process("split");
    let grew = new.share("fn_b") - base.share("fn_b");
    assert!(
        (0.10..0.22).contains(&grew),
        "fn_b grew by {grew} (expected ~0.16)"
    );
    // The differential folded file has the two columns for fn_b's stack.
    let diff = std::fs::read_to_string(dir.path().join("slow/diff.folded")).unwrap();
    assert!(
        diff.lines().any(|l| l.starts_with("split;")
            && l.contains(";main;work;fn_b ")
            && l.split(' ').count() == 3),
        "{diff}"
    );
}
