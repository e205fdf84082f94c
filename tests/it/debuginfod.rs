//! debuginfod: names for stripped binaries whose debug files only a server has.
//!
//! A real `debuginfod` (Debian's package, `scripts/bootstrap.sh --test`) serves, on
//! loopback, a directory holding `split-stripped`'s debug file and not
//! `recursion-stripped`'s (`examples/Makefile` builds both stripped, the debug files apart,
//! no debug link). `ember record --debuginfod` must name the first from the server, leave
//! the second `module+0xoffset` and cache the 404, so a second run (the server stopped)
//! asks nothing; a server that accepts and never answers must not hold the recording past
//! `--debuginfod-timeout`, and the recording says what timed out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Folded, ember, example, examples, privileged, share_agrees, skip, start_agent_logged, tempdir,
};

/// A `debuginfod` process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released: the server binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The HTTP status of `GET path` from `port` on loopback, `None` if it cannot be asked.
/// Enough to tell when the server has indexed its directory; Ember's own client is what
/// is under test.
fn status_of(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Lower-case hex of the GNU build-id of an ELF file, from `readelf -n`.
fn build_id_hex(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("running readelf");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no build-id in {}", path.display()))
}

/// Starts `debuginfod` serving `dir` and waits until it serves `known` (a build-id in
/// hex); `None` (after a visible skip) without the package outside CI.
fn start_server(test: &str, dir: &Path, db: &Path, known: &str) -> Option<Server> {
    if Command::new("debuginfod")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI is set but there is no debuginfod (scripts/bootstrap.sh --test installs it)"
        );
        skip(test, "no debuginfod server (apt-get install debuginfod)");
        return None;
    }
    let port = free_port();
    let log = std::fs::File::create(db.with_extension("log")).expect("server log");
    let child = Command::new("debuginfod")
        .args(["-F", "-p", &port.to_string(), "-t", "0", "-g", "0", "-d"])
        .arg(db)
        .arg(dir)
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("starting debuginfod");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // It scans the directory in the background: ready once the known file is served.
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = format!("/buildid/{known}/debuginfo");
    while status_of(port, &path) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "debuginfod never served {path}; its log:\n{}",
            std::fs::read_to_string(db.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// `ember record` of both stripped workloads (2 s each, side by side) into `out`, with
/// `extra` arguments and the debuginfod cache under `cache`; returns stderr and how long
/// it took.
fn record_both(out: &Path, cache: &Path, extra: &[&str]) -> (String, Duration) {
    let script = format!(
        "{} 2 & {} 2 20; wait",
        example("split-stripped").display(),
        example("recursion-stripped").display()
    );
    let start = Instant::now();
    let output = ember()
        .args(["record", "-F", "499", "-f", "folded", "-o"])
        .arg(out)
        .args(extra)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("DEBUGINFOD_URLS")
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .output()
        .expect("running ember record");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ember record failed:\n{stderr}");
    (stderr, took)
}

/// Samples of `folded` in which a frame starts with `prefix`.
fn with_prefix(folded: &Folded, prefix: &str) -> u64 {
    folded.count_where(|frames| frames.iter().any(|f| f.starts_with(prefix)))
}

#[test]
fn stripped_binaries_are_named_from_a_debuginfod_server_and_a_404_is_cached() {
    let test = "stripped_binaries_are_named_from_a_debuginfod_server_and_a_404_is_cached";
    let Some(_p) = privileged(test) else {
        return;
    };
    let served = tempdir();
    let debug = examples().join("debug");
    std::fs::copy(
        debug.join("split-stripped.debug"),
        served.path().join("split-stripped.debug"),
    )
    .expect("copy the served debug file");
    let split_id = build_id_hex(&example("split-stripped"));
    assert_eq!(
        split_id,
        build_id_hex(&debug.join("split-stripped.debug")),
        "the debug file belongs to the binary"
    );
    let work = tempdir();
    let Some(server) = start_server(
        test,
        served.path(),
        &work.path().join("db.sqlite"),
        &split_id,
    ) else {
        return;
    };
    let recursion_id = build_id_hex(&example("recursion-stripped"));
    let missing = format!("/buildid/{recursion_id}/debuginfo");
    assert_eq!(status_of(free_port_of(&server), &missing), Some(404));

    let cache = work.path().join("cache");
    let out = work.path().join("first.folded");
    let (stderr, _) = record_both(&out, &cache, &["--debuginfod", &server.url]);
    let folded = Folded::read(&out);
    let split = folded.process("split-stripped");
    let (a, b) = (split.with_frame("fn_a"), split.with_frame("fn_b"));
    eprintln!(
        "first run: split-stripped {} samples (fn_a {a}, fn_b {b}, unnamed {})",
        split.total(),
        with_prefix(&split, "split-stripped+0x")
    );
    assert!(split.total() > 30, "too few samples:\n{stderr}");
    assert!(
        (a + b) as f64 >= 0.95 * split.total() as f64,
        "split-stripped's frames were not named from the server (fn_a {a}, fn_b {b} of {}):\n{stderr}",
        split.total()
    );
    // 70/30 within four standard deviations of counting noise.
    let share = a as f64 / (a + b) as f64;
    let bound = 4.0 * (0.21 / (a + b) as f64).sqrt();
    assert!(
        (share - 0.70).abs() < bound,
        "fn_a share {share}, bound {bound}"
    );
    assert!(
        split.count_where(|f| f.ends_with(&["main", "work", "fn_a"])) > 0,
        "no main;work;fn_a stack:\n{stderr}"
    );
    // The server does not have recursion-stripped's: it stays module+offset.
    let recursion = with_prefix(&folded, "recursion-stripped+0x");
    assert!(
        recursion > 30,
        "recursion-stripped frames: {recursion}:\n{stderr}"
    );
    assert_eq!(folded.with_frame("leaf_spin"), 0);
    // A 404 is no failure worth a warning.
    assert!(!stderr.contains("debuginfod: no debug file"), "{stderr}");
    // Both answers are cached: the debug file by build-id, the 404 as a marker.
    let entry = |id: &str, ext: &str| {
        cache
            .join("ember/debuginfod/.build-id")
            .join(&id[..2])
            .join(format!("{}.{ext}", &id[2..]))
    };
    assert!(entry(&split_id, "debug").is_file());
    assert!(entry(&recursion_id, "missing").is_file());

    // The server goes away: a second run asks it nothing (a request would fail, and say
    // so), names split-stripped from the cache and keeps the 404.
    drop(server);
    let out = work.path().join("second.folded");
    let (stderr, _) = record_both(
        &out,
        &cache,
        &["--debuginfod", &format!("http://127.0.0.1:{}", free_port())],
    );
    // About the two workloads' build-ids: the `sh` that starts them is Debian's stripped
    // dash, which a run samples only sometimes, so the second run may ask for it the first
    // time (and fail, and say so).
    for id in [&split_id, &recursion_id] {
        assert!(
            !stderr.contains(id.as_str()),
            "the second run asked a server for {id}:\n{stderr}"
        );
    }
    let folded = Folded::read(&out);
    let split = folded.process("split-stripped");
    let (a, b) = (split.with_frame("fn_a"), split.with_frame("fn_b"));
    eprintln!(
        "second run: split-stripped {} samples (fn_a {a}, fn_b {b})",
        split.total()
    );
    assert!(
        (a + b) as f64 >= 0.95 * split.total() as f64,
        "not named from the cache:\n{stderr}"
    );
    assert!(with_prefix(&folded, "recursion-stripped+0x") > 30);
}

#[test]
fn an_off_cpu_profile_is_named_from_a_debuginfod_server_too() {
    let test = "an_off_cpu_profile_is_named_from_a_debuginfod_server_too";
    let Some(_p) = privileged(test) else {
        return;
    };
    let served = tempdir();
    std::fs::copy(
        examples().join("debug").join("offcpu-stripped.debug"),
        served.path().join("offcpu-stripped.debug"),
    )
    .expect("copy the served debug file");
    let id = build_id_hex(&example("offcpu-stripped"));
    let work = tempdir();
    let Some(server) = start_server(test, served.path(), &work.path().join("db.sqlite"), &id)
    else {
        return;
    };
    let out = work.path().join("offcpu.folded");
    let output = ember()
        .args(["record", "--off-cpu", "-f", "folded", "-o"])
        .arg(&out)
        .args(["--debuginfod", &server.url])
        .env("XDG_CACHE_HOME", work.path().join("cache"))
        .env_remove("DEBUGINFOD_URLS")
        .arg("--")
        .arg(example("offcpu-stripped"))
        .args(["2", "sleep"])
        .stdout(Stdio::null())
        .output()
        .expect("running ember record --off-cpu");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ember record failed:\n{stderr}");
    // Microseconds off CPU: the loop sleeps about 1.4 s of its 2 s under sleep_wait, a
    // function only the server's debug file names (it is static, stripped from the binary);
    // the rest is preemption and the process's start. Stacks taken before the file arrived
    // are named at the end, in the off-CPU profile as in the CPU one.
    let folded = Folded::read(&out).process("offcpu-stripped");
    let named = folded.with_frame("sleep_wait");
    let unnamed = with_prefix(&folded, "offcpu-stripped+0x");
    eprintln!(
        "off-CPU: {} us, {named} under sleep_wait, {unnamed} under unnamed frames",
        folded.total()
    );
    assert!(
        folded.total() > 500_000,
        "too little off-CPU time:\n{stderr}"
    );
    assert!(
        named as f64 >= 0.8 * folded.total() as f64 && unnamed == 0,
        "the off-CPU profile was not named from the server:\n{stderr}"
    );
}

/// Runs an agent (1 s windows, store in `data`, `args` added) while `split-stripped` runs
/// 3 s (about 300 samples at 99 Hz), waits until the store holds 200 of them, then stops
/// it with SIGINT.
fn agent_beside_split_stripped(data: &Path, args: &[&str]) -> String {
    // `-v`: "agent started" says when sampling runs; the API listens before that.
    let args: Vec<&str> = ["-v"].iter().chain(args).copied().collect();
    let (mut agent, _url, log) = start_agent_logged(data, "1s", &args, &[("DEBUGINFOD_URLS", "")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|l| l.contains("agent started"))
    {
        assert!(
            Instant::now() < deadline,
            "the agent did not start sampling"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new(example("split-stripped"))
        .arg("3")
        .stdout(Stdio::null())
        .status()
        .expect("running split-stripped");
    assert!(status.success());
    // Until the windows holding the run are stored: on a busy machine the agent names
    // other processes' large binaries first, and a window closes late.
    let deadline = Instant::now() + Duration::from_secs(120);
    let cache = data.join("export-cache");
    while try_export_store(data, &cache, &[])
        .0
        .is_none_or(|f| f.process("split-stripped").total() < 200)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(agent.id() as i32, libc::SIGINT) };
    let status = agent.wait().expect("waiting for the agent");
    let log = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .join("\n");
    assert!(status.success(), "the agent failed:\n{log}");
    log
}

/// `ember export` of the store in `data` as folded text, with `extra` arguments.
fn export_store(data: &Path, cache: &Path, extra: &[&str]) -> (Folded, String) {
    let (out, stderr) = try_export_store(data, cache, extra);
    (
        out.unwrap_or_else(|| panic!("ember export failed:\n{stderr}")),
        stderr,
    )
}

/// [`export_store`], `None` when the export fails (e.g. no window stored yet).
fn try_export_store(data: &Path, cache: &Path, extra: &[&str]) -> (Option<Folded>, String) {
    let out = ember()
        .args([
            "export",
            "--from",
            "-10m",
            "-f",
            "folded",
            "-o",
            "-",
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("DEBUGINFOD_URLS")
        .output()
        .expect("running ember export");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let folded = out
        .status
        .success()
        .then(|| Folded::parse(&String::from_utf8_lossy(&out.stdout)));
    (folded, stderr)
}

/// Issue 16: the agent names a stripped binary from a debuginfod server (its cache under
/// --data-dir), and `ember export --debuginfod` names what a store holds unnamed.
#[test]
fn the_agent_and_export_name_stripped_frames_from_a_debuginfod_server() {
    let test = "the_agent_and_export_name_stripped_frames_from_a_debuginfod_server";
    let Some(_p) = privileged(test) else {
        return;
    };
    let served = tempdir();
    std::fs::copy(
        examples().join("debug").join("split-stripped.debug"),
        served.path().join("split-stripped.debug"),
    )
    .expect("copy the served debug file");
    let id = build_id_hex(&example("split-stripped"));
    let work = tempdir();
    let Some(server) = start_server(test, served.path(), &work.path().join("db.sqlite"), &id)
    else {
        return;
    };
    let cache = work.path().join("cache");
    let named = |f: &Folded| f.with_frame("fn_a") + f.with_frame("fn_b");

    // Without a server the agent stores split-stripped as module+offset...
    let plain = work.path().join("plain");
    let log = agent_beside_split_stripped(&plain, &[]);
    let (stored, _) = export_store(&plain, &cache, &[]);
    let stored = stored.process("split-stripped");
    assert!(stored.total() >= 200, "too few samples stored:\n{log}");
    assert_eq!(named(&stored), 0, "named without a debug file");
    assert!(
        with_prefix(&stored, "split-stripped+0x") >= stored.total() * 9 / 10,
        "{stored:?}"
    );
    // ...which export names from the server.
    let (fetched, stderr) = export_store(&plain, &cache, &["--debuginfod", &server.url]);
    let fetched = fetched.process("split-stripped");
    let (a, b) = (fetched.with_frame("fn_a"), fetched.with_frame("fn_b"));
    eprintln!(
        "export --debuginfod: {} samples, fn_a {a}, fn_b {b}\n{stderr}",
        fetched.total()
    );
    assert_eq!(fetched.total(), stored.total(), "the same samples");
    assert!(
        (a + b) as f64 >= 0.95 * fetched.total() as f64,
        "export --debuginfod did not name them:\n{stderr}"
    );
    assert!(
        share_agrees(a as f64 / (a + b) as f64, 0.70, a + b),
        "fn_a {a}, fn_b {b}"
    );
    assert!(stderr.contains("1 file(s) found"), "{stderr}");

    // An agent given the server stores them named.
    let with_server = work.path().join("named");
    let log = agent_beside_split_stripped(&with_server, &["--debuginfod", &server.url]);
    let (stored, _) = export_store(&with_server, &cache, &[]);
    let stored = stored.process("split-stripped");
    let (a, b) = (stored.with_frame("fn_a"), stored.with_frame("fn_b"));
    eprintln!(
        "agent --debuginfod: {} samples, fn_a {a}, fn_b {b}",
        stored.total()
    );
    assert!(stored.total() >= 200, "too few samples stored:\n{log}");
    assert!(
        (a + b) as f64 >= 0.95 * stored.total() as f64,
        "the agent did not name split-stripped from the server:\n{log}"
    );
    assert!(
        with_server.join("debuginfod").is_dir(),
        "the agent's cache is under --data-dir"
    );
}

/// The port of `server`'s URL.
fn free_port_of(server: &Server) -> u16 {
    server
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the server URL")
}

/// A listener that accepts connections and never answers, run by Python so no thread of
/// this test process serves it. Killed on drop.
struct Silent {
    child: Child,
    port: u16,
}

impl Drop for Silent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn silent_server() -> Silent {
    let script = "import socket, sys\n\
                  s = socket.socket()\n\
                  s.bind(('127.0.0.1', 0))\n\
                  s.listen(64)\n\
                  print(s.getsockname()[1], flush=True)\n\
                  held = []\n\
                  while True:\n    held.append(s.accept()[0])\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut line = String::new();
    let mut stdout = child.stdout.take().expect("python's stdout");
    let mut byte = [0_u8; 1];
    while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
        line.push(char::from(byte[0]));
    }
    let port = line.trim().parse().expect("the listener's port");
    Silent { child, port }
}

#[test]
fn a_debuginfod_server_that_never_answers_costs_at_most_its_timeout() {
    let test = "a_debuginfod_server_that_never_answers_costs_at_most_its_timeout";
    let Some(_p) = privileged(test) else {
        return;
    };
    let silent = silent_server();
    let url = format!("http://127.0.0.1:{}", silent.port);
    let work = tempdir();
    let out = work.path().join("silent.folded");
    let (stderr, took) = record_both(
        &out,
        &work.path().join("cache"),
        &["--debuginfod", &url, "--debuginfod-timeout", "2s"],
    );
    eprintln!(
        "with a silent server: {:.1} s\n{stderr}",
        took.as_secs_f64()
    );
    // 2 s of workload, at most 2 s of waiting, and start-up and symbolization.
    assert!(took < Duration::from_secs(12), "took {took:?}:\n{stderr}");
    assert!(stderr.contains("waiting up to 2.0 s"), "{stderr}");
    let split_id = build_id_hex(&example("split-stripped"));
    let asked = format!("{url}/buildid/{split_id}/debuginfo");
    assert!(
        stderr.contains(&asked) && (stderr.contains("timed out") || stderr.contains("no answer")),
        "the timeout of {asked} is not reported:\n{stderr}"
    );
    let folded = Folded::read(&out);
    assert!(
        with_prefix(&folded, "split-stripped+0x") > 30,
        "stays unnamed"
    );
    assert_eq!(folded.with_frame("fn_a"), 0);
}
