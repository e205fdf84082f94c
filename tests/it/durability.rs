//! The store under an agent that cannot write as it would like (issue 13, items 8 to 12):
//! a full disk, two agents on one data directory, damaged stores, and `ember export` on a
//! store it may not write to. Every test is bounded in time by its deadlines; the full
//! disk is a 2 MiB tmpfs, so memory is bounded too.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileMeta, keys};
use profiler_store::{DB_FILE_NAME, LOCK_FILE_NAME, Query, Store, StoreConfig, Window};

use crate::common::{ember, privileged, tempdir};

const T0: u64 = 1_700_000_000;
const NS: u64 = 1_000_000_000;

/// An agent with its stderr collected line by line.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    url: Option<String>,
}

impl Agent {
    fn start(dir: &Path, api: bool) -> Agent {
        let mut child = ember()
            // `-v`: "agent started" says when sampling runs (and SIGINT is handled).
            .args(["agent", "-v", "-F", "49", "--window", "1s", "--listen"])
            .arg(if api { "127.0.0.1:0" } else { "none" })
            .arg("--data-dir")
            .arg(dir)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ember agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let mut agent = Agent {
            child,
            log,
            url: None,
        };
        if api {
            let line = agent.wait_for_log("API listening on ", Duration::from_secs(20));
            agent.url = line
                .split("API listening on ")
                .nth(1)
                .map(|u| u.trim().to_owned());
        }
        agent
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    fn wait_for_log(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self
                .log
                .lock()
                .expect("log")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                self.child.kill().ok();
                panic!("no `{needle}` in the agent's log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url.as_deref().expect("agent has an API"));
        let out = Command::new("curl")
            .args(["-sS", "-m", "5", "-w", "\n%{http_code}", &url])
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Polls `/healthz` until `want` answers; returns the body.
    fn wait_for_health(&mut self, want: u16, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.get("/healthz");
            if status == want {
                return body;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                panic!(
                    "/healthz never answered {want} (last {status} {body}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGINT, then the exit status and the whole log.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_bounded(&mut self.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        (status, self.log())
    }
}

fn wait_bounded(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file system mounted for one test, unmounted (lazily) when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], at: &Path) -> Mount {
        std::fs::create_dir_all(at).expect("mount point");
        let st = Command::new("mount")
            .args(args)
            .arg(at)
            .status()
            .expect("mount");
        assert!(st.success(), "mount {args:?} {}", at.display());
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A store of five 10 s windows of `main;work` (10 samples each) made with the store API.
fn make_store(dir: &Path) {
    let mut store = Store::open(dir, StoreConfig::default()).expect("open");
    let labels = Labels::new()
        .with(keys::PID, "10")
        .with(keys::COMM, "split");
    let stack = [
        Frame::named("main", FrameKind::User),
        Frame::named("work", FrameKind::User),
    ];
    for i in 0..5 {
        let start = (T0 + 10 * i) * NS;
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: start,
            duration_ns: 10 * NS,
            frequency_hz: 100,
            ..ProfileMeta::default()
        });
        p.add(&labels, &stack, 10);
        store
            .write_window(&Window {
                start_unix_ns: start,
                end_unix_ns: start + 10 * NS,
                profile: p,
            })
            .expect("write");
    }
}

/// Issue 13 item 8: on a 2 MiB tmpfs filled by something else, 34 windows were lost in
/// 70 s while `/healthz` said `ok`, the log did not say the disk was full and the exit line
/// counted only the sampler's losses. Now the agent says "disk full", reports degraded
/// health and metrics, keeps the windows, and writes every one once space is freed.
#[test]
fn a_full_disk_degrades_the_agent_and_no_window_is_lost_once_space_is_freed() {
    let Some(_p) =
        privileged("a_full_disk_degrades_the_agent_and_no_window_is_lost_once_space_is_freed")
    else {
        return;
    };
    let tmp = tempdir();
    let mnt = tmp.path().join("small");
    let _tmpfs = Mount::new(&["-t", "tmpfs", "-o", "size=2m", "tmpfs"], &mnt);
    let data = mnt.join("d");
    let mut agent = Agent::start(&data, true);
    agent.wait_for_health(200, Duration::from_secs(10));
    // Something else fills the disk.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    // Bounds are generous: a debug build of the agent names the frames of a busy
    // machine's large binaries (compilers) on its loop, which can delay a window close.
    let body = agent.wait_for_health(503, Duration::from_secs(60));
    assert!(body.starts_with("degraded: store: "), "{body}");
    assert!(body.contains("disk full"), "{body}");
    let (_, metrics) = agent.get("/metrics");
    assert!(metrics.contains("ember_store_degraded 1\n"), "{metrics}");
    let pending: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ember_windows_pending "))
        .and_then(|v| v.parse().ok())
        .expect("ember_windows_pending");
    assert!(pending >= 1, "{metrics}");
    agent.wait_for_log("disk full", Duration::from_secs(5));
    // Space comes back: the waiting windows are written, in order, and health with them.
    std::fs::remove_file(&filler).expect("free the space");
    agent.wait_for_health(200, Duration::from_secs(60));
    let (_, metrics) = agent.get("/metrics");
    assert!(metrics.contains("ember_store_degraded 0\n"), "{metrics}");
    assert!(
        metrics.contains("ember_windows_lost_total 0\n"),
        "{metrics}"
    );
    let (status, log) = agent.stop();
    assert!(status.success(), "{status}:\n{log}");
    assert!(
        log.contains("0 windows of 0 samples lost by the store"),
        "the exit line counts the store's losses apart:\n{log}"
    );
    // No gap: each window starts where the previous one ended.
    let store = Store::open_read_only(&data, StoreConfig::default()).expect("store");
    let tl = store.timeline(&Query::new(0, u64::MAX)).expect("timeline");
    assert!(tl.len() >= 3, "{tl:?}");
    for pair in tl.windows(2) {
        assert_eq!(
            pair[0].end_unix_ns, pair[1].start_unix_ns,
            "a window is missing: {tl:?}"
        );
    }
}

/// Issue 13 item 10: two agents on one data directory both stored every sample.
#[test]
fn a_second_agent_on_one_data_dir_exits_naming_the_first() {
    let Some(_p) = privileged("a_second_agent_on_one_data_dir_exits_naming_the_first") else {
        return;
    };
    let dir = tempdir();
    let data = dir.path().join("d");
    let mut first = Agent::start(&data, false);
    first.wait_for_log("agent started", Duration::from_secs(30));
    let pid = first.child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(data.join(LOCK_FILE_NAME))
        .unwrap_or_default()
        .trim()
        != pid.to_string()
    {
        assert!(
            Instant::now() < deadline,
            "the first agent never wrote its pid:\n{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut second = ember()
        .args(["agent", "--listen", "none", "--data-dir"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("second agent");
    let status = wait_bounded(&mut second, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("in use by another Ember agent (pid {pid})")),
        "{err}"
    );
    let (status, log) = first.stop();
    assert!(status.success(), "{log}");
}

/// Issue 13 item 11: a store with a table dropped, or an immutable file, opened and lost
/// every window while the agent reported healthy. Both are refused at start.
#[test]
fn an_agent_refuses_a_damaged_or_unwritable_store() {
    let Some(_p) = privileged("an_agent_refuses_a_damaged_or_unwritable_store") else {
        return;
    };
    let run = |data: &Path| -> String {
        let mut child = ember()
            .args(["agent", "--listen", "none", "--data-dir"])
            .arg(data)
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent");
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
            .expect("stderr");
        assert!(!status.success(), "{err}");
        err
    };
    let dir = tempdir();
    let dropped = dir.path().join("dropped");
    make_store(&dropped);
    rusqlite::Connection::open(dropped.join(DB_FILE_NAME))
        .and_then(|c| c.execute_batch("DROP TABLE frames"))
        .expect("drop table");
    let err = run(&dropped);
    assert!(
        err.contains("is a damaged Ember store")
            && err.contains("lacks `frames`")
            && err.contains("move it aside"),
        "{err}"
    );

    let immutable = dir.path().join("immutable");
    make_store(&immutable);
    let db = immutable.join(DB_FILE_NAME);
    struct Attr(PathBuf);
    impl Drop for Attr {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    assert!(
        Command::new("chattr")
            .arg("+i")
            .arg(&db)
            .status()
            .expect("chattr")
            .success()
    );
    let _attr = Attr(db);
    let err = run(&immutable);
    assert!(
        err.contains("cannot be written") && err.contains("immutable attribute"),
        "{err}"
    );
}

/// Issue 13 item 12: `ember export` said "unable to open database file" on a read-only
/// bind mount and `SQLITE_READONLY_DIRECTORY` for a user who may read the store only.
#[test]
fn ember_export_reads_a_store_it_may_not_write() {
    let Some(_p) = privileged("ember_export_reads_a_store_it_may_not_write") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempdir();
    let data = dir.path().join("d");
    make_store(&data);
    let range = [
        "--from".to_owned(),
        T0.to_string(),
        "--to".to_owned(),
        (T0 + 50).to_string(),
        "-f".to_owned(),
        "folded".to_owned(),
        "-o".to_owned(),
        "-".to_owned(),
    ];
    let check = |out: std::process::Output, how: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{how}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "split;main;work 50\n",
            "{how}: {err}"
        );
    };
    // A read-only bind mount.
    let ro = dir.path().join("ro");
    let _bind = Mount::new(&["--bind", data.to_str().expect("utf-8")], &ro);
    let st = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro)
        .status()
        .expect("remount");
    assert!(st.success());
    let before: Vec<_> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    check(
        ember()
            .args(["export", "--data-dir"])
            .arg(&ro)
            .args(&range)
            .output()
            .expect("export"),
        "read-only mount",
    );
    // A user who may read the store but not write its directory.
    for (p, mode) in [(dir.path(), 0o755), (data.as_path(), 0o755)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    std::fs::set_permissions(
        data.join(DB_FILE_NAME),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let exe = env!("CARGO_BIN_EXE_ember");
    check(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                exe,
                "export",
                "--data-dir",
            ])
            .arg(&data)
            .args(&range)
            .output()
            .expect("export as nobody"),
        "as nobody",
    );
    let after: Vec<_> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after, "an export creates nothing");
}
