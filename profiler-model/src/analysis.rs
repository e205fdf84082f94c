//! Questions asked of a profile: which functions cost the most ([`top_functions`]), what
//! changed between two profiles ([`diff_functions`], [`diff_folded`]), and one function's
//! view of it: what it calls ([`focus`]) and who calls it ([`callers`]), the two halves of
//! a sandwich view.
//!
//! Functions are keyed by their folded name ([`Frame::folded_name`](crate::Frame::folded_name)),
//! so a kernel function keeps its `_[k]` suffix and an inlined one its `_[i]`: the same
//! names a flame graph of the profile shows. Shares are fractions of all samples of the
//! profile (`0.0..=1.0`), so profiles of different lengths compare.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::{FrameId, Profile, folded};

/// One function's cost in a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionStat {
    /// The folded name (`_[k]` for kernel, `_[i]` for inlined frames).
    pub name: String,
    /// Samples whose leaf (innermost) frame is this function.
    pub self_samples: u64,
    /// Samples whose stack contains this function, counted once per stack even when it
    /// recurses.
    pub total_samples: u64,
    /// `self_samples` over the profile's total (0 for an empty profile).
    pub self_share: f64,
    /// `total_samples` over the profile's total (0 for an empty profile).
    pub total_share: f64,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a share needs no more than f64's 53 bits of precision"
        )]
        let s = part as f64 / whole as f64;
        s
    }
}

/// Self and total samples of every function in `profile`, sorted by self samples, then
/// total samples (both descending), then name.
#[must_use]
pub fn top_functions(profile: &Profile) -> Vec<FunctionStat> {
    // Folded names are computed once per distinct frame, not per sample.
    let names: Vec<String> = profile
        .frames()
        .iter()
        .map(|f| f.folded_name().to_string())
        .collect();
    // Two distinct frames (say, two source lines of one function) may share a name.
    let mut by_name: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for s in profile.stacks() {
        seen.clear();
        for &id in s.frames {
            let name = names[id as usize].as_str();
            if seen.insert(name) {
                by_name.entry(name).or_default().1 += s.count;
            }
        }
        if let Some(&leaf) = s.frames.last() {
            by_name.entry(names[leaf as usize].as_str()).or_default().0 += s.count;
        }
    }
    let total = profile.total();
    let mut out: Vec<FunctionStat> = by_name
        .into_iter()
        .map(|(name, (self_samples, total_samples))| FunctionStat {
            name: name.to_owned(),
            self_samples,
            total_samples,
            self_share: share(self_samples, total),
            total_share: share(total_samples, total),
        })
        .collect();
    out.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then(b.total_samples.cmp(&a.total_samples))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// The stacks of `profile` that contain the function `name` (a folded name, as
/// [`top_functions`] reports it), re-rooted at it: each keeps its frames from the outermost
/// `name` to the leaf. Labels and metadata are kept, so the result filters, folds and renders
/// like any profile; a function that never ran gives an empty profile.
///
/// Re-rooting at the *outermost* call keeps a recursive function's whole subtree in one
/// graph.
#[must_use]
pub fn focus(profile: &Profile, name: &str) -> Profile {
    cut_at(profile, name, |frames, matches| {
        let i = frames.iter().position(|&id| matches(id))?;
        Some(frames[i..].to_vec())
    })
}

/// The callers of the function `name`: each stack that contains it, cut after its
/// *innermost* call and reversed, so `name` is the root and its callers are its children
/// (caller, caller's caller, ...). Drawn as a flame graph this is the top half of a sandwich
/// view, `name` at the bottom touching the [`focus`] graph drawn as an icicle below it.
#[must_use]
pub fn callers(profile: &Profile, name: &str) -> Profile {
    cut_at(profile, name, |frames, matches| {
        let i = frames.iter().rposition(|&id| matches(id))?;
        Some(frames[..=i].iter().rev().copied().collect())
    })
}

/// A new profile from each stack of `profile` that `cut` maps to new frames (root first).
fn cut_at(
    profile: &Profile,
    name: &str,
    cut: impl Fn(&[FrameId], &dyn Fn(FrameId) -> bool) -> Option<Vec<FrameId>>,
) -> Profile {
    // Names are compared once per distinct frame, not once per sample.
    let is_name: Vec<bool> = profile
        .frames()
        .iter()
        .map(|f| f.folded_name().to_string() == name)
        .collect();
    let matches = |id: FrameId| is_name[id as usize];
    let mut out = Profile::new(profile.meta.clone());
    for s in profile.stacks() {
        let Some(frames) = cut(s.frames, &matches) else {
            continue;
        };
        let labels = out.intern_labels(s.labels);
        let frames: Box<[FrameId]> = frames
            .iter()
            .map(|&id| out.intern_frame(profile.frame(id)))
            .collect();
        out.add_ids(labels, frames, s.count);
    }
    out
}

/// How one function's cost changed from a base profile to a new one, in shares of each
/// profile's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDiff {
    /// The folded name.
    pub name: String,
    /// Self share in the base profile.
    pub base_self_share: f64,
    /// Self share in the new profile.
    pub new_self_share: f64,
    /// Total share in the base profile.
    pub base_total_share: f64,
    /// Total share in the new profile.
    pub new_total_share: f64,
}

