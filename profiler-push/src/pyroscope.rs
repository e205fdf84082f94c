//! Grafana Pyroscope: a window as a `push.v1.PushRequest`, one series per service with a
//! gzip pprof per window.
//!
//! The pprof is `profiler-model`'s (two sample types, `samples/count` and
//! `cpu/nanoseconds`, or for an off-CPU window the one `off_cpu/nanoseconds`; mappings
//! with build-ids, locations at file offsets; inlined frames as extra lines), built from
//! the series' samples with only `pid`, `thread` and `comm` kept as sample labels. An
//! off-CPU window's series is named `off_cpu` (see `series.rs`), so Pyroscope shows it as
//! a profile type of its own (`off_cpu:off_cpu:nanoseconds::`).

use prost::Message as _;

use profiler_model::{Labels, Profile, keys, pprof};

use crate::encode::{StoredWindow, profile_id, uuid_string};
use crate::proto::pyroscope::{LabelPair, PushRequest, RawProfileSeries, RawSample};

/// The Connect path of the push call, appended to the endpoint.
pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";
/// The Connect unary content type of binary protobuf.
pub const CONTENT_TYPE: &str = "application/proto";

/// The sample labels a pushed pprof keeps.
const SAMPLE_LABELS: [&str; 3] = [keys::PID, keys::THREAD, keys::COMM];

/// The push request of `windows`: for each window, one series per service.
#[must_use]
pub fn encode(windows: &[StoredWindow], host_name: &str) -> Vec<u8> {
    let mut series: Vec<RawProfileSeries> = Vec::new();
    for w in windows {
        for (key, profile) in w.by_series() {
            let labels = key
                .labels(host_name, w.window.profile.meta.kind)
                .into_iter()
                .map(|(name, value)| LabelPair {
                    name: name.to_owned(),
                    value,
                })
                .collect();
            let id = profile_id(
                host_name,
                &key.service_name,
                w.window.profile.meta.kind,
                w.window.start_unix_ns,
            );
            series.push(RawProfileSeries {
                labels,
                samples: vec![RawSample {
                    raw_profile: pprof_of(&profile),
                    id: uuid_string(&id),
                }],
            });
        }
    }
    PushRequest { series }.encode_to_vec()
}

/// The gzip pprof of `profile` with the sample labels reduced to `SAMPLE_LABELS`.
#[must_use]
pub fn pprof_of(profile: &Profile) -> Vec<u8> {
    let mut out = Profile::new(profile.meta.clone());
    for s in profile.stacks() {
        let mut labels = Labels::new();
        for k in SAMPLE_LABELS {
            if let Some(v) = s.labels.get(k) {
                labels.set(k, v);
            }
        }
        let labels = out.intern_labels(&labels);
        let frames: Box<[u32]> = s
            .frames
            .iter()
            .map(|&f| out.intern_frame(profile.frame(f)))
            .collect();
        out.add_ids(labels, frames, s.count);
    }
    let mut bytes = Vec::new();
    pprof::encode(&out, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::encode::testutil;

    #[test]
    fn one_series_per_service_with_a_pprof_each() {
        let body = encode(&[testutil::window(1), testutil::window(2)], "node-7");
        let req = PushRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(req.series.len(), 4, "two services, two windows");
        let s = &req.series[1];
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "process_cpu"),
                ("hostname", "node-7"),
                ("service_name", "split")
            ]
        );
        let profile = pprof::decode(s.samples[0].raw_profile.as_slice()).expect("pprof");
        assert_eq!(profile.total(), 100);
        let stack = profile.stacks().next().expect("a stack");
        assert_eq!(stack.labels.get(keys::PID), Some("42"));
        assert_eq!(stack.labels.get(keys::THREAD), Some("split-worker"));
        assert_eq!(stack.labels.get(keys::EXE), None, "not a sample label");
        assert_ne!(
            s.samples[0].id, req.series[3].samples[0].id,
            "windows differ"
        );
        let pod = &req.series[0];
        assert!(
            pod.labels
                .iter()
                .any(|l| l.name == "namespace" && l.value == "shop")
        );
    }

    #[test]
    fn an_off_cpu_window_is_its_own_profile_type() {
        let body = encode(
            &[testutil::window(1), testutil::off_cpu_window(1)],
            "node-7",
        );
        let req = PushRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(req.series.len(), 4, "two services, two kinds");
        let name = |s: &RawProfileSeries| {
            s.labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
        };
        assert_eq!(name(&req.series[1]).as_deref(), Some("process_cpu"));
        let off = &req.series[3];
        assert_eq!(name(off).as_deref(), Some("off_cpu"));
        assert_ne!(
            off.samples[0].id, req.series[1].samples[0].id,
            "a window and its off-CPU twin have ids of their own"
        );
        let raw = off.samples[0].raw_profile.as_slice();
        let profile =
            pprof::decode_kind(raw, profiler_model::ProfileKind::OffCpu).expect("off-CPU pprof");
        // 100 microseconds waited, as off_cpu/nanoseconds.
        assert_eq!(profile.total(), 100);
        assert!(pprof::decode_kind(raw, profiler_model::ProfileKind::Cpu).is_err());
    }
}
