//! Stage 2, **aggregate** (and the call into stage 3, symbolize): turns the raw samples of
//! each drain into a [`Profile`] with names and labels.
//!
//! Symbolization happens here, at every drain, because user addresses only mean something
//! while the process's mappings can still be read. Each distinct stack of a drain is
//! symbolized once, however many threads share it.

mod python;

use std::collections::HashMap;
use std::sync::Arc;

use profiler_common::Stat;
use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileKind, ProfileMeta, keys};
use symbolizer::Symbolizer;

use profiler_sampler::procinfo::ProcessTable;
use profiler_sampler::{CaptureFeed, PythonProcs, RawSample, StackStatus};

/// Counters of what aggregation saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AggregateStats {
    /// Samples added.
    pub samples: u64,
    /// Samples whose user or kernel stack was lost (collision, full map).
    pub stacks_lost: u64,
    /// Samples whose user stack was truncated.
    pub stacks_truncated: u64,
    /// Samples the kernel could not record at all (in `samples` too).
    pub unrecorded: u64,
    /// Samples taken inside `execve`, whose user part is the one [`EXEC_FRAME`].
    pub in_exec: u64,
    /// Samples added without symbolizing their stacks, because symbolization was
    /// abandoned ([`Aggregator::abandon_when`]; in `samples` too).
    pub unsymbolized: u64,
    /// Microseconds off CPU added to the off-CPU profile.
    pub off_cpu_us: u64,
}

/// Builds a profile out of drains.
pub(crate) struct Aggregator {
    symbolizer: Symbolizer,
    processes: ProcessTable,
    profile: Profile,
    /// Off-CPU time (samples flagged [`RawSample::off_cpu`]), in microseconds; its meta
    /// follows the CPU profile's but for the kind.
    off_cpu: Profile,
    kernel: bool,
    stats: AggregateStats,
    /// Captures of processes announced by the sampler (`sample/events.rs`).
    captures: Option<CaptureFeed>,
    /// Processes captured since the last `forget_exited`, to forget once they exit.
    captured: std::collections::BTreeSet<u32>,
    /// Processes found gone at the last `forget_exited`, forgotten at the next.
    dying: std::collections::BTreeSet<u32>,
    /// Asked before each stack is symbolized: `true` abandons symbolization for good.
    abandon: Option<Box<dyn Fn() -> bool>>,
    /// Symbolization was abandoned: stacks are added as [`UNSYMBOLIZED_FRAME`] from now on.
    abandoned: bool,
    /// The CPython processes whose Python frames the sampler walks, to name them.
    python: Option<Arc<PythonProcs>>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The frame under which samples the full counts map dropped are stored: they have no
/// process, thread or stack, only a count.
pub(crate) const COUNTS_FULL_FRAME: &str = "[lost: counts map full]";

/// The frame that stands for a stack left unsymbolized because the run was stopping
/// ([`Aggregator::abandon_when`]): the sample keeps its process and thread labels and its
/// count, so shares stay true, but not its functions.
pub(crate) const UNSYMBOLIZED_FRAME: &str = "[unsymbolized: stopping]";

/// The process name (`comm`) of the stacks of samples no count map holds.
pub(crate) const LOST_COMM: &str = "[lost]";

/// The frame that stands for samples no count map holds.
fn unrecorded_frame(reason: Stat) -> &'static str {
    match reason {
        Stat::CountsFull => COUNTS_FULL_FRAME,
        Stat::NoControl => "[lost: no control block]",
        _ => "[lost: not recorded]",
    }
}

/// The one user frame of a sample taken inside `execve`: its user registers and stack
/// belong to the image the exec is replacing, whose mappings are gone (or going) by the
/// time the process is symbolized; walked or named against the new image they would be
/// garbage, or worse, plausible wrong names.
pub(crate) const EXEC_FRAME: &str = "[exec]";

/// `meta` for the off-CPU profile of the same capture.
fn off_cpu_meta(meta: &ProfileMeta) -> ProfileMeta {
    ProfileMeta {
        kind: ProfileKind::OffCpu,
        ..meta.clone()
    }
}

