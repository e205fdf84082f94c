//! `ember diff` as a user runs it: normalization, outputs, every gate's exit code and
//! message, and bad inputs. Hand-made profiles; no root needed.

use std::path::{Path, PathBuf};
use std::process::Output;

use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileMeta, keys, pprof};

use crate::common::{ember, tempdir};

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("writing a test input");
    p
}

fn diff(args: &[&Path], extra: &[&str]) -> Output {
    ember()
        .arg("diff")
        .args(args)
        .args(extra)
        .output()
        .expect("running ember diff")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BASE: &str = "split;main;work;fn_a 70\nsplit;main;work;fn_b 30\n";
/// Twice as long as BASE, same shares.
const SAME: &str = "split;main;work;fn_a 140\nsplit;main;work;fn_b 60\n";
/// fn_b from 30 % to 50 % (self 40 %, and 10 % in a callee).
const SLOWER: &str =
    "split;main;work;fn_a 100\nsplit;main;work;fn_b 80\nsplit;main;work;fn_b;hash 20\n";

#[test]
fn same_shares_at_twice_the_length_pass_every_gate() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let new = write(dir.path(), "new.folded", SAME);
    let folded = dir.path().join("d.folded");
    let out = ember()
        .arg("diff")
        .args([&base, &new])
        .args(["--fail-on-regression", "0%", "--fail-on", "fn_b>+0%"])
        .arg("--folded")
        .arg(&folded)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("BASE (100 samples) -> NEW (200 samples)"));
    assert!(stdout(&out).contains("no function's share changed"));
    assert!(
        stderr(&out).contains("2 gate(s) passed"),
        "{}",
        stderr(&out)
    );
    // BASE is scaled to NEW's total: equal columns mean equal shares.
    assert_eq!(
        std::fs::read_to_string(&folded).unwrap(),
        "split;main;work;fn_a 140 140\nsplit;main;work;fn_b 60 60\n"
    );
}

