//! pprof: the gzip-compressed `profile.proto` that `go tool pprof`, Pyroscope, Parca and
//! most profile viewers read.
//!
//! [`encode`] writes a [`Profile`] with two sample types, `samples/count` and
//! `cpu/nanoseconds` (the count times the sampling period), one mapping per distinct binary
//! (kernel frames share a `[kernel.kallsyms]` mapping), one location per distinct frame
//! with its inlined callees, and the sample labels (`pid` and `tid` as numbers, the rest as
//! strings). Each mapping carries the binary's path and build-id and says whether its
//! frames have function names, file names, lines and inline frames (`has_functions` is off
//! for a stripped binary, so pprof may symbolize it itself). Inlined frames follow pprof's convention: they are extra `Line`s of the
//! location of the real frame they were inlined into, innermost first. The same profile
//! always gives the same bytes.
//!
//! [`decode`] reads such a file (gzip-compressed or not, from Ember or any other producer)
//! back into a [`Profile`], so `ember diff` can compare pprof inputs.
//!
//! The protobuf encoding is written by hand (the private `wire` module): the schema is small and stable
//! (<https://github.com/google/pprof/blob/main/proto/profile.proto>).

mod wire;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::frame::{INLINED_SUFFIX, Suffix, UNKNOWN};
use crate::{
    Frame, FrameId, FrameKind, Labels, LabelsId, Location, Profile, ProfileKind, ProfileMeta,
    StackRef, keys,
};
use wire::{Reader, Writer};

/// The mapping name of kernel code, as perf and pprof call it.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";

/// The mapping Python frames are put in: they belong to no binary, and a reader tells
/// them apart by it. Their function carries the Python file and the line.
pub const PYTHON_MAPPING: &str = "[python]";

/// A pprof input that could not be read. Byte offsets count into the uncompressed protobuf.
#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    /// Reading the input failed.
    #[error("reading pprof input")]
    Io(#[source] io::Error),
    /// The input starts like gzip but does not decompress.
    #[error("decompressing gzip pprof input")]
    Gzip(#[source] io::Error),
    /// There is nothing to read.
    #[error("empty input: not a pprof profile")]
    Empty,
    /// The input ends inside a field.
    #[error("truncated pprof input: {what} cut off at byte {offset}")]
    Truncated {
        /// The message being read.
        what: &'static str,
        /// Where the input ran out.
        offset: usize,
    },
    /// The protobuf encoding is broken.
    #[error("malformed pprof input: {what} at byte {offset}: {reason}")]
    Malformed {
        /// The message being read.
        what: &'static str,
        /// Where the bad field starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The first bytes are not the fields of a `profile.proto` message, so the rest is not
    /// read (or decompressed).
    #[error("not a pprof profile: {reason} at byte {offset}")]
    NotAProfile {
        /// Where the first field that cannot be a profile's starts (uncompressed).
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The (uncompressed) profile is larger than the limit the caller set.
    #[error(
        "the pprof input is larger than {limit} bytes{after}; raise the limit if the profile is \
         genuine"
    )]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
        /// ` once decompressed` for gzip input, or nothing.
        after: &'static str,
    },
    /// The protobuf is well formed but its contents do not make a profile.
    #[error("invalid pprof profile: {what} at byte {offset}: {detail}")]
    Invalid {
        /// The message being read.
        what: &'static str,
        /// Where the message starts.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

// ---------------------------------------------------------------------------------------
// Field numbers of profile.proto.

mod field {
    pub(super) const SAMPLE_TYPE: u32 = 1;
    pub(super) const SAMPLE: u32 = 2;
    pub(super) const MAPPING: u32 = 3;
    pub(super) const LOCATION: u32 = 4;
    pub(super) const FUNCTION: u32 = 5;
    pub(super) const STRING_TABLE: u32 = 6;
    pub(super) const TIME_NANOS: u32 = 9;
    pub(super) const DURATION_NANOS: u32 = 10;
    pub(super) const PERIOD_TYPE: u32 = 11;
    pub(super) const PERIOD: u32 = 12;
    pub(super) const DEFAULT_SAMPLE_TYPE: u32 = 14;

    pub(super) const VALUE_TYPE_TYPE: u32 = 1;
    pub(super) const VALUE_TYPE_UNIT: u32 = 2;

    pub(super) const SAMPLE_LOCATION_ID: u32 = 1;
    pub(super) const SAMPLE_VALUE: u32 = 2;
    pub(super) const SAMPLE_LABEL: u32 = 3;

    pub(super) const LABEL_KEY: u32 = 1;
    pub(super) const LABEL_STR: u32 = 2;
    pub(super) const LABEL_NUM: u32 = 3;

    pub(super) const MAPPING_ID: u32 = 1;
    pub(super) const MAPPING_MEMORY_START: u32 = 2;
    pub(super) const MAPPING_MEMORY_LIMIT: u32 = 3;
    pub(super) const MAPPING_FILE_OFFSET: u32 = 4;
    pub(super) const MAPPING_FILENAME: u32 = 5;
    pub(super) const MAPPING_BUILD_ID: u32 = 6;
    pub(super) const MAPPING_HAS_FUNCTIONS: u32 = 7;
    pub(super) const MAPPING_HAS_FILENAMES: u32 = 8;
    pub(super) const MAPPING_HAS_LINE_NUMBERS: u32 = 9;
    pub(super) const MAPPING_HAS_INLINE_FRAMES: u32 = 10;

    pub(super) const LOCATION_ID: u32 = 1;
    pub(super) const LOCATION_MAPPING_ID: u32 = 2;
    pub(super) const LOCATION_ADDRESS: u32 = 3;
    pub(super) const LOCATION_LINE: u32 = 4;

    pub(super) const LINE_FUNCTION_ID: u32 = 1;
    pub(super) const LINE_LINE: u32 = 2;

    pub(super) const FUNCTION_ID: u32 = 1;
    pub(super) const FUNCTION_NAME: u32 = 2;
    pub(super) const FUNCTION_SYSTEM_NAME: u32 = 3;
    pub(super) const FUNCTION_FILENAME: u32 = 4;
}

// ---------------------------------------------------------------------------------------
// Encoding.

/// Writes `profile` as a gzip-compressed pprof profile.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn encode(profile: &Profile, w: impl Write) -> io::Result<()> {
    let raw = encode_uncompressed(profile);
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&raw)?;
    gz.finish()?;
    Ok(())
}

/// The uncompressed `profile.proto` bytes of `profile` (what [`encode`] compresses).
#[must_use]
pub fn encode_uncompressed(profile: &Profile) -> Vec<u8> {
    Encoder::new(profile).run()
}

/// Writes an off-CPU profile and the CPU profile of the same capture as one gzip-compressed
/// pprof profile with three sample types, `off_cpu/nanoseconds` (the default),
/// `samples/count` and `cpu/nanoseconds`: every `(labels, stack)` of either profile is one
/// sample, with 0 where the other has none. [`decode_kind`] reads either back.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn encode_with_cpu(off_cpu: &Profile, cpu: &Profile, w: impl Write) -> io::Result<()> {
    let raw = encode_with_cpu_uncompressed(off_cpu, cpu);
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&raw)?;
    gz.finish()?;
    Ok(())
}

/// The uncompressed bytes of [`encode_with_cpu`].
#[must_use]
pub fn encode_with_cpu_uncompressed(off_cpu: &Profile, cpu: &Profile) -> Vec<u8> {
    // One frame and label table for both: the CPU stacks are interned into a copy of the
    // off-CPU profile, their counts kept beside it.
    let mut merged = off_cpu.clone();
    merged.meta.kind = ProfileKind::OffCpu;
    let mut cpu_rows: Vec<(LabelsId, Box<[FrameId]>, u64)> = Vec::new();
    for s in cpu.stacks() {
        let labels = merged.intern_labels(s.labels);
        let frames = s
            .frames
            .iter()
            .map(|&f| merged.intern_frame(cpu.frame(f)))
            .collect();
        cpu_rows.push((labels, frames, s.count));
    }
    let cpu_counts: HashMap<(&Labels, &[FrameId]), u64> = cpu_rows
        .iter()
        .map(|(l, f, c)| ((&merged.label_sets()[*l as usize], &f[..]), *c))
        .collect();
    let mut encoder = Encoder::new(&merged);
    encoder.cpu = Some(Companion {
        counts: cpu_counts,
        period_ns: cpu.meta.period_ns(),
    });
    encoder.run()
}

/// The CPU counts written beside an off-CPU profile's ([`encode_with_cpu`]).
struct Companion<'p> {
    counts: HashMap<(&'p Labels, &'p [FrameId]), u64>,
    period_ns: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum MappingKey {
    Kernel,
    Python,
    User {
        module: Option<Arc<str>>,
        build_id: Option<Arc<[u8]>>,
    },
}

struct MappingOut {
    filename: i64,
    build_id: i64,
    min: u64,
    max: u64,
    all_file_offsets: bool,
    has_functions: bool,
    has_filenames: bool,
    has_lines: bool,
    has_inline: bool,
}

struct LocationOut {
    mapping_id: u64,
    address: u64,
    /// `(function id, line)`, innermost first.
    lines: Vec<(u64, i64)>,
}

struct Encoder<'p> {
    profile: &'p Profile,
    strings: Vec<Arc<str>>,
    string_ids: HashMap<Arc<str>, i64>,
    mappings: Vec<MappingOut>,
    mapping_ids: HashMap<MappingKey, u64>,
    functions: Vec<(i64, i64)>,
    function_ids: HashMap<(Arc<str>, Option<Arc<str>>), u64>,
    locations: Vec<LocationOut>,
    location_ids: HashMap<Vec<FrameId>, u64>,
    /// CPU samples of the same capture, as second and third sample types.
    cpu: Option<Companion<'p>>,
}

