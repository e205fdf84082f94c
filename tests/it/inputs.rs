//! Hostile and oversized inputs (issue 13, items 5–7, 13, 18, 20, 21): each reproducer of
//! the probe, bounded in time (a deadline, then kill) and in memory (`ulimit -v`), so a
//! regression fails the test instead of the machine.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Folded, ember, example, privileged, tempdir};

/// The `ember` binary run directly (no privileges needed), in `sh` so that `ulimit -v
/// kib` bounds its address space.
fn limited(kib: u64) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ember"))
        .env_remove("RUST_LOG");
    c
}

/// Waits for `child` at most `limit`; kills it past that and fails.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting for ember").is_some() {
            return child.wait_with_output().expect("collecting ember's output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collecting ember's output");
            panic!(
                "{what}: still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to its end within `limit`, stdin closed.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember");
    wait_bounded(child, limit, &format!("{cmd:?}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("writing a test input");
    p
}

const BASE: &str = "split;main;work;fn_a 70\nsplit;main;work;fn_b 30\n";

/// 512 MiB of address space: ember's own needs are a few tens of MiB.
const DIFF_KIB: u64 = 512 * 1024;

fn diff(args: &[&Path], extra: &[&str]) -> Output {
    run_bounded(
        limited(DIFF_KIB).arg("diff").args(args).args(extra),
        Duration::from_secs(60),
    )
}

/// `ember diff /dev/zero base.folded` was OOM-killed at 24.3 GB, `/dev/urandom` reached
/// 20 GB: binary input that is neither format is refused from its first bytes.
#[test]
fn diff_refuses_endless_binary_input_at_once() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let out = diff(&[Path::new("/dev/zero"), &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`/dev/zero` is neither folded stacks nor a pprof profile: byte 0 is 0x00"),
        "{err}"
    );
    let out = diff(&[&base, Path::new("/dev/urandom")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    // Random bytes are refused from their first 4 KiB, except in the rare case they look
    // like profile.proto fields; then the pprof decoder refuses them, within the limit.
    assert!(
        err.contains("`/dev/urandom` is neither folded stacks nor a pprof profile")
            || err.contains("`/dev/urandom` is not a valid pprof profile")
            || err.contains("`/dev/urandom` is larger than --max-input-size"),
        "{err}"
    );
}

/// `members` gzip members of 16 MiB of zeros, after `head` (compressed by `gzip`, which
/// every system has): 256 members are 4 GiB that compress to about 4 MiB.
fn gzip_bomb(dir: &Path, name: &str, head: &[u8], members: usize) -> PathBuf {
    let gz = |data: &[u8]| {
        let mut child = Command::new("gzip")
            .args(["-9", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running gzip");
        let mut stdin = child.stdin.take().expect("gzip's stdin");
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().expect("gzip's output");
        feeder
            .join()
            .expect("feeding gzip")
            .expect("writing to gzip");
        assert!(out.status.success(), "gzip failed");
        out.stdout
    };
    let zeros = gz(&vec![0u8; 16 << 20]);
    let mut data = if head.is_empty() {
        Vec::new()
    } else {
        gz(head)
    };
    for _ in 0..members {
        data.extend_from_slice(&zeros);
    }
    write(dir, name, data)
}

/// A 4 MB gzip of 4 GiB of zeros reached 4.27 GB before failing at byte 0: now the first
/// decompressed bytes are checked before the rest is decompressed, and what decompresses
/// is capped by --max-input-size.
#[test]
fn diff_refuses_gzip_bombs_within_bounded_memory() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let zeros = gzip_bomb(dir.path(), "bomb.pb.gz", b"", 256);
    assert!(std::fs::metadata(&zeros).unwrap().len() < 8 << 20);
    let start = Instant::now();
    let out = diff(&[&zeros, &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not a valid pprof profile: not a pprof profile: not a field of profile.proto at byte 0"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );

    // A bomb whose first bytes are a profile's (a string table entry that claims 4 GiB):
    // only the limit stops it.
    let mut head = vec![0x32, 0x00, 0x32];
    let mut len = 4u64 << 30;
    while len >= 0x80 {
        head.push((len as u8) | 0x80);
        len >>= 7;
    }
    head.push(len as u8);
    let prefixed = gzip_bomb(dir.path(), "prefixed.pb.gz", &head, 256);
    let out = diff(&[&base, &prefixed], &["--max-input-size", "64MiB"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "`{}` is larger than --max-input-size (67108864 bytes) once decompressed; raise \
             --max-input-size if it is a genuine profile",
            prefixed.display()
        )),
        "{err}"
    );
}

/// A 200 MB vs 200 MB folded diff peaked at 2.35 GB: folded input is streamed, so 96 MiB
/// of the same few stacks through a pipe diff in 64 MiB of address space (ember's own
/// debug build takes about 30 of them).
#[test]
fn diff_streams_large_folded_input() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let mut child = limited(64 * 1024)
        .args(["diff", "/dev/stdin"])
        .arg(&base)
        .args(["--fail-on-regression", "0.1%"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember diff");
    let mut stdin = child.stdin.take().expect("ember's stdin");
    let block = "split;main;work;fn_a 7\nsplit;main;work;fn_b 3\n".repeat(4096);
    let blocks = (96 << 20) / block.len();
    let feeder = std::thread::spawn(move || {
        for _ in 0..blocks {
            if stdin.write_all(block.as_bytes()).is_err() {
                return;
            }
        }
    });
    let out = wait_bounded(child, Duration::from_secs(180), "ember diff of 96 MiB");
    feeder.join().expect("the feeder");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("no function's share changed"), "{table}");
}

/// Two counts of 2^63 summed to 0 ("has no samples"); two of 2^64-1 gave two functions
/// at 100 % each and `--fail-on-regression 0%` passed; negative pprof values were
/// dropped; `ember diff --folded` output was read as a profile.
#[test]
fn diff_counts_overflow_negative_and_differential_inputs_are_errors() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let half = write(
        dir.path(),
        "half.folded",
        "a;b;c 9223372036854775808\na;b;d 9223372036854775808\n",
    );
    let max = write(
        dir.path(),
        "max.folded",
        "a;b;c 18446744073709551615\na;b;d 18446744073709551615\n",
    );
    for f in [&half, &max] {
        let out = diff(&[&base, f], &["--fail-on-regression", "0%"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "`{}` is not valid folded stacks: line 2: the sample counts add up to more \
                 than 2^64 - 1",
                f.display()
            )),
            "{err}"
        );
        assert!(!err.contains("no samples"), "{err}");
    }

    // A pprof sample of -3: sample_type {1, 2}, sample {value: [-3]}, strings "",
    // "samples", "count".
    let mut pb = vec![0x0a, 0x04, 0x08, 0x01, 0x10, 0x02];
    pb.extend_from_slice(&[0x12, 0x0c, 0x12, 0x0a]);
    pb.extend_from_slice(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    for s in ["", "samples", "count"] {
        pb.push(0x32);
        pb.push(u8::try_from(s.len()).unwrap());
        pb.extend_from_slice(s.as_bytes());
    }
    let negative = write(dir.path(), "negative.pb", pb);
    let out = diff(&[&base, &negative], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("negative sample count -3"), "{err}");

    // The differential folded file is refused with a word on what it is.
    let new = write(
        dir.path(),
        "new.folded",
        "split;main;work;fn_a 50\nsplit;main;work;fn_b 50\n",
    );
    let three = dir.path().join("diff.folded");
    let out = diff(
        &[&base, &new],
        &["--folded", three.to_str().unwrap(), "--top", "0"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = diff(&[&three, &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("line 1 has two sample counts (`stack base new`)"),
        "{err}"
    );
}

/// A folded file with a NUL byte was "not a valid pprof profile … at byte 16"; a line
/// without end is an error naming file and line.
#[test]
fn diff_names_binary_and_endless_lines() {
    let dir = tempdir();
    let base = write(dir.path(), "base.folded", BASE);
    let nul = write(
        dir.path(),
        "nul.folded",
        b"split;main;fn_a \x001\nsplit;b 2\n",
    );
    let out = diff(&[&base, &nul], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "`{}` is neither folded stacks nor a pprof profile: byte 16 is 0x00",
            nul.display()
        )),
        "{err}"
    );
    // Past the first 4 KiB, the line is named.
    let mut late = BASE.repeat(100).into_bytes();
    late.extend_from_slice(b"split;\x00 1\n");
    let late = write(dir.path(), "late.folded", late);
    let out = diff(&[&base, &late], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not valid folded stacks: line 201 holds binary data (byte 0x00"),
        "{err}"
    );
    let long = write(dir.path(), "long.folded", "a".repeat(3 << 20));
    let out = diff(&[&base, &long], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "`{}` is not valid folded stacks: line 1 is longer than 1048576 bytes",
            long.display()
        )),
        "{err}"
    );
}

/// A loopback server that answers each of `n` connections with `answer`, then holds the
/// connection until the client closes it (at most 20 s).
fn hostile_agent(
    n: usize,
    answer: impl Fn(&mut std::net::TcpStream) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("the listener's address")
    );
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            answer(&mut s);
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            // Until the client hangs up.
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    (url, server)
}

/// `ember export --agent URL` hung forever on a server that sent a status line and
/// stalled, or a short body under a larger Content-Length, and took 2.1 GB for a 1 GB
/// body.
#[test]
fn export_from_a_hostile_agent_is_bounded() {
    let export = |url: &str, extra: &[&str]| {
        run_bounded(
            limited(700 * 1024)
                .args(["export", "--agent", url, "-o", "-"])
                .args(extra),
            Duration::from_secs(60),
        )
    };
    let (url, server) = hostile_agent(2, |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
    });
    let start = Instant::now();
    let out = export(&url, &["--agent-read-timeout", "500ms"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nothing arrived for 500 ms (--agent-read-timeout)"),
        "{err}"
    );
    // The default read timeout is a minute; the overall one is shorter here.
    let out = export(&url, &["--agent-timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the answer took longer than 1 s (--agent-timeout)"),
        "{err}"
    );
    server.join().unwrap();

    let (url, server) = hostile_agent(1, |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nshort");
    });
    let out = export(&url, &["--agent-read-timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--agent-read-timeout"),
        "{}",
        stderr(&out)
    );
    server.join().unwrap();

    // 1 GB without a Content-Length, under 700 MiB of address space: the default cap
    // (256 MiB) stops it.
    let (url, server) = hostile_agent(1, |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n");
        let block = vec![0u8; 1 << 20];
        for _ in 0..1000 {
            if s.write_all(&block).is_err() {
                return;
            }
        }
    });
    let out = export(&url, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sent more than 268435456 bytes; raise --agent-max-response"),
        "{err}"
    );
    server.join().unwrap();
}

/// "…(os error 98); choose another address with --listen: Address already in use (os
/// error 98)": each cause is printed once.
#[test]
fn a_taken_listen_address_is_reported_once() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempdir();
    let out = run_bounded(
        limited(2 << 20)
            .args(["agent", "--listen", &addr, "--data-dir"])
            .arg(dir.path().join("store")),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (choose another address with --listen): Address already \
             in use (os error 98)"
        )),
        "{err}"
    );
    assert_eq!(err.matches("os error 98").count(), 1, "{err}");
}

