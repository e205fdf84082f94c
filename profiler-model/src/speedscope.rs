//! speedscope's JSON file format (<https://www.speedscope.app>), so a profile opens in
//! speedscope's time-order, left-heavy and sandwich views.
//!
//! [`write()`] emits one `"sampled"` profile per process (the `pid` label; a profile without
//! labels, such as one read from folded stacks, gives a single profile), largest first, over
//! one shared frames table. Each distinct stack is one sample, root first, weighted by its CPU
//! time in nanoseconds when the sampling period is known and by its sample count
//! (`"unit": "none"`) otherwise. Frames carry `file` and `line` when debug info named them;
//! names are folded names, so kernel frames keep their `_[k]` suffix and inlined ones `_[i]`.
//!
//! The schema is speedscope's `file-format-schema.json`
//! (<https://github.com/jlfwong/speedscope/blob/main/src/lib/file-format-spec.ts>); the
//! end-to-end tests validate Ember's output against the copy the npm package ships. The output
//! is deterministic: profiles, samples and frames are sorted.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use serde_json::{Value, json};

use crate::{Frame, FrameId, Labels, Profile, keys};

/// The `$schema` value speedscope recognises its files by.
pub const SCHEMA_URL: &str = "https://www.speedscope.app/file-format-schema.json";

/// Writes `profile` as a speedscope JSON file named `name` (shown in speedscope's title bar).
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn write(profile: &Profile, name: &str, mut w: impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut w, &to_json(profile, name)).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

/// The speedscope document of `profile`, as [`write()`] writes it.
#[must_use]
pub fn to_json(profile: &Profile, name: &str) -> Value {
    let period = profile.meta.period_ns();
    let unit = if period == 0 { "none" } else { "nanoseconds" };

    // Group stacks by process; a stack's frames are mapped to shared indices in a sorted
    // order below, so first collect the distinct frames in use.
    let mut groups: BTreeMap<ProcessKey, Vec<(&[FrameId], u64)>> = BTreeMap::new();
    for s in profile.stacks() {
        groups
            .entry(ProcessKey::of(s.labels))
            .or_default()
            .push((s.frames, s.count));
    }

    // Shared frames: distinct by what speedscope shows (name, file, line), sorted so the
    // same profile always gives the same bytes.
    let mut shown: BTreeMap<ShownFrame, usize> = BTreeMap::new();
    let shown_of: Vec<ShownFrame> = profile.frames().iter().map(ShownFrame::of).collect();
    for key in &shown_of {
        shown.entry(key.clone()).or_insert(0);
    }
    for (i, v) in shown.values_mut().enumerate() {
        *v = i;
    }
    let index_of: HashMap<FrameId, usize> = shown_of
        .iter()
        .enumerate()
        .map(|(id, key)| {
            (
                FrameId::try_from(id).expect("frame ids fit u32"),
                shown[key],
            )
        })
        .collect();
    let frames: Vec<Value> = shown
        .keys()
        .map(|f| {
            let mut o = json!({ "name": f.name });
            if let Some(file) = &f.file {
                o["file"] = json!(file);
            }
            if let Some(line) = f.line {
                o["line"] = json!(line);
            }
            o
        })
        .collect();

    let mut profiles: Vec<(u64, Value)> = groups
        .into_iter()
        .map(|(process, stacks)| {
            // Equal index sequences (frames that differ only in what speedscope does not
            // show) are summed.
            let mut samples: BTreeMap<Vec<usize>, u64> = BTreeMap::new();
            for (frames, count) in stacks {
                let idx: Vec<usize> = frames.iter().map(|f| index_of[f]).collect();
                *samples.entry(idx).or_insert(0) += count;
            }
            let total: u64 = samples.values().sum();
            let weight = |count: u64| {
                if period == 0 {
                    count
                } else {
                    count.saturating_mul(period)
                }
            };
            let weights: Vec<u64> = samples.values().map(|&c| weight(c)).collect();
            let samples: Vec<Vec<usize>> = samples.into_keys().collect();
            let p = json!({
                "type": "sampled",
                "name": process.name(),
                "unit": unit,
                "startValue": 0,
                "endValue": weight(total),
                "samples": samples,
                "weights": weights,
            });
            (total, p)
        })
        .collect();
    // Largest process first: speedscope opens `activeProfileIndex` (0).
    profiles.sort_by_key(|p| std::cmp::Reverse(p.0));
    json!({
        "$schema": SCHEMA_URL,
        "name": name,
        "exporter": concat!("ember ", env!("CARGO_PKG_VERSION")),
        "activeProfileIndex": 0,
        "shared": { "frames": frames },
        "profiles": profiles.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
    })
}