impl FunctionDiff {
    /// `new_self_share - base_self_share`: positive when the function got more expensive.
    #[must_use]
    pub fn self_delta(&self) -> f64 {
        self.new_self_share - self.base_self_share
    }

    /// `new_total_share - base_total_share`.
    #[must_use]
    pub fn total_delta(&self) -> f64 {
        self.new_total_share - self.base_total_share
    }
}

/// Per-function share changes between `base` and `new`, for every function in either,
/// sorted by the size of the self-share change (largest first), then the size of the
/// total-share change, then name.
#[must_use]
pub fn diff_functions(base: &Profile, new: &Profile) -> Vec<FunctionDiff> {
    let mut by_name: BTreeMap<String, FunctionDiff> = BTreeMap::new();
    let blank = |name: &str| FunctionDiff {
        name: name.to_owned(),
        base_self_share: 0.0,
        new_self_share: 0.0,
        base_total_share: 0.0,
        new_total_share: 0.0,
    };
    for f in top_functions(base) {
        let d = by_name
            .entry(f.name.clone())
            .or_insert_with(|| blank(&f.name));
        d.base_self_share = f.self_share;
        d.base_total_share = f.total_share;
    }
    for f in top_functions(new) {
        let d = by_name
            .entry(f.name.clone())
            .or_insert_with(|| blank(&f.name));
        d.new_self_share = f.self_share;
        d.new_total_share = f.total_share;
    }
    let mut out: Vec<FunctionDiff> = by_name.into_values().collect();
    out.sort_by(|a, b| {
        b.self_delta()
            .abs()
            .total_cmp(&a.self_delta().abs())
            .then(b.total_delta().abs().total_cmp(&a.total_delta().abs()))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// One line of a differential folded file: `stack base new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// The folded stack (frames joined by `;`).
    pub stack: String,
    /// Base samples, scaled so the base total equals the new total (rounded).
    pub base: u64,
    /// New samples.
    pub new: u64,
}

/// The differential folded lines of `base` against `new`, sorted by stack: the 3-column
/// format inferno's flame graph reads (`stack base new`), as `difffolded.pl -n` writes it.
///
/// Base counts are normalized: each is multiplied by `new.total() / base.total()` and
/// rounded, so both columns sum to (about) the same total and a change of share shows as a
/// change of count. When either profile is empty nothing is scaled. Lines that are zero in
/// both columns after rounding are left out.
#[must_use]
pub fn diff_folded(base: &Profile, new: &Profile, options: folded::Options) -> Vec<DiffLine> {
    let (base_total, new_total) = (base.total(), new.total());
    let scale = |count: u64| -> u64 {
        if base_total == 0 || new_total == 0 {
            return count;
        }
        let scaled = (u128::from(count) * u128::from(new_total) + u128::from(base_total / 2))
            / u128::from(base_total);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    };
    let mut lines: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (stack, count) in folded::lines(base, options) {
        lines.entry(stack).or_default().0 = scale(count);
    }
    for (stack, count) in folded::lines(new, options) {
        lines.entry(stack).or_default().1 = count;
    }
    lines
        .into_iter()
        .filter(|(_, (b, n))| *b != 0 || *n != 0)
        .map(|(stack, (base, new))| DiffLine { stack, base, new })
        .collect()
}

/// Writes `lines` as text, one `stack base new` line each.
#[must_use]
pub fn diff_folded_text(lines: &[DiffLine]) -> String {
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(out, "{} {} {}", l.stack, l.base, l.new);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, FrameKind, Labels, keys};

    fn frames(names: &[&str]) -> Vec<Frame> {
        names.iter().map(|n| Frame::from_folded_name(n)).collect()
    }

    fn profile(stacks: &[(&[&str], u64)]) -> Profile {
        let l = Labels::new().with(keys::COMM, "app").with(keys::PID, "7");
        let mut p = Profile::default();
        for (s, c) in stacks {
            p.add(&l, &frames(s), *c);
        }
        p
    }

    fn stat<'a>(stats: &'a [FunctionStat], name: &str) -> &'a FunctionStat {
        stats
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {stats:?}"))
    }

    #[test]
    fn top_counts_self_at_the_leaf_and_total_once_per_stack() {
        let p = profile(&[
            (&["main", "work", "fn_a"], 60),
            (&["main", "work", "fn_b"], 30),
            (&["main", "fn_a"], 10),
        ]);
        let top = top_functions(&p);
        let names: Vec<&str> = top.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fn_a", "fn_b", "main", "work"]);
        let a = stat(&top, "fn_a");
        assert_eq!((a.self_samples, a.total_samples), (70, 70));
        assert!((a.self_share - 0.7).abs() < 1e-12);
        let main = stat(&top, "main");
        assert_eq!((main.self_samples, main.total_samples), (0, 100));
        assert!((main.total_share - 1.0).abs() < 1e-12);
        assert_eq!(stat(&top, "work").total_samples, 90);
    }

    #[test]
    fn recursion_counts_once_in_total() {
        let p = profile(&[(&["main", "rec", "rec", "rec"], 5), (&["main", "rec"], 1)]);
        let top = top_functions(&p);
        let rec = stat(&top, "rec");
        assert_eq!((rec.self_samples, rec.total_samples), (6, 6));
        assert!(rec.total_share <= 1.0);
    }

    #[test]
    fn kernel_and_inlined_frames_keep_their_suffixes() {
        let mut p = profile(&[(&["main", "read", "vfs_read_[k]"], 4)]);
        let mut inl = Frame::named("mix", FrameKind::User);
        inl.inlined = true;
        p.add(
            &Labels::new().with(keys::PID, "7"),
            &[Frame::named("main", FrameKind::User), inl],
            1,
        );
        let top = top_functions(&p);
        assert_eq!(stat(&top, "vfs_read_[k]").self_samples, 4);
        assert_eq!(stat(&top, "mix_[i]").self_samples, 1);
        assert_eq!(stat(&top, "main").total_samples, 5);
    }

    #[test]
    fn same_named_frames_merge_and_empty_profiles_have_no_rows() {
        let mut p = Profile::default();
        let l = Labels::new();
        let mut f1 = Frame::named("f", FrameKind::User);
        f1.line = Some(1);
        let mut f2 = Frame::named("f", FrameKind::User);
        f2.line = Some(2);
        p.add(&l, &[f1.clone(), f2], 3);
        p.add(&l, &[f1], 1);
        let top = top_functions(&p);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].self_samples, top[0].total_samples), (4, 4));
        assert!(top_functions(&Profile::default()).is_empty());
    }

    #[test]
    fn diff_functions_compares_shares_not_counts() {
        // Base: 100 samples, fn_a 50%. New: 1000 samples, fn_a 20%, fn_c new at 30%.
        let base = profile(&[(&["main", "fn_a"], 50), (&["main", "fn_b"], 50)]);
        let new = profile(&[
            (&["main", "fn_a"], 200),
            (&["main", "fn_b"], 500),
            (&["main", "fn_c"], 300),
        ]);
        let d = diff_functions(&base, &new);
        let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
        // |Δself|: fn_c 0.3, fn_a 0.3 (tie broken by |Δtotal|, also equal, then name), fn_b 0.
        assert_eq!(names, ["fn_a", "fn_c", "fn_b", "main"]);
        let a = &d[0];
        assert!((a.self_delta() + 0.3).abs() < 1e-12, "{a:?}");
        assert!((a.base_self_share - 0.5).abs() < 1e-12);
        let c = &d[1];
        assert!((c.self_delta() - 0.3).abs() < 1e-12);
        assert!(c.base_total_share.abs() < f64::EPSILON);
        let main = &d[3];
        assert!(main.total_delta().abs() < 1e-12);
    }

    #[test]
    fn diff_folded_scales_the_base_to_the_new_total() {
        let base = profile(&[(&["main", "fn_a"], 50), (&["main", "fn_b"], 50)]);
        let new = profile(&[
            (&["main", "fn_a"], 200),
            (&["main", "fn_b"], 500),
            (&["main", "fn_c"], 300),
        ]);
        let lines = diff_folded(&base, &new, folded::Options::default());
        assert_eq!(
            diff_folded_text(&lines),
            "app;main;fn_a 500 200\napp;main;fn_b 500 500\napp;main;fn_c 0 300\n"
        );
        let base_sum: u64 = lines.iter().map(|l| l.base).sum();
        let new_sum: u64 = lines.iter().map(|l| l.new).sum();
        assert_eq!(base_sum, new_sum);
    }

    #[test]
    fn diff_folded_rounds_and_keeps_vanished_stacks() {
        let base = profile(&[(&["x"], 1), (&["y"], 2)]);
        let new = profile(&[(&["y"], 2)]);
        let lines = diff_folded(&base, &new, folded::Options::default());
        // Scale 2/3: x 0.67 → 1, y 1.33 → 1.
        assert_eq!(diff_folded_text(&lines), "app;x 1 0\napp;y 1 2\n");
        // An empty side is not scaled.
        let lines = diff_folded(&base, &Profile::default(), folded::Options::default());
        assert_eq!(diff_folded_text(&lines), "app;x 1 0\napp;y 2 0\n");
        assert!(
            diff_folded(
                &Profile::default(),
                &Profile::default(),
                folded::Options::default()
            )
            .is_empty()
        );
    }

    fn folded_text(p: &Profile) -> String {
        let mut out = Vec::new();
        folded::write(
            p,
            folded::Options::default().with_root(folded::Root::None),
            &mut out,
        )
        .expect("writing to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn focus_keeps_stacks_through_the_function_re_rooted_at_it() {
        let p = profile(&[
            (&["main", "work", "fn_a", "mix"], 60),
            (&["main", "work", "fn_b"], 30),
            (&["main", "fn_a"], 10),
            (&["other", "fn_a_helper"], 5),
        ]);
        let f = focus(&p, "fn_a");
        assert_eq!(f.total(), 70);
        assert_eq!(folded_text(&f), "fn_a 10\nfn_a;mix 60\n");
        // Labels survive, so the focused profile still filters by process.
        assert!(f.stacks().all(|s| s.labels.get(keys::COMM) == Some("app")));
        assert!(focus(&p, "nothing").is_empty());
        assert!(focus(&Profile::default(), "fn_a").is_empty());
    }

    #[test]
    fn focus_re_roots_recursion_at_the_outermost_call() {
        let p = profile(&[(&["main", "rec", "rec", "leaf"], 4), (&["main", "rec"], 1)]);
        assert_eq!(folded_text(&focus(&p, "rec")), "rec 1\nrec;rec;leaf 4\n");
    }

    #[test]
    fn focus_matches_folded_names_with_suffixes() {
        let p = profile(&[(&["main", "read", "vfs_read_[k]", "copy_[k]"], 4)]);
        assert_eq!(
            folded_text(&focus(&p, "vfs_read_[k]")),
            "vfs_read_[k];copy_[k] 4\n"
        );
        assert!(
            focus(&p, "vfs_read").is_empty(),
            "the bare name is a different function"
        );
    }

    #[test]
    fn callers_cut_at_the_innermost_call_and_reverse() {
        let p = profile(&[
            (&["main", "work", "fn_a", "mix"], 60),
            (&["main", "fn_a"], 10),
            (&["main", "rec", "fn_a", "rec", "fn_a", "deep"], 2),
            (&["main", "work", "fn_b"], 30),
        ]);
        let c = callers(&p, "fn_a");
        assert_eq!(c.total(), 72);
        assert_eq!(
            folded_text(&c),
            "fn_a;main 10\nfn_a;rec;fn_a;rec;main 2\nfn_a;work;main 60\n"
        );
        assert!(callers(&p, "nothing").is_empty());
    }
}