/// Flags the probe found accepted: `--unwind-table-mem 1TiB` (a 16 GiB preallocated map
/// and a hang), `--counts-map-entries 0`, `--window 1ms`, out-of-range drain intervals.
#[test]
fn out_of_range_flags_are_refused_before_anything_runs() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "record",
                "--unwind-table-mem",
                "1TiB",
                "-d",
                "1s",
                "-o",
                "x.folded",
                "--",
                "true",
            ],
            "more than this node allows: at most",
        ),
        (
            &["record", "--all", "--counts-map-entries", "0"],
            "--counts-map-entries",
        ),
        (&["agent", "--window", "1ms"], "it must be at least 1s"),
        (
            &["record", "--all", "--drain-interval", "1ms"],
            "between 10ms and 60s",
        ),
        (
            &[
                "agent",
                "--window",
                "2s",
                "--drain-interval",
                "5s",
                "--listen",
                "none",
            ],
            "--drain-interval 5s is longer than --window 2s",
        ),
    ];
    for (args, want) in cases {
        let out = run_bounded(limited(2 << 20).args(args), Duration::from_secs(20));
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: want `{want}` in {err}");
    }
    let out = run_bounded(
        limited(2 << 20).args(["record", "--all", "--counts-map-entries", "1"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("64"), "{}", stderr(&out));
}

/// `ember record -o -` with stdout closed exited 0 having written nothing.
#[test]
fn record_to_a_closed_stdout_is_an_error() {
    let out = run_bounded(
        Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" >&-")
            .arg(env!("CARGO_BIN_EXE_ember"))
            .args(["record", "--all", "-d", "1s", "-o", "-"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stdout is closed"),
        "{}",
        stderr(&out)
    );
}

/// `ember record … -o - | grep fn` ended "cannot write '-': Broken pipe" when the reader
/// went first: a closed pipe ends quietly with 0.
#[test]
fn record_into_a_closed_pipe_ends_quietly() {
    let Some(_p) = privileged("record_into_a_closed_pipe_ends_quietly") else {
        return;
    };
    let split = example("split");
    let mut child = ember()
        .args(["record", "-o", "-", "--"])
        .arg(&split)
        .arg("1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember record");
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let out = wait_bounded(
        child,
        Duration::from_secs(60),
        "ember record into a closed pipe",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
}

/// `--counts-map-entries 1` warned that lost samples appear as `[lost: ...]` frames; they
/// did not, the profile read 100 % fn_a, and with `--all` the run ended "nothing
/// sampled". Now the smallest map (64) overflowed by a process storm puts its losses in
/// the output as one stack, with the count the warning gives.
#[test]
fn samples_lost_to_a_full_counts_map_are_in_the_output() {
    let Some(_p) = privileged("samples_lost_to_a_full_counts_map_are_in_the_output") else {
        return;
    };
    let storm = example("storm");
    let dir = tempdir();
    for all in [false, true] {
        let path = dir.path().join(format!("lost-{all}.folded"));
        let mut cmd = ember();
        cmd.args(["record", "-F", "999", "--counts-map-entries", "64"])
            .args(["--drain-interval", "10s", "-o"])
            .arg(&path);
        let mut background = None;
        if all {
            background = Some(
                Command::new(&storm)
                    .args(["4", "5", "4"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting storm"),
            );
            cmd.args(["--all", "-d", "3s"]);
        } else {
            cmd.arg("--").arg(&storm).args(["3", "5", "4"]);
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(60));
        if let Some(mut b) = background {
            let _ = b.wait();
        }
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "all={all}: {err}");
        assert!(!err.contains("nothing sampled"), "{err}");
        let folded = Folded::read(&path);
        let lost = folded
            .lines
            .get("[lost];[lost: counts map full]")
            .copied()
            .unwrap_or_else(|| panic!("all={all}: no lost stack in {:?}\n{err}", folded.lines));
        assert!(
            err.contains(&format!("{lost} counts_full"))
                && err.contains(&format!("the {lost} samples dropped"))
                && err.contains("raise --counts-map-entries"),
            "all={all}: {err}"
        );
    }
}