/// The address pprof gets for a frame location, and whether it is a file offset.
fn address_of(location: &Location) -> (u64, bool) {
    match location {
        Location::Unknown => (0, false),
        Location::Kernel { addr } | Location::Virtual { addr } => (*addr, false),
        Location::File { offset, .. } => (*offset, true),
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

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

/// Splits a root-first stack into pprof locations: each real frame with the inlined frames
/// rootward-to-leafward after it. An inlined frame with no real frame of its own kind
/// rootward of it starts a location of its own.
fn inline_groups(profile: &Profile, frames: &[FrameId]) -> Vec<Vec<FrameId>> {
    let mut groups: Vec<Vec<FrameId>> = Vec::new();
    for &id in frames {
        let f = profile.frame(id);
        match groups.last_mut() {
            Some(g) if f.inlined && profile.frame(g[0]).kind == f.kind => g.push(id),
            _ => groups.push(vec![id]),
        }
    }
    groups
}

impl<'p> Encoder<'p> {
    fn new(profile: &'p Profile) -> Self {
        let mut e = Encoder {
            profile,
            strings: Vec::new(),
            string_ids: HashMap::new(),
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            cpu: None,
        };
        e.string("");
        e
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        let s: Arc<str> = s.into();
        self.strings.push(s.clone());
        self.string_ids.insert(s, i);
        i
    }

    fn mapping(&mut self, frame: &Frame, location: &Location) -> u64 {
        let key = match frame.kind {
            FrameKind::Kernel => MappingKey::Kernel,
            FrameKind::Python => MappingKey::Python,
            FrameKind::User => {
                let build_id = match location {
                    Location::File { build_id, .. } => build_id.clone(),
                    _ => None,
                };
                if frame.module.is_none() && build_id.is_none() {
                    return 0;
                }
                MappingKey::User {
                    module: frame.module.clone(),
                    build_id,
                }
            }
        };
        if let Some(&id) = self.mapping_ids.get(&key) {
            return id;
        }
        let (filename, build_id) = match &key {
            MappingKey::Kernel => (self.string(KERNEL_MAPPING), 0),
            MappingKey::Python => (self.string(PYTHON_MAPPING), 0),
            MappingKey::User { module, build_id } => (
                module.as_deref().map_or(0, |m| self.string(m)),
                build_id.as_deref().map_or(0, |b| self.string(&hex(b))),
            ),
        };
        self.mappings.push(MappingOut {
            filename,
            build_id,
            min: u64::MAX,
            max: 0,
            all_file_offsets: matches!(key, MappingKey::User { .. }),
            has_functions: false,
            has_filenames: false,
            has_lines: false,
            has_inline: false,
        });
        let id = self.mappings.len() as u64;
        self.mapping_ids.insert(key, id);
        id
    }

    /// The function of `frame`. An inlined frame with nothing to be inlined into (the
    /// outermost line of its location) keeps its inlined flag as folded's `_[i]` suffix.
    fn function(&mut self, frame: &Frame, outermost: bool) -> u64 {
        let name: Arc<str> = if frame.inlined && outermost && frame.kind == FrameKind::User {
            format!("{}{}", frame.name, INLINED_SUFFIX).into()
        } else {
            frame.name.clone()
        };
        let key = (name, frame.file.clone());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let name = self.string(&key.0);
        let file = frame.file.as_deref().map_or(0, |f| self.string(f));
        self.functions.push((name, file));
        let id = self.functions.len() as u64;
        self.function_ids.insert(key, id);
        id
    }

    /// The location of one inline group (root-first frame ids: the real frame, then the
    /// frames inlined into it).
    fn location(&mut self, group: &[FrameId]) -> u64 {
        if let Some(&id) = self.location_ids.get(group) {
            return id;
        }
        let profile = self.profile;
        let anchor = profile.frame(group[0]);
        let location = group
            .iter()
            .map(|&f| &profile.frame(f).location)
            .find(|l| **l != Location::Unknown)
            .unwrap_or(&Location::Unknown);
        let (address, is_offset) = address_of(location);
        let mapping_id = self.mapping(anchor, location);
        let lines: Vec<(u64, i64)> = group
            .iter()
            .rev()
            .map(|&f| {
                let frame = profile.frame(f);
                let outermost = f == group[0];
                (
                    self.function(frame, outermost),
                    i64::from(frame.line.unwrap_or(0)),
                )
            })
            .collect();
        if mapping_id != 0 {
            let m = &mut self.mappings[mapping_id as usize - 1];
            if address != 0 {
                m.min = m.min.min(address);
                m.max = m.max.max(address);
                m.all_file_offsets &= is_offset;
            }
            for &f in group {
                let frame = profile.frame(f);
                m.has_functions |= !frame.is_unnamed();
                m.has_filenames |= frame.file.is_some();
                m.has_lines |= frame.line.is_some();
            }
            m.has_inline |= group.len() > 1;
        }
        self.locations.push(LocationOut {
            mapping_id,
            address,
            lines,
        });
        let id = self.locations.len() as u64;
        self.location_ids.insert(group.to_vec(), id);
        id
    }

    /// Writes the CPU profile's two sample types, `samples/count` and `cpu/nanoseconds`,
    /// and returns the string id of `cpu` (the period type).
    fn cpu_sample_types(&mut self, out: &mut Writer, nanoseconds: i64) -> i64 {
        let samples = self.string("samples");
        let count = self.string("count");
        let cpu = self.string("cpu");
        for (t, u) in [(samples, count), (cpu, nanoseconds)] {
            out.message(field::SAMPLE_TYPE, |m| {
                m.i64(field::VALUE_TYPE_TYPE, t);
                m.i64(field::VALUE_TYPE_UNIT, u);
            });
        }
        cpu
    }

    fn run(mut self) -> Vec<u8> {
        let profile = self.profile;
        let mut out = Writer::default();
        let period = profile.meta.period_ns();

        // Off CPU, one sample type: the time waited (counts are microseconds).
        let off_cpu = profile.meta.kind == ProfileKind::OffCpu;
        let nanoseconds = self.string("nanoseconds");
        let companion = self.cpu.take();
        let (period_type, period) = if off_cpu {
            let t = self.string("off_cpu");
            out.message(field::SAMPLE_TYPE, |m| {
                m.i64(field::VALUE_TYPE_TYPE, t);
                m.i64(field::VALUE_TYPE_UNIT, nanoseconds);
            });
            if companion.is_some() {
                self.cpu_sample_types(&mut out, nanoseconds);
                // Readers show the off-CPU time unless asked for another type.
                out.i64(field::DEFAULT_SAMPLE_TYPE, t);
            }
            (t, 1000)
        } else {
            (self.cpu_sample_types(&mut out, nanoseconds), period)
        };

        let mut stacks: Vec<StackRef<'_>> = profile.stacks().collect();
        if let Some(c) = &companion {
            // Stacks only the CPU profile has, with no off-CPU time.
            let present: std::collections::HashSet<(&Labels, &[FrameId])> =
                stacks.iter().map(|s| (s.labels, s.frames)).collect();
            stacks.extend(c.counts.keys().filter(|k| !present.contains(*k)).map(
                |&(labels, frames)| StackRef {
                    labels,
                    frames,
                    count: 0,
                },
            ));
        }
        stacks.sort_by(|a, b| {
            a.labels.cmp(b.labels).then_with(|| {
                let fa = a.frames.iter().map(|&f| profile.frame(f));
                fa.cmp(b.frames.iter().map(|&f| profile.frame(f)))
            })
        });
        for s in stacks {
            let mut ids: Vec<u64> = inline_groups(profile, s.frames)
                .iter()
                .map(|g| self.location(g))
                .collect();
            ids.reverse();
            let labels: Vec<(i64, Result<i64, i64>)> = s
                .labels
                .iter()
                .map(|(k, v)| {
                    let key = self.string(k);
                    let num = if k == keys::PID || k == keys::TID {
                        // 0 goes as a string: pprof readers drop labels whose str and
                        // num are both unset, and zero is "unset" on the wire.
                        v.parse::<i64>().ok().filter(|&n| n != 0)
                    } else {
                        None
                    };
                    (key, num.ok_or_else(|| self.string(v)))
                })
                .collect();
            let ns = s.count.saturating_mul(period);
            out.message(field::SAMPLE, |m| {
                m.packed(field::SAMPLE_LOCATION_ID, ids);
                if let Some(c) = &companion {
                    let n = c.counts.get(&(s.labels, s.frames)).copied().unwrap_or(0);
                    m.packed(field::SAMPLE_VALUE, [ns, n, n.saturating_mul(c.period_ns)]);
                } else if off_cpu {
                    m.packed(field::SAMPLE_VALUE, [ns]);
                } else {
                    m.packed(field::SAMPLE_VALUE, [s.count, ns]);
                }
                for (key, value) in labels {
                    m.message(field::SAMPLE_LABEL, |l| {
                        l.i64(field::LABEL_KEY, key);
                        match value {
                            Ok(num) => {
                                l.i64(field::LABEL_NUM, num);
                            }
                            Err(str) => l.i64(field::LABEL_STR, str),
                        }
                    });
                }
            });
        }

        for (i, m) in self.mappings.iter().enumerate() {
            let (start, limit) = if m.min <= m.max {
                (m.min, m.max.saturating_add(1))
            } else {
                (0, 0)
            };
            out.message(field::MAPPING, |w| {
                w.u64(field::MAPPING_ID, i as u64 + 1);
                w.u64(field::MAPPING_MEMORY_START, start);
                w.u64(field::MAPPING_MEMORY_LIMIT, limit);
                if m.all_file_offsets {
                    w.u64(field::MAPPING_FILE_OFFSET, start);
                }
                w.i64(field::MAPPING_FILENAME, m.filename);
                w.i64(field::MAPPING_BUILD_ID, m.build_id);
                w.bool(field::MAPPING_HAS_FUNCTIONS, m.has_functions);
                w.bool(field::MAPPING_HAS_FILENAMES, m.has_filenames);
                w.bool(field::MAPPING_HAS_LINE_NUMBERS, m.has_lines);
                w.bool(field::MAPPING_HAS_INLINE_FRAMES, m.has_inline);
            });
        }
        for (i, l) in self.locations.iter().enumerate() {
            out.message(field::LOCATION, |w| {
                w.u64(field::LOCATION_ID, i as u64 + 1);
                w.u64(field::LOCATION_MAPPING_ID, l.mapping_id);
                w.u64(field::LOCATION_ADDRESS, l.address);
                for &(function, line) in &l.lines {
                    w.message(field::LOCATION_LINE, |ln| {
                        ln.u64(field::LINE_FUNCTION_ID, function);
                        ln.i64(field::LINE_LINE, line);
                    });
                }
            });
        }
        for (i, &(name, file)) in self.functions.iter().enumerate() {
            out.message(field::FUNCTION, |w| {
                w.u64(field::FUNCTION_ID, i as u64 + 1);
                w.i64(field::FUNCTION_NAME, name);
                w.i64(field::FUNCTION_SYSTEM_NAME, name);
                w.i64(field::FUNCTION_FILENAME, file);
            });
        }
        let meta = &profile.meta;
        out.u64(field::TIME_NANOS, meta.start_unix_ns);
        out.u64(field::DURATION_NANOS, meta.duration_ns);
        out.message(field::PERIOD_TYPE, |m| {
            m.i64(field::VALUE_TYPE_TYPE, period_type);
            m.i64(field::VALUE_TYPE_UNIT, nanoseconds);
        });
        out.u64(field::PERIOD, period);
        // The string table goes last, so a profile cut off anywhere is missing strings that
        // are referenced, and decoding it fails instead of yielding a smaller profile.
        for s in &self.strings {
            out.bytes(field::STRING_TABLE, s.as_bytes());
        }
        out.buf
    }
}

// ---------------------------------------------------------------------------------------
// Decoding.

#[derive(Default)]
struct RawMapping {
    start: u64,
    offset: u64,
    filename: u64,
    build_id: u64,
    at: usize,
}

#[derive(Default)]
struct RawLocation {
    mapping_id: u64,
    address: u64,
    /// `(function id, line)`, innermost first.
    lines: Vec<(u64, i64)>,
    at: usize,
}

#[derive(Default)]
struct RawFunction {
    name: u64,
    system_name: u64,
    filename: u64,
    at: usize,
}

#[derive(Default)]
struct RawLabel {
    key: u64,
    str: u64,
    num: i64,
    at: usize,
}

#[derive(Default)]
struct RawSample {
    location_ids: Vec<u64>,
    values: Vec<u64>,
    labels: Vec<RawLabel>,
    at: usize,
}

#[derive(Default)]
struct RawProfile {
    sample_types: Vec<(u64, u64, usize)>,
    samples: Vec<RawSample>,
    mappings: Vec<(u64, RawMapping)>,
    locations: Vec<(u64, RawLocation)>,
    functions: Vec<(u64, RawFunction)>,
    strings: Vec<(String, usize)>,
    time_nanos: u64,
    duration_nanos: u64,
    period_type: Option<(u64, u64, usize)>,
    period: u64,
}

/// The largest uncompressed profile [`decode`] reads: 1 GiB. [`decode_limited`] takes
/// another limit.
pub const DEFAULT_MAX_DECODED: u64 = 1 << 30;

/// How many (uncompressed) bytes are checked to be profile fields before the rest is read.
const PREFIX_LEN: usize = 4096;

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a pprof profile, gzip-compressed or not, into a [`Profile`], reading at most
/// [`DEFAULT_MAX_DECODED`] uncompressed bytes ([`decode_limited`]).
///
/// # Errors
/// As [`decode_limited`].
pub fn decode(r: impl Read) -> Result<Profile, PprofError> {
    decode_limited(r, DEFAULT_MAX_DECODED)
}

/// Reads a pprof profile, gzip-compressed or not, into a [`Profile`].
///
/// Stacks come back root first; the inlined `Line`s of a location become inlined frames;
/// frames in a `[kernel...]` mapping or named `..._[k]` are kernel frames; sample labels
/// become [`Labels`]. The count of a stack is its `samples/count` value, or its first value
/// when the profile has no such sample type. Samples with a count of zero are left
/// out; a negative count is an error (a `pprof -diff_base` profile is not a profile of
/// samples). The sampling frequency is derived from a `nanoseconds` period.
///
/// Input is bounded: the first bytes (4 KiB, after decompression) must read as
/// `profile.proto` fields before anything else is read or decompressed, so a gzip bomb or
/// a file of zeros is refused at once, and no more than `max_bytes` uncompressed bytes are
/// read ([`PprofError::TooLarge`] past them).
///
/// # Errors
/// A [`PprofError`] for input that is not a complete, consistent pprof profile.
pub fn decode_limited(r: impl Read, max_bytes: u64) -> Result<Profile, PprofError> {
    let data = read_bounded(r, max_bytes)?;
    let raw = parse_profile(&data)?;
    build_profile(&raw, None)
}

/// [`decode`] that reads the profile of `kind` out of a profile with several sample types
/// (one [`encode_with_cpu`] wrote): `off_cpu/nanoseconds` for [`ProfileKind::OffCpu`],
/// `samples/count` for [`ProfileKind::Cpu`].
///
/// # Errors
/// As [`decode_limited`], and [`PprofError::Invalid`] when there is no such sample type.
pub fn decode_kind(r: impl Read, kind: ProfileKind) -> Result<Profile, PprofError> {
    decode_kind_limited(r, Some(kind), DEFAULT_MAX_DECODED)
}

/// [`decode_kind`] reading at most `max_bytes` after decompression, as [`decode_limited`];
/// `None` reads what [`decode`] reads (the CPU samples when there are any).
///
/// # Errors
/// As [`decode_kind`] and [`decode_limited`].
pub fn decode_kind_limited(
    r: impl Read,
    kind: Option<ProfileKind>,
    max_bytes: u64,
) -> Result<Profile, PprofError> {
    let data = read_bounded(r, max_bytes)?;
    let raw = parse_profile(&data)?;
    build_profile(&raw, kind)
}

/// The uncompressed bytes of a pprof input, checked to start like a profile and to be at
/// most `max_bytes` long.
fn read_bounded(mut r: impl Read, max_bytes: u64) -> Result<Vec<u8>, PprofError> {
    let mut magic = Vec::with_capacity(2);
    (&mut r)
        .take(2)
        .read_to_end(&mut magic)
        .map_err(PprofError::Io)?;
    if magic.is_empty() {
        return Err(PprofError::Empty);
    }
    let input = (&magic[..]).chain(r);
    if magic == GZIP_MAGIC {
        read_checked(
            MultiGzDecoder::new(input),
            max_bytes,
            PprofError::Gzip,
            " once decompressed",
        )
    } else {
        read_checked(input, max_bytes, PprofError::Io, "")
    }
}

fn read_checked(
    mut r: impl Read,
    max_bytes: u64,
    err: fn(io::Error) -> PprofError,
    after: &'static str,
) -> Result<Vec<u8>, PprofError> {
    let mut data = Vec::with_capacity(PREFIX_LEN);
    (&mut r)
        .take(PREFIX_LEN as u64)
        .read_to_end(&mut data)
        .map_err(err)?;
    if data.is_empty() {
        return Err(PprofError::Empty);
    }
    check_prefix(&data)?;
    if read_capped(&mut r, max_bytes, &mut data).map_err(err)? {
        return Err(PprofError::TooLarge {
            limit: max_bytes,
            after,
        });
    }
    Ok(data)
}

/// Appends what `r` has to `data` until it ends or `data` would grow past `max`; returns
/// whether it would have. Capacity grows by at most what the limit leaves, so the buffer
/// never reserves much more than `max` bytes.
fn read_capped(r: &mut impl Read, max: u64, data: &mut Vec<u8>) -> io::Result<bool> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if data.len().saturating_add(n) > max {
            return Ok(true);
        }
        if data.capacity() - data.len() < n {
            let grow = data.len().max(n).min(max - data.len());
            data.reserve_exact(grow.max(n));
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// Whether `data`, the first bytes of an input, can start a pprof profile: gzip, or
/// `profile.proto` fields (checked as `check_prefix` does before decompressing).
#[must_use]
pub fn looks_like_pprof(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC) || (!data.is_empty() && check_prefix(data).is_ok())
}

/// Checks that `prefix` (the first bytes of an uncompressed profile, perhaps cut short)
/// reads as the fields of a `profile.proto` `Profile`: known field numbers with their wire
/// types, and one level down the same for the messages it holds, string table entries
/// UTF-8. A field running past the prefix ends the check, as far as it got.
fn check_prefix(prefix: &[u8]) -> Result<(), PprofError> {
    /// Top-level fields: (number, is length-delimited). `comment` (13) may be packed.
    fn top_level(field: u64, wire: u64) -> Option<Option<u64>> {
        match (field, wire) {
            // Messages whose fields are checked one level down: sample_type, sample,
            // mapping, location, function, period_type.
            (1..=5 | 11, 2) => Some(Some(field)),
            // string_table, comment (packed), doc_url.
            (6 | 13 | 15, 2) => Some(None),
            (7..=10 | 12..=14, 0) => Some(None),
            _ => None,
        }
    }
    let not = |offset, reason| PprofError::NotAProfile { offset, reason };
    let mut pos = 0;
    while pos < prefix.len() {
        let at = pos;
        let Some(key) = prefix_varint(prefix, &mut pos) else {
            return Ok(());
        };
        let (field, wire) = (key >> 3, key & 7);
        let Some(nested) = top_level(field, wire) else {
            return Err(not(at, "not a field of profile.proto"));
        };
        if wire == 0 {
            if prefix_varint(prefix, &mut pos).is_none() {
                return Ok(());
            }
            continue;
        }
        let Some(len) = prefix_varint(prefix, &mut pos) else {
            return Ok(());
        };
        let start = pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .unwrap_or(usize::MAX);
        let body = &prefix[start..end.min(prefix.len())];
        if nested.is_some() {
            check_message_prefix(body).map_err(|(off, reason)| not(start + off, reason))?;
        } else if field == 6
            && let Err(e) = std::str::from_utf8(body)
            && (e.error_len().is_some() || end <= prefix.len())
        {
            // A character cut by the end of the prefix is not an error.
            return Err(not(
                start + e.valid_up_to(),
                "string table entry is not UTF-8",
            ));
        }
        if end >= prefix.len() {
            return Ok(());
        }
        pos = end;
    }
    Ok(())
}

/// The fields of a message of a profile (a sample, mapping, location, function or value
/// type), as far as `body` has them: numbers 1 to 15, varints or length-delimited.
fn check_message_prefix(body: &[u8]) -> Result<(), (usize, &'static str)> {
    let mut pos = 0;
    while pos < body.len() {
        let at = pos;
        let Some(key) = prefix_varint(body, &mut pos) else {
            return Ok(());
        };
        let (field, wire) = (key >> 3, key & 7);
        if !(1..=15).contains(&field) {
            return Err((at, "not a field of a profile.proto message"));
        }
        match wire {
            0 => {
                if prefix_varint(body, &mut pos).is_none() {
                    return Ok(());
                }
            }
            2 => {
                let Some(len) = prefix_varint(body, &mut pos) else {
                    return Ok(());
                };
                match usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) {
                    Some(end) if end < body.len() => pos = end,
                    _ => return Ok(()),
                }
            }
            _ => return Err((at, "a wire type profile.proto does not use")),
        }
    }
    Ok(())
}

/// A varint at `*pos` of `data`, or `None` when `data` ends inside it or it is longer than
/// ten bytes.
fn prefix_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let &b = data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn invalid(what: &'static str, offset: usize, detail: impl Into<String>) -> PprofError {
    PprofError::Invalid {
        what,
        offset,
        detail: detail.into(),
    }
}

fn parse_value_type(b: &[u8], start: usize) -> Result<(u64, u64), PprofError> {
    const WHAT: &str = "value type";
    let mut r = Reader::new(b, start, WHAT);
    let (mut t, mut u) = (0, 0);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::VALUE_TYPE_TYPE => t = v.int(WHAT, at)?,
            field::VALUE_TYPE_UNIT => u = v.int(WHAT, at)?,
            _ => {}
        }
    }
    Ok((t, u))
}