/// `kernel` (root first) without the leaf frames of the BPF program that took it and of
/// the tracepoint that ran it (`bpf_prog_<tag>_<name>`, `bpf_trace_run4`,
/// `__bpf_trace_sched_switch`): an off-CPU stack ends in `__schedule`.
fn without_tracing_frames(kernel: &[Frame]) -> &[Frame] {
    let keep = kernel
        .iter()
        .rposition(|f| {
            let name = f.name.as_ref();
            !(name.starts_with("bpf_prog_")
                || name.starts_with("bpf_trace_run")
                || name.starts_with("__bpf_trace_"))
        })
        .map_or(0, |i| i + 1);
    &kernel[..keep]
}

/// Whether a kernel stack (root first) is inside `execve`/`execveat`: every user-space exec
/// enters through `do_execveat_common` from the `execve` system calls.
fn in_exec(kernel: &[Frame]) -> bool {
    kernel.iter().any(|f| {
        let name = f.name.as_ref();
        name.starts_with("do_execveat_common") || name.contains("sys_execve")
    })
}

fn lost_frame(errno: i32, kind: FrameKind) -> Frame {
    let what = if errno == -profiler_common::EEXIST {
        "[lost: stack map collision]"
    } else {
        "[lost: stack not recorded]"
    };
    Frame::named(what, kind)
}

impl Aggregator {
    /// A new aggregator; `kernel` says whether kernel frames are kept.
    #[must_use]
    pub(crate) fn new(symbolizer: Symbolizer, meta: ProfileMeta, kernel: bool) -> Self {
        Aggregator {
            symbolizer,
            processes: ProcessTable::new(),
            off_cpu: Profile::new(off_cpu_meta(&meta)),
            profile: Profile::new(meta),
            kernel,
            stats: AggregateStats::default(),
            captures: None,
            captured: std::collections::BTreeSet::new(),
            dying: std::collections::BTreeSet::new(),
            abandon: None,
            abandoned: false,
            python: None,
        }
    }

    /// Names the samples' Python frames with `procs` and splices them into their native
    /// stacks (see `python.rs`).
    pub(crate) fn follow_python(&mut self, procs: Arc<PythonProcs>) {
        self.python = Some(procs);
    }

    /// Asks `abandon` before each stack is symbolized; once it answers `true`, this and
    /// every later stack is added as one [`UNSYMBOLIZED_FRAME`] (with its labels and
    /// count) instead of being symbolized. Symbolizing a new large binary takes seconds;
    /// this is how a stop request is honoured within one stack's symbolization.
    pub(crate) fn abandon_when(&mut self, abandon: impl Fn() -> bool + 'static) {
        self.abandon = Some(Box::new(abandon));
    }

    /// Whether symbolization is (now) abandoned.
    fn abandoning(&mut self) -> bool {
        if !self.abandoned && self.abandon.as_ref().is_some_and(|f| f()) {
            self.abandoned = true;
        }
        self.abandoned
    }

    /// Adopts, before each drain is symbolized, the captures `feed` delivers, so processes
    /// that exited since they were sampled are still named.
    pub(crate) fn follow_captures(&mut self, feed: CaptureFeed) {
        self.captures = Some(feed);
    }

    /// Hands every capture received so far to the symbolizer.
    fn adopt_captures(&mut self) {
        let Some(feed) = &self.captures else { return };
        while let Ok(capture) = feed.captures.try_recv() {
            self.captured.insert(capture.pid());
            self.symbolizer.add_capture(capture);
        }
    }

    /// Symbolizes a drain and adds it to the profile, without the sampler's known
    /// mappings (see [`Aggregator::add_with_known`]).
    #[cfg(test)]
    pub(crate) fn add(&mut self, samples: &[RawSample]) {
        self.add_with_known(samples, &|_| Vec::new());
    }

