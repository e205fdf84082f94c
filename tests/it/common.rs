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
pub struct Privileged {
    _guard: MutexGuard<'static, ()>,
}

/// Returns `None` (after saying so on stderr) when the test cannot run here: not root and
/// not in CI. In CI a missing privilege is a failure, never a skip.
pub fn privileged(test: &str) -> Option<Privileged> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: eBPF tests must run as root in CI"
        );
        eprintln!(
            "\n*** SKIPPED {test}: needs root to load eBPF (run the suite as root; in CI it runs) ***\n"
        );
        return None;
    }
    let guard = CPU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(Privileged { _guard: guard })
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate sits in the repository")
        .to_owned()
}

/// Builds `examples/` once per test run and returns the directory of the binaries.
pub fn examples() -> &'static Path {
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
pub fn example(name: &str) -> PathBuf {
    let p = examples().join(name);
    assert!(
        p.exists(),
        "example `{name}` was not built at {}",
        p.display()
    );
    p
}

/// The `ember` binary under test.
pub fn ember() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.env_remove("RUST_LOG");
    c
}

/// A fresh temporary directory for one test's files.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ember-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Runs a command and returns its output, printing stderr on failure for diagnosis.
pub fn run(cmd: &mut Command) -> Output {
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
pub struct Folded {
    /// Lines (without counts) and their counts.
    pub lines: BTreeMap<String, u64>,
}

impl Folded {
    /// Reads a folded file, checking every line's shape.
    pub fn read(path: &Path) -> Folded {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Folded::parse(&text)
    }

    /// Parses folded text, checking every line's shape.
    pub fn parse(text: &str) -> Folded {
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
    pub fn process(&self, comm: &str) -> Folded {
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
    pub fn total(&self) -> u64 {
        self.lines.values().sum()
    }

    /// Samples whose stack satisfies `pred` (called with the frames, root first).
    pub fn count_where(&self, pred: impl Fn(&[&str]) -> bool) -> u64 {
        self.lines
            .iter()
            .filter(|(l, _)| pred(&l.split(';').collect::<Vec<_>>()))
            .map(|(_, c)| c)
            .sum()
    }

    /// Samples with `frame` anywhere in the stack.
    pub fn with_frame(&self, frame: &str) -> u64 {
        self.count_where(|f| f.contains(&frame))
    }

    /// Share (0..=1) of samples with `frame` anywhere in the stack.
    pub fn share(&self, frame: &str) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        self.with_frame(frame) as f64 / total as f64
    }
}

/// Starts `ember agent` (99 Hz, `window`, store in `dir`) with its API on a free loopback
/// port; returns it and the API's base URL, which the agent prints on stderr.
pub fn start_agent_with_api(dir: &Path, window: &str) -> (Child, String) {
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember agent");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            // Keep draining after the URL so the agent never blocks on a full pipe.
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("ember: API listening on ") {
                    return (child, url.trim().to_owned());
                }
            }
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                panic!("the agent did not say where its API listens ({e})");
            }
        }
    }
}