fn parse_sample(b: &[u8], start: usize) -> Result<RawSample, PprofError> {
    const WHAT: &str = "sample";
    const LABEL: &str = "sample label";
    let mut s = RawSample {
        at: start,
        ..RawSample::default()
    };
    let mut r = Reader::new(b, start, WHAT);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::SAMPLE_LOCATION_ID => v.repeated(WHAT, &mut s.location_ids)?,
            field::SAMPLE_VALUE => v.repeated(WHAT, &mut s.values)?,
            field::SAMPLE_LABEL => {
                let (lb, lstart) = v.bytes(WHAT, at)?;
                let mut label = RawLabel {
                    at: lstart,
                    ..RawLabel::default()
                };
                let mut lr = Reader::new(lb, lstart, LABEL);
                while let Some((lf, lv, lat)) = lr.next()? {
                    match lf as u32 {
                        field::LABEL_KEY => label.key = lv.int(LABEL, lat)?,
                        field::LABEL_STR => label.str = lv.int(LABEL, lat)?,
                        field::LABEL_NUM => label.num = lv.int(LABEL, lat)? as i64,
                        _ => {}
                    }
                }
                s.labels.push(label);
            }
            _ => {}
        }
    }
    Ok(s)
}

fn parse_mapping(b: &[u8], start: usize) -> Result<(u64, RawMapping), PprofError> {
    const WHAT: &str = "mapping";
    let mut m = RawMapping {
        at: start,
        ..RawMapping::default()
    };
    let mut id = 0;
    let mut r = Reader::new(b, start, WHAT);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::MAPPING_ID => id = v.int(WHAT, at)?,
            field::MAPPING_MEMORY_START => m.start = v.int(WHAT, at)?,
            field::MAPPING_FILE_OFFSET => m.offset = v.int(WHAT, at)?,
            field::MAPPING_FILENAME => m.filename = v.int(WHAT, at)?,
            field::MAPPING_BUILD_ID => m.build_id = v.int(WHAT, at)?,
            _ => {}
        }
    }
    Ok((id, m))
}

