//! Store tests: round trips, dedup, retention, reopening, damage, and a real `kill -9`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use profiler_model::{Frame, FrameKind, Labels, Location, Profile, ProfileKind, ProfileMeta};

use super::*;

const S: u64 = 1_000_000_000;
/// 2030-01-01, so windows are plausibly recent and retention arithmetic does not underflow.
const T0: u64 = 1_893_456_000 * S;

fn frame(name: &str, i: u64) -> Frame {
    Frame {
        name: name.into(),
        kind: FrameKind::User,
        inlined: i.is_multiple_of(3),
        module: Some("/usr/bin/app".into()),
        file: Some(format!("src/{name}.rs").into()),
        line: Some(u32::try_from(10 + i).expect("small")),
        location: Location::File {
            build_id: Some(Arc::from(&[0xab, 0xcd, 0xef, 0x01][..])),
            offset: 0x1000 + i,
        },
    }
}

fn kframe(name: &str, addr: u64) -> Frame {
    Frame {
        location: Location::Kernel { addr },
        ..Frame::named(name, FrameKind::Kernel)
    }
}

fn labels(comm: &str, pid: u32) -> Labels {
    Labels::new()
        .with("comm", comm)
        .with("pid", pid.to_string())
}

/// A window of `len_s` seconds starting `start_s` seconds after [`T0`].
fn window(start_s: u64, len_s: u64, stacks: &[(Labels, Vec<Frame>, u64)]) -> Window {
    let mut p = Profile::new(ProfileMeta {
        start_unix_ns: T0 + start_s * S,
        duration_ns: len_s * S,
        frequency_hz: 99,
        ..ProfileMeta::default()
    });
    for (l, st, n) in stacks {
        p.add(l, st, *n);
    }
    Window {
        start_unix_ns: T0 + start_s * S,
        end_unix_ns: T0 + (start_s + len_s) * S,
        profile: p,
    }
}

/// The stacks of window number `i`: shared ones and one of its own.
fn stacks_for(i: u64) -> Vec<(Labels, Vec<Frame>, u64)> {
    vec![
        (
            labels("split", 42),
            vec![frame("main", 0), frame("work", 1), frame("hash", 2)],
            3 + i,
        ),
        (
            labels("join", 7),
            vec![
                frame("main", 0),
                kframe("do_syscall_64", 0xffff_ffff_8100_0000),
            ],
            2,
        ),
        (
            labels("split", 42),
            vec![frame("main", 0), frame(&format!("only_{i}"), i)],
            1,
        ),
    ]
}

type Canon = BTreeMap<(Vec<(String, String)>, Vec<Frame>), u64>;

fn canon(p: &Profile) -> Canon {
    let mut out = Canon::new();
    for s in p.stacks() {
        let l = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let f = s.frames.iter().map(|&id| p.frame(id).clone()).collect();
        *out.entry((l, f)).or_insert(0) += s.count;
    }
    out
}

fn merged<'a>(ws: impl IntoIterator<Item = &'a Window>) -> Canon {
    let mut p = Profile::default();
    for w in ws {
        p.merge(&w.profile);
    }
    canon(&p)
}

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreConfig::default().with_downsample(None)).expect("store opens")
}

#[test]
fn round_trip_ranges_filters_timeline_and_label_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let windows: Vec<Window> = (0..6).map(|i| window(i * 10, 10, &stacks_for(i))).collect();
    let ids: Vec<WindowId> = windows
        .iter()
        .map(|w| store.write_window(w).expect("write"))
        .collect();

    let all = store
        .query(&Query::new(T0, T0 + 60 * S))
        .expect("query all");
    assert_eq!(
        canon(&all),
        merged(&windows),
        "frames, locations, lines and counts survive"
    );
    assert_eq!(all.meta.start_unix_ns, T0);
    assert_eq!(all.meta.duration_ns, 60 * S);
    assert_eq!(all.meta.frequency_hz, 99);

    // [25 s, 40 s) overlaps windows 2 and 3 only.
    let part = store
        .query(&Query::new(T0 + 25 * S, T0 + 40 * S))
        .expect("query part");
    assert_eq!(canon(&part), merged(&windows[2..4]));
    let none = store
        .query(&Query::new(T0 + 60 * S, T0 + 90 * S))
        .expect("empty");
    assert!(none.is_empty());

    let filter = LabelFilter::parse("comm=split").expect("filter");
    let split = store
        .query(&Query::new(T0, T0 + 60 * S).with_filter(filter.clone()))
        .expect("filtered");
    let expected: Canon = merged(&windows)
        .into_iter()
        .filter(|((l, _), _)| l.contains(&("comm".into(), "split".into())))
        .collect();
    assert_eq!(canon(&split), expected);
    let either = store
        .query(
            &Query::new(T0, T0 + 60 * S)
                .with_filter(LabelFilter::parse("comm=split,comm=join").expect("filter")),
        )
        .expect("either");
    assert_eq!(either.total(), all.total());

    let tl = store
        .timeline(&Query::new(T0, T0 + 60 * S))
        .expect("timeline");
    assert_eq!(tl.iter().map(|w| w.id).collect::<Vec<_>>(), ids);
    assert_eq!(tl[1].samples, windows[1].profile.total());
    let tl = store
        .timeline(&Query::new(T0, T0 + 60 * S).with_filter(filter.clone()))
        .expect("filtered timeline");
    assert_eq!(tl[1].samples, 4 + 1, "the join stack is filtered out");

    let lv = store
        .label_values(ProfileKind::Cpu, T0, T0 + 60 * S)
        .expect("label values");
    assert_eq!(lv["comm"]["join"], 12);
    assert_eq!(lv["pid"]["42"], (0..6).map(|i| 4 + i).sum::<u64>());

    let one = store.window(ids[3]).expect("read").expect("present");
    assert_eq!(canon(&one.profile), merged([&windows[3]]));
    assert!(store.window(WindowId(9999)).expect("read").is_none());
    assert_eq!(store.stats().corrupt_skipped, 0);
}

