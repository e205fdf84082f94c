//! OTLP profiles: windows as one `ExportProfilesServiceRequest` (OTLP/HTTP protobuf to
//! `/v1development/profiles`), in the opentelemetry-proto 1.10+ layout.
//!
//! - One `ResourceProfiles` per window and service, with the resource attributes
//!   `service.name` and `host.name`; one `Profile` in it, sample type `samples/count`,
//!   period `cpu/nanoseconds`, the window's start, length and 16-byte id. An off-CPU
//!   window's profile has the OpenTelemetry eBPF profiler's off-CPU type instead: sample
//!   type `off_cpu/nanoseconds`, each value the time waited, and no period.
//! - Sample attributes in semantic-convention names: `process.executable.name`,
//!   `process.pid`, `thread.id`, `thread.name`, `container.id`, `k8s.pod.uid`,
//!   `k8s.pod.name`, `k8s.namespace.name`.
//! - One dictionary for the request (entry 0 of each table is the zero value); stacks
//!   leaf first; a location is a real frame with its inlined callees as extra lines,
//!   innermost first. File-backed code keeps its build-id (`process.executable.build_id.gnu`
//!   on the mapping) and file offset (the location's address, the mapping starting at file
//!   offset 0 with no memory range), so a backend can symbolize what Ember could not.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message as _;

use profiler_model::{
    Frame, FrameId, FrameKind, Labels, Location as ModelLocation, Profile, ProfileKind, keys,
};

use crate::encode::{StoredWindow, profile_id};
use crate::proto::otlp::{
    AnyValue, ExportProfilesServiceRequest, Function, InstrumentationScope, KeyValue,
    KeyValueAndUnit, Line, Link, Location, Mapping, Profile as OtlpProfile, ProfilesDictionary,
    Resource, ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};

/// The path of the OTLP/HTTP profiles export, appended to a base endpoint.
pub const EXPORT_PATH: &str = "/v1development/profiles";
/// OTLP/HTTP binary protobuf.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Ember's label → the semantic-convention attribute, and whether its value is a number.
const ATTRIBUTES: [(&str, &str, bool); 8] = [
    (keys::COMM, "process.executable.name", false),
    (keys::PID, "process.pid", true),
    (keys::TID, "thread.id", true),
    (keys::THREAD, "thread.name", false),
    (keys::CONTAINER_ID, "container.id", false),
    (keys::POD_UID, "k8s.pod.uid", false),
    (keys::POD, "k8s.pod.name", false),
    (keys::NAMESPACE, "k8s.namespace.name", false),
];