fn parse_location(b: &[u8], start: usize) -> Result<(u64, RawLocation), PprofError> {
    const WHAT: &str = "location";
    const LINE: &str = "location line";
    let mut l = RawLocation {
        at: start,
        ..RawLocation::default()
    };
    let mut id = 0;
    let mut r = Reader::new(b, start, WHAT);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::LOCATION_ID => id = v.int(WHAT, at)?,
            field::LOCATION_MAPPING_ID => l.mapping_id = v.int(WHAT, at)?,
            field::LOCATION_ADDRESS => l.address = v.int(WHAT, at)?,
            field::LOCATION_LINE => {
                let (lb, lstart) = v.bytes(WHAT, at)?;
                let (mut function, mut line) = (0, 0);
                let mut lr = Reader::new(lb, lstart, LINE);
                while let Some((lf, lv, lat)) = lr.next()? {
                    match lf as u32 {
                        field::LINE_FUNCTION_ID => function = lv.int(LINE, lat)?,
                        field::LINE_LINE => line = lv.int(LINE, lat)? as i64,
                        _ => {}
                    }
                }
                l.lines.push((function, line));
            }
            _ => {}
        }
    }
    Ok((id, l))
}

fn parse_function(b: &[u8], start: usize) -> Result<(u64, RawFunction), PprofError> {
    const WHAT: &str = "function";
    let mut func = RawFunction {
        at: start,
        ..RawFunction::default()
    };
    let mut id = 0;
    let mut r = Reader::new(b, start, WHAT);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::FUNCTION_ID => id = v.int(WHAT, at)?,
            field::FUNCTION_NAME => func.name = v.int(WHAT, at)?,
            field::FUNCTION_SYSTEM_NAME => func.system_name = v.int(WHAT, at)?,
            field::FUNCTION_FILENAME => func.filename = v.int(WHAT, at)?,
            _ => {}
        }
    }
    Ok((id, func))
}

fn parse_profile(data: &[u8]) -> Result<RawProfile, PprofError> {
    const WHAT: &str = "profile";
    let mut p = RawProfile::default();
    let mut r = Reader::new(data, 0, WHAT);
    while let Some((f, v, at)) = r.next()? {
        match f as u32 {
            field::SAMPLE_TYPE => {
                let (b, start) = v.bytes(WHAT, at)?;
                let (t, u) = parse_value_type(b, start)?;
                p.sample_types.push((t, u, start));
            }
            field::SAMPLE => {
                let (b, start) = v.bytes(WHAT, at)?;
                p.samples.push(parse_sample(b, start)?);
            }
            field::MAPPING => {
                let (b, start) = v.bytes(WHAT, at)?;
                p.mappings.push(parse_mapping(b, start)?);
            }
            field::LOCATION => {
                let (b, start) = v.bytes(WHAT, at)?;
                p.locations.push(parse_location(b, start)?);
            }
            field::FUNCTION => {
                let (b, start) = v.bytes(WHAT, at)?;
                p.functions.push(parse_function(b, start)?);
            }
            field::STRING_TABLE => {
                let (b, start) = v.bytes(WHAT, at)?;
                let s = std::str::from_utf8(b)
                    .map_err(|_| invalid("string table", start, "string is not utf-8"))?;
                p.strings.push((s.to_owned(), start));
            }
            field::TIME_NANOS => p.time_nanos = v.int(WHAT, at)?,
            field::DURATION_NANOS => p.duration_nanos = v.int(WHAT, at)?,
            field::PERIOD_TYPE => {
                let (b, start) = v.bytes(WHAT, at)?;
                let (t, u) = parse_value_type(b, start)?;
                p.period_type = Some((t, u, start));
            }
            field::PERIOD => p.period = v.int(WHAT, at)?,
            _ => {}
        }
    }
    Ok(p)
}

/// Looks up an id in a list of `(id, item)`, building the index once.
fn index<'a, T>(
    items: &'a [(u64, T)],
    what: &'static str,
    at: impl Fn(&T) -> usize,
) -> Result<HashMap<u64, &'a T>, PprofError> {
    let mut map = HashMap::with_capacity(items.len());
    for (id, item) in items {
        if *id == 0 {
            return Err(invalid(what, at(item), "id 0"));
        }
        if map.insert(*id, item).is_some() {
            return Err(invalid(what, at(item), format!("duplicate id {id}")));
        }
    }
    Ok(map)
}