#[test]
fn the_same_stack_in_100_windows_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let stacks: Vec<_> = stacks_for(0).into_iter().take(2).collect();
    store.write_window(&window(0, 10, &stacks)).expect("write");
    let after_one = store.stats();
    for i in 1..100 {
        store
            .write_window(&window(i * 10, 10, &stacks))
            .expect("write");
    }
    let after = store.stats();
    assert_eq!(after.windows, 100);
    assert_eq!(after.stacks, 2, "two distinct stacks, stored once");
    assert_eq!(after.frames, after_one.frames);
    assert_eq!(after.strings, after_one.strings);
    assert_eq!(after.label_sets, 2);
    let per_window = (after.live_bytes - after_one.live_bytes) / 99;
    assert!(
        per_window < 200,
        "a repeated window costs {per_window} bytes"
    );
    assert_eq!(
        store
            .query(&Query::new(T0, T0 + 1000 * S))
            .expect("query")
            .total(),
        100 * (3 + 2)
    );
}

#[test]
fn retention_by_age_deletes_old_windows_and_their_unused_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::default()
        .with_retention(Duration::from_secs(60))
        .with_downsample(None);
    let mut store = Store::open(dir.path(), config).expect("open");
    for i in 0..12 {
        store
            .write_window(&window(i * 10, 10, &stacks_for(i)))
            .expect("write");
    }
    let before = store.stats();
    // Now = 120 s: windows ending at or before 60 s go.
    let report = store.enforce_retention(T0 + 120 * S).expect("retention");
    assert_eq!(report.deleted_by_age, 6);
    let after = store.stats();
    assert_eq!(after.windows, 6);
    assert_eq!(
        after.stacks,
        before.stacks - 6,
        "each deleted window's own stack is swept"
    );
    assert!(report.rows_swept >= 6);
    let left = store.query(&Query::new(0, u64::MAX)).expect("query");
    let windows: Vec<Window> = (6..12)
        .map(|i| window(i * 10, 10, &stacks_for(i)))
        .collect();
    assert_eq!(canon(&left), merged(&windows));
    // Writing after a sweep re-creates rows the write caches must not remember.
    store
        .write_window(&window(0, 10, &stacks_for(0)))
        .expect("write again");
    let back = store.query(&Query::new(T0, T0 + 10 * S)).expect("query");
    assert_eq!(canon(&back), merged([&window(0, 10, &stacks_for(0))]));
}

/// Issue 13 item 9: `--store-max-size 2MiB` reached 8.5 MB, as retention ran every 60
/// windows and the write-ahead log came on top. The cap now holds after every write, the
/// log included.
#[test]
fn the_size_cap_holds_after_every_write_wal_included() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 256 * 1024;
    let config = StoreConfig::default()
        .with_max_bytes(max)
        .with_downsample(None);
    let mut store = Store::open(dir.path(), config).expect("open");
    let mut peak = 0;
    // Distinct stacks per window so the store really grows, to several times the cap.
    for i in 0..60 {
        let stacks: Vec<_> = (0..40)
            .map(|j| {
                let st = vec![
                    frame("main", 0),
                    frame(&format!("f_{i}_{j}_with_a_long_name"), j),
                ];
                (labels("grow", 1), st, 1)
            })
            .collect();
        store
            .write_window(&window(i * 10, 10, &stacks))
            .expect("write");
        let stats = store.stats();
        peak = peak.max(stats.bytes_on_disk);
        assert!(
            stats.bytes_on_disk <= max,
            "after window {i}: {} bytes on disk (database, WAL and index) > {max}",
            stats.bytes_on_disk
        );
    }
    let tl = store.timeline(&Query::new(0, u64::MAX)).expect("timeline");
    assert!(tl.len() < 60, "old windows were deleted: {}", tl.len());
    assert!(tl.len() > 10, "but not more than needed: {}", tl.len());
    assert_eq!(
        tl.last().map(|w| w.start_unix_ns),
        Some(T0 + 590 * S),
        "the newest stays"
    );
    let starts: Vec<u64> = tl.iter().map(|w| w.start_unix_ns).collect();
    let expected: Vec<u64> = (60 - tl.len() as u64..60)
        .map(|i| T0 + i * 10 * S)
        .collect();
    assert_eq!(
        starts, expected,
        "the oldest go first, the rest is contiguous"
    );
    assert_eq!(
        store.query(&Query::new(0, u64::MAX)).expect("q").total(),
        40 * tl.len() as u64
    );
    // Retention as such has nothing left to do.
    let report = store.enforce_retention(T0 + 600 * S).expect("retention");
    assert_eq!(report.deleted_by_size, 0, "{report:?}");
    eprintln!(
        "peak {peak} bytes under a cap of {max}, {} windows kept",
        tl.len()
    );
}

