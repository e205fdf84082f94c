//! One frame of a stack: a name for people and a location for machines.

use std::fmt;
use std::sync::Arc;

/// Where a frame's code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameKind {
    /// User-space code.
    User,
    /// Kernel code; folded output suffixes its name with `_[k]`.
    Kernel,
    /// Python code, walked from the interpreter's frames: named `QUALNAME (FILE)`, with
    /// the full path in [`Frame::file`] and the line in [`Frame::line`]. Folded output
    /// suffixes it with `_[j]`, the annotation inferno's palettes colour as interpreted or
    /// JIT code (and drop from the label).
    Python,
}

/// The normalized address of a frame: enough to symbolize it again later, on any machine
/// that has the binary or its debug info.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Location {
    /// Nothing is known (the process vanished before its mappings were read, ...).
    #[default]
    Unknown,
    /// A kernel text address.
    Kernel {
        /// The (return or sampled) address as the kernel reported it.
        addr: u64,
    },
    /// An offset into an ELF file, identified by build-id when it has one.
    File {
        /// The GNU build-id of the file, when present.
        build_id: Option<Arc<[u8]>>,
        /// Offset into the file (not a virtual address).
        offset: u64,
    },
    /// A virtual address in a process, when no file backs it (anonymous or JIT memory).
    Virtual {
        /// The address as sampled.
        addr: u64,
    },
}

/// One frame of a symbolized stack.
///
/// Two frames are the same frame when all fields are equal; a profile interns them, so the
/// cost of the optional fields is paid once per distinct frame, not per sample.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// The function name (demangled), or `module+0xoffset`, or `[unknown]`.
    pub name: Arc<str>,
    /// User or kernel code.
    pub kind: FrameKind,
    /// This frame was inlined into the frame below it (its caller); it has no
    /// stack frame of its own. Folded output suffixes it with `_[i]`.
    pub inlined: bool,
    /// Path (or, for the kernel, module name) of the code's binary.
    pub module: Option<Arc<str>>,
    /// Source file, where debug info has it.
    pub file: Option<Arc<str>>,
    /// Source line, where debug info has it.
    pub line: Option<u32>,
    /// Normalized address, for re-symbolization and pprof.
    pub location: Location,
}

/// The name given to a frame nothing is known about.
pub(crate) const UNKNOWN: &str = "[unknown]";

/// The suffix folded stacks (and inferno's palette) give kernel frames.
pub const KERNEL_SUFFIX: &str = "_[k]";

/// The suffix folded stacks (and inferno's palette) give inlined frames.
pub const INLINED_SUFFIX: &str = "_[i]";

/// The suffix folded stacks (and inferno's palette) give Python frames.
pub const PYTHON_SUFFIX: &str = "_[j]";

/// What a folded name's suffix says about its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suffix {
    /// No suffix: a user frame of its own.
    None,
    /// `_[k]`: kernel code.
    Kernel,
    /// `_[i]`: inlined into its caller.
    Inlined,
    /// `_[j]`: Python (interpreted) code.
    Python,
}

impl Suffix {
    /// Splits `name` into the bare name and its suffix.
    #[must_use]
    pub fn split(name: &str) -> (&str, Suffix) {
        if let Some(n) = name.strip_suffix(KERNEL_SUFFIX) {
            (n, Suffix::Kernel)
        } else if let Some(n) = name.strip_suffix(INLINED_SUFFIX) {
            (n, Suffix::Inlined)
        } else if let Some(n) = name.strip_suffix(PYTHON_SUFFIX) {
            (n, Suffix::Python)
        } else {
            (name, Suffix::None)
        }
    }
}

impl Frame {
    /// A frame with just a name: no module, source or location.
    #[must_use]
    pub fn named(name: impl Into<Arc<str>>, kind: FrameKind) -> Self {
        Frame {
            name: name.into(),
            kind,
            inlined: false,
            module: None,
            file: None,
            line: None,
            location: Location::Unknown,
        }
    }

    /// The frame a folded name stands for: `_[k]` makes a kernel frame, `_[i]` an
    /// inlined one and `_[j]` a Python one, the suffix removed; nothing else is known
    /// about it.
    #[must_use]
    pub fn from_folded_name(name: &str) -> Self {
        match Suffix::split(name) {
            (n, Suffix::Kernel) => Frame::named(n, FrameKind::Kernel),
            (n, Suffix::Inlined) => Frame {
                inlined: true,
                ..Frame::named(n, FrameKind::User)
            },
            (n, Suffix::Python) => Frame::named(n, FrameKind::Python),
            (n, Suffix::None) => Frame::named(n, FrameKind::User),
        }
    }

    /// A frame nothing is known about (`[unknown]`).
    #[must_use]
    pub fn unknown(kind: FrameKind) -> Self {
        Self::named(UNKNOWN, kind)
    }

    /// Whether the frame has no function name (`[unknown]` or `module+0xoffset`).
    #[must_use]
    pub fn is_unnamed(&self) -> bool {
        &*self.name == UNKNOWN || self.name.contains("+0x")
    }

    /// The name as it appears in folded stacks: `;` would split the frame and a newline the
    /// line, so both are replaced, and kernel and inlined frames get inferno's suffixes.
    #[must_use]
    pub fn folded_name(&self) -> FoldedName<'_> {
        FoldedName(self)
    }
}

/// [`Frame::folded_name`]'s display adapter.
#[derive(Debug)]
pub struct FoldedName<'a>(&'a Frame);

impl fmt::Display for FoldedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.0.name;
        if name.contains([';', '\n', '\r']) {
            f.write_str(&name.replace([';', '\n', '\r'], ":"))?;
        } else {
            f.write_str(name)?;
        }
        match (self.0.kind, self.0.inlined) {
            (FrameKind::Kernel, _) => f.write_str(KERNEL_SUFFIX),
            (FrameKind::User, true) => f.write_str(INLINED_SUFFIX),
            (FrameKind::Python, _) => f.write_str(PYTHON_SUFFIX),
            (FrameKind::User, false) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_names_carry_inferno_suffixes_and_no_separators() {
        let mut f = Frame::named("a;b", FrameKind::User);
        assert_eq!(f.folded_name().to_string(), "a:b");
        f.inlined = true;
        assert_eq!(f.folded_name().to_string(), "a:b_[i]");
        let k = Frame::named("do_syscall_64", FrameKind::Kernel);
        assert_eq!(k.folded_name().to_string(), "do_syscall_64_[k]");
    }

    #[test]
    fn folded_names_read_back_into_the_same_frames() {
        for f in [
            Frame::named("do_syscall_64", FrameKind::Kernel),
            Frame {
                inlined: true,
                ..Frame::named("mix", FrameKind::User)
            },
            Frame::named("main", FrameKind::User),
        ] {
            assert_eq!(Frame::from_folded_name(&f.folded_name().to_string()), f);
        }
        assert_eq!(Suffix::split("a_[k]_[i]"), ("a_[k]", Suffix::Inlined));
    }

    #[test]
    fn unnamed_frames_are_recognised() {
        assert!(Frame::unknown(FrameKind::User).is_unnamed());
        assert!(Frame::named("libc.so.6+0x1234", FrameKind::User).is_unnamed());
        assert!(!Frame::named("main", FrameKind::User).is_unnamed());
    }
}