#[test]
fn regression_gate_trips_with_exit_1_and_names_function_and_size() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let new = write(dir.path(), "new.folded", SLOWER);
    let svg = dir.path().join("d.svg");
    let out = ember()
        .arg("diff")
        .args([&base, &new])
        .args(["--fail-on-regression", "5%", "--svg"])
        .arg(&svg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // fn_b self: 30 % -> 40 %; hash self: 0 % -> 10 %; both +10 points > 5.
    assert!(
        err.contains(
            "gate tripped: --fail-on-regression 5%: `fn_b` self share 30.00% -> 40.00% \
             (+10.00 points, limit +5 points)"
        ),
        "{err}"
    );
    assert!(
        err.contains("`hash` self share 0.00% -> 10.00% (+10.00 points"),
        "{err}"
    );
    assert!(!err.contains("`fn_a`"), "fn_a shrank: {err}");
    let table = stdout(&out);
    assert!(
        table.contains("30.00%   40.00%   +10.00     30.00%   50.00%   +20.00   fn_b"),
        "{table}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("fn_b"), "{svg}");

    // At exactly the growth, the gate holds: "more than 10 points" is strict.
    let out = diff(&[&base, &new], &["--fail-on-regression", "10%"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn named_gates_use_the_total_share() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let new = write(dir.path(), "new.folded", SLOWER);
    // fn_b total: 30 % -> 50 %.
    let out = diff(
        &[&base, &new],
        &["--fail-on", "fn_a>+1%", "--fail-on", "fn_b>+15%"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "gate tripped: --fail-on 'fn_b>+15%': `fn_b` total share 30.00% -> 50.00% \
             (+20.00 points, limit +15 points)"
        ),
        "{err}"
    );
    assert!(!err.contains("fn_a>"), "fn_a shrank and passes: {err}");

    let out = diff(&[&base, &new], &["--fail-on", "fn_b>+20%", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A gate on a function in neither profile is an error, not a pass.
    let out = diff(&[&base, &new], &["--fail-on", "fn_c>+5%"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no function `fn_c` in either profile"));
}

fn labelled_pprof(counts: &[(&str, u64)]) -> Vec<u8> {
    let mut p = Profile::new(ProfileMeta {
        start_unix_ns: 1,
        duration_ns: 1_000_000_000,
        frequency_hz: 99,
        ..ProfileMeta::default()
    });
    let l = Labels::new()
        .with(keys::COMM, "split")
        .with(keys::PID, "7")
        .with(keys::TID, "7");
    for (leaf, c) in counts {
        let stack: Vec<Frame> = ["main", "work", leaf]
            .iter()
            .map(|n| Frame::named(*n, FrameKind::User))
            .collect();
        p.add(&l, &stack, *c);
    }
    let mut out = Vec::new();
    pprof::encode(&p, &mut out).expect("encoding to memory");
    out
}

#[test]
fn pprof_and_folded_inputs_compare_line_for_line() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    // Told apart by content, not by name: a pprof named .folded is still pprof.
    let new = write(
        dir.path(),
        "new.folded",
        labelled_pprof(&[("fn_a", 700), ("fn_b", 300)]),
    );
    let folded = dir.path().join("d.folded");
    let out = ember()
        .arg("diff")
        .args([&base, &new])
        .args(["--fail-on-regression", "0%", "--folded"])
        .arg(&folded)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&folded).unwrap(),
        "split;main;work;fn_a 700 700\nsplit;main;work;fn_b 300 300\n"
    );

    let slower = write(
        dir.path(),
        "slower.pb.gz",
        labelled_pprof(&[("fn_a", 500), ("fn_b", 500)]),
    );
    let out = diff(&[&new, &slower], &["--fail-on", "fn_b>+5%"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`fn_b` total share 30.00% -> 50.00%"));
}

#[test]
fn bad_inputs_name_the_file_and_line_and_exit_2() {
    let dir = tempdir();
    let good = write(dir.path(), "good.folded", BASE);
    let empty = write(dir.path(), "empty.folded", "");
    let comments = write(dir.path(), "comments.folded", "# nothing\n\n");
    let malformed = write(dir.path(), "bad.folded", "a;b 1\na;b twelve\n");
    let pprof = labelled_pprof(&[("fn_a", 7)]);
    let truncated = write(dir.path(), "cut.pb.gz", &pprof[..pprof.len() / 2]);
    let missing = dir.path().join("missing.folded");

    let cases: [(&Path, String); 5] = [
        (
            &empty,
            format!("`{}` has no samples (empty file)", empty.display()),
        ),
        (
            &comments,
            format!("`{}` has no samples", comments.display()),
        ),
        (
            &malformed,
            format!(
                "`{}` is not valid folded stacks: line 2: the sample count is not a whole \
                 number: `a;b twelve`",
                malformed.display()
            ),
        ),
        (
            &truncated,
            format!("`{}` is not a valid pprof profile", truncated.display()),
        ),
        (&missing, format!("cannot read `{}`", missing.display())),
    ];
    for (bad, want) in cases {
        for args in [[&good, bad], [bad, &good]] {
            let out = diff(&args, &[]);
            assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains(&want), "want `{want}` in: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }

    for (args, want) in [
        (&["--fail-on", "fn_b+5%"][..], "invalid gate `fn_b+5%`"),
        (&["--fail-on", "fn_b>lots"][..], "invalid limit"),
        (&["--fail-on-regression=-3%"][..], "between 0% and 100%"),
        (&["--fail-on-regression", "abc"][..], "such as 5% or 0.5%"),
    ] {
        let out = diff(&[&good, &good], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let out = ember().args(["diff"]).arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_teaches_points_and_exit_codes() {
    let out = ember().args(["diff", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    for want in [
        "percentage points",
        "Exit status: 0 no gate tripped, 1 a gate tripped",
        "ember diff base.folded new.folded --fail-on-regression 5%",
    ] {
        assert!(help.contains(want), "`{want}` missing from:\n{help}");
    }
}