#[test]
fn old_windows_are_merged_into_coarser_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let windows: Vec<Window> = (0..18)
        .map(|i| window(i * 10, 10, &stacks_for(i)))
        .collect();
    for w in &windows {
        store.write_window(w).expect("write");
    }
    // One hour after 120 s: the first two minutes (12 windows) are old enough.
    let report = store.enforce_retention(T0 + 3720 * S).expect("retention");
    assert_eq!((report.merged_windows, report.merged_into), (12, 2));
    let tl = store.timeline(&Query::new(0, u64::MAX)).expect("timeline");
    assert_eq!(tl.len(), 2 + 6);
    assert_eq!((tl[0].start_unix_ns, tl[0].end_unix_ns), (T0, T0 + 60 * S));
    let all = store.query(&Query::new(0, u64::MAX)).expect("query");
    assert_eq!(canon(&all), merged(&windows), "merging keeps every sample");
    let again = store.enforce_retention(T0 + 3720 * S).expect("retention");
    assert_eq!(
        again.merged_windows, 0,
        "merged windows are not merged again"
    );
}

#[test]
fn a_reopened_store_has_its_windows_and_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w0 = window(0, 10, &stacks_for(0));
    let w1 = window(10, 10, &stacks_for(1));
    let id0 = {
        let mut store = open(dir.path());
        store.write_window(&w0).expect("write")
    };
    let mut store = open(dir.path());
    assert_eq!(store.stats().windows_written, 0);
    let id1 = store.write_window(&w1).expect("write after reopen");
    assert!(id1 > id0);
    let all = store.query(&Query::new(T0, T0 + 20 * S)).expect("query");
    assert_eq!(canon(&all), merged([&w0, &w1]));
    assert_eq!(
        store.stats().stacks,
        4,
        "the shared stacks were found again, not duplicated"
    );
}

#[test]
fn invalid_windows_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let mut w = window(10, 10, &stacks_for(0));
    w.end_unix_ns = w.start_unix_ns - 1;
    let e = store.write_window(&w).expect_err("backwards window");
    assert!(e.to_string().contains("ends before it starts"), "{e}");
    assert_eq!(store.stats().windows, 0);
}

/// A `tracing` writer into a buffer, to check what was logged.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_damaged_payload_or_row_is_skipped_logged_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let windows: Vec<Window> = (0..3).map(|i| window(i * 10, 10, &stacks_for(i))).collect();
    let ids: Vec<WindowId> = windows
        .iter()
        .map(|w| store.write_window(w).expect("write"))
        .collect();

    // Damage window 1's payload and window 2's own stack row from another connection.
    let raw = Connection::open(store.path()).expect("raw connection");
    let mut payload: Vec<u8> = raw
        .query_row(
            "SELECT payload FROM windows WHERE id = ?1",
            [ids[1].0],
            |r| r.get(0),
        )
        .expect("payload");
    let mid = payload.len() / 2;
    payload[mid] ^= 0x5a;
    raw.execute(
        "UPDATE windows SET payload = ?1 WHERE id = ?2",
        params![payload, ids[1].0],
    )
    .expect("damage payload");
    let stack_id: i64 = raw
        .query_row("SELECT max(id) FROM stacks", [], |r| r.get(0))
        .expect("last stack");
    raw.execute("UPDATE stacks SET data = x'0301' WHERE id = ?1", [stack_id])
        .expect("damage stack");
    drop(raw);

    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    let got = tracing::subscriber::with_default(subscriber, || {
        store
            .query(&Query::new(T0, T0 + 30 * S))
            .expect("query despite damage")
    });
    let mut expected = merged([&windows[0], &windows[2]]);
    expected.retain(|(_, frames), _| !frames.iter().any(|f| &*f.name == "only_2"));
    assert_eq!(canon(&got), expected);
    assert_eq!(store.stats().corrupt_skipped, 2);
    let logs = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8");
    assert!(logs.contains("WARN") && logs.contains("damaged"), "{logs}");
    assert!(logs.contains("checksum mismatch"), "{logs}");
    // Asking again neither fails nor counts twice.
    store
        .query(&Query::new(T0, T0 + 30 * S))
        .expect("query again");
    assert_eq!(store.stats().corrupt_skipped, 2);
    assert!(store.window(ids[1]).expect("read").is_none());
}

#[test]
fn a_garbage_database_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE_NAME);
    std::fs::write(&path, vec![0x42; 8192]).expect("garbage");
    let e = Store::open(dir.path(), StoreConfig::default()).expect_err("garbage");
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("move it aside"),
        "{msg}"
    );

    let other = tempfile::tempdir().expect("tempdir");
    Connection::open(other.path().join(DB_FILE_NAME))
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .expect("foreign db");
    let e = Store::open(other.path(), StoreConfig::default()).expect_err("foreign");
    assert!(matches!(e, StoreError::ForeignDatabase { .. }), "{e:?}");
}

