//! Folded stacks: the line format that inferno and flamegraph.pl read.
//!
//! One line per distinct stack: frames root first, separated by `;`, then a space and the
//! sample count: `comm;main;work;fn_a 42`. Kernel frames end in `_[k]` and inlined frames
//! in `_[i]`, the suffixes inferno colours by. Lines that fold to the same text (two
//! threads of one process with one stack, say) are summed, and the output is sorted, so the
//! same profile always gives the same bytes.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read as _, Write};

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

/// The longest folded line [`parse`] reads: 1 MiB, a stack of thousands of long C++ frames.
/// A longer line is an error, so a file without line breaks cannot fill memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A folded line that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading the input failed.
    #[error("reading folded stacks")]
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
    /// A line is longer than [`MAX_LINE_BYTES`].
    #[error("line {line} is longer than {max} bytes: not folded stacks")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A line holds a NUL or another control byte: binary data, not text.
    #[error(
        "line {line} holds binary data (byte {byte:#04x} at column {column}): not folded stacks"
    )]
    Binary {
        /// 1-based line number.
        line: usize,
        /// 1-based byte column.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// A line is not UTF-8.
    #[error("line {line} is not UTF-8 text")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line has two counts: the three-column differential output of `ember diff
    /// --folded` (or of inferno's `difffolded`), which is not a profile.
    #[error(
        "line {line} has two sample counts (`stack base new`): a differential folded file, \
         such as `ember diff --folded` writes, is not a profile; diff the two profiles it \
         came from: `{text}`"
    )]
    Differential {
        /// 1-based line number.
        line: usize,
        /// The line, shortened to 80 characters.
        text: String,
    },
    /// The counts add up to more than a `u64` holds.
    #[error("line {line}: the sample counts add up to more than 2^64 - 1")]
    Overflow {
        /// 1-based line number.
        line: usize,
    },
}

/// Reads folded stacks into a profile, one label-less stack per line. Frame suffixes
/// `_[k]` and `_[i]` are turned back into [`FrameKind::Kernel`] and inlined frames; blank
/// lines and lines starting with `#` are skipped.
///
/// The input is streamed: memory grows with the distinct stacks, not with the input's
/// size. A line longer than [`MAX_LINE_BYTES`], a line with binary data or two counts,
/// and counts whose sum overflows `u64` are errors.
///
/// # Errors
/// A [`ParseError`] names the first bad line; nothing is returned for a bad file.
pub fn parse(mut r: impl BufRead) -> Result<Profile, ParseError> {
    let mut p = Profile::default();
    let labels = p.intern_labels(&Labels::new());
    let mut buf = Vec::new();
    let mut line_no = 0;
    // The frames of each distinct stack text, so a repeated line is one lookup.
    let mut stacks: std::collections::HashMap<String, Box<[crate::FrameId]>> =
        std::collections::HashMap::new();
    loop {
        buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut r).take(limit).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = line_no;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            return Err(ParseError::LineTooLong {
                line,
                max: MAX_LINE_BYTES,
            });
        }
        if let Some(i) = crate::first_binary_byte(&buf) {
            return Err(ParseError::Binary {
                line,
                column: i + 1,
                byte: buf[i],
            });
        }
        let text = std::str::from_utf8(&buf).map_err(|_| ParseError::NotUtf8 { line })?;
        let text = text.trim_end();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let short = || text.chars().take(80).collect::<String>();
        let bad = |reason| ParseError::Malformed {
            line,
            reason,
            text: short(),
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
        if let Some((_, first)) = stack.rsplit_once(' ')
            && !first.is_empty()
            && first.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseError::Differential {
                line,
                text: short(),
            });
        }
        if p.total().checked_add(count).is_none() {
            return Err(ParseError::Overflow { line });
        }
        let frames = if let Some(frames) = stacks.get(stack) {
            Box::clone(frames)
        } else {
            let frames: Box<[_]> = stack
                .split(';')
                .map(|name| p.intern_frame(&Frame::from_folded_name(name)))
                .collect();
            stacks.insert(stack.to_owned(), frames.clone());
            frames
        };
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

    #[test]
    fn counts_that_overflow_are_an_error_not_a_wrap() {
        // Two halves of 2^64 used to sum to 0 ("no samples").
        let err = parse(&b"a;b;c 9223372036854775808\na;b;d 9223372036854775808\n"[..])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "line 2: the sample counts add up to more than 2^64 - 1"
        );
        let max = u64::MAX;
        let one = parse(format!("a;b {max}\n").as_bytes()).unwrap();
        assert_eq!(one.total(), max);
        assert!(parse(format!("a;b {max}\na;c {max}\n").as_bytes()).is_err());
        // A count past u64 is not a number.
        assert!(parse(&b"a;b 18446744073709551616\n"[..]).is_err());
    }

    #[test]
    fn differential_binary_and_endless_lines_are_named() {
        let err = parse(&b"app;main;fn_a 140 100\n"[..])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 1 has two sample counts"), "{err}");
        assert!(err.contains("ember diff --folded"), "{err}");
        // A frame name with a space is still a frame.
        let p = parse(&b"app;operator() const 5\n"[..]).unwrap();
        assert_eq!(p.total(), 5);

        let err = parse(&b"a;b 1\na;\0b 2\n"[..]).unwrap_err().to_string();
        assert_eq!(
            err,
            "line 2 holds binary data (byte 0x00 at column 3): not folded stacks"
        );
        let err = parse(&b"a;caf\xe9 1\n"[..]).unwrap_err().to_string();
        assert_eq!(err, "line 1 is not UTF-8 text");

        // An endless line is refused after MAX_LINE_BYTES, without reading the rest.
        let endless = std::io::repeat(b'a');
        let err = parse(std::io::BufReader::new(endless))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("line 1 is longer than {MAX_LINE_BYTES} bytes: not folded stacks")
        );
        // A line of exactly the limit is fine.
        let mut ok = vec![b'f'; MAX_LINE_BYTES - 2];
        ok.extend_from_slice(b" 1\n");
        assert_eq!(parse(&ok[..]).unwrap().total(), 1);
    }

    #[test]
    fn input_is_streamed_in_memory_of_distinct_stacks() {
        // 16 MiB of the same two lines, through a reader that never holds more than a
        // few KiB: the profile has two stacks.
        struct Repeat {
            text: Vec<u8>,
            left: usize,
        }
        impl std::io::Read for Repeat {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.text.len()).min(self.left);
                buf[..n].copy_from_slice(&self.text[..n]);
                self.left -= n;
                Ok(n)
            }
        }
        let text: &[u8] = b"app;main;fn_a 7\napp;main;fn_b 3\n";
        let block = text.repeat(128);
        let lines = (16 << 20) / text.len() / 128 * 128;
        let r = Repeat {
            text: block,
            left: lines * text.len(),
        };
        let p = parse(std::io::BufReader::new(r)).unwrap();
        assert_eq!(p.stacks().count(), 2);
        assert_eq!(p.total(), lines as u64 * 10);
    }
}
