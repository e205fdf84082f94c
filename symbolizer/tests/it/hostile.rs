//! Hostile perf maps against the symbolizer: `examples/jitspin.c` runs code from an
//! anonymous executable mapping, whose only name can come from its perf map, and the test
//! makes that map a FIFO, a 1 GiB sparse file, a symlink to a root-only file, or a valid
//! map. Each stack must come back at once, the refusal counted by reason, and nothing
//! but the valid map may name the code.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use symbolizer::{Config, Symbolizer};

use crate::common::{compile, skip};

/// Where jitspin puts its code.
const JIT_ADDR: u64 = 0x7f00_0000_0000;

fn jitspin(test: &str) -> Option<PathBuf> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/jitspin.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jitspin");
    match compile("gcc", src, &out, &["-O1"]) {
        Ok(path) => Some(path),
        Err(err) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {err}");
            skip(test, &err);
            None
        }
    }
}

/// jitspin, started with its perf map made by `setup` (a shell command; `$$` is the
/// pid), once its code is mapped; killed, and its map removed, when dropped.
struct Jit {
    child: Child,
    map: PathBuf,
}

impl Jit {
    fn start(binary: &Path, setup: &str) -> Jit {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{setup} && exec {} 30", binary.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn jitspin");
        let jit = Jit {
            map: PathBuf::from(format!("/tmp/perf-{}.map", child.id())),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mapped = format!("{:x}-", JIT_ADDR);
        while !std::fs::read_to_string(format!("/proc/{}/maps", jit.child.id()))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&mapped))
        {
            assert!(Instant::now() < deadline, "jitspin did not map its code");
            std::thread::sleep(Duration::from_millis(10));
        }
        jit
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.map);
    }
}

/// Symbolizes jitspin's spinning instruction: the frame's name and how long it took.
fn name_of_jit_code(jit: &Jit, sym: &mut Symbolizer) -> (String, Duration) {
    let start = Instant::now();
    let frames = sym.symbolize_user_stack(jit.child.id(), &[JIT_ADDR]);
    let took = start.elapsed();
    assert_eq!(frames.len(), 1);
    (frames[0].name.to_string(), took)
}

#[test]
fn hostile_perf_maps_are_refused_at_once_and_counted_by_reason() {
    let test = "hostile_perf_maps_are_refused_at_once_and_counted_by_reason";
    let Some(binary) = jitspin(test) else { return };
    let secret_dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, format!("{JIT_ADDR:x} 1000 SecretSymbol\n")).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let cases = [
        ("mkfifo /tmp/perf-$$.map", "not_regular"),
        ("truncate -s 1G /tmp/perf-$$.map", "too_large"),
        (
            &*format!("ln -s {} /tmp/perf-$$.map", secret.display()),
            "symlink",
        ),
    ];
    for (setup, reason) in cases {
        let jit = Jit::start(&binary, setup);
        let mut sym = Symbolizer::new(Config::default());
        for _ in 0..50 {
            let (name, took) = name_of_jit_code(&jit, &mut sym);
            assert_eq!(name, "[unknown]", "{setup}");
            assert!(took < Duration::from_millis(200), "{setup}: took {took:?}");
        }
        let stats = sym.stats();
        let counts = stats.files_refused.by_reason();
        assert_eq!(
            counts.iter().find(|(r, _)| *r == reason).map(|(_, n)| *n),
            Some(1),
            "{setup}: {counts:?}"
        );
        assert_eq!(stats.files_refused.total(), 1, "{setup}: {counts:?}");
        // Checked once, then rate-limited: 50 stacks did not mean 50 reads.
        assert_eq!(stats.perf_map_reads, 1, "{setup}");
        assert_eq!(stats.perf_map_loads, 0, "{setup}");
    }

    // The same process with a valid map of its own is named from it.
    let jit = Jit::start(
        &binary,
        &format!("echo '{JIT_ADDR:x} 10 jitspinLoop' > /tmp/perf-$$.map"),
    );
    let mut sym = Symbolizer::new(Config::default());
    let (name, _) = name_of_jit_code(&jit, &mut sym);
    assert_eq!(name, "jitspinLoop");
    assert_eq!(sym.stats().files_refused.total(), 0);
    assert_eq!(sym.stats().perf_map_loads, 1);
}