#[test]
fn a_truncated_database_file_does_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(dir.path());
        for i in 0..40 {
            store
                .write_window(&window(i * 10, 10, &stacks_for(i)))
                .expect("write");
        }
    }
    let path = dir.path().join(DB_FILE_NAME);
    let len = std::fs::metadata(&path).expect("db").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    // Either the open is refused with a clear error, or reads skip and count what is lost.
    match Store::open(dir.path(), StoreConfig::default().with_downsample(None)) {
        Err(e) => assert!(e.to_string().contains(DB_FILE_NAME), "{e}"),
        Ok(store) => match store.query(&Query::new(0, u64::MAX)) {
            Ok(p) => assert!(p.total() < 40 * 7 || store.stats().corrupt_skipped == 0),
            Err(e) => assert!(e.to_string().contains(DB_FILE_NAME), "{e}"),
        },
    }
}

const CHILD_ENV: &str = "EMBER_STORE_CRASH_CHILD_DIR";

/// Not a test on its own: when [`CHILD_ENV`] is set, this is the writer process that
/// `a_killed_writer_loses_at_most_the_window_in_progress` kills. It writes windows forever
/// and prints each id once committed.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut store = open(Path::new(&dir));
    let mut out = std::io::stdout().lock();
    for i in 0_u64.. {
        let id = store
            .write_window(&window(i * 10, 10, &stacks_for(i % 500)))
            .expect("child write");
        writeln!(out, "COMMITTED {}", id.0).expect("stdout");
        out.flush().expect("stdout");
    }
}

#[test]
fn a_killed_writer_loses_at_most_the_window_in_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut committed = Vec::new();
    // A cheap pseudo-random sequence, seeded from the clock, for the kill points.
    let mut seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos(),
    ) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "tests::crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let wait_for = 5 + next() % 40;
        let mut seen = 0;
        while seen < wait_for {
            let line = lines.next().expect("child output").expect("utf-8 line");
            if let Some(id) = line.strip_prefix("COMMITTED ") {
                committed.push(id.parse::<i64>().expect("id"));
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(next() % 3000));
        child.kill().expect("SIGKILL the writer");
        // Ids the child printed between our last read and the kill were committed too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("COMMITTED ") {
                committed.push(id.parse().expect("id"));
            }
        }
        child.wait().expect("reap");

        let store = open(dir.path());
        for &id in &committed {
            let w = store
                .window(WindowId(id))
                .expect("read")
                .unwrap_or_else(|| {
                    panic!("round {round}: committed window {id} is missing or damaged")
                });
            assert!(w.profile.total() > 0);
        }
        assert_eq!(store.stats().corrupt_skipped, 0, "round {round}");
        assert!(store.stats().windows >= committed.len() as u64);
    }
}

