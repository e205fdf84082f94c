//! Mixed stacks: a sample's Python frames spliced into its native stack, in place of the
//! interpreter's evaluation-loop frames that were running them.
//!
//! The walker records each Python frame with an entry flag: the frame an
//! `_PyEval_EvalFrameDefault` call began at. Read leaf first, the frames up to and
//! including the first entry frame are what the innermost evaluation call runs, the next
//! run up to the next entry frame the call below it, and so on. In the native stack each
//! such call is one `_PyEval_EvalFrameDefault` frame (with the interpreter's helpers
//! inlined into it). So, matched from the leaf, the innermost evaluation frame is
//! replaced by the innermost run of Python frames, the next by the next: C extension and
//! libc frames stay where they ran, between the Python frames that called them and those
//! they called back. Runs left over (an evaluation frame the native walk did not reach)
//! go under the outermost evaluation frame; evaluation frames left over (a Python walk
//! cut short) stay as they are. A native stack cut short before the interpreter has no
//! evaluation frame: the Python frames go under what it reached, the code they called.

use std::sync::Arc;

use profiler_model::{Frame, FrameKind};
use profiler_sampler::PythonFrame;

/// A Python stack's frames, leaf first, each with its entry flag.
pub(crate) type Named = Arc<[(Frame, bool)]>;

/// The native function each CPython evaluation call is a frame of (3.9–3.13).
pub(crate) const EVAL_FRAME: &str = "_PyEval_EvalFrameDefault";

/// The frame of a Python frame that could not be named (its process exited before its
/// code object was read, or the object was gone).
pub(crate) const UNNAMED_PYTHON: &str = "[unknown python code]";

/// The model's frame for a named Python frame: `QUALNAME (FILE)`.
pub(crate) fn python_frame(named: Option<&PythonFrame>) -> Frame {
    let Some(p) = named else {
        return Frame::named(UNNAMED_PYTHON, FrameKind::Python);
    };
    Frame {
        file: Some(Arc::clone(&p.path)),
        line: p.line,
        ..Frame::named(format!("{} ({})", p.qualname, p.file), FrameKind::Python)
    }
}

/// Whether `f` is an evaluation-loop frame of its own (not inlined into another).
fn is_eval(f: &Frame) -> bool {
    f.kind == FrameKind::User && !f.inlined && &*f.name == EVAL_FRAME
}