    /// Symbolizes a drain and adds it to the profile, asking `known_mappings` for the
    /// mappings of a process that the sampler's file lookup saw
    /// ([`profiler_sampler::Sampler::known_mappings`]) when one of its stacks has an
    /// unnamed frame: a process that exited before a capture saw every library it mapped
    /// is named from them (once a drain per process).
    pub(crate) fn add_with_known(
        &mut self,
        samples: &[RawSample],
        known_mappings: &dyn Fn(u32) -> Vec<symbolizer::KnownMapping>,
    ) {
        self.adopt_captures();
        // Each process's start time is checked once per drain, not once per thread.
        self.processes.next_pass();
        let mut asked: std::collections::HashSet<u32> = std::collections::HashSet::new();
        // (pid, leaf-first addresses) -> root-first frames, for this drain only.
        let mut user_cache: HashMap<(u32, &[u64]), Arc<[Frame]>> = HashMap::new();
        let mut kernel_cache: HashMap<&[u64], Arc<[Frame]>> = HashMap::new();
        // Labels read from /proc once per (process, thread) per drain.
        let mut label_cache: HashMap<(u32, u32, &str), Labels> = HashMap::new();
        // (pid, leaf-first Python words) -> named frames with their entry flags.
        let mut python_cache: HashMap<(u32, &[u64]), python::Named> = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        // Processes seen before are named first: they are cheap (their mappings and
        // binaries are loaded), and when a stop abandons symbolization part-way (see
        // `abandon_when`) it is new processes' first stacks that go unnamed, not those of
        // the long-running process that was named all along. The profile does not depend on
        // the order in which samples are added.
        let (known, new): (Vec<&RawSample>, Vec<&RawSample>) = if self.abandon.is_some() {
            samples
                .iter()
                .partition(|s| self.symbolizer.knows_process(s.tgid))
        } else {
            (samples.iter().collect(), Vec::new())
        };
        for s in known.into_iter().chain(new) {
            stack.clear();
            let mut unsymbolized = false;
            // The kernel stack first: it tells whether the user stack can be read at all.
            let kernel = match s.kernel_status {
                StackStatus::Ok | StackStatus::Truncated => {
                    if let Some(frames) = kernel_cache.get(s.kernel.as_slice()) {
                        Some(Arc::clone(frames))
                    } else if self.abandoning() {
                        None
                    } else {
                        let frames: Arc<[Frame]> =
                            self.symbolizer.symbolize_kernel_stack(&s.kernel).into();
                        kernel_cache.insert(s.kernel.as_slice(), Arc::clone(&frames));
                        Some(frames)
                    }
                }
                StackStatus::Absent | StackStatus::Lost(_) => None,
            };
            let in_exec = kernel.as_deref().is_some_and(in_exec);
            let user_start = stack.len();
            match s.user_status {
                StackStatus::Ok | StackStatus::Truncated if in_exec => {
                    self.stats.in_exec += s.count;
                    stack.push(Frame::named(EXEC_FRAME, FrameKind::User));
                }
                StackStatus::Ok | StackStatus::Truncated => {
                    if s.user_status == StackStatus::Truncated {
                        self.stats.stacks_truncated += s.count;
                        stack.push(Frame::named("[truncated]", FrameKind::User));
                    }
                    let key = (s.tgid, s.user.as_slice());
                    if let Some(frames) = user_cache.get(&key) {
                        stack.extend(frames.iter().cloned());
                    } else if self.abandoning() {
                        unsymbolized = true;
                        stack.push(Frame::named(UNSYMBOLIZED_FRAME, FrameKind::User));
                    } else {
                        let mut frames: Arc<[Frame]> =
                            self.symbolizer.symbolize_user_stack(s.tgid, &s.user).into();
                        if frames.iter().any(Frame::is_unnamed) && asked.insert(s.tgid) {
                            let more = known_mappings(s.tgid);
                            if !more.is_empty()
                                && self.symbolizer.add_known_mappings(s.tgid, &more) > 0
                            {
                                frames =
                                    self.symbolizer.symbolize_user_stack(s.tgid, &s.user).into();
                            }
                        }
                        stack.extend(frames.iter().cloned());
                        user_cache.insert(key, frames);
                    }
                }
                StackStatus::Absent => {}
                StackStatus::Lost(errno) => {
                    self.stats.stacks_lost += s.count;
                    stack.push(lost_frame(errno, FrameKind::User));
                }
            }
            if !s.python.is_empty()
                && !in_exec
                && !unsymbolized
                && let Some(procs) = &self.python
            {
                let named = python_cache
                    .entry((s.tgid, s.python.as_slice()))
                    .or_insert_with(|| {
                        let frames = procs.frames(s.tgid, &s.python);
                        frames
                            .iter()
                            .zip(&s.python)
                            .map(|(f, &w)| {
                                let entry = profiler_common::python::split_word(w).2;
                                (python::python_frame(f.as_ref()), entry)
                            })
                            .collect()
                    });
                let mixed = python::splice(&stack[user_start..], named, s.python_truncated);
                stack.truncate(user_start);
                stack.extend(mixed);
            }
            if self.kernel {
                match (&kernel, s.kernel_status) {
                    // An off-CPU stack was taken in the `sched_switch` program: its own
                    // frames and the tracepoint's are not where the thread waited.
                    (Some(frames), _) if s.off_cpu => {
                        stack.extend(without_tracing_frames(frames).iter().cloned());
                    }
                    (Some(frames), _) => stack.extend(frames.iter().cloned()),
                    // Not symbolized: the aggregator is abandoning symbolization.
                    (None, StackStatus::Ok | StackStatus::Truncated) => {
                        unsymbolized = true;
                        stack.push(Frame::named(UNSYMBOLIZED_FRAME, FrameKind::Kernel));
                    }
                    (None, StackStatus::Absent) => {}
                    (None, StackStatus::Lost(errno)) => {
                        self.stats.stacks_lost += s.count;
                        stack.push(lost_frame(errno, FrameKind::Kernel));
                    }
                }
            }
            let labels = label_cache
                .entry((s.tgid, s.tid, s.thread_comm.as_str()))
                .or_insert_with(|| self.processes.labels(s.tgid, s.tid, &s.thread_comm));
            if s.off_cpu {
                // Nanoseconds summed in the kernel per key and drain, rounded once here.
                let us = s.count.saturating_add(500) / 1000;
                if us > 0 {
                    self.off_cpu.add(labels, &stack, us);
                }
                self.stats.off_cpu_us += us;
                continue;
            }
            self.profile.add(labels, &stack, s.count);
            self.stats.samples += s.count;
            if unsymbolized {
                self.stats.unsymbolized += s.count;
            }
        }
    }