/// Measures a 24 h query: 8,640 ten-second windows of 1,000 stacks each, drawn from 50,000
/// distinct stacks of 16 frames. Run it in release:
/// `cargo test --release -p profiler-store --lib tests::query_24h_timing -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check; takes a minute"]
fn query_24h_timing() {
    const WINDOWS: u64 = 8640;
    const DISTINCT: u64 = 50_000;
    const PER_WINDOW: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let frames: Vec<Frame> = (0..2000).map(|i| frame(&format!("fn_{i}"), i)).collect();
    let label_sets: Vec<Labels> = (0..50)
        .map(|i| labels(&format!("comm{}", i % 10), i))
        .collect();
    let started = Instant::now();
    for w in 0..WINDOWS {
        let mut p = Profile::new(ProfileMeta {
            frequency_hz: 19,
            ..ProfileMeta::default()
        });
        let ids: Vec<_> = frames.iter().map(|f| p.intern_frame(f)).collect();
        let lids: Vec<_> = label_sets.iter().map(|l| p.intern_labels(l)).collect();
        for j in 0..PER_WINDOW {
            let s = (w * 37 + j * 50) % DISTINCT;
            let stack: Box<[u32]> = (0..16)
                .map(|k| {
                    ids[(((s * 16 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 2000) as usize]
                })
                .collect();
            p.add_ids(lids[(s % 50) as usize], stack, 1 + j % 3);
        }
        store
            .write_window(&Window {
                start_unix_ns: T0 + w * 10 * S,
                end_unix_ns: T0 + (w + 1) * 10 * S,
                profile: p,
            })
            .expect("write");
    }
    let write = started.elapsed();
    let stats = store.stats();
    eprintln!(
        "wrote {WINDOWS} windows in {write:?} ({:?}/window); {} bytes on disk, {} stacks, {} bytes/window",
        write / u32::try_from(WINDOWS).expect("small"),
        stats.bytes_on_disk,
        stats.stacks,
        stats.bytes_on_disk / WINDOWS
    );
    drop(store);
    let store = open(dir.path());
    for (what, filter) in [
        ("cold, all", LabelFilter::all()),
        ("warm, all", LabelFilter::all()),
        ("comm=comm3", LabelFilter::all().with("comm", "comm3")),
    ] {
        let t = Instant::now();
        let p = store
            .query(&Query::new(T0, T0 + WINDOWS * 10 * S).with_filter(filter))
            .expect("query");
        eprintln!(
            "query 24 h ({what}): {:?}, {} stacks, {} samples",
            t.elapsed(),
            p.stack_count(),
            p.total()
        );
    }
    let t = Instant::now();
    let tl = store
        .timeline(&Query::new(T0, T0 + WINDOWS * 10 * S))
        .expect("timeline");
    eprintln!("timeline 24 h: {:?} ({} windows)", t.elapsed(), tl.len());
    // p50 of five merges of the last hour and of the whole day (goals: 100 ms and 1 s).
    for (what, from) in [("1 h", T0 + WINDOWS * 10 * S - 3600 * S), ("24 h", T0)] {
        let mut times: Vec<_> = (0..5)
            .map(|_| {
                let t = Instant::now();
                store
                    .query(&Query::new(from, T0 + WINDOWS * 10 * S))
                    .expect("query");
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "merge {what}: p50 {:?} (min {:?}, max {:?})",
            times[2], times[0], times[4]
        );
    }
}

/// Fills the store in `$EMBER_BENCH_STORE` with the last hour of 10 s windows holding
/// 50,000 distinct stacks in all, for the UI rendering benchmark (`bench/ui_bench.sh`).
#[test]
#[ignore = "benchmark set-up, run by bench/ui_bench.sh"]
fn write_ui_bench_store() {
    let Some(dir) = std::env::var_os("EMBER_BENCH_STORE") else {
        panic!("set EMBER_BENCH_STORE to the store directory to fill");
    };
    const WINDOWS: u64 = 360;
    const DISTINCT: u64 = 50_000;
    let mut store = open(Path::new(&dir));
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos(),
    )
    .expect("before 2554");
    let start = now - WINDOWS * 10 * S;
    let frames: Vec<Frame> = (0..2000).map(|i| frame(&format!("fn_{i}"), i)).collect();
    let label_sets: Vec<Labels> = (0..50)
        .map(|i| labels(&format!("bench{}", i % 5), i))
        .collect();
    for w in 0..WINDOWS {
        let mut p = Profile::new(ProfileMeta {
            frequency_hz: 19,
            ..ProfileMeta::default()
        });
        let ids: Vec<_> = frames.iter().map(|f| p.intern_frame(f)).collect();
        let lids: Vec<_> = label_sets.iter().map(|l| p.intern_labels(l)).collect();
        // Every window holds its own slice of the distinct stacks, so the hour has all.
        for j in 0..DISTINCT / WINDOWS + 1 {
            let s = (w * (DISTINCT / WINDOWS + 1) + j) % DISTINCT;
            let stack: Box<[u32]> = (0..12)
                .map(|k| {
                    // A tree: stacks share prefixes, as real ones do.
                    let node = (s >> (2 * (11 - k))).wrapping_mul(0x9E37_79B9) + k;
                    ids[(node % 2000) as usize]
                })
                .collect();
            p.add_ids(lids[(s % 50) as usize], stack, 1 + s % 3);
        }
        store
            .write_window(&Window {
                start_unix_ns: start + w * 10 * S,
                end_unix_ns: start + (w + 1) * 10 * S,
                profile: p,
            })
            .expect("write");
    }
    let stats = store.stats();
    eprintln!(
        "bench store: {} windows, {} stacks",
        stats.windows, stats.stacks
    );
}

/// Issue 13 item 11: after 256 bytes were flipped mid-file, the agent started, reported
/// healthy and lost windows. Now every such store (the bytes flipped in the middle of each
/// page in turn, the mid-file case among them) is either refused at open with the
/// message the other damage gets, or its damage is inside rows the checksums catch: it
/// opens, takes new windows and answers queries.
#[test]
fn flipped_bytes_are_refused_at_open_or_do_not_lose_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    {
        let mut store = open(&good);
        for i in 0..200 {
            store
                .write_window(&window(i * 10, 10, &stacks_for(i)))
                .expect("write");
        }
    }
    let bytes = std::fs::read(good.join(DB_FILE_NAME)).expect("read the store");
    let page = 4096;
    let mut offsets: Vec<usize> = (0..bytes.len() / page)
        .map(|p| p * page + page / 2 - 128)
        .collect();
    offsets.push(bytes.len() / 2);
    let (mut refused, mut opened) = (0, 0);
    for at in offsets {
        let case = dir.path().join(format!("flip-{at}"));
        std::fs::create_dir(&case).expect("case dir");
        let mut damaged = bytes.clone();
        for b in &mut damaged[at..at + 256] {
            *b ^= 0xff;
        }
        std::fs::write(case.join(DB_FILE_NAME), &damaged).expect("write the damaged copy");
        match Store::open(&case, StoreConfig::default().with_downsample(None)) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    matches!(
                        e,
                        StoreError::Damaged { .. } | StoreError::NotADatabase { .. }
                    ) && msg.contains("move it aside")
                        && msg.contains(DB_FILE_NAME),
                    "flip at {at}: {msg}"
                );
                refused += 1;
            }
            Ok(mut store) => {
                for i in 200..202 {
                    store
                        .write_window(&window(i * 10, 10, &stacks_for(i)))
                        .unwrap_or_else(|e| {
                            panic!("flip at {at}: an opened store lost a window: {e}")
                        });
                }
                let p = store
                    .query(&Query::new(T0 + 2000 * S, T0 + 2020 * S))
                    .unwrap_or_else(|e| panic!("flip at {at}: {e}"));
                assert!(p.total() > 0, "flip at {at}: the new windows read back");
                store
                    .query(&Query::new(0, u64::MAX))
                    .unwrap_or_else(|e| panic!("flip at {at}: {e}"));
                opened += 1;
            }
        }
    }
    eprintln!("{refused} refused, {opened} opened");
    assert!(
        refused > 0,
        "some flips damage the b-trees ({opened} opened)"
    );
}

