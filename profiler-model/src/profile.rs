//! The profile: interned frames and label sets, and a count per distinct stack.

use std::collections::HashMap;

use crate::{Frame, FrameKind, Labels};

/// Index of a frame in [`Profile::frames`].
pub type FrameId = u32;
/// Index of a label set in [`Profile::label_sets`].
pub type LabelsId = u32;

/// Facts about how a profile was taken.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileMeta {
    /// Start of the capture, nanoseconds since the Unix epoch (0 if unknown).
    pub start_unix_ns: u64,
    /// Length of the capture in nanoseconds (0 if unknown).
    pub duration_ns: u64,
    /// Sampling frequency (0 if unknown).
    pub frequency_hz: u32,
    /// What the counts measure: CPU samples, or microseconds off CPU.
    pub kind: ProfileKind,
}

/// What a profile's counts measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// CPU samples: each count is one sample, [`ProfileMeta::period_ns`] of CPU time.
    #[default]
    Cpu,
    /// Time off CPU: each count is one microsecond a thread spent switched out (blocked
    /// or waiting to run), charged to the stack it left the CPU in.
    OffCpu,
}

impl ProfileKind {
    /// Every kind, in the order the API and the UI list them.
    pub const ALL: [ProfileKind; 2] = [ProfileKind::Cpu, ProfileKind::OffCpu];

    /// The name used by `type=` in the API, `--type` on the command line and the store.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::OffCpu => "off-cpu",
        }
    }

    /// What one count is, for flame graph tooltips and folded headers.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "samples",
            ProfileKind::OffCpu => "µs",
        }
    }

    /// The kind named `name` (see [`ProfileKind::name`]).
    ///
    /// # Errors
    /// When `name` is not a kind; the message lists the kinds.
    pub fn parse(name: &str) -> Result<ProfileKind, String> {
        ProfileKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("unknown profile type `{name}`: use `cpu` or `off-cpu`"))
    }
}

impl std::fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ProfileMeta {
    /// Nanoseconds one count stands for: of CPU time for a CPU profile (0 if the
    /// frequency is unknown), 1,000 (a microsecond waited) for an off-CPU profile.
    #[must_use]
    pub fn period_ns(&self) -> u64 {
        if self.kind == ProfileKind::OffCpu {
            1000
        } else if self.frequency_hz == 0 {
            0
        } else {
            1_000_000_000 / u64::from(self.frequency_hz)
        }
    }
}

/// One distinct stack of a profile, as [`Profile::stacks`] yields it.
#[derive(Clone, Copy, Debug)]
pub struct StackRef<'a> {
    /// The label set of the samples.
    pub labels: &'a Labels,
    /// Frame ids, root first; resolve them with [`Profile::frame`].
    pub frames: &'a [FrameId],
    /// How many samples had this stack and these labels.
    pub count: u64,
}

/// A CPU profile: sample counts per distinct `(labels, stack)`.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// How the profile was taken.
    pub meta: ProfileMeta,
    frames: Vec<Frame>,
    frame_ids: HashMap<Frame, FrameId>,
    label_sets: Vec<Labels>,
    label_ids: HashMap<Labels, LabelsId>,
    counts: HashMap<(LabelsId, Box<[FrameId]>), u64>,
    total: u64,
}

impl Profile {
    /// An empty profile.
    #[must_use]
    pub fn new(meta: ProfileMeta) -> Self {
        Profile {
            meta,
            ..Profile::default()
        }
    }

    /// Interns `frame`, returning its id.
    pub fn intern_frame(&mut self, frame: &Frame) -> FrameId {
        if let Some(&id) = self.frame_ids.get(frame) {
            return id;
        }
        let id = FrameId::try_from(self.frames.len()).expect("fewer than 2^32 distinct frames");
        self.frames.push(frame.clone());
        self.frame_ids.insert(frame.clone(), id);
        id
    }

