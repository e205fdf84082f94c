//! Ember's JSON ([`crate::Format::Json`]): what `/api/v1/profile?format=json` and
//! `/api/v1/diff?format=json` answer, for scripts and the web UI.
//!
//! A profile is its frames once and its stacks as frame ids (root first), biggest first;
//! a diff is the per-function share changes of [`analysis::diff_functions`].

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::time::TimeRange;
use crate::{FrameKind, Profile, analysis};

/// `profile` over `range` as JSON.
#[must_use]
pub fn profile(profile: &Profile, range: TimeRange) -> Value {
    let frames: Vec<Value> = profile
        .frames()
        .iter()
        .map(|f| {
            json!({
                "name": &*f.name,
                "folded_name": f.folded_name().to_string(),
                "kind": match f.kind {
                    FrameKind::User => "user",
                    FrameKind::Kernel => "kernel",
                    FrameKind::Python => "python",
                },
                "inlined": f.inlined,
                "module": f.module.as_deref(),
                "file": f.file.as_deref(),
                "line": f.line,
            })
        })
        .collect();
    let mut stacks: Vec<_> = profile.stacks().collect();
    stacks.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.frames.cmp(b.frames))
            .then_with(|| a.labels.cmp(b.labels))
    });
    let stacks: Vec<Value> = stacks
        .into_iter()
        .map(|s| {
            let labels: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect();
            json!({ "labels": labels, "frames": s.frames, "count": s.count })
        })
        .collect();
    json!({
        "from_unix_ns": range.from_unix_ns,
        "to_unix_ns": range.to_unix_ns,
        "meta": {
            "start_unix_ns": profile.meta.start_unix_ns,
            "duration_ns": profile.meta.duration_ns,
            "frequency_hz": profile.meta.frequency_hz,
        },
        "total_samples": profile.total(),
        "frames": frames,
        "stacks": stacks,
    })
}

/// The change from `base` (over `base_range`) to `new` (over `new_range`) as JSON: the
/// `limit` functions of [`analysis::diff_functions`], biggest change first.
#[must_use]
pub fn diff(
    base: &Profile,
    base_range: TimeRange,
    new: &Profile,
    new_range: TimeRange,
    limit: usize,
) -> Value {
    let mut rows = analysis::diff_functions(base, new);
    rows.truncate(limit);
    let rows: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "base_self_share": d.base_self_share,
                "self_share": d.new_self_share,
                "self_delta": d.self_delta(),
                "base_total_share": d.base_total_share,
                "total_share": d.new_total_share,
                "total_delta": d.total_delta(),
            })
        })
        .collect();
    json!({
        "base": {
            "from_unix_ns": base_range.from_unix_ns,
            "to_unix_ns": base_range.to_unix_ns,
            "total_samples": base.total(),
        },
        "new": {
            "from_unix_ns": new_range.from_unix_ns,
            "to_unix_ns": new_range.to_unix_ns,
            "total_samples": new.total(),
        },
        "functions": rows,
    })
}

/// Writes `value` compactly, as the API sends it.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn write(value: &Value, w: impl Write) -> io::Result<()> {
    serde_json::to_writer(w, value).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, Labels, ProfileMeta, keys};

    #[test]
    fn profile_json_lists_frames_once_and_stacks_biggest_first() {
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: 10,
            duration_ns: 5,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        let l = Labels::new().with(keys::COMM, "app");
        let main = Frame::named("main", FrameKind::User);
        p.add(&l, std::slice::from_ref(&main), 1);
        p.add(&l, &[main, Frame::named("irq", FrameKind::Kernel)], 3);
        let v = profile(&p, TimeRange::of(&p));
        assert_eq!(v["from_unix_ns"], 10);
        assert_eq!(v["to_unix_ns"], 15);
        assert_eq!(v["total_samples"], 4);
        assert_eq!(v["frames"][1]["folded_name"], "irq_[k]");
        assert_eq!(v["frames"][1]["kind"], "kernel");
        assert_eq!(v["stacks"][0]["count"], 3);
        assert_eq!(v["stacks"][0]["frames"], json!([0, 1]));
        assert_eq!(v["stacks"][0]["labels"]["comm"], "app");
        let mut out = Vec::new();
        write(&v, &mut out).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), v);
    }
}