/// Whether the test runs as root; when not, outside CI, the caller skips (loudly).
fn root_or_skip(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} must run as root in CI"
        );
        // Straight to the terminal: the harness captures `eprintln!`, not `io::stderr()`.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: needs root (mounts, file attributes)"
        );
    }
    root
}

/// A file system mounted for one test, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn new(args: &[&str], at: &Path) -> Mount {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(args)
            .arg(at)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount {args:?} {}", at.display());
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_second_writer_is_refused_with_the_first_ones_pid_and_readers_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = open(dir.path());
    first
        .write_window(&window(0, 10, &stacks_for(0)))
        .expect("write");
    let e = Store::open(dir.path(), StoreConfig::default()).expect_err("second writer");
    assert!(
        matches!(e, StoreError::InUse { holder: Holder(Some(pid)), .. } if pid == std::process::id()),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id()))
            && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
    let reader = Store::open_read_only(dir.path(), StoreConfig::default()).expect("reader");
    assert_eq!(
        reader.query(&Query::new(0, u64::MAX)).expect("q").total(),
        6
    );
    drop(first);
    open(dir.path());
}

#[test]
fn a_new_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a/b");
    let mut store = open(&data);
    store
        .write_window(&window(0, 10, &stacks_for(0)))
        .expect("write");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    for f in [
        DB_FILE_NAME,
        LOCK_FILE_NAME,
        "ember-store.sqlite3-wal",
        "ember-store.sqlite3-shm",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
}

/// Issue 13 item 11: `drop table frames` left a store that opened and lost every window.
#[test]
fn a_store_missing_a_table_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path())
        .write_window(&window(0, 10, &stacks_for(0)))
        .expect("write");
    let path = dir.path().join(DB_FILE_NAME);
    Connection::open(&path)
        .and_then(|c| c.execute_batch("DROP TABLE frames"))
        .expect("drop table");
    for e in [
        Store::open(dir.path(), StoreConfig::default()).expect_err("damaged"),
        Store::open_read_only(dir.path(), StoreConfig::default()).expect_err("damaged"),
    ] {
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e:?}");
        assert!(
            msg.contains("lacks `frames`, `frames_crc`")
                && msg.contains("move it aside")
                && msg.contains(&path.display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn the_integrity_check_at_open_is_bounded_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(dir.path());
        for i in 0..200 {
            store
                .write_window(&window(i * 10, 10, &stacks_for(i)))
                .expect("write");
        }
    }
    let config = StoreConfig {
        integrity_check_budget: Duration::ZERO,
        ..StoreConfig::default()
    };
    let t = Instant::now();
    let store = Store::open(dir.path(), config).expect("opens when the check runs out of time");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(store);
    let t = Instant::now();
    open(dir.path());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "full check: {:?}",
        t.elapsed()
    );
}

/// Issue 13 item 11: with `chattr +i` on the file SQLite opened it read-only, silently,
/// and every window was lost.
#[test]
fn an_immutable_database_file_is_refused_for_writing() {
    if !root_or_skip("an_immutable_database_file_is_refused_for_writing") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path())
        .write_window(&window(0, 10, &stacks_for(0)))
        .expect("write");
    let path = dir.path().join(DB_FILE_NAME);
    struct Immutable<'a>(&'a Path);
    impl Drop for Immutable<'_> {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(self.0).status();
        }
    }
    let st = Command::new("chattr")
        .arg("+i")
        .arg(&path)
        .status()
        .expect("chattr");
    assert!(
        st.success(),
        "chattr +i needs a file system with attributes"
    );
    let _guard = Immutable(&path);
    let e = Store::open(dir.path(), StoreConfig::default()).expect_err("immutable");
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
    assert!(e.to_string().contains("immutable attribute"), "{e}");
    // Reading it is still fine.
    let reader = Store::open_read_only(dir.path(), StoreConfig::default()).expect("reader");
    assert_eq!(
        reader.query(&Query::new(0, u64::MAX)).expect("q").total(),
        6
    );
}

/// Issue 13 item 12: `ember export` could not read a store on a read-only mount.
#[test]
fn a_store_on_a_read_only_mount_opens_read_only() {
    if !root_or_skip("a_store_on_a_read_only_mount_opens_read_only") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let mut store = open(&data);
        for i in 0..5 {
            store
                .write_window(&window(i * 10, 10, &stacks_for(i)))
                .expect("write");
        }
    }
    let ro = dir.path().join("ro");
    let _bind = Mount::new(&["--bind", data.to_str().expect("utf-8")], &ro);
    let st = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&ro)
        .status()
        .expect("remount");
    assert!(st.success(), "remount read-only");
    let reader = Store::open_read_only(&ro, StoreConfig::default()).expect("read-only open");
    let all = reader.query(&Query::new(0, u64::MAX)).expect("query");
    let written: Vec<Window> = (0..5).map(|i| window(i * 10, 10, &stacks_for(i))).collect();
    assert_eq!(canon(&all), merged(&written));
    assert!(
        Store::open(&ro, StoreConfig::default()).is_err(),
        "no writer on a read-only mount"
    );
}

