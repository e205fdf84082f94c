//! Helpers: privilege checks, building the example workloads, running `ember`, and reading
//! folded output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Serializes the tests that sample the CPU.
static CPU: Mutex<()> = Mutex::new(());

/// Holds the CPU lock while a privileged test runs.
pub(crate) struct Privileged {
    _guard: MutexGuard<'static, ()>,
}

/// Says on the terminal that a test was skipped, and why. `eprintln!` inside a test is
/// captured by the harness (shown only for failures), so a skip written with it is silent;
/// writing to the stderr handle itself reaches the terminal under `cargo test`.
pub(crate) fn skip(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
}

/// Whether this process is root.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns `None` (after saying so on the terminal) when the test cannot run here: not root
/// and not in CI. In CI a missing privilege is a failure, never a skip.
pub(crate) fn privileged(test: &str) -> Option<Privileged> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: eBPF tests must run as root in CI"
        );
        skip(
            test,
            "needs root to load eBPF (run the suite as root; in CI it runs)",
        );
        return None;
    }
    let guard = CPU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(Privileged { _guard: guard })
}

/// The `go` binary (for `go tool pprof`): on PATH or Debian's golang-1.19-go. `None`, after
/// a visible skip message, outside CI; in CI a missing Go is a failure.
pub(crate) fn go(test: &str) -> Option<PathBuf> {
    if Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("go".into());
    }
    let debian = Path::new("/usr/lib/go-1.19/bin/go");
    if debian.exists() {
        return Some(debian.to_owned());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI is set but there is no go (scripts/bootstrap.sh --test installs golang-1.19-go)"
    );
    skip(
        test,
        "no Go toolchain for `go tool pprof` (apt-get install golang-1.19-go)",
    );
    None
}

/// The repository's root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate sits in the repository")
        .to_owned()
}

/// Builds `examples/` once per test run and returns the directory of the binaries.
pub(crate) fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples");
        let status = Command::new("make")
            .args(["-s", "-C"])
            .arg(repo_root().join("examples"))
            .arg(format!("OUT={}", out.display()))
            .status()
            .expect("running make for examples/ (is make installed?)");
        assert!(status.success(), "building examples/ failed");
        out
    })
}

/// Path of one example workload.
pub(crate) fn example(name: &str) -> PathBuf {
    let p = examples().join(name);
    assert!(
        p.exists(),
        "example `{name}` was not built at {}",
        p.display()
    );
    p
}

/// Runs the rest of its arguments as a fresh node has it: in a private mount namespace
/// with tracefs and debugfs unmounted (a new machine mounts neither; a development machine
/// that once mounted them must not hide a dependency on them). Exits 97 if either is still
/// mounted after the unmounts.
pub(crate) const FRESH_NODE: &str = r#"
for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do
  while umount "$m" 2>/dev/null; do :; done
done
if awk '$3 == "tracefs" || $3 == "debugfs" { found = 1 } END { exit !found }' /proc/self/mounts; then
  echo "fresh-node: tracefs or debugfs is still mounted" >&2
  exit 97
fi
exec "$@"
"#;

/// The `ember` binary under test. As root it runs as a fresh node has it ([`FRESH_NODE`]):
/// `unshare` and `sh` exec in place, so the child's pid is ember's own and signals reach
/// it directly.
pub(crate) fn ember() -> Command {
    let bin = env!("CARGO_BIN_EXE_ember");
    let mut c = if is_root() {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(FRESH_NODE)
            .arg("fresh-node")
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    c.env_remove("RUST_LOG");
    c
}

/// A fresh temporary directory for one test's files.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ember-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Runs a command and returns its output, printing stderr on failure for diagnosis.
pub(crate) fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running ember");
    if !out.status.success() {
        eprintln!(
            "stderr of {cmd:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A folded file: stack line -> count.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    /// Lines (without counts) and their counts.
    pub lines: BTreeMap<String, u64>,
}

impl Folded {
    /// Reads a folded file, checking every line's shape.
    pub(crate) fn read(path: &Path) -> Folded {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Folded::parse(&text)
    }

    /// Parses folded text, checking every line's shape.
    pub(crate) fn parse(text: &str) -> Folded {
        let mut lines = BTreeMap::new();
        for line in text.lines() {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("malformed folded line `{line}`"));
            let count: u64 = count
                .parse()
                .unwrap_or_else(|_| panic!("bad count in folded line `{line}`"));
            assert!(!stack.is_empty() && count > 0, "bad folded line `{line}`");
            *lines.entry(stack.to_owned()).or_insert(0) += count;
        }
        Folded { lines }
    }

    /// Only the stacks whose first frame (the process name) is `comm`.
    pub(crate) fn process(&self, comm: &str) -> Folded {
        let prefix = format!("{comm};");
        Folded {
            lines: self
                .lines
                .iter()
                .filter(|(l, _)| l.starts_with(&prefix) || *l == comm)
                .map(|(l, c)| (l.clone(), *c))
                .collect(),
        }
    }

    /// Total samples.
    pub(crate) fn total(&self) -> u64 {
        self.lines.values().sum()
    }

    /// Samples whose stack satisfies `pred` (called with the frames, root first).
    pub(crate) fn count_where(&self, pred: impl Fn(&[&str]) -> bool) -> u64 {
        self.lines
            .iter()
            .filter(|(l, _)| pred(&l.split(';').collect::<Vec<_>>()))
            .map(|(_, c)| c)
            .sum()
    }

    /// Samples with `frame` anywhere in the stack.
    pub(crate) fn with_frame(&self, frame: &str) -> u64 {
        self.count_where(|f| f.contains(&frame))
    }

    /// Share (0..=1) of samples with `frame` anywhere in the stack.
    pub(crate) fn share(&self, frame: &str) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        self.with_frame(frame) as f64 / total as f64
    }
}