fn build_profile(raw: &RawProfile, want: Option<ProfileKind>) -> Result<Profile, PprofError> {
    let strings = &raw.strings;
    match strings.first() {
        Some((s, _)) if s.is_empty() => {}
        Some((_, at)) => {
            return Err(invalid(
                "string table",
                *at,
                "the first string is not the empty string",
            ));
        }
        None => {
            return Err(invalid(
                "profile",
                0,
                "no string table (not a pprof profile, or truncated)",
            ));
        }
    }
    let string = |i: u64, what: &'static str, at: usize| -> Result<&str, PprofError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .map(|(s, _)| s.as_str())
            .ok_or_else(|| {
                invalid(
                    what,
                    at,
                    format!(
                        "string index {i} is past the end of the string table ({} strings)",
                        strings.len()
                    ),
                )
            })
    };

    if raw.sample_types.is_empty() && !raw.samples.is_empty() {
        return Err(invalid("profile", 0, "samples but no sample types"));
    }
    // `samples/count` is a CPU profile's count; without it, `off_cpu/nanoseconds` makes an
    // off-CPU profile (counted in microseconds); otherwise the first type is the count.
    // `decode_kind` asks for one of them.
    let mut samples_index = None;
    let mut off_cpu_index = None;
    for (i, &(t, u, at)) in raw.sample_types.iter().enumerate() {
        let (t, u) = (string(t, "sample type", at)?, string(u, "sample type", at)?);
        if t == "samples" && u == "count" && samples_index.is_none() {
            samples_index = Some(i);
        }
        if t == "off_cpu" && u == "nanoseconds" && off_cpu_index.is_none() {
            off_cpu_index = Some(i);
        }
    }
    let (count_index, off_cpu) = match want {
        None => match (samples_index, off_cpu_index) {
            (Some(i), _) => (i, None),
            (None, Some(i)) => (i, Some(i)),
            (None, None) => (0, None),
        },
        Some(ProfileKind::Cpu) => (
            samples_index.ok_or_else(|| invalid("profile", 0, "no `samples/count` sample type"))?,
            None,
        ),
        Some(ProfileKind::OffCpu) => {
            let i = off_cpu_index
                .ok_or_else(|| invalid("profile", 0, "no `off_cpu/nanoseconds` sample type"))?;
            (i, Some(i))
        }
    };

    let mut meta = ProfileMeta {
        start_unix_ns: raw.time_nanos,
        duration_ns: raw.duration_nanos,
        frequency_hz: 0,
        kind: if off_cpu.is_some() {
            ProfileKind::OffCpu
        } else {
            ProfileKind::Cpu
        },
    };
    // A sampling period says the frequency; an off-CPU profile has none, nor the CPU
    // samples written beside one (`encode_with_cpu`: the period is the off-CPU type's).
    if let Some((t, u, at)) = raw.period_type.filter(|_| off_cpu.is_none()) {
        let period = raw.period as i64;
        if string(u, "period type", at)? == "nanoseconds"
            && string(t, "period type", at)? != "off_cpu"
            && period > 0
        {
            let hz = (1e9 / period as f64).round();
            if hz >= 1.0 && hz <= f64::from(u32::MAX) {
                meta.frequency_hz = hz as u32;
            }
        }
    }

    let mappings = index(&raw.mappings, "mapping", |m| m.at)?;
    let functions = index(&raw.functions, "function", |f| f.at)?;
    // Only checked: ids must be unique and non-zero.
    index(&raw.locations, "location", |l| l.at)?;

    let mut profile = Profile::new(meta);

    // The frames of each location, root first, interned once.
    let mut location_frames: HashMap<u64, Vec<FrameId>> = HashMap::new();
    for (id, loc) in &raw.locations {
        let frames = location_to_frames(loc, &mappings, &functions, &string)?;
        let ids = frames.iter().map(|f| profile.intern_frame(f)).collect();
        location_frames.insert(*id, ids);
    }

    for s in &raw.samples {
        if s.values.len() != raw.sample_types.len() {
            return Err(invalid(
                "sample",
                s.at,
                format!(
                    "{} values for {} sample types",
                    s.values.len(),
                    raw.sample_types.len()
                ),
            ));
        }
        let mut count = s.values[count_index] as i64;
        if off_cpu.is_some() {
            // Nanoseconds to the microseconds an off-CPU profile counts.
            count = count.saturating_add(500) / 1000;
        }
        if count < 0 {
            return Err(invalid(
                "sample",
                s.at,
                format!(
                    "negative sample count {count} (a `pprof -diff_base` profile? compare the \
                     two profiles themselves)"
                ),
            ));
        }
        let mut labels = Labels::new();
        for l in &s.labels {
            let key = string(l.key, "sample label", l.at)?;
            if key.is_empty() {
                continue;
            }
            // As pprof does: a label with neither a string nor a number is no label.
            if l.str != 0 {
                labels.set(key, string(l.str, "sample label", l.at)?);
            } else if l.num != 0 {
                labels.set(key, l.num.to_string());
            }
        }
        let mut stack: Vec<FrameId> = Vec::new();
        for id in s.location_ids.iter().rev() {
            let frames = location_frames.get(id).ok_or_else(|| {
                invalid("sample", s.at, format!("refers to missing location {id}"))
            })?;
            stack.extend_from_slice(frames);
        }
        if count == 0 {
            continue;
        }
        if profile.total().checked_add(count as u64).is_none() {
            return Err(invalid(
                "sample",
                s.at,
                "the sample counts add up to more than 2^64 - 1",
            ));
        }
        let labels = profile.intern_labels(&labels);
        profile.add_ids(labels, stack.into_boxed_slice(), count as u64);
    }
    Ok(profile)
}