/// Issue 13 item 8: on a full disk the error says so ("database or disk is full" was
/// missing from the agent's log), earlier windows stay readable, and once space is free
/// again retention runs and writes go on under the cap.
#[test]
fn a_full_disk_is_named_and_writes_resume_when_space_is_freed() {
    if !root_or_skip("a_full_disk_is_named_and_writes_resume_when_space_is_freed") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("small");
    let _tmpfs = Mount::new(&["-t", "tmpfs", "-o", "size=2m", "tmpfs"], &mnt);
    // Something else on the node fills the disk.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 1200 * 1024]).expect("filler");
    let data = mnt.join("d");
    let big = |i: u64| -> Vec<(Labels, Vec<Frame>, u64)> {
        (0..200)
            .map(|j| {
                let name = format!("f_{i}_{j}_{}", "x".repeat(40));
                (
                    labels("fill", 1),
                    vec![frame("main", 0), frame(&name, j)],
                    1,
                )
            })
            .collect()
    };
    let config = StoreConfig::default()
        .with_max_bytes(600 * 1024)
        .with_downsample(None);
    let mut store = Store::open(&data, config).expect("open");
    let mut written = 0;
    let err = loop {
        match store.write_window(&window(written * 10, 10, &big(written))) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "the file system never filled");
    };
    assert!(err.is_disk_full(), "{err:?}");
    assert!(
        err.to_string().contains("disk full (SQLite's SQLITE_FULL)"),
        "{err}"
    );
    assert_eq!(
        store
            .query(&Query::new(0, u64::MAX))
            .expect("still readable")
            .total(),
        200 * written
    );
    std::fs::remove_file(&filler).expect("free the space");
    store.enforce_retention(T0).expect("retention");
    for i in written..written + 20 {
        store
            .write_window(&window(i * 10, 10, &big(i)))
            .unwrap_or_else(|e| panic!("window {i} after space was freed: {e}"));
        assert!(store.stats().bytes_on_disk <= 600 * 1024);
    }
}

/// `w` as an off-CPU window (its counts read as microseconds off CPU).
fn off_cpu(mut w: Window) -> Window {
    w.profile.meta.kind = ProfileKind::OffCpu;
    w
}

#[test]
fn cpu_and_off_cpu_windows_of_one_period_are_read_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let cpu = window(0, 10, &stacks_for(0));
    let waits = off_cpu(window(
        0,
        10,
        &[(
            labels("split", 42),
            vec![frame("main", 0), frame("sleep", 9)],
            4_000_000,
        )],
    ));
    store.write_window(&cpu).expect("write cpu");
    store.write_window(&waits).expect("write off-cpu");
    let q = Query::new(T0, T0 + 10 * S);
    let got = store.query(&q).expect("cpu query");
    assert_eq!(got.meta.kind, ProfileKind::Cpu);
    assert_eq!(canon(&got), merged([&cpu]));
    let off = store
        .query(&q.clone().with_kind(ProfileKind::OffCpu))
        .expect("off-cpu query");
    assert_eq!(off.meta.kind, ProfileKind::OffCpu);
    assert_eq!(canon(&off), merged([&waits]));
    let tl = store
        .timeline(&q.clone().with_kind(ProfileKind::OffCpu))
        .expect("timeline");
    assert_eq!(tl.len(), 1);
    assert_eq!(
        (tl[0].samples, tl[0].kind),
        (4_000_000, ProfileKind::OffCpu)
    );
    let lv = store
        .label_values(ProfileKind::OffCpu, T0, T0 + 10 * S)
        .expect("labels");
    assert_eq!(lv["comm"]["split"], 4_000_000);
    assert!(!lv["comm"].contains_key("join"), "{lv:?}");
    let stored = store.window(WindowId(2)).expect("read").expect("present");
    assert_eq!(stored.profile.meta.kind, ProfileKind::OffCpu);
    // Both kinds in the outbox listing, in write order, each with its kind.
    let listed = store.windows_after(None, 10).expect("list");
    assert_eq!(
        listed.iter().map(|w| w.kind).collect::<Vec<_>>(),
        [ProfileKind::Cpu, ProfileKind::OffCpu]
    );
}

#[test]
fn retention_merges_each_kind_apart_and_the_size_cap_takes_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let mut cpu = Vec::new();
    let mut waits = Vec::new();
    for i in 0..12 {
        let c = window(i * 10, 10, &stacks_for(i));
        let w = off_cpu(window(i * 10, 10, &stacks_for(i + 100)));
        store.write_window(&c).expect("write");
        store.write_window(&w).expect("write");
        cpu.push(c);
        waits.push(w);
    }
    let report = store.enforce_retention(T0 + 3720 * S).expect("retention");
    // Two minutes of each kind: two coarser windows per kind.
    assert_eq!((report.merged_windows, report.merged_into), (24, 4));
    let all = Query::new(0, u64::MAX);
    assert_eq!(canon(&store.query(&all).expect("q")), merged(&cpu));
    let off = store
        .query(&all.clone().with_kind(ProfileKind::OffCpu))
        .expect("q");
    assert_eq!(canon(&off), merged(&waits), "off-CPU merges stay off-CPU");
    assert_eq!(store.timeline(&all).expect("tl").len(), 2);

    // Age retention deletes both kinds.
    let config = StoreConfig::default()
        .with_retention(Duration::from_secs(60))
        .with_downsample(None);
    drop(store);
    let mut store = Store::open(dir.path(), config).expect("reopen");
    store.enforce_retention(T0 + 3720 * S).expect("retention");
    assert_eq!(store.stats().windows, 0);
}

