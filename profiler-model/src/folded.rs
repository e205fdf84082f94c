//! Folded stacks: the line format that inferno and flamegraph.pl read.
//!
//! One line per distinct stack: frames root first, separated by `;`, then a space and the
//! sample count: `comm;main;work;fn_a 42`. Kernel frames end in `_[k]` and inlined frames
//! in `_[i]`, the suffixes inferno colours by. Lines that fold to the same text (two
//! threads of one process with one stack, say) are summed, and the output is sorted, so the
//! same profile always gives the same bytes.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use crate::{Frame, FrameKind, Labels, Profile, keys};

/// What the first frame of each folded line is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Root {
    /// The process name (`comm` label), as `perf script | stackcollapse-perf` does.
    #[default]
    Comm,
    /// The process name and id: `comm-1234`, which keeps processes apart.
    CommPid,
    /// No extra frame: the stack starts at the outermost function.
    None,
}

/// Options for [`write()`] and [`lines`].
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// The first frame of each line.
    pub root: Root,
    /// Leave out kernel frames.
    pub no_kernel: bool,
}

impl Options {
    /// Sets [`Options::root`].
    #[must_use]
    pub fn with_root(mut self, root: Root) -> Self {
        self.root = root;
        self
    }

    /// Sets [`Options::no_kernel`].
    #[must_use]
    pub fn with_no_kernel(mut self, no_kernel: bool) -> Self {
        self.no_kernel = no_kernel;
        self
    }
}

fn root_frame(labels: &Labels, root: Root) -> Option<String> {
    let comm = labels.get(keys::COMM).unwrap_or("[unknown]");
    let comm = comm.replace([';', ' ', '\n', '\r'], "_");
    match root {
        Root::Comm => Some(comm),
        Root::CommPid => Some(format!("{comm}-{}", labels.get(keys::PID).unwrap_or("?"))),
        Root::None => None,
    }
}

/// The folded lines of `profile` (without counts) mapped to their summed counts, sorted.
#[must_use]
pub fn lines(profile: &Profile, options: Options) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut line = String::new();
    for s in profile.stacks() {
        line.clear();
        if let Some(root) = root_frame(s.labels, options.root) {
            line.push_str(&root);
        }
        for &id in s.frames {
            let f = profile.frame(id);
            if options.no_kernel && f.kind == FrameKind::Kernel {
                continue;
            }
            if !line.is_empty() {
                line.push(';');
            }
            use std::fmt::Write as _;
            let _ = write!(line, "{}", f.folded_name());
        }
        if line.is_empty() {
            // A stack with every frame filtered out still cost CPU: keep it visible.
            line.push_str("[no frames]");
        }
        if let Some(c) = out.get_mut(line.as_str()) {
            *c += s.count;
        } else {
            out.insert(line.clone(), s.count);
        }
    }
    out
}

/// Writes `profile` as folded stacks.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn write(profile: &Profile, options: Options, mut w: impl Write) -> io::Result<()> {
    for (line, count) in lines(profile, options) {
        writeln!(w, "{line} {count}")?;
    }
    Ok(())
}

/// A folded line that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading the input failed.
    #[error("reading folded stacks: {0}")]
    Io(#[from] io::Error),
    /// A line is not `frames count`.
    #[error("line {line}: {reason}: `{text}`")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
        /// The line, shortened to 80 characters.
        text: String,
    },
}

/// Reads folded stacks into a profile, one label-less stack per line. Frame suffixes
/// `_[k]` and `_[i]` are turned back into [`FrameKind::Kernel`] and inlined frames; blank
/// lines and lines starting with `#` are skipped.
///
/// # Errors
/// [`ParseError::Malformed`] names the first bad line; nothing is returned for a bad file.
pub fn parse(r: impl BufRead) -> Result<Profile, ParseError> {
    let mut p = Profile::default();
    let labels = p.intern_labels(&Labels::new());
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let text = line.trim_end();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let bad = |reason| ParseError::Malformed {
            line: i + 1,
            reason,
            text: text.chars().take(80).collect(),
        };
        let (stack, count) = text
            .rsplit_once(' ')
            .ok_or_else(|| bad("no sample count after the stack"))?;
        let count: u64 = count
            .parse()
            .map_err(|_| bad("the sample count is not a whole number"))?;
        if stack.is_empty() {
            return Err(bad("empty stack"));
        }
        let frames: Box<[_]> = stack
            .split(';')
            .map(|name| p.intern_frame(&Frame::from_folded_name(name)))
            .collect();
        p.add_ids(labels, frames, count);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_profile() -> Profile {
        let mut p = Profile::default();
        let l1 = Labels::new()
            .with(keys::PID, "10")
            .with(keys::TID, "10")
            .with(keys::COMM, "split");
        let l2 = l1.clone().with(keys::TID, "11");
        let main = Frame::named("main", FrameKind::User);
        let a = Frame::named("fn_a", FrameKind::User);
        let k = Frame::named("asm_sysvec_apic_timer_interrupt", FrameKind::Kernel);
        let mut inl = Frame::named("mix", FrameKind::User);
        inl.inlined = true;
        p.add(&l1, &[main.clone(), a.clone()], 7);
        p.add(&l2, &[main.clone(), a.clone()], 3);
        p.add(&l1, &[main.clone(), a, k], 2);
        p.add(&l1, &[main, inl], 1);
        p
    }

    #[test]
    fn writes_sorted_summed_lines_with_suffixes() {
        let mut out = Vec::new();
        write(&sample_profile(), Options::default(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "split;main;fn_a 10\n\
             split;main;fn_a;asm_sysvec_apic_timer_interrupt_[k] 2\n\
             split;main;mix_[i] 1\n"
        );
    }

    #[test]
    fn no_kernel_drops_kernel_frames_and_merges() {
        let l = lines(
            &sample_profile(),
            Options::default()
                .with_no_kernel(true)
                .with_root(Root::CommPid),
        );
        assert_eq!(l.get("split-10;main;fn_a"), Some(&12));
    }

    #[test]
    fn round_trips_through_parse() {
        let mut out = Vec::new();
        write(&sample_profile(), Options::default(), &mut out).unwrap();
        let back = parse(&out[..]).unwrap();
        assert_eq!(back.total(), 13);
        let mut again = Vec::new();
        write(&back, Options::default().with_root(Root::None), &mut again).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = parse(&b"a;b 1\na;b x\n"[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: the sample count is not a whole number: `a;b x`"
        );
        let err = parse(&b"just-a-frame\n"[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 1: no sample count"));
    }
}