    /// Adds the samples a drain could not record at all (see
    /// [`profiler_sampler::Sampler::unrecorded_in_last_drain`]) as one `[lost: reason]`
    /// stack each, without labels: nothing about them but their number is known, and a
    /// profile that left them out would show shares of only part of the CPU time.
    pub(crate) fn add_unrecorded(&mut self, lost: &[(Stat, u64)]) {
        for &(reason, count) in lost {
            let frame = Frame::named(unrecorded_frame(reason), FrameKind::User);
            self.profile
                .add(&Labels::new().with(keys::COMM, LOST_COMM), &[frame], count);
            self.stats.samples += count;
            self.stats.unrecorded += count;
        }
    }

    /// The profile so far.
    #[must_use]
    pub(crate) fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The profile's metadata, to update as the capture goes on.
    pub(crate) fn meta_mut(&mut self) -> &mut ProfileMeta {
        &mut self.profile.meta
    }

    /// What aggregation saw.
    #[must_use]
    pub(crate) fn stats(&self) -> AggregateStats {
        self.stats
    }

    /// The symbolizer, for its statistics.
    #[must_use]
    pub(crate) fn symbolizer(&self) -> &Symbolizer {
        &self.symbolizer
    }

    /// Drops the pages of the files the symbolizer read from this process's page tables
    /// ([`Symbolizer::release_file_pages`]), as the agent does after each drain: what the
    /// memo knows is not read from them again, and the pages stay in the page cache.
    pub(crate) fn release_file_pages(&self) {
        match self.symbolizer.release_file_pages() {
            Ok(done) => tracing::debug!(
                mappings = done.mappings,
                mapped_mib = done.bytes >> 20,
                "released the pages of the files the symbolizer mapped"
            ),
            Err(err) => tracing::debug!(
                error = %err,
                "cannot read /proc/self/maps; the symbolizer's file pages stay mapped"
            ),
        }
    }

    /// Hands out the profile so far and starts a new, empty one with `meta`, keeping the
    /// symbolizer's caches: how the agent closes a window. Frames of binaries whose debug
    /// files arrived from debuginfod since they were sampled are named first.
    pub(crate) fn take_profile(&mut self, meta: ProfileMeta) -> Profile {
        self.rename_fetched();
        std::mem::replace(&mut self.profile, Profile::new(meta))
    }

