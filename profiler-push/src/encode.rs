//! From a stored window to what a destination is sent: the window split by series, and a
//! stable id per window.

use std::collections::BTreeMap;

use profiler_model::{Labels, Profile, ProfileKind};
use profiler_store::{Window, WindowId};

use crate::series::SeriesKey;

/// A closed window read back from the store, with its id.
#[derive(Clone, Debug)]
pub struct StoredWindow {
    /// The window's id in the store.
    pub id: WindowId,
    /// The window.
    pub window: Window,
}

impl StoredWindow {
    /// The window's samples by series, the idle task's left out (idle CPU is no service's).
    #[must_use]
    pub fn by_series(&self) -> BTreeMap<SeriesKey, Profile> {
        let mut meta = self.window.profile.meta.clone();
        meta.start_unix_ns = self.window.start_unix_ns;
        meta.duration_ns = self
            .window
            .end_unix_ns
            .saturating_sub(self.window.start_unix_ns);
        let mut keys: BTreeMap<Labels, SeriesKey> = BTreeMap::new();
        let mut out: BTreeMap<SeriesKey, Profile> = BTreeMap::new();
        let profile = &self.window.profile;
        for s in profile.stacks() {
            if s.labels.is_idle() {
                continue;
            }
            let key = keys
                .entry(s.labels.clone())
                .or_insert_with(|| SeriesKey::of(s.labels))
                .clone();
            let p = out.entry(key).or_insert_with(|| Profile::new(meta.clone()));
            let labels = p.intern_labels(s.labels);
            let frames: Box<[u32]> = s
                .frames
                .iter()
                .map(|&f| p.intern_frame(profile.frame(f)))
                .collect();
            p.add_ids(labels, frames, s.count);
        }
        out
    }
}

/// The 16-byte id of a window as backends see it: the same for every retry and restart,
/// different across nodes, windows and kinds. Bytes 0..8 are an FNV-1a hash of the node's
/// host name and the series' service name (and, for off-CPU time, of `off-cpu`: a CPU
/// window and its off-CPU twin start at the same instant), bytes 8..16 the window's start
/// time (nanoseconds, unique per window of one node and kind); the UUID version and variant
/// bits (version 8, custom) are set so it also reads as a UUID. A CPU window's id is what
/// it was before windows had kinds.
#[must_use]
pub fn profile_id(
    host_name: &str,
    service_name: &str,
    kind: ProfileKind,
    start_unix_ns: u64,
) -> [u8; 16] {
    use profiler_model::hash::{fnv1a, fnv1a_extend};
    let kind_part: &[u8] = match kind {
        ProfileKind::Cpu => b"",
        ProfileKind::OffCpu => b"\0off-cpu",
    };
    let h = fnv1a_extend(fnv1a(host_name.as_bytes()), b"\0");
    let h = fnv1a_extend(fnv1a_extend(h, service_name.as_bytes()), kind_part);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&h.to_be_bytes());
    id[8..].copy_from_slice(&start_unix_ns.to_be_bytes());
    // Version 8 in byte 6's high nibble, variant 0b10 in byte 8's top bits: the bits
    // replaced are hash bits and the top of a time that fits 62 bits until 2116.
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// `id` as a UUID string (`8-4-4-4-12` lowercase hex).
#[must_use]
pub fn uuid_string(id: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::Arc;

    use profiler_model::{Frame, FrameKind, Labels, Location, Profile, ProfileMeta, keys};
    use profiler_store::{Window, WindowId};

    use super::StoredWindow;

    pub(crate) const T0: u64 = 1_893_456_000_000_000_000;

    fn frame(name: &str, offset: u64, inlined: bool) -> Frame {
        Frame {
            name: name.into(),
            kind: FrameKind::User,
            inlined,
            module: Some("/usr/bin/split".into()),
            file: Some("split.c".into()),
            line: Some(7),
            location: Location::File {
                build_id: Some(Arc::from(&[0xde, 0xad, 0xbe, 0xef][..])),
                offset,
            },
        }
    }

    /// A window of `split` (70 % `hot`, 30 % `cold` with an inlined callee), a pod
    /// process and the idle task.
    /// [`window`] as the off-CPU window of the same period: its counts read as
    /// microseconds waited.
    pub(crate) fn off_cpu_window(id: i64) -> StoredWindow {
        let mut w = window(id);
        w.window.profile.meta.kind = profiler_model::ProfileKind::OffCpu;
        w.id = WindowId(id + 1000);
        w
    }

    pub(crate) fn window(id: i64) -> StoredWindow {
        let start = T0 + u64::try_from(id).expect("positive") * 10_000_000_000;
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: start,
            duration_ns: 10_000_000_000,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        let split = Labels::new()
            .with(keys::PID, "42")
            .with(keys::TID, "43")
            .with(keys::COMM, "split")
            .with(keys::THREAD, "split-worker")
            .with(keys::EXE, "/usr/bin/split");
        let main = frame("main", 0x1100, false);
        p.add(&split, &[main.clone(), frame("hot", 0x1200, false)], 70);
        p.add(
            &split,
            &[
                main,
                frame("cold", 0x1300, false),
                frame("cold_helper", 0x1310, true),
            ],
            30,
        );
        let pod = Labels::new()
            .with(keys::PID, "7")
            .with(keys::TID, "7")
            .with(keys::COMM, "nginx")
            .with(keys::THREAD, "nginx")
            .with(keys::NAMESPACE, "shop")
            .with(keys::POD, "web-0")
            .with(keys::POD_UID, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
            .with(keys::CONTAINER_ID, "4f8a1c2b3d4e");
        p.add(&pod, &[Frame::named("serve", FrameKind::User)], 5);
        let idle = Labels::new().with(keys::PID, "0").with(keys::TID, "0");
        p.add(&idle, &[Frame::named("do_idle", FrameKind::Kernel)], 50);
        StoredWindow {
            id: WindowId(id),
            window: Window {
                start_unix_ns: start,
                end_unix_ns: start + 10_000_000_000,
                profile: p,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_by_service_without_idle() {
        let w = testutil::window(1);
        let series = w.by_series();
        let names: Vec<&str> = series.keys().map(|k| k.service_name.as_str()).collect();
        assert_eq!(names, ["shop/web", "split"]);
        let split = series.values().nth(1).expect("split");
        assert_eq!(split.total(), 100);
        assert_eq!(split.meta.start_unix_ns, testutil::T0 + 10_000_000_000);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let cpu = ProfileKind::Cpu;
        let a = profile_id("node-7", "split", cpu, 5);
        assert_eq!(a, profile_id("node-7", "split", cpu, 5));
        assert_ne!(a, profile_id("node-8", "split", cpu, 5));
        assert_ne!(a, profile_id("node-7", "split", cpu, 6));
        assert_ne!(a, profile_id("node-7", "split", ProfileKind::OffCpu, 5));
        // Pinned: a backend dedupes a retry after an upgrade only if the id is unchanged.
        let hex = |id: [u8; 16]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(a), "33e2d6009e478e0d8000000000000005");
        assert_eq!(
            hex(profile_id("node-7", "split", ProfileKind::OffCpu, 5)),
            "aa4083ff891084578000000000000005"
        );
        let s = uuid_string(&a);
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "8", "version 8: {s}");
    }
}