    /// Interns `labels`, returning their id.
    pub fn intern_labels(&mut self, labels: &Labels) -> LabelsId {
        if let Some(&id) = self.label_ids.get(labels) {
            return id;
        }
        let id = LabelsId::try_from(self.label_sets.len()).expect("fewer than 2^32 label sets");
        self.label_sets.push(labels.clone());
        self.label_ids.insert(labels.clone(), id);
        id
    }

    /// Adds `count` samples of `stack` (root first) with `labels`.
    pub fn add(&mut self, labels: &Labels, stack: &[Frame], count: u64) {
        let labels = self.intern_labels(labels);
        let ids: Box<[FrameId]> = stack.iter().map(|f| self.intern_frame(f)).collect();
        self.add_ids(labels, ids, count);
    }

    /// Adds `count` samples of a stack of already-interned frame ids (root first).
    ///
    /// # Panics
    /// If an id was not returned by this profile's `intern_*` calls.
    pub fn add_ids(&mut self, labels: LabelsId, frames: Box<[FrameId]>, count: u64) {
        assert!(
            (labels as usize) < self.label_sets.len(),
            "unknown labels id"
        );
        assert!(
            frames.iter().all(|&f| (f as usize) < self.frames.len()),
            "unknown frame id"
        );
        if count == 0 {
            return;
        }
        *self.counts.entry((labels, frames)).or_insert(0) += count;
        self.total += count;
    }

    /// Adds every sample of `other` to this profile. Metadata is widened to cover both.
    pub fn merge(&mut self, other: &Profile) {
        let frame_map: Vec<FrameId> = other.frames.iter().map(|f| self.intern_frame(f)).collect();
        let label_map: Vec<LabelsId> = other
            .label_sets
            .iter()
            .map(|l| self.intern_labels(l))
            .collect();
        for ((l, frames), &count) in &other.counts {
            let frames: Box<[FrameId]> = frames.iter().map(|&f| frame_map[f as usize]).collect();
            self.add_ids(label_map[*l as usize], frames, count);
        }
        self.merge_meta(&other.meta);
    }

    fn merge_meta(&mut self, other: &ProfileMeta) {
        let m = &mut self.meta;
        if m.start_unix_ns == 0 && m.duration_ns == 0 {
            *m = other.clone();
            return;
        }
        if other.start_unix_ns == 0 && other.duration_ns == 0 {
            return;
        }
        let end = (m.start_unix_ns + m.duration_ns).max(other.start_unix_ns + other.duration_ns);
        m.start_unix_ns = m.start_unix_ns.min(other.start_unix_ns);
        m.duration_ns = end - m.start_unix_ns;
        if m.frequency_hz == 0 {
            m.frequency_hz = other.frequency_hz;
        }
    }

    /// A new profile with only the stacks whose labels satisfy `keep`.
    #[must_use]
    pub fn filter_labels(&self, mut keep: impl FnMut(&Labels) -> bool) -> Profile {
        let mut out = Profile::new(self.meta.clone());
        for s in self.stacks() {
            if keep(s.labels) {
                let labels = out.intern_labels(s.labels);
                let frames: Box<[FrameId]> = s
                    .frames
                    .iter()
                    .map(|&f| out.intern_frame(&self.frames[f as usize]))
                    .collect();
                out.add_ids(labels, frames, s.count);
            }
        }
        out
    }

    /// The profile without the kernel's idle task (pid 0).
    #[must_use]
    pub fn without_idle(&self) -> Profile {
        self.filter_labels(|l| !l.is_idle())
    }

    /// The profile without kernel frames: every stack keeps its samples, and a stack of
    /// kernel frames only keeps no frames (so its CPU time stays visible).
    #[must_use]
    pub fn without_kernel(&self) -> Profile {
        let mut out = Profile::new(self.meta.clone());
        for s in self.stacks() {
            let labels = out.intern_labels(s.labels);
            let frames: Box<[FrameId]> = s
                .frames
                .iter()
                .map(|&f| &self.frames[f as usize])
                .filter(|f| f.kind == FrameKind::User)
                .map(|f| out.intern_frame(f))
                .collect();
            out.add_ids(labels, frames, s.count);
        }
        out
    }