    /// Hands out the off-CPU profile so far (empty without `--off-cpu`) and starts a new
    /// one, with the CPU profile's current metadata but for the kind: how the agent closes
    /// an off-CPU window. Call it right after [`Aggregator::take_profile`], which has named
    /// frames fetched from debuginfod in the CPU profile only.
    pub(crate) fn take_off_cpu_profile(&mut self) -> Profile {
        if let Some((renamed, _)) = self.symbolizer.rename_fetched(&self.off_cpu) {
            self.off_cpu = renamed;
        }
        let next = Profile::new(off_cpu_meta(&self.profile.meta));
        std::mem::replace(&mut self.off_cpu, next)
    }

    /// Waits at most `bound` for the debug files still being fetched from debuginfod (see
    /// [`Symbolizer::wait_for_debuginfod`]); `None` without a debuginfod client.
    pub(crate) fn wait_for_debuginfod(
        &mut self,
        bound: std::time::Duration,
    ) -> Option<symbolizer::WaitReport> {
        self.symbolizer.wait_for_debuginfod(bound)
    }

    /// Names the frames, in the CPU profile and the off-CPU profile alike, of binaries
    /// whose debug files arrived from debuginfod since they were sampled; returns how many
    /// distinct frames were renamed (a frame in both profiles counts in each).
    pub(crate) fn rename_fetched(&mut self) -> u64 {
        let mut count = 0;
        for profile in [&mut self.profile, &mut self.off_cpu] {
            if profile.is_empty() {
                continue;
            }
            if let Some((renamed, n)) = self.symbolizer.rename_fetched(profile) {
                *profile = renamed;
                count += n;
            }
        }
        count
    }

    /// Ends aggregation, returning the CPU profile and the off-CPU profile (microseconds
    /// off CPU per stack, empty without `--off-cpu`), which gets the CPU profile's start,
    /// duration and frequency.
    ///
    /// For the end of a process's run (`ember record`): the symbolizer is not freed but
    /// left to the exit, since freeing its tables one allocation at a time (kallsyms'
    /// 120,000 names, every binary's DWARF) cost 8 % of a 5 s recording's CPU.
    #[must_use]
    pub(crate) fn into_profiles(mut self) -> (Profile, Profile) {
        self.off_cpu.meta = off_cpu_meta(&self.profile.meta);
        let profiles = (
            std::mem::take(&mut self.profile),
            std::mem::take(&mut self.off_cpu),
        );
        let symbolizer = std::mem::replace(
            &mut self.symbolizer,
            Symbolizer::new(symbolizer::Config::default()),
        );
        std::mem::forget(symbolizer);
        profiles
    }