/// The version-1 schema, as Ember created it before windows had a kind.
const V1_SCHEMA: &str = "
CREATE TABLE strings (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX strings_crc ON strings (crc);
CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX frames_crc ON frames (crc);
CREATE TABLE stacks (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX stacks_crc ON stacks (crc);
CREATE TABLE label_sets (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX label_sets_crc ON label_sets (crc);
CREATE TABLE windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    frequency_hz INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX windows_start ON windows (start_ns);
";

/// A version-1 store in `dir` holding `windows`: the schema as version 1 created it, the
/// rows as version 1 encoded them (the codec did not change: they are copied from a store
/// the current code wrote, without the `kind` column), a push cursor as version 1 kept it.
fn v1_store(dir: &Path, windows: &[Window]) {
    let scratch = tempfile::tempdir().expect("tempdir");
    {
        let mut s = open(scratch.path());
        for w in windows {
            s.write_window(w).expect("write");
        }
    }
    std::fs::create_dir_all(dir).expect("dir");
    let conn = Connection::open(dir.join(DB_FILE_NAME)).expect("create");
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;")
        .expect("pragmas");
    conn.execute_batch(V1_SCHEMA).expect("v1 schema");
    conn.execute(
        "ATTACH DATABASE ?1 AS new",
        [scratch.path().join(DB_FILE_NAME).display().to_string()],
    )
    .expect("attach");
    conn.execute_batch(
        "INSERT INTO strings SELECT * FROM new.strings;
         INSERT INTO frames SELECT * FROM new.frames;
         INSERT INTO stacks SELECT * FROM new.stacks;
         INSERT INTO label_sets SELECT * FROM new.label_sets;
         INSERT INTO windows SELECT id, start_ns, end_ns, frequency_hz, samples, raw_len, crc, payload FROM new.windows;
         DETACH DATABASE new;
         CREATE TABLE push_cursors (destination TEXT PRIMARY KEY NOT NULL, window_id INTEGER NOT NULL, end_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
         INSERT INTO push_cursors VALUES ('pyroscope', 1, 0, 0);",
    )
    .expect("copy rows");
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
    ))
    .expect("stamp v1");
}

#[test]
fn a_version_1_store_reads_as_cpu_and_is_migrated_by_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let windows: Vec<Window> = (0..3).map(|i| window(i * 10, 10, &stacks_for(i))).collect();
    v1_store(dir.path(), &windows);
    let all = Query::new(0, u64::MAX);

    // A reader does not migrate: every window is a CPU window.
    let reader = Store::open_read_only(dir.path(), StoreConfig::default()).expect("read v1");
    assert_eq!(canon(&reader.query(&all).expect("q")), merged(&windows));
    let off = reader
        .query(&all.clone().with_kind(ProfileKind::OffCpu))
        .expect("q");
    assert_eq!(off.total(), 0);
    assert_eq!(reader.timeline(&all).expect("tl").len(), 3);
    drop(reader);
    let version = |dir: &Path| -> i64 {
        Connection::open(dir.join(DB_FILE_NAME))
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .expect("version")
    };
    assert_eq!(version(dir.path()), 1, "a reader leaves the file as it is");

    // The writer migrates, keeps the windows as CPU windows, and writes both kinds.
    let mut store = open(dir.path());
    assert_eq!(version(dir.path()), SCHEMA_VERSION);
    assert_eq!(canon(&store.query(&all).expect("q")), merged(&windows));
    let waits = off_cpu(window(30, 10, &stacks_for(9)));
    store.write_window(&waits).expect("write off-cpu");
    let off = store
        .query(&all.clone().with_kind(ProfileKind::OffCpu))
        .expect("q");
    assert_eq!(canon(&off), merged([&waits]));
    assert_eq!(store.timeline(&all).expect("tl").len(), 3);
    store.enforce_retention(T0 + 60 * S).expect("retention");
    drop(store);

    // The old push cursor is kept and gains an off-CPU end.
    let outbox = Store::open_outbox(dir.path(), StoreConfig::default()).expect("outbox");
    let cursor = outbox
        .push_cursor("pyroscope")
        .expect("cursor")
        .expect("kept");
    assert_eq!(
        (cursor.window_id, cursor.off_cpu_end_unix_ns),
        (WindowId(1), 0)
    );
    drop(outbox);

    // Reopened, the migrated store passes the writer's checks as version 2.
    let store = open(dir.path());
    assert_eq!(store.stats().windows, 4);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()));
    Connection::open(dir.path().join(DB_FILE_NAME))
        .and_then(|c| c.execute_batch("PRAGMA user_version = 3"))
        .expect("stamp");
    let e = Store::open(dir.path(), StoreConfig::default()).expect_err("refused");
    assert!(
        matches!(e, StoreError::SchemaVersion { found: 3, .. }),
        "{e:?}"
    );
}