/// `native` (root first) with its evaluation frames replaced by `python`'s runs.
///
/// `python` is leaf first, each frame with its entry flag; `truncated` says the Python walk
/// stopped before the outermost Python frame, which is then marked `[truncated]`.
pub(crate) fn splice(native: &[Frame], python: &[(Frame, bool)], truncated: bool) -> Vec<Frame> {
    // Runs, leaf first; each run root first.
    let mut runs: Vec<Vec<Frame>> = Vec::new();
    let mut run: Vec<Frame> = Vec::new();
    for (frame, entry) in python {
        run.push(frame.clone());
        if *entry {
            run.reverse();
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        run.reverse();
        runs.push(run);
    }
    if truncated && let Some(outer) = runs.last_mut() {
        outer.insert(0, Frame::named("[truncated]", FrameKind::Python));
    }
    let evals: Vec<usize> = native
        .iter()
        .enumerate()
        .filter(|(_, f)| is_eval(f))
        .map(|(i, _)| i)
        .collect();
    if evals.is_empty() {
        // No evaluation frame to replace: the native walk was cut short before it reached
        // the interpreter (or its frames went unnamed). What it did reach is the leaf,
        // code the Python frames called: they go under it, after the truncation mark.
        let keep = usize::from(native.first().is_some_and(|f| &*f.name == "[truncated]"));
        let mut out = native[..keep].to_vec();
        for r in runs.into_iter().rev() {
            out.extend(r);
        }
        out.extend_from_slice(&native[keep..]);
        return out;
    }
    // evals[k] (leaf-most) takes runs[0]; the outermost evaluation frame also takes the
    // runs left over, root first.
    let mut replacement: Vec<Option<Vec<Frame>>> = vec![None; evals.len()];
    let mut runs = runs.into_iter();
    for slot in replacement.iter_mut().rev() {
        match runs.next() {
            Some(r) => *slot = Some(r),
            None => break,
        }
    }
    let rest: Vec<Vec<Frame>> = runs.collect();
    if !rest.is_empty() {
        let first = replacement[0].get_or_insert_with(Vec::new);
        let mut merged: Vec<Frame> = rest.into_iter().rev().flatten().collect();
        merged.append(first);
        *first = merged;
    }
    let mut out = Vec::with_capacity(native.len() + python.len());
    let mut e = 0;
    let mut i = 0;
    while i < native.len() {
        if e < evals.len() && evals[e] == i {
            match replacement[e].take() {
                Some(r) => {
                    out.extend(r);
                    // The interpreter's helpers inlined into the evaluation frame ran
                    // the Python code: they go with it.
                    i += 1;
                    while i < native.len() && native[i].inlined && native[i].kind == FrameKind::User
                    {
                        i += 1;
                    }
                }
                None => {
                    out.push(native[i].clone());
                    i += 1;
                }
            }
            e += 1;
        } else {
            out.push(native[i].clone());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| match n.strip_suffix("_[i]") {
                Some(n) => Frame {
                    inlined: true,
                    ..Frame::named(n, FrameKind::User)
                },
                None => Frame::named(*n, FrameKind::User),
            })
            .collect()
    }

    /// Leaf first, `*` marking an entry frame.
    fn python(names: &[&str]) -> Vec<(Frame, bool)> {
        names
            .iter()
            .map(|n| {
                let entry = n.ends_with('*');
                (
                    Frame::named(n.trim_end_matches('*'), FrameKind::Python),
                    entry,
                )
            })
            .collect()
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| f.folded_name().to_string()).collect()
    }

    #[test]
    fn each_evaluation_frame_takes_its_run_and_c_frames_stay_between() {
        // main -> Py_RunMain -> eval(<module> -> handler) -> zlib.compress (C) ->
        // deflate; and a callback: sorted -> eval(key)
        let n = native(&[
            "main",
            "Py_RunMain",
            EVAL_FRAME,
            "call_function_[i]",
            "cfunction_call",
            "builtin_sorted",
            EVAL_FRAME,
            "deflate",
        ]);
        let p = python(&["key*", "handler", "<module>*"]);
        assert_eq!(
            names(&splice(&n, &p, false)),
            [
                "main",
                "Py_RunMain",
                "<module>_[j]",
                "handler_[j]",
                "cfunction_call",
                "builtin_sorted",
                "key_[j]",
                "deflate"
            ]
        );
    }

    #[test]
    fn leftover_runs_go_under_the_outermost_evaluation_frame_and_truncation_shows() {
        let n = native(&["main", EVAL_FRAME, "PyObject_Call", EVAL_FRAME]);
        let p = python(&["c*", "b*", "a*"]);
        assert_eq!(
            names(&splice(&n, &p, true)),
            [
                "main",
                "[truncated]_[j]",
                "a_[j]",
                "b_[j]",
                "PyObject_Call",
                "c_[j]"
            ]
        );
        // Fewer runs than evaluation frames: the outer ones stay native.
        let p = python(&["c*"]);
        assert_eq!(
            names(&splice(&n, &p, false)),
            ["main", EVAL_FRAME, "PyObject_Call", "c_[j]"]
        );
    }

    #[test]
    fn without_evaluation_frames_python_goes_under_the_native_leaf() {
        let n = native(&["[truncated]", "libz.so.1+0x4a26"]);
        let p = python(&["f", "g*"]);
        assert_eq!(
            names(&splice(&n, &p, false)),
            ["[truncated]", "g_[j]", "f_[j]", "libz.so.1+0x4a26"]
        );
        let n = native(&["deflate"]);
        assert_eq!(names(&splice(&n, &p, false)), ["g_[j]", "f_[j]", "deflate"]);
    }

    #[test]
    fn a_named_frame_is_qualname_and_relative_file_with_the_line() {
        let p = PythonFrame {
            qualname: "Handler.get".into(),
            file: "app/server.py".into(),
            path: "/srv/app/server.py".into(),
            line: Some(42),
        };
        let f = python_frame(Some(&p));
        assert_eq!(&*f.name, "Handler.get (app/server.py)");
        assert_eq!(f.file.as_deref(), Some("/srv/app/server.py"));
        assert_eq!((f.line, f.kind), (Some(42), FrameKind::Python));
        assert_eq!(&*python_frame(None).name, UNNAMED_PYTHON);
    }
}