    /// Forgets what is cached about processes that exited or whose PID now names another
    /// process (the process table tells by start time), and about those among `seen` that
    /// no longer exist even if their labels were never read: a reused PID is never named
    /// after its predecessor, and the caches stay bounded.
    ///
    /// A process found gone is forgotten at the *next* call, not this one: samples it
    /// took just before exiting may still be in the kernel's maps, and are drained (and
    /// must be named) before then. Call this at most once per drain.
    pub(crate) fn forget_exited(&mut self, seen: impl IntoIterator<Item = u32>) {
        let dropped = self.processes.retain_live();
        for pid in std::mem::take(&mut self.dying) {
            self.symbolizer.forget_process(pid);
            if let Some(p) = &self.python {
                p.forget(pid);
            }
        }
        let captured = std::mem::take(&mut self.captured);
        self.dying = seen
            .into_iter()
            .chain(captured)
            .filter(|&pid| pid != 0 && !profiler_sampler::procinfo::process_exists(pid))
            .collect();
        // Dropped by the table: exited at its previous round, or the pid was reused.
        for pid in dropped {
            self.symbolizer.forget_process(pid);
            if let Some(p) = &self.python {
                p.forget(pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_cpu_stacks_lose_the_frames_of_the_program_that_took_them() {
        let k = |n: &str| Frame::named(n, FrameKind::Kernel);
        let stack = [
            k("do_nanosleep"),
            k("schedule"),
            k("__schedule"),
            k("bpf_trace_run4"),
            k("bpf_prog_8544a0f447ea41e6_ember_offcpu"),
        ];
        let names: Vec<&str> = without_tracing_frames(&stack)
            .iter()
            .map(|f| f.name.as_ref())
            .collect();
        assert_eq!(names, ["do_nanosleep", "schedule", "__schedule"]);
        assert!(without_tracing_frames(&stack[3..]).is_empty());
        assert_eq!(without_tracing_frames(&stack[..2]).len(), 2);
    }
    use std::process::Command;

    /// An address inside the executable mapping of `pid`'s `sleep` binary, once its exec
    /// has mapped it.
    fn code_address(pid: u32) -> u64 {
        for _ in 0..400 {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            let start = maps.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let (range, perms) = (f.next()?, f.next()?);
                (perms == "r-xp" && l.ends_with("/sleep")).then(|| range.split('-').next())?
            });
            if let Some(start) = start {
                return u64::from_str_radix(start, 16).expect("hex start") + 0x10;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("sleep's code never appeared in /proc/{pid}/maps");
    }

    fn sample(pid: u32, addr: u64) -> RawSample {
        RawSample {
            tgid: pid,
            tid: pid,
            cgroup_id: 0,
            thread_comm: "sleep".to_owned(),
            user: vec![addr],
            user_status: StackStatus::Ok,
            kernel: Vec::new(),
            kernel_status: StackStatus::Absent,
            count: 1,
            off_cpu: false,
            python: Vec::new(),
            python_truncated: false,
        }
    }

    fn leaf_names(agg: &Aggregator) -> Vec<String> {
        agg.profile()
            .stacks()
            .filter_map(|s| {
                s.frames
                    .last()
                    .map(|&f| agg.profile().frame(f).name.to_string())
            })
            .collect()
    }

    /// A process's last samples are drained after it exits, possibly after a window
    /// closed (and `forget_exited` ran) in between: they are still named from what was
    /// known, and only the round after that forgets the process.
    #[test]
    fn samples_drained_after_exit_and_a_window_close_are_still_named() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let addr = code_address(pid);
        let mut agg = Aggregator::new(
            Symbolizer::new(symbolizer::Config::default()),
            ProfileMeta::default(),
            false,
        );
        agg.add(&[sample(pid, addr)]);
        let named = leaf_names(&agg);
        assert!(named.iter().all(|n| n != "[unknown]"), "{named:?}");

        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        // The window closes before the last drain.
        agg.forget_exited([pid]);
        let _ = agg.take_profile(ProfileMeta::default());
        agg.add(&[sample(pid, addr)]);
        assert_eq!(leaf_names(&agg), named, "the last drain is still named");

        // The next round forgets it.
        agg.forget_exited([pid]);
        let _ = agg.take_profile(ProfileMeta::default());
        agg.add(&[sample(pid, addr)]);
        assert_eq!(leaf_names(&agg), ["[unknown]"]);
    }

    /// A sample inside `execve` gets one `[exec]` user frame, whatever its user addresses:
    /// they belong to the image being replaced. Other kernel stacks leave the user part be.
    #[test]
    fn samples_inside_execve_have_one_exec_user_frame() {
        let k = |names: &[&str]| -> Vec<Frame> {
            names
                .iter()
                .map(|&n| Frame::named(n, FrameKind::Kernel))
                .collect()
        };
        assert!(in_exec(&k(&[
            "entry_SYSCALL_64_after_hwframe",
            "do_syscall_64",
            "__x64_sys_execve",
            "getname_flags"
        ])));
        assert!(in_exec(&k(&[
            "do_syscall_64",
            "__x64_sys_execveat",
            "do_execveat_common.isra.0",
            "bprm_execve"
        ])));
        assert!(!in_exec(&k(&[
            "do_syscall_64",
            "__x64_sys_read",
            "vfs_read"
        ])));
        assert!(!in_exec(&k(&["asm_exc_page_fault", "exc_page_fault"])));
        assert!(!in_exec(&[]));
    }

    /// Samples no count map holds reach the profile as `[lost: reason]` stacks with their
    /// counts, so the recorded and the lost add up to every sample taken.
    #[test]
    fn unrecorded_samples_become_lost_stacks_with_their_counts() {
        let mut agg = Aggregator::new(
            Symbolizer::new(symbolizer::Config::default()),
            ProfileMeta::default(),
            true,
        );
        let mut lost = sample(1, 0x10);
        lost.user_status = StackStatus::Lost(-profiler_common::EEXIST);
        lost.count = 4;
        agg.add(&[lost]);
        agg.add_unrecorded(&[(Stat::CountsFull, 30), (Stat::NoControl, 2)]);
        agg.add_unrecorded(&[(Stat::CountsFull, 5)]);
        let p = agg.profile();
        let count_of = |leaf: &str| -> u64 {
            p.stacks()
                .filter(|s| {
                    s.frames
                        .last()
                        .is_some_and(|&f| p.frame(f).name.as_ref() == leaf)
                })
                .map(|s| s.count)
                .sum()
        };
        assert_eq!(count_of("[lost: stack map collision]"), 4);
        assert_eq!(count_of(COUNTS_FULL_FRAME), 35);
        assert_eq!(count_of("[lost: no control block]"), 2);
        assert_eq!(p.total(), 41);
        assert_eq!(agg.stats().samples, 41);
        assert_eq!(agg.stats().unrecorded, 37);
    }

    /// Once `abandon_when`'s check says so, new stacks are no longer symbolized but still
    /// counted, with their labels, under one frame; stacks already named in the drain
    /// keep their names.
    #[test]
    fn an_abandoned_symbolization_keeps_every_sample_under_one_frame() {
        use std::cell::Cell;
        use std::rc::Rc;
        let mut agg = Aggregator::new(
            Symbolizer::new(symbolizer::Config::default()),
            ProfileMeta::default(),
            true,
        );
        let asked = Rc::new(Cell::new(0_u32));
        let counter = Rc::clone(&asked);
        agg.abandon_when(move || {
            counter.set(counter.get() + 1);
            counter.get() > 1
        });
        let mut first = sample(1, 0x10);
        first.count = 3;
        let mut second = sample(1, 0x20);
        second.count = 5;
        let mut kernel = sample(1, 0x10);
        kernel.kernel = vec![0xffff_ffff_8100_0000];
        kernel.kernel_status = StackStatus::Ok;
        agg.add(&[first.clone(), first, second, kernel]);
        // Asked for the first stack (go on), then for the second (abandon); never again.
        assert_eq!(asked.get(), 2);
        let p = agg.profile();
        let unsymbolized: u64 = p
            .stacks()
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|&f| p.frame(f).name.as_ref() == UNSYMBOLIZED_FRAME)
            })
            .map(|s| s.count)
            .sum();
        assert_eq!(unsymbolized, 6, "the second stack and the kernel stack");
        assert_eq!(p.total(), 12);
        assert_eq!(agg.stats().unsymbolized, 6);
        let labelled = p
            .stacks()
            .all(|s| s.labels.get(keys::THREAD).is_some_and(|c| c == "sleep"));
        assert!(labelled, "every sample keeps its process's labels");
        // Later drains are not symbolized either.
        agg.add(&[sample(1, 0x30)]);
        assert_eq!(agg.stats().unsymbolized, 7);
    }