    /// The frame with id `id`.
    ///
    /// # Panics
    /// If `id` is not a frame id of this profile.
    #[must_use]
    pub fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id as usize]
    }

    /// All interned frames, indexed by [`FrameId`].
    #[must_use]
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// All interned label sets, indexed by [`LabelsId`].
    #[must_use]
    pub fn label_sets(&self) -> &[Labels] {
        &self.label_sets
    }

    /// Every distinct `(labels, stack)` with its count, in no particular order.
    pub fn stacks(&self) -> impl Iterator<Item = StackRef<'_>> {
        self.counts.iter().map(|((l, frames), &count)| StackRef {
            labels: &self.label_sets[*l as usize],
            frames,
            count,
        })
    }

    /// Number of distinct `(labels, stack)` pairs.
    #[must_use]
    pub fn stack_count(&self) -> usize {
        self.counts.len()
    }

    /// Total number of samples.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the profile has no samples.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| Frame::named(*n, FrameKind::User))
            .collect()
    }

    #[test]
    fn equal_stacks_are_counted_together_and_frames_interned_once() {
        let l = Labels::new().with("pid", "7");
        let mut p = Profile::default();
        p.add(&l, &stack(&["main", "work", "fn_a"]), 3);
        p.add(&l, &stack(&["main", "work", "fn_a"]), 4);
        p.add(&l, &stack(&["main", "work", "fn_b"]), 2);
        assert_eq!(p.total(), 9);
        assert_eq!(p.stack_count(), 2);
        assert_eq!(p.frames().len(), 4);
    }

    #[test]
    fn merge_reinterns_and_adds_counts() {
        let l = Labels::new().with("pid", "1");
        let mut a = Profile::default();
        a.add(&l, &stack(&["main", "x"]), 1);
        let mut b = Profile::default();
        b.add(&l, &stack(&["main", "y"]), 2);
        b.add(&l, &stack(&["main", "x"]), 5);
        a.merge(&b);
        assert_eq!(a.total(), 8);
        assert_eq!(a.stack_count(), 2);
        let x = a
            .stacks()
            .find(|s| &*a.frame(s.frames[1]).name == "x")
            .expect("x is there");
        assert_eq!(x.count, 6);
    }

    #[test]
    fn idle_is_filtered_out_on_request() {
        let mut p = Profile::default();
        p.add(&Labels::new().with("pid", "0"), &stack(&["swapper"]), 10);
        p.add(&Labels::new().with("pid", "5"), &stack(&["main"]), 3);
        let q = p.without_idle();
        assert_eq!(q.total(), 3);
        assert_eq!(p.total(), 13);
    }

    #[test]
    fn kernel_frames_go_and_their_samples_stay() {
        let mut p = Profile::default();
        let l = Labels::new().with("pid", "5");
        let irq = Frame::named("irq", FrameKind::Kernel);
        p.add(&l, &[Frame::named("main", FrameKind::User), irq.clone()], 4);
        p.add(&l, &stack(&["main"]), 6);
        p.add(&l, &[irq], 1);
        let q = p.without_kernel();
        assert_eq!(q.total(), 11);
        assert!(q.frames().iter().all(|f| f.kind == FrameKind::User));
        let counts: Vec<(usize, u64)> = q.stacks().map(|s| (s.frames.len(), s.count)).collect();
        assert!(
            counts.contains(&(1, 10)) && counts.contains(&(0, 1)),
            "{counts:?}"
        );
    }

    #[test]
    fn meta_widens_on_merge() {
        let mut a = Profile::new(ProfileMeta {
            start_unix_ns: 100,
            duration_ns: 50,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        let b = Profile::new(ProfileMeta {
            start_unix_ns: 120,
            duration_ns: 100,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        a.merge(&b);
        assert_eq!(a.meta.start_unix_ns, 100);
        assert_eq!(a.meta.duration_ns, 120);
    }
}