/// The log lines an agent started by [`start_agent_logged`] has written so far.
pub(crate) type AgentLog = std::sync::Arc<Mutex<Vec<String>>>;

/// Starts `ember agent` (99 Hz, `window`, store in `dir`) with its API on a free loopback
/// port; returns it and the API's base URL, which the agent prints on stderr.
pub(crate) fn start_agent_with_api(dir: &Path, window: &str) -> (Child, String) {
    let (child, url, _) = start_agent_logged(dir, window, &[], &[]);
    (child, url)
}

/// [`start_agent_with_api`] with more arguments and environment variables, keeping every
/// line the agent writes on stderr (read on a thread, so the agent never blocks on a full
/// pipe).
pub(crate) fn start_agent_logged(
    dir: &Path,
    window: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, AgentLog) {
    let mut child = ember()
        .args([
            "agent",
            "-F",
            "99",
            "--listen",
            "127.0.0.1:0",
            "--window",
            window,
            "--data-dir",
        ])
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember agent");
    let log = keep_stderr(&mut child);
    let url = wait_for_api(&mut child, &log);
    (child, url, log)
}

/// Keeps every line `child` writes on its (piped) stderr, read on a thread so the child
/// never blocks on a full pipe.
pub(crate) fn keep_stderr(child: &mut Child) -> AgentLog {
    let stderr = child.stderr.take().expect("piped stderr");
    let log = AgentLog::default();
    let kept = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    log
}

/// Waits until `child` (its stderr kept in `log`) writes a line containing `needle`;
/// panics with the log if it exits first or says nothing of the kind within 30 s.
pub(crate) fn wait_for_line(child: &mut Child, log: &AgentLog, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if lines.iter().any(|l| l.contains(needle)) {
            return;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "no `{needle}` from ember ({exited:?}):\n{}",
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The API's base URL, once the agent `child` (its stderr kept in `log`) says where it
/// listens; panics with the log if it exits first or says nothing within 20 s.
pub(crate) fn wait_for_api(child: &mut Child, log: &AgentLog) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find_map(|l| {
                l.strip_prefix("ember: API listening on ")
                    .map(|u| u.trim().to_owned())
            });
        if let Some(url) = url {
            return url;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            let lines = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .join("\n");
            panic!("the agent did not say where its API listens ({exited:?}):\n{lines}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How far a share measured over `samples` samples may be from its true value `truth`
/// and still agree with it: the ±5 points the issues ask for, widened to 3.5 standard
/// deviations of counting noise (`sqrt(p(1-p)/n)`) when there are too few samples for
/// 5 points to be more than noise (below about 1,000 for a 70/30 split). A fixed 5 points
/// at 300 samples is a 1.9 σ bound, which failed about one check per full run.
pub(crate) fn share_bound(truth: f64, samples: u64) -> f64 {
    let sd = (truth * (1.0 - truth) / samples.max(1) as f64).sqrt();
    (3.5 * sd).max(0.05)
}

/// Whether `share` of `samples` samples agrees with `truth` ([`share_bound`]).
pub(crate) fn share_agrees(share: f64, truth: f64, samples: u64) -> bool {
    (share - truth).abs() <= share_bound(truth, samples)
}

/// Kills the agent if the test fails before stopping it, so no agent outlives its test.
pub(crate) struct AgentGuard(pub(crate) Option<Child>);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