/// The frames of one location, root first: the outermost (last) line is the real frame,
/// the lines before it were inlined into it.
fn location_to_frames<'s>(
    loc: &RawLocation,
    mappings: &HashMap<u64, &RawMapping>,
    functions: &HashMap<u64, &RawFunction>,
    string: &impl Fn(u64, &'static str, usize) -> Result<&'s str, PprofError>,
) -> Result<Vec<Frame>, PprofError> {
    let mapping = if loc.mapping_id == 0 {
        None
    } else {
        Some(*mappings.get(&loc.mapping_id).ok_or_else(|| {
            invalid(
                "location",
                loc.at,
                format!("refers to missing mapping {}", loc.mapping_id),
            )
        })?)
    };
    let (filename, build_id) = match mapping {
        Some(m) => (
            string(m.filename, "mapping", m.at)?,
            string(m.build_id, "mapping", m.at)?,
        ),
        None => ("", ""),
    };
    let kernel_mapping = filename.starts_with("[kernel") || filename == "[vmlinux]";
    let python_mapping = filename == PYTHON_MAPPING;
    let location = if loc.address == 0 || python_mapping {
        Location::Unknown
    } else if kernel_mapping {
        Location::Kernel { addr: loc.address }
    } else if let Some(m) = mapping.filter(|_| !filename.is_empty() || !build_id.is_empty()) {
        let build_id: Option<Arc<[u8]>> = if build_id.is_empty() {
            None
        } else {
            Some(
                unhex(build_id)
                    .unwrap_or_else(|| build_id.as_bytes().to_vec())
                    .into(),
            )
        };
        let offset = loc
            .address
            .checked_sub(m.start)
            .and_then(|d| d.checked_add(m.offset))
            .unwrap_or(loc.address);
        Location::File { build_id, offset }
    } else {
        Location::Virtual { addr: loc.address }
    };
    let module: Option<Arc<str>> =
        if filename.is_empty() || filename == KERNEL_MAPPING || python_mapping {
            None
        } else {
            Some(filename.into())
        };

    if loc.lines.is_empty() {
        // No symbols: name the frame after its binary and offset, as the symbolizer does.
        let name = match (&location, filename.rsplit('/').next()) {
            (Location::File { offset, .. }, Some(base)) if !base.is_empty() => {
                format!("{base}+0x{offset:x}")
            }
            _ => UNKNOWN.to_owned(),
        };
        let kind = if kernel_mapping {
            FrameKind::Kernel
        } else if python_mapping {
            FrameKind::Python
        } else {
            FrameKind::User
        };
        let mut frame = Frame::named(name, kind);
        frame.module = module;
        frame.location = location;
        return Ok(vec![frame]);
    }

    let mut frames = Vec::with_capacity(loc.lines.len());
    // Lines are innermost first; frames are root first.
    for (i, &(function_id, line)) in loc.lines.iter().enumerate().rev() {
        let function = if function_id == 0 {
            None
        } else {
            Some(*functions.get(&function_id).ok_or_else(|| {
                invalid(
                    "location",
                    loc.at,
                    format!("refers to missing function {function_id}"),
                )
            })?)
        };
        let (mut name, file) = match function {
            Some(f) => {
                let name = string(f.name, "function", f.at)?;
                let system = string(f.system_name, "function", f.at)?;
                let file = string(f.filename, "function", f.at)?;
                (if name.is_empty() { system } else { name }, file)
            }
            None => ("", ""),
        };
        if name.is_empty() {
            name = UNKNOWN;
        }
        let mut kind = if kernel_mapping {
            FrameKind::Kernel
        } else if python_mapping {
            FrameKind::Python
        } else {
            FrameKind::User
        };
        let mut inlined = i + 1 < loc.lines.len();
        match Suffix::split(name) {
            (n, Suffix::Kernel) => (name, kind) = (n, FrameKind::Kernel),
            (n, Suffix::Inlined) => (name, inlined) = (n, true),
            (n, Suffix::Python) => (name, kind) = (n, FrameKind::Python),
            (_, Suffix::None) => {}
        }
        frames.push(Frame {
            name: name.into(),
            kind,
            inlined,
            module: module.clone(),
            file: (!file.is_empty()).then(|| file.into()),
            line: u32::try_from(line).ok().filter(|&l| l > 0),
            location: location.clone(),
        });
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// An off-CPU profile written with the CPU profile of the same run carries both:
    /// `decode` reads the CPU samples (as before), `decode_kind` either; a stack only one
    /// of them has comes back in that one only.
    #[test]
    fn off_cpu_and_cpu_profiles_share_one_pprof() {
        let meta = ProfileMeta {
            start_unix_ns: 5,
            duration_ns: 2_000_000_000,
            frequency_hz: 100,
            ..ProfileMeta::default()
        };
        let labels = Labels::new().with(keys::COMM, "w");
        let main = Frame::named("main", FrameKind::User);
        let wait = Frame::named("wait", FrameKind::User);
        let work = Frame::named("work", FrameKind::User);
        let mut off = Profile::new(ProfileMeta {
            kind: ProfileKind::OffCpu,
            ..meta.clone()
        });
        off.add(&labels, &[main.clone(), wait.clone()], 1500);
        off.add(&labels, &[main.clone(), work.clone()], 20);
        let mut cpu = Profile::new(meta);
        cpu.add(&labels, &[main.clone(), work.clone()], 70);
        let bytes = encode_with_cpu_uncompressed(&off, &cpu);
        let folded_of = |p: &Profile| folded::lines(p, folded::Options::default());

        let back_off = decode_kind(bytes.as_slice(), ProfileKind::OffCpu).expect("off-CPU");
        assert_eq!(back_off.meta.kind, ProfileKind::OffCpu);
        assert_eq!(folded_of(&back_off), folded_of(&off));
        let back_cpu = decode_kind(bytes.as_slice(), ProfileKind::Cpu).expect("CPU");
        assert_eq!(back_cpu.meta.kind, ProfileKind::Cpu);
        assert_eq!(
            back_cpu.meta.frequency_hz, 0,
            "the period is the off-CPU type's"
        );
        assert_eq!(folded_of(&back_cpu), folded_of(&cpu));
        assert_eq!(
            folded_of(&decode(bytes.as_slice()).expect("decodes")),
            folded_of(&cpu)
        );
        // A plain CPU profile has no off-CPU samples to ask for.
        let plain = encode_uncompressed(&cpu);
        assert!(decode_kind(plain.as_slice(), ProfileKind::OffCpu).is_err());
    }

    /// An off-CPU profile goes out as one `off_cpu/nanoseconds` sample type (its counts are
    /// microseconds) and comes back as an off-CPU profile with the same counts.
    #[test]
    fn off_cpu_profiles_round_trip_as_off_cpu_nanoseconds() {
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: 5,
            duration_ns: 2_000_000_000,
            frequency_hz: 99,
            kind: ProfileKind::OffCpu,
        });
        let labels = Labels::new().with(keys::COMM, "w");
        p.add(
            &labels,
            &[
                Frame::named("main", FrameKind::User),
                Frame::named("sleep", FrameKind::User),
            ],
            1500,
        );
        p.add(
            &labels,
            &[
                Frame::named("main", FrameKind::User),
                Frame::named("read", FrameKind::User),
            ],
            7,
        );
        let bytes = encode_uncompressed(&p);
        let back = decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back.meta.kind, ProfileKind::OffCpu);
        assert_eq!(back.meta.frequency_hz, 0);
        assert_eq!(back.total(), 1507);
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            raw.contains("off_cpu") && !raw.contains("samples"),
            "{raw:?}"
        );
    }
    use crate::folded::{self, Root};

    const PERIOD_NS: u64 = 10_000_000; // 100 Hz

    fn file_frame(name: &str, offset: u64, line: u32) -> Frame {
        let mut f = Frame::named(name, FrameKind::User);
        f.module = Some("/usr/bin/demo".into());
        f.file = Some("src/main.rs".into());
        f.line = Some(line);
        f.location = Location::File {
            build_id: Some(Arc::from(&[0xde, 0xad, 0xbe, 0xef][..])),
            offset,
        };
        f
    }

    fn demo_labels() -> (Labels, Labels) {
        let l1 = Labels::new()
            .with(keys::PID, "42")
            .with(keys::TID, "43")
            .with(keys::COMM, "demo")
            .with(keys::THREAD, "worker");
        let l2 = l1
            .clone()
            .with(keys::TID, "44")
            .with(keys::THREAD, "worker-2")
            .with("container", "c1");
        (l1, l2)
    }

    /// main;work;fn_a 60, main;work;fn_a;mix_[i] 10 (mix inlined into fn_a),
    /// main;work;fn_b;asm_sysvec_apic_timer_interrupt_[k] 30.
    fn demo_profile() -> Profile {
        let (l1, l2) = demo_labels();
        let main = file_frame("main", 0x1000, 10);
        let work = file_frame("work", 0x1100, 20);
        let fn_a = file_frame("fn_a", 0x1200, 30);
        let fn_b = file_frame("fn_b", 0x1300, 40);
        let mut mix = file_frame("mix", 0x1200, 5);
        mix.inlined = true;
        mix.file = Some("src/mix.rs".into());
        let mut irq = Frame::named("asm_sysvec_apic_timer_interrupt", FrameKind::Kernel);
        irq.location = Location::Kernel {
            addr: 0xffff_ffff_8100_0000,
        };
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: 1_700_000_000_000_000_000,
            duration_ns: 1_000_000_000,
            frequency_hz: 100,
            ..ProfileMeta::default()
        });
        p.add(&l1, &[main.clone(), work.clone(), fn_a.clone()], 60);
        p.add(&l1, &[main.clone(), work.clone(), fn_a, mix], 10);
        p.add(&l2, &[main, work, fn_b, irq], 30);
        p
    }

    /// A profile with everything the round trip has to keep: two-deep inline chains, an
    /// inlined frame at the root, frames without module or location, virtual addresses,
    /// a library without build-id, string and numeric labels.
    fn rich_profile() -> Profile {
        let mut p = demo_profile();
        let (l1, _) = demo_labels();
        let main = file_frame("main", 0x1000, 10);
        let mut inner = file_frame("inner", 0x1000, 7);
        inner.inlined = true;
        let mut innermost = file_frame("innermost", 0x1000, 3);
        innermost.inlined = true;
        let mut memcpy = Frame::named("__memcpy_avx_unaligned", FrameKind::User);
        memcpy.module = Some("/lib/x86_64-linux-gnu/libc.so.6".into());
        memcpy.location = Location::File {
            build_id: None,
            offset: 0x9_8765,
        };
        let mut jit = Frame::named("[unknown]", FrameKind::User);
        jit.location = Location::Virtual { addr: 0x7f00_0000 };
        let unknown = Frame::unknown(FrameKind::User);
        let mut lonely = Frame::named("lonely", FrameKind::User);
        lonely.inlined = true;
        let k1 = Frame::named("do_syscall_64", FrameKind::Kernel);
        let k2 = Frame::named("entry_SYSCALL_64", FrameKind::Kernel);
        let other = Labels::new()
            .with(keys::PID, "7")
            .with(keys::COMM, "we;ird name")
            .with("note", "x=1 y");
        p.add(&l1, &[main.clone(), inner, innermost, memcpy], 5);
        p.add(&other, &[jit, unknown.clone()], 4);
        p.add(&other, &[lonely, main], 3);
        p.add(&Labels::new(), &[unknown, k2, k1], 2);
        let idle = Labels::new()
            .with(keys::PID, "0")
            .with(keys::TID, "0")
            .with(keys::COMM, "swapper/0");
        p.add(&idle, &[Frame::named("default_idle", FrameKind::Kernel)], 9);
        p
    }

    fn by_labels(p: &Profile) -> BTreeMap<(Labels, Vec<Frame>), u64> {
        let mut out = BTreeMap::new();
        for s in p.stacks() {
            let frames = s.frames.iter().map(|&f| p.frame(f).clone()).collect();
            *out.entry((s.labels.clone(), frames)).or_insert(0) += s.count;
        }
        out
    }

    fn round_trip(p: &Profile) -> Profile {
        let mut buf = Vec::new();
        encode(p, &mut buf).unwrap();
        assert_eq!(&buf[..2], &[0x1f, 0x8b], "gzip magic");
        decode(&buf[..]).unwrap()
    }

    #[test]
    fn round_trip_keeps_stacks_counts_labels_and_inline_chains() {
        for p in [demo_profile(), rich_profile()] {
            let back = round_trip(&p);
            let opts = folded::Options::default().with_root(Root::CommPid);
            assert_eq!(folded::lines(&back, opts), folded::lines(&p, opts));
            assert_eq!(back.total(), p.total());
            assert_eq!(back.meta, p.meta);
            let labelled = |p: &Profile| -> BTreeMap<String, u64> {
                by_labels(p)
                    .into_iter()
                    .map(|((l, frames), c)| {
                        let names: Vec<String> =
                            frames.iter().map(|f| f.folded_name().to_string()).collect();
                        (format!("{l:?} {}", names.join(";")), c)
                    })
                    .collect()
            };
            assert_eq!(labelled(&back), labelled(&p));
        }
        // The demo profile's frames come back exactly: names, modules, files, lines and
        // locations (its inlined frames share their caller's address).
        let p = demo_profile();
        assert_eq!(by_labels(&round_trip(&p)), by_labels(&p));
        let folded = folded::lines(
            &round_trip(&p),
            folded::Options::default().with_root(Root::CommPid),
        );
        assert_eq!(folded.get("demo-42;main;work;fn_a;mix_[i]"), Some(&10));
        assert_eq!(
            folded.get("demo-42;main;work;fn_b;asm_sysvec_apic_timer_interrupt_[k]"),
            Some(&30)
        );
    }

    /// Folded text → pprof → folded text gives back the same lines, for pseudo-random
    /// stacks over names with kernel and inlined suffixes, recursion and inlined roots.
    #[test]
    fn folded_to_pprof_to_folded_keeps_every_stack_and_count() {
        const NAMES: [&str; 9] = [
            "main",
            "work",
            "fn_a",
            "fn_b",
            "mix_[i]",
            "inner_[i]",
            "[unknown]",
            "do_syscall_64_[k]",
            "libc.so.6+0x1f00",
        ];
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for _ in 0..2_000 {
            let depth = 1 + next(8);
            let stack: Vec<&str> = (0..depth).map(|_| NAMES[next(9) as usize]).collect();
            *want.entry(stack.join(";")).or_insert(0) += 1 + next(1_000);
        }
        let text: String = want.iter().map(|(s, c)| format!("{s} {c}\n")).collect();
        let parsed = folded::parse(text.as_bytes()).unwrap();
        let back = round_trip(&parsed);
        let got = folded::lines(&back, folded::Options::default().with_root(Root::None));
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
        assert_eq!(back.total(), want.values().sum::<u64>());
    }

    #[test]
    fn uncompressed_input_decodes_too_and_output_is_deterministic() {
        let p = rich_profile();
        let raw = encode_uncompressed(&p);
        assert_eq!(raw, encode_uncompressed(&p));
        // The same samples added in another order (other interning order) give the same bytes.
        let mut q = Profile::new(p.meta.clone());
        let mut stacks: Vec<_> = by_labels(&p).into_iter().collect();
        stacks.reverse();
        for ((l, frames), c) in stacks {
            q.add(&l, &frames, c);
        }
        assert_eq!(raw, encode_uncompressed(&q));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(&p, &mut a).unwrap();
        encode(&q, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            by_labels(&decode(&raw[..]).unwrap()),
            by_labels(&round_trip(&p))
        );
    }

    #[test]
    fn python_frames_round_trip_with_their_file_and_line() {
        let (l1, _) = demo_labels();
        let py = |name: &str, file: &str, line: u32| Frame {
            file: Some(file.into()),
            line: Some(line),
            ..Frame::named(name, FrameKind::Python)
        };
        let main = file_frame("main", 0x1000, 10);
        let work = py("work (app.py)", "/srv/app.py", 12);
        let mut p = Profile::default();
        p.add(
            &l1,
            &[
                main.clone(),
                work.clone(),
                py("fn_a (app.py)", "/srv/app.py", 30),
            ],
            7,
        );
        p.add(
            &l1,
            &[main, work, py("fn_a (app.py)", "/srv/app.py", 31)],
            3,
        );
        assert_eq!(by_labels(&round_trip(&p)), by_labels(&p));
        let back = round_trip(&p);
        assert!(back.frames().iter().any(|f| f.kind == FrameKind::Python));
        // In a `[python]` mapping, so readers tell them apart; folded marks them `_[j]`.
        let raw = encode_uncompressed(&p);
        assert!(
            raw.windows(PYTHON_MAPPING.len())
                .any(|w| w == PYTHON_MAPPING.as_bytes())
        );
        let lines = folded::lines(&back, folded::Options::default());
        assert_eq!(
            lines.get("demo;main;work (app.py)_[j];fn_a (app.py)_[j]"),
            Some(&10),
            "{lines:?}"
        );
    }

    #[test]
    fn empty_profile_round_trips() {
        let p = Profile::default();
        let back = round_trip(&p);
        assert!(back.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let raw = encode_uncompressed(&rich_profile());
        for cut in 0..raw.len() {
            assert!(
                decode(&raw[..cut]).is_err(),
                "a profile cut at {cut} of {} bytes decoded",
                raw.len()
            );
        }
        let mut gz = Vec::new();
        encode(&rich_profile(), &mut gz).unwrap();
        for cut in 0..gz.len() {
            assert!(decode(&gz[..cut]).is_err(), "gzip cut at {cut} decoded");
        }
        let err = decode(&raw[..raw.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("byte"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let err = decode(&b"this is not a pprof profile\n"[..]).unwrap_err();
        assert!(err.to_string().contains("at byte"), "{err}");
        assert!(matches!(decode(&b""[..]), Err(PprofError::Empty)));
        assert!(matches!(
            decode(&[0x1f, 0x8b, 8, 0, 1, 2, 3][..]),
            Err(PprofError::Gzip(_))
        ));
        // Pseudo-random bytes, and the real profile with bytes flipped: errors or profiles,
        // but no panics.
        let raw = encode_uncompressed(&rich_profile());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 200) as usize;
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode(&junk[..]);
            let mut flipped = raw.clone();
            let i = (next() as usize) % flipped.len();
            flipped[i] = next() as u8;
            let _ = decode(&flipped[..]);
        }
    }

    /// `members` copies of one gzip member of `block`, after one member of `head`: gzip
    /// input that decompresses to `head` and then `members * block.len()` bytes.
    fn bomb(head: &[u8], block: &[u8], members: usize) -> Vec<u8> {
        let gz = |data: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let member = gz(block);
        let mut out = gz(head);
        for _ in 0..members {
            out.extend_from_slice(&member);
        }
        out
    }

    #[test]
    fn a_gzip_bomb_of_zeros_is_refused_before_it_is_decompressed() {
        // 4 GiB of zeros in about 4 MiB, as the probe made it.
        let data = bomb(b"", &vec![0u8; 1 << 20], 4096);
        assert!(data.len() < 8 << 20, "{}", data.len());
        let start = std::time::Instant::now();
        let err = decode(&data[..]).unwrap_err();
        assert!(
            matches!(err, PprofError::NotAProfile { offset: 0, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "not a pprof profile: not a field of profile.proto at byte 0"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn decompressed_input_is_capped() {
        // A string table entry that claims 4 GiB: the first bytes are a profile's, so
        // only the limit stops it.
        let mut head = vec![0x32, 0x00, 0x32];
        let mut len = 4u64 << 30;
        while len >= 0x80 {
            head.push((len as u8) | 0x80);
            len >>= 7;
        }
        head.push(len as u8);
        let data = bomb(&head, &vec![b'a'; 1 << 20], 64);
        let err = decode_limited(&data[..], 8 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the pprof input is larger than 8388608 bytes once decompressed; raise the limit \
             if the profile is genuine"
        );
        // Uncompressed input is capped the same way.
        let mut raw = head.clone();
        raw.extend(std::iter::repeat_n(b'a', 9 << 20));
        let err = decode_limited(&raw[..], 8 << 20).unwrap_err();
        assert!(
            matches!(err, PprofError::TooLarge { after: "", .. }),
            "{err}"
        );
        // Under the limit the same input is read to its end (and found truncated).
        let err = decode_limited(&data[..], 128 << 20).unwrap_err();
        assert!(matches!(err, PprofError::Truncated { .. }), "{err}");
        // Ember's own profiles pass the first-bytes check.
        let p = rich_profile();
        assert_eq!(round_trip(&p).total(), p.total());
    }

    #[test]
    fn negative_and_overflowing_counts_are_errors() {
        let profile_with = |values: &[u64]| {
            let mut w = Writer::default();
            w.message(field::SAMPLE_TYPE, |m| {
                m.i64(field::VALUE_TYPE_TYPE, 1);
                m.i64(field::VALUE_TYPE_UNIT, 2);
            });
            for &v in values {
                w.message(field::SAMPLE, |m| {
                    m.packed(field::SAMPLE_VALUE, [v]);
                });
            }
            w.bytes(field::STRING_TABLE, b"");
            w.bytes(field::STRING_TABLE, b"samples");
            w.bytes(field::STRING_TABLE, b"count");
            w.buf
        };
        assert_eq!(decode(&profile_with(&[5, 7])[..]).unwrap().total(), 12);
        let err = decode(&profile_with(&[5, (-3i64) as u64])[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative sample count -3"), "{err}");
        let half = 1u64 << 63;
        // i64::MAX twice overflows nothing in u64; three times does.
        let m = i64::MAX as u64;
        assert_eq!(decode(&profile_with(&[m, m])[..]).unwrap().total(), 2 * m);
        let err = decode(&profile_with(&[m, m, m])[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("add up to more than 2^64 - 1"), "{err}");
        // 2^63 is negative as an int64.
        assert!(decode(&profile_with(&[half])[..]).is_err());
    }

    #[test]
    fn inconsistent_references_are_named() {
        // A sample pointing at location 9, which does not exist.
        let mut w = Writer::default();
        w.message(field::SAMPLE_TYPE, |m| {
            m.i64(field::VALUE_TYPE_TYPE, 1);
            m.i64(field::VALUE_TYPE_UNIT, 2);
        });
        w.message(field::SAMPLE, |m| {
            m.packed(field::SAMPLE_LOCATION_ID, [9]);
            m.packed(field::SAMPLE_VALUE, [1]);
        });
        for s in ["", "samples", "count"] {
            w.bytes(field::STRING_TABLE, s.as_bytes());
        }
        let err = decode(&w.buf[..]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid pprof profile: sample at byte 8: refers to missing location 9"
        );
        // A string index past the table.
        let mut w = Writer::default();
        w.message(field::SAMPLE_TYPE, |m| m.i64(field::VALUE_TYPE_TYPE, 5));
        w.bytes(field::STRING_TABLE, b"");
        let err = decode(&w.buf[..]).unwrap_err().to_string();
        assert!(err.contains("string index 5 is past the end"), "{err}");
    }

    #[test]
    fn other_producers_unpacked_fields_and_suffixes_are_read() {
        // Unpacked repeated fields, a `_[k]` suffix, no mapping, values without samples/count.
        let mut w = Writer::default();
        w.message(field::SAMPLE_TYPE, |m| {
            m.i64(field::VALUE_TYPE_TYPE, 1);
            m.i64(field::VALUE_TYPE_UNIT, 2);
        });
        w.message(field::SAMPLE, |m| {
            m.u64(field::SAMPLE_LOCATION_ID, 2);
            m.u64(field::SAMPLE_LOCATION_ID, 1);
            m.u64(field::SAMPLE_VALUE, 5);
        });
        w.message(field::LOCATION, |m| {
            m.u64(field::LOCATION_ID, 1);
            m.message(field::LOCATION_LINE, |l| l.u64(field::LINE_FUNCTION_ID, 1));
        });
        w.message(field::LOCATION, |m| {
            m.u64(field::LOCATION_ID, 2);
            m.message(field::LOCATION_LINE, |l| l.u64(field::LINE_FUNCTION_ID, 2));
        });
        w.message(field::FUNCTION, |m| {
            m.u64(field::FUNCTION_ID, 1);
            m.i64(field::FUNCTION_NAME, 3);
        });
        w.message(field::FUNCTION, |m| {
            m.u64(field::FUNCTION_ID, 2);
            m.i64(field::FUNCTION_SYSTEM_NAME, 4);
        });
        for s in ["", "alloc_space", "bytes", "main", "schedule_[k]"] {
            w.bytes(field::STRING_TABLE, s.as_bytes());
        }
        let p = decode(&w.buf[..]).unwrap();
        let lines = folded::lines(&p, folded::Options::default().with_root(Root::None));
        assert_eq!(
            lines.into_iter().collect::<Vec<_>>(),
            [("main;schedule_[k]".to_owned(), 5)]
        );
    }

    // -----------------------------------------------------------------------------------
    // The real reader: go tool pprof.

    fn go_binary() -> Option<std::path::PathBuf> {
        let on_path = std::process::Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if on_path {
            return Some("go".into());
        }
        let debian = std::path::Path::new("/usr/lib/go-1.19/bin/go");
        debian.exists().then(|| debian.to_path_buf())
    }

    fn pprof(go: &std::path::Path, args: &[&str], file: &std::path::Path) -> String {
        let home = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(go)
            .arg("tool")
            .arg("pprof")
            .args(args)
            .arg(file)
            // Keep pprof from looking for binaries or writing to the real home.
            .env("HOME", home.path())
            .env("PPROF_BINARY_PATH", home.path())
            .env("PPROF_TMPDIR", home.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "go tool pprof {args:?} failed: {stderr}"
        );
        eprintln!("--- go tool pprof {args:?}\n{stdout}{stderr}");
        stdout
    }

    /// `700ms`, `0.70s`, `1s`, `300ms` ... in nanoseconds.
    fn duration_ns(v: &str) -> u64 {
        let split = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        let (num, unit) = v.split_at(split);
        let num: f64 = num.parse().unwrap_or_else(|_| panic!("not a value: {v}"));
        let scale = match unit {
            "" | "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "mins" => 60e9,
            "hrs" => 3600e9,
            _ => panic!("unknown unit in {v}"),
        };
        (num * scale).round() as u64
    }

    /// Parses `-raw`: stacks (root first, inlined lines expanded) with their two values,
    /// and the label lines of each sample.
    fn parse_raw(out: &str) -> BTreeMap<String, (u64, u64, String)> {
        let mut samples: Vec<(u64, u64, Vec<u64>, String)> = Vec::new();
        let mut locations: HashMap<u64, Vec<String>> = HashMap::new();
        let mut section = "";
        let mut last_location = 0;
        for line in out.lines() {
            match line.trim() {
                "Samples:" => section = "samples",
                "Locations" => section = "locations",
                "Mappings" => section = "mappings",
                _ => {}
            }
            match section {
                "samples" => {
                    if let Some((values, ids)) = line.split_once(": ") {
                        let values: Vec<u64> = values
                            .split_whitespace()
                            .filter_map(|v| v.parse().ok())
                            .collect();
                        if values.len() == 2 {
                            let ids = ids.split_whitespace().map(|i| i.parse().unwrap()).collect();
                            samples.push((values[0], values[1], ids, String::new()));
                            continue;
                        }
                    }
                    if line.starts_with("                ")
                        && let Some(s) = samples.last_mut()
                    {
                        s.3.push_str(line.trim());
                        s.3.push(' ');
                    }
                }
                "locations" if line.contains(" s=") => {
                    // `     1: 0x1200 M=1 mix src/mix.rs:5 s=0` or a continuation line.
                    let mut words = line.split_whitespace().peekable();
                    if line.starts_with("             ") {
                        // Continuation: `name file:line s=0`.
                    } else {
                        last_location =
                            words.next().unwrap().trim_end_matches(':').parse().unwrap();
                        words.next(); // address
                        if words.peek().is_some_and(|w| w.starts_with("M=")) {
                            words.next();
                        }
                    }
                    let name = words.next().unwrap().to_owned();
                    locations.entry(last_location).or_default().push(name);
                }
                _ => {}
            }
        }
        let mut out = BTreeMap::new();
        for (count, cpu, ids, labels) in samples {
            let mut names: Vec<&str> = Vec::new();
            for id in ids.iter().rev() {
                names.extend(locations[id].iter().rev().map(String::as_str));
            }
            out.insert(names.join(";"), (count, cpu, labels));
        }
        out
    }

    /// Parses `-top`: name → (flat, cum) in nanoseconds.
    fn parse_top(out: &str) -> BTreeMap<String, (u64, u64)> {
        let mut rows = BTreeMap::new();
        let mut in_table = false;
        for line in out.lines() {
            if line.trim_start().starts_with("flat  flat%") {
                in_table = true;
                continue;
            }
            if !in_table {
                continue;
            }
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 6 {
                let name = cols[5..].join(" ");
                let name = name.trim_end_matches(" (inline)").to_owned();
                rows.insert(name, (duration_ns(cols[0]), duration_ns(cols[3])));
            }
        }
        rows
    }

    /// Parses `-traces`: leaf-first names joined root first → (value ns, label lines).
    fn parse_traces(out: &str) -> Vec<(String, u64, String)> {
        let mut traces = Vec::new();
        let mut current: Option<(Vec<String>, u64, String)> = None;
        let mut flush = |c: &mut Option<(Vec<String>, u64, String)>| {
            if let Some((mut names, v, labels)) = c.take()
                && !names.is_empty()
            {
                names.reverse();
                traces.push((names.join(";"), v, labels));
            }
        };
        for line in out.lines() {
            if line.starts_with("-----------+") {
                flush(&mut current);
                current = Some((Vec::new(), 0, String::new()));
                continue;
            }
            let Some(c) = current.as_mut() else { continue };
            if line.len() > 13 && line.get(10..13) == Some(":  ") {
                c.2.push_str(line.trim());
                c.2.push(' ');
            } else if line.len() > 13 && line.get(10..13) == Some("   ") {
                let value = line[..10].trim();
                if !value.is_empty() {
                    c.1 = duration_ns(value);
                }
                let name = line[13..].trim_end_matches(" (inline)").to_owned();
                c.0.push(name);
            }
        }
        flush(&mut current);
        traces
    }

    #[test]
    fn go_tool_pprof_reads_what_we_write() {
        let Some(go) = go_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but neither `go` nor /usr/lib/go-1.19/bin/go exists"
            );
            eprintln!(
                "!!!!! SKIPPING go_tool_pprof_reads_what_we_write: no `go` on PATH and no \
                 /usr/lib/go-1.19/bin/go; install golang-go to run it !!!!!"
            );
            return;
        };
        let mut file = tempfile::Builder::new()
            .suffix(".pb.gz")
            .tempfile()
            .unwrap();
        encode(&demo_profile(), file.as_file_mut()).unwrap();
        let path = file.path().to_owned();

        let raw_text = pprof(&go, &["-raw"], &path);
        // The binary's mapping: file name, build-id, and functions, files, lines and inline
        // frames all present.
        assert!(
            raw_text.contains("/usr/bin/demo deadbeef [FN][FL][LN][IN]"),
            "{raw_text}"
        );
        let raw = parse_raw(&raw_text);

        // A binary without symbols claims no functions, so pprof may symbolize it itself.
        let mut stripped = Frame::named("libz.so.1+0x10", FrameKind::User);
        stripped.module = Some("/lib/libz.so.1".into());
        stripped.location = Location::File {
            build_id: None,
            offset: 0x10,
        };
        let mut p = Profile::default();
        p.add(&Labels::new(), &[stripped], 1);
        let mut bare = tempfile::Builder::new()
            .suffix(".pb.gz")
            .tempfile()
            .unwrap();
        encode(&p, bare.as_file_mut()).unwrap();
        let bare_raw = pprof(&go, &["-raw"], bare.path());
        let mapping = bare_raw
            .lines()
            .find(|l| l.contains("/lib/libz.so.1"))
            .unwrap_or_else(|| panic!("no libz mapping in {bare_raw}"));
        assert!(!mapping.contains("[FN]"), "{mapping}");
        let want = [
            ("main;work;fn_a", 60),
            ("main;work;fn_a;mix", 10),
            ("main;work;fn_b;asm_sysvec_apic_timer_interrupt", 30),
        ];
        assert_eq!(raw.len(), want.len(), "{raw:?}");
        for (stack, count) in want {
            let (c, cpu, labels) = raw
                .get(stack)
                .unwrap_or_else(|| panic!("{stack} in {raw:?}"));
            assert_eq!((*c, *cpu), (count, count * PERIOD_NS), "{stack}");
            assert!(labels.contains("comm:[demo]"), "{labels}");
            assert!(labels.contains("pid:[42]"), "{labels}");
        }
        assert!(
            raw["main;work;fn_b;asm_sysvec_apic_timer_interrupt"]
                .2
                .contains("container:[c1]")
        );

        let top = parse_top(&pprof(&go, &["-top", "-nodecount=20"], &path));
        let ms = |n: u64| n * PERIOD_NS;
        assert_eq!(top["fn_a"], (ms(60), ms(70)), "{top:?}");
        assert_eq!(top["mix"], (ms(10), ms(10)), "{top:?}");
        assert_eq!(top["fn_b"], (0, ms(30)), "{top:?}");
        assert_eq!(top["asm_sysvec_apic_timer_interrupt"], (ms(30), ms(30)));
        assert_eq!(top["main"], (0, ms(100)), "{top:?}");
        assert_eq!(top["work"], (0, ms(100)), "{top:?}");

        let traces = parse_traces(&pprof(&go, &["-traces"], &path));
        let mut got: BTreeMap<&str, u64> = BTreeMap::new();
        for (stack, v, labels) in &traces {
            *got.entry(stack).or_insert(0) += v;
            assert!(labels.contains("comm:  demo"), "{labels}");
        }
        let want: BTreeMap<&str, u64> = want.iter().map(|&(s, c)| (s, ms(c))).collect();
        assert_eq!(got, want, "{traces:?}");
    }
}