/// The export request of `windows`.
#[must_use]
pub fn encode(windows: &[StoredWindow], host_name: &str) -> Vec<u8> {
    let mut d = Dictionary::new();
    let mut resource_profiles = Vec::new();
    for w in windows {
        for (key, profile) in w.by_series() {
            let resource = Resource {
                attributes: vec![
                    kv("service.name", &key.service_name),
                    kv("host.name", host_name),
                ],
                dropped_attributes_count: 0,
            };
            let id = profile_id(
                host_name,
                &key.service_name,
                w.window.profile.meta.kind,
                w.window.start_unix_ns,
            );
            resource_profiles.push(ResourceProfiles {
                resource: Some(resource),
                scope_profiles: vec![ScopeProfiles {
                    scope: Some(InstrumentationScope {
                        name: "ember".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    }),
                    profiles: vec![d.profile(&profile, id)],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
    }
    ExportProfilesServiceRequest {
        resource_profiles,
        dictionary: Some(d.finish()),
    }
    .encode_to_vec()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue::string(value)),
    }
}

fn index(len: usize) -> i32 {
    i32::try_from(len).expect("fewer than 2^31 dictionary entries")
}

/// A mapping's identity: file name, build-id, kernel or not.
type MappingKey = (Option<Arc<str>>, Option<Arc<[u8]>>, bool);

/// Interning tables of one request.
struct Dictionary {
    out: ProfilesDictionary,
    strings: HashMap<Arc<str>, i32>,
    attributes: HashMap<(i32, AttrValue), i32>,
    mappings: HashMap<MappingKey, i32>,
    functions: HashMap<(i32, i32), i32>,
    locations: HashMap<Vec<Frame>, i32>,
    stacks: HashMap<Vec<i32>, i32>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AttrValue {
    Str(String),
    Int(i64),
}

impl Dictionary {
    fn new() -> Self {
        let mut d = Dictionary {
            out: ProfilesDictionary {
                mapping_table: vec![Mapping::default()],
                location_table: vec![Location::default()],
                function_table: vec![Function::default()],
                link_table: vec![Link::default()],
                string_table: Vec::new(),
                attribute_table: vec![KeyValueAndUnit::default()],
                stack_table: vec![Stack::default()],
            },
            strings: HashMap::new(),
            attributes: HashMap::new(),
            mappings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
        };
        d.string("");
        d
    }

    fn finish(self) -> ProfilesDictionary {
        self.out
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = index(self.out.string_table.len());
        self.out.string_table.push(s.to_owned());
        self.strings.insert(Arc::from(s), i);
        i
    }

    fn attribute(&mut self, key: &str, value: AttrValue) -> i32 {
        let k = self.string(key);
        if let Some(&i) = self.attributes.get(&(k, value.clone())) {
            return i;
        }
        let any = match &value {
            AttrValue::Str(s) => AnyValue::string(s.as_str()),
            AttrValue::Int(v) => AnyValue::int(*v),
        };
        let i = index(self.out.attribute_table.len());
        self.out.attribute_table.push(KeyValueAndUnit {
            key_strindex: k,
            value: Some(any),
            unit_strindex: 0,
        });
        self.attributes.insert((k, value), i);
        i
    }

    fn sample_attributes(&mut self, labels: &Labels) -> Vec<i32> {
        let mut out = Vec::new();
        for (label, attr, numeric) in ATTRIBUTES {
            let Some(v) = labels.get(label) else { continue };
            let value = match (numeric, v.parse::<i64>()) {
                (true, Ok(n)) => AttrValue::Int(n),
                _ => AttrValue::Str(v.to_owned()),
            };
            out.push(self.attribute(attr, value));
        }
        out
    }

    fn mapping(&mut self, frame: &Frame) -> i32 {
        let build_id = match &frame.location {
            ModelLocation::File { build_id, .. } => build_id.clone(),
            _ => None,
        };
        let kernel = frame.kind == FrameKind::Kernel;
        let module = if kernel {
            Some(Arc::from(profiler_model::pprof::KERNEL_MAPPING))
        } else {
            frame.module.clone()
        };
        if module.is_none() && build_id.is_none() {
            return 0;
        }
        let key = (module, build_id, kernel);
        if let Some(&i) = self.mappings.get(&key) {
            return i;
        }
        let filename_strindex = key.0.as_deref().map_or(0, |m| self.string(m));
        let attribute_indices = match key.1.as_deref() {
            Some(b) => {
                vec![self.attribute("process.executable.build_id.gnu", AttrValue::Str(hex(b)))]
            }
            None => Vec::new(),
        };
        let i = index(self.out.mapping_table.len());
        self.out.mapping_table.push(Mapping {
            memory_start: 0,
            memory_limit: 0,
            file_offset: 0,
            filename_strindex,
            attribute_indices,
        });
        self.mappings.insert(key, i);
        i
    }

    fn function(&mut self, frame: &Frame) -> i32 {
        let name = self.string(&frame.name);
        let file = frame.file.as_deref().map_or(0, |f| self.string(f));
        if let Some(&i) = self.functions.get(&(name, file)) {
            return i;
        }
        let i = index(self.out.function_table.len());
        self.out.function_table.push(Function {
            name_strindex: name,
            system_name_strindex: name,
            filename_strindex: file,
            start_line: 0,
        });
        self.functions.insert((name, file), i);
        i
    }

    /// The location of a real frame followed (leafward) by the frames inlined into it.
    fn location(&mut self, group: &[&Frame]) -> i32 {
        let key: Vec<Frame> = group.iter().map(|f| (*f).clone()).collect();
        if let Some(&i) = self.locations.get(&key) {
            return i;
        }
        let real = group[0];
        let address = match real.location {
            ModelLocation::Unknown => 0,
            ModelLocation::Kernel { addr } | ModelLocation::Virtual { addr } => addr,
            ModelLocation::File { offset, .. } => offset,
        };
        let mapping_index = self.mapping(real);
        let lines = group
            .iter()
            .rev()
            .map(|f| Line {
                function_index: self.function(f),
                line: f.line.map_or(0, i64::from),
                column: 0,
            })
            .collect();
        // OpenTelemetry's `profile.frame.type`: a Python frame is interpreted code.
        let attribute_indices = if real.kind == FrameKind::Python {
            vec![self.attribute("profile.frame.type", AttrValue::Str("cpython".to_owned()))]
        } else {
            Vec::new()
        };
        let i = index(self.out.location_table.len());
        self.out.location_table.push(Location {
            mapping_index,
            address,
            lines,
            attribute_indices,
        });
        self.locations.insert(key, i);
        i
    }

    /// The stack of root-first `frames`, leaf first.
    fn stack(&mut self, profile: &Profile, frames: &[FrameId]) -> i32 {
        let mut groups: Vec<Vec<&Frame>> = Vec::new();
        for &id in frames {
            let f = profile.frame(id);
            match groups.last_mut() {
                Some(g) if f.inlined && g[0].kind == f.kind => g.push(f),
                _ => groups.push(vec![f]),
            }
        }
        let mut locations: Vec<i32> = groups.iter().map(|g| self.location(g)).collect();
        locations.reverse();
        if let Some(&i) = self.stacks.get(&locations) {
            return i;
        }
        let i = index(self.out.stack_table.len());
        self.out.stack_table.push(Stack {
            location_indices: locations.clone(),
        });
        self.stacks.insert(locations, i);
        i
    }

    fn profile(&mut self, profile: &Profile, id: [u8; 16]) -> OtlpProfile {
        let off_cpu = profile.meta.kind == ProfileKind::OffCpu;
        let samples_type = if off_cpu {
            ValueType {
                type_strindex: self.string("off_cpu"),
                unit_strindex: self.string("nanoseconds"),
            }
        } else {
            ValueType {
                type_strindex: self.string("samples"),
                unit_strindex: self.string("count"),
            }
        };
        // Off-CPU values are times, not counts of a period: no period type.
        let (period_type, period) = if off_cpu {
            (None, 0)
        } else {
            (
                Some(ValueType {
                    type_strindex: self.string("cpu"),
                    unit_strindex: self.string("nanoseconds"),
                }),
                i64::try_from(profile.meta.period_ns()).unwrap_or(0),
            )
        };
        // Off-CPU counts are microseconds; the sample type says nanoseconds.
        let scale: u64 = if off_cpu { 1000 } else { 1 };
        let mut samples: Vec<Sample> = profile
            .stacks()
            .map(|s| Sample {
                stack_index: self.stack(profile, s.frames),
                attribute_indices: self.sample_attributes(s.labels),
                link_index: 0,
                values: vec![i64::try_from(s.count.saturating_mul(scale)).unwrap_or(i64::MAX)],
                timestamps_unix_nano: Vec::new(),
            })
            .collect();
        // The profile's stacks come from a hash map: sort for reproducible bytes.
        samples.sort_by(|a, b| {
            (a.stack_index, &a.attribute_indices).cmp(&(b.stack_index, &b.attribute_indices))
        });
        OtlpProfile {
            sample_type: Some(samples_type),
            samples,
            time_unix_nano: profile.meta.start_unix_ns,
            duration_nano: profile.meta.duration_ns,
            period_type,
            period,
            profile_id: id.to_vec(),
            ..OtlpProfile::default()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::encode::testutil;
    use crate::proto::otlp::any_value::Value;

    fn string_attr(d: &ProfilesDictionary, i: i32) -> (String, String) {
        let a = &d.attribute_table[i as usize];
        let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::IntValue(n)) => n.to_string(),
            None => String::new(),
        };
        (d.string_table[a.key_strindex as usize].clone(), v)
    }

    #[test]
    fn a_window_becomes_profiles_per_service_with_semantic_attributes() {
        let body = encode(&[testutil::window(1)], "node-7");
        let req = ExportProfilesServiceRequest::decode(body.as_slice()).expect("decodes");
        let d = req.dictionary.as_ref().expect("dictionary");
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.stack_table[0], Stack::default());
        assert_eq!(req.resource_profiles.len(), 2);
        let rp = &req.resource_profiles[1];
        let res = rp.resource.as_ref().expect("resource");
        assert_eq!(res.attributes[0].key, "service.name");
        let p = &rp.scope_profiles[0].profiles[0];
        assert_eq!(p.profile_id.len(), 16);
        assert_eq!(p.period, 1_000_000_000 / 99);
        let total: i64 = p.samples.iter().map(|s| s.values[0]).sum();
        assert_eq!(total, 100);
        let attrs: Vec<(String, String)> = p.samples[0]
            .attribute_indices
            .iter()
            .map(|&i| string_attr(d, i))
            .collect();
        assert!(
            attrs.contains(&("process.pid".to_owned(), "42".to_owned())),
            "{attrs:?}"
        );
        assert!(attrs.contains(&("thread.name".to_owned(), "split-worker".to_owned())));
        // The cold stack: leaf location first, holding the inlined helper then `cold`.
        let cold = p
            .samples
            .iter()
            .find(|s| s.values[0] == 30)
            .expect("cold sample");
        let stack = &d.stack_table[cold.stack_index as usize];
        assert_eq!(stack.location_indices.len(), 2);
        let leaf = &d.location_table[stack.location_indices[0] as usize];
        let names: Vec<&str> = leaf
            .lines
            .iter()
            .map(|l| {
                let f = &d.function_table[l.function_index as usize];
                d.string_table[f.name_strindex as usize].as_str()
            })
            .collect();
        assert_eq!(names, ["cold_helper", "cold"]);
        assert_eq!(leaf.address, 0x1300);
        let mapping = &d.mapping_table[leaf.mapping_index as usize];
        assert_eq!(
            string_attr(d, mapping.attribute_indices[0]),
            (
                "process.executable.build_id.gnu".to_owned(),
                "deadbeef".to_owned()
            )
        );
    }

    #[test]
    fn python_frames_are_typed_cpython_with_their_file_and_line() {
        let mut w = testutil::window(1);
        let py = profiler_model::Frame {
            file: Some("/srv/app.py".into()),
            line: Some(17),
            ..profiler_model::Frame::named("fn_a (app.py)", FrameKind::Python)
        };
        let l = Labels::new()
            .with(keys::COMM, "python3")
            .with(keys::PID, "9");
        w.window.profile.add(&l, &[py], 5);
        let body = encode(&[w], "node-7");
        let req = ExportProfilesServiceRequest::decode(body.as_slice()).expect("decodes");
        let d = req.dictionary.as_ref().expect("dictionary");
        let typed: Vec<&Location> = d
            .location_table
            .iter()
            .filter(|loc| {
                loc.attribute_indices.iter().any(|&a| {
                    let kv = &d.attribute_table[a as usize];
                    d.string_table[kv.key_strindex as usize] == "profile.frame.type"
                        && kv.value.as_ref().and_then(|v| v.value.clone())
                            == Some(crate::proto::otlp::any_value::Value::StringValue(
                                "cpython".into(),
                            ))
                })
            })
            .collect();
        assert_eq!(typed.len(), 1, "one Python location");
        let line = &typed[0].lines[0];
        assert_eq!(line.line, 17);
        let f = &d.function_table[line.function_index as usize];
        assert_eq!(d.string_table[f.name_strindex as usize], "fn_a (app.py)");
        assert_eq!(d.string_table[f.filename_strindex as usize], "/srv/app.py");
    }

    #[test]
    fn an_off_cpu_window_has_the_off_cpu_sample_type_in_nanoseconds() {
        let body = encode(&[testutil::off_cpu_window(1)], "node-7");
        let req = ExportProfilesServiceRequest::decode(body.as_slice()).expect("decodes");
        let d = req.dictionary.as_ref().expect("dictionary");
        let p = &req.resource_profiles[1].scope_profiles[0].profiles[0];
        let t = p.sample_type.as_ref().expect("sample type");
        assert_eq!(d.string_table[t.type_strindex as usize], "off_cpu");
        assert_eq!(d.string_table[t.unit_strindex as usize], "nanoseconds");
        assert!(p.period_type.is_none() && p.period == 0, "no period");
        let total: i64 = p.samples.iter().map(|s| s.values[0]).sum();
        assert_eq!(total, 100_000, "100 µs waited, in nanoseconds");
    }
}