/// Which speedscope profile a stack belongs to: its process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ProcessKey {
    pid: Option<String>,
    comm: Option<String>,
}

impl ProcessKey {
    fn of(labels: &Labels) -> Self {
        ProcessKey {
            pid: labels.get(keys::PID).map(str::to_owned),
            comm: labels.get(keys::COMM).map(str::to_owned),
        }
    }

    fn name(&self) -> String {
        match (&self.comm, &self.pid) {
            (Some(c), Some(p)) => format!("{c} (pid {p})"),
            (Some(c), None) => c.clone(),
            (None, Some(p)) => format!("pid {p}"),
            (None, None) => "all samples".to_owned(),
        }
    }
}

/// A frame as speedscope shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ShownFrame {
    name: String,
    file: Option<String>,
    line: Option<u32>,
}

impl ShownFrame {
    fn of(f: &Frame) -> Self {
        ShownFrame {
            name: f.folded_name().to_string(),
            file: f.file.as_deref().map(str::to_owned),
            line: f.line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameKind, ProfileMeta};

    fn frame(name: &str, file: Option<&str>, line: Option<u32>) -> Frame {
        let mut f = Frame::named(name, FrameKind::User);
        f.file = file.map(Into::into);
        f.line = line;
        f
    }

    fn demo() -> Profile {
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: 0,
            duration_ns: 1_000_000_000,
            frequency_hz: 100,
            ..ProfileMeta::default()
        });
        let split = Labels::new()
            .with(keys::PID, "10")
            .with(keys::COMM, "split");
        let other = Labels::new()
            .with(keys::PID, "20")
            .with(keys::COMM, "other");
        let main = frame("main", Some("split.c"), Some(90));
        let fn_a = frame("fn_a", Some("split.c"), Some(30));
        let fn_b = frame("fn_b", None, None);
        let k = Frame::named("irq", FrameKind::Kernel);
        p.add(&split, &[main.clone(), fn_a], 7);
        p.add(&split, &[main.clone(), fn_b.clone(), k], 3);
        p.add(&other, &[main, fn_b], 2);
        p
    }

    #[test]
    fn one_sampled_profile_per_process_over_shared_frames() {
        let doc = to_json(&demo(), "demo");
        assert_eq!(doc["$schema"], SCHEMA_URL);
        let frames = doc["shared"]["frames"].as_array().unwrap();
        let names: Vec<&str> = frames.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["fn_a", "fn_b", "irq_[k]", "main"]);
        assert_eq!(frames[0]["file"], "split.c");
        assert_eq!(frames[0]["line"], 30);
        assert!(frames[1].get("file").is_none());

        let profiles = doc["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        let split = &profiles[0];
        assert_eq!(split["name"], "split (pid 10)");
        assert_eq!(split["type"], "sampled");
        assert_eq!(split["unit"], "nanoseconds");
        assert_eq!(split["endValue"], 10 * 10_000_000);
        // Root first: main (3), then fn_a (0) / fn_b (1), irq (2).
        assert_eq!(split["samples"], json!([[3, 0], [3, 1, 2]]));
        assert_eq!(split["weights"], json!([70_000_000, 30_000_000]));
        assert_eq!(profiles[1]["name"], "other (pid 20)");
        assert_eq!(profiles[1]["samples"], json!([[3, 1]]));
    }

    #[test]
    fn unknown_period_weighs_by_count_and_output_is_deterministic() {
        let text = b"a;b 5\na;c 2\n";
        let p = crate::folded::parse(&text[..]).unwrap();
        let doc = to_json(&p, "x");
        let prof = &doc["profiles"][0];
        assert_eq!(prof["unit"], "none");
        assert_eq!(prof["name"], "all samples");
        assert_eq!(prof["endValue"], 7);
        let weights: u64 = prof["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .sum();
        assert_eq!(weights, 7);
        let mut one = Vec::new();
        let mut two = Vec::new();
        write(&demo(), "d", &mut one).unwrap();
        write(&demo(), "d", &mut two).unwrap();
        assert_eq!(one, two);
    }
}