    /// A stop that abandons symbolization part-way leaves new processes' stacks unnamed, not
    /// those of a process named in earlier drains: known processes are named first.
    #[test]
    fn an_abandoned_drain_names_known_processes_first() {
        use std::cell::Cell;
        use std::rc::Rc;
        let mut agg = Aggregator::new(
            Symbolizer::new(symbolizer::Config::default()),
            ProfileMeta::default(),
            true,
        );
        let armed = Rc::new(Cell::new(false));
        let asked = Rc::new(Cell::new(0_u32));
        let (a, n) = (Rc::clone(&armed), Rc::clone(&asked));
        agg.abandon_when(move || {
            if !a.get() {
                return false;
            }
            n.set(n.get() + 1);
            n.get() > 1
        });
        let me = std::process::id();
        let here = sample as fn(u32, u64) -> RawSample as usize as u64;
        agg.add(&[sample(me, here)]);
        armed.set(true);
        // A pid no process has: new to the symbolizer, listed first in the drain.
        let mut stranger = sample(u32::MAX - 7, 0x4000);
        stranger.count = 2;
        agg.add(&[stranger, sample(me, here + 1)]);
        assert_eq!(asked.get(), 2, "one ask per stack until the abandon");
        assert_eq!(agg.stats().unsymbolized, 2, "only the new process's stack");
        let p = agg.profile();
        let unnamed_pids: Vec<String> = p
            .stacks()
            .filter(|s| {
                s.frames
                    .iter()
                    .any(|&f| p.frame(f).name.as_ref() == UNSYMBOLIZED_FRAME)
            })
            .filter_map(|s| s.labels.get(keys::PID).map(str::to_owned))
            .collect();
        assert_eq!(unnamed_pids, vec![(u32::MAX - 7).to_string()]);
    }
}
