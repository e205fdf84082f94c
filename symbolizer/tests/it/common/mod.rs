//! Test helpers: privilege checks, fixture binaries compiled at test time, and child
//! processes that print addresses and wait to be killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Whether a test that needs root may run: `true` as root; otherwise panics under `CI`
/// (where tests run as root and must not skip) and skips loudly elsewhere.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI is set: run the tests as root"
    );
    skip(
        test,
        "needs root (run the tests as root, or set CI to make this fail)",
    );
    false
}

/// Reports a skipped test on stderr. Not through `eprintln!`, which the test harness
/// captures (and hides for passing tests): a skip must be seen.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The fixture binaries, compiled once per test run.
pub struct Fixtures {
    /// `inline.c` at `-O2 -g`: inlined code and a call at the very end of a function.
    pub inline: PathBuf,
    /// `inline.c` at `-O2`, stripped.
    pub stripped: PathBuf,
    /// `demangle.cpp` with g++, `-O0 -g`.
    pub cpp: PathBuf,
}

/// The fixtures, or `None` (after a loud skip message) when no compiler is installed.
pub fn fixtures(test: &str) -> Option<&'static Fixtures> {
    static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    match FIXTURES.get_or_init(build_fixtures) {
        Ok(fixtures) => Some(fixtures),
        Err(err) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {err}");
            skip(test, err);
            None
        }
    }
}

pub const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");

fn build_fixtures() -> Result<Fixtures, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("symbolizer-fixtures");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let inline_c = format!("{SRC}/inline.c");
    // The flags keep `caller_ends_in_call` and `next_fn` back to back (see inline.c).
    let layout = [
        "-fno-omit-frame-pointer",
        "-falign-functions=1",
        "-fno-toplevel-reorder",
        "-fno-optimize-sibling-calls",
    ];
    let mut inline_flags = vec!["-O2", "-g"];
    inline_flags.extend(layout);
    let mut stripped_flags = vec!["-O2", "-s"];
    stripped_flags.extend(layout);
    Ok(Fixtures {
        inline: compile("gcc", &inline_c, &dir.join("inline"), &inline_flags)?,
        stripped: compile(
            "gcc",
            &inline_c,
            &dir.join("inline-stripped"),
            &stripped_flags,
        )?,
        cpp: compile(
            "g++",
            &format!("{SRC}/demangle.cpp"),
            &dir.join("demangle"),
            &["-O0", "-g"],
        )?,
    })
}

/// Compiles `src` to `out`, through a temporary name so that concurrent test runs never
/// execute a half-written binary.
pub fn compile(compiler: &str, src: &str, out: &Path, flags: &[&str]) -> Result<PathBuf, String> {
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(src)
        .status()
        .map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if !status.success() {
        return Err(format!("{compiler} failed on {src}: {status}"));
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("rename to {}: {e}", out.display()))?;
    Ok(out.to_owned())
}

/// A running fixture that printed its addresses; killed when dropped.
pub struct Fixture {
    child: Child,
    addrs: HashMap<String, u64>,
}

impl Fixture {
    /// Starts `binary` and reads its `<key> <address>` lines up to `ready`.
    pub fn spawn(binary: &Path) -> Fixture {
        let mut child = Command::new(binary)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut fixture = Fixture {
            child,
            addrs: HashMap::new(),
        };
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read fixture output");
            if line == "ready" {
                return fixture;
            }
            let (key, addr) = line.split_once(' ').expect("`key address` line");
            let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16)
                .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
            fixture.addrs.insert(key.to_owned(), addr);
        }
        panic!("{} exited before printing `ready`", binary.display());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address printed under `key`.
    pub fn addr(&self, key: &str) -> u64 {
        *self
            .addrs
            .get(key)
            .unwrap_or_else(|| panic!("fixture printed no `{key}` address"))
    }

    /// Kills the process and reaps it, so its pid is gone from /proc.
    pub fn kill(mut self) {
        self.reap();
    }

    fn reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.reap();
    }
}

/// The line of `src` (relative to the fixture directory) that contains `marker`.
pub fn line_of(src: &str, marker: &str) -> u32 {
    let text = std::fs::read_to_string(format!("{SRC}/{src}")).expect("read fixture source");
    let idx = text
        .lines()
        .position(|line| line.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in {src}"));
    u32::try_from(idx + 1).expect("small file")
}
