//! The web UI's views of profiles, computed here and answered as JSON shaped for drawing:
//! the flame graph as a pruned call tree ([`flame_tree`], optionally against a base
//! profile), the functions that grew and shrank ([`changes`]), top functions per process
//! or binary ([`top_grouped`]) and each label's values with their share of CPU
//! ([`explore`]). The SVG exports stay inferno's (`profiler-render`); these views only
//! feed the page's own renderer.
//!
//! A frame's *binary* is the file name of its module (`libc.so.6`, `split`), `[kernel]`
//! for kernel code, and empty when nothing is known.

use std::collections::{HashMap, HashSet};

use profiler_model::filter::ALIASES;
use profiler_model::{Frame, FrameKind, LabelFilter, LabelFilterError, Labels, Profile, keys};
use serde_json::{Value, json};

use super::params::TopGroup;

/// What a frame's code is in, for colours and the top table's binary column.
pub(crate) fn binary_of(frame: &Frame) -> &str {
    match (&frame.module, frame.kind) {
        (Some(m), _) => m.rsplit('/').next().unwrap_or(m),
        (None, FrameKind::Kernel) => "[kernel]",
        (None, FrameKind::Python) => "[python]",
        (None, FrameKind::User) => "",
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a share needs no more than f64's 53 bits of precision"
    )]
    let s = part as f64 / whole as f64;
    s
}

// ---------------------------------------------------------------------------------------

/// A filter's matchers as given, so a view can drop the ones on one label (a label's
/// explorer counts under the *other* filters) or add the idle task's.
#[derive(Clone, Debug, Default)]
pub(crate) struct FilterParts {
    pairs: Vec<(String, String)>,
}

impl FilterParts {
    /// Parses `raw` as [`LabelFilter::parse`] does, keeping its matchers.
    pub(crate) fn parse(raw: &str) -> Result<(LabelFilter, FilterParts), LabelFilterError> {
        let filter = LabelFilter::parse(raw)?;
        let pairs = raw
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| {
                let n = n.trim();
                let n = ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == n)
                    .map_or(n, |&(_, label)| label);
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        Ok((filter, FilterParts { pairs }))
    }

    /// The filter without its matchers on `name`.
    pub(crate) fn without(&self, name: &str) -> LabelFilter {
        self.pairs
            .iter()
            .filter(|(n, _)| n != name)
            .fold(LabelFilter::all(), |f, (n, v)| f.with(n, v))
    }

    /// The filter narrowed to the kernel's idle task (pid 0), or `None` when it already
    /// leaves the idle task out (it names other pids only).
    pub(crate) fn idle(&self) -> Option<LabelFilter> {
        let pids: Vec<&str> = self
            .pairs
            .iter()
            .filter(|(n, _)| n == keys::PID)
            .map(|(_, v)| v.as_str())
            .collect();
        if !pids.is_empty() && !pids.contains(&"0") {
            return None;
        }
        Some(self.without(keys::PID).with(keys::PID, "0"))
    }
}

// ---------------------------------------------------------------------------------------

/// Strings to small ids.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }
}

/// One node of the call tree: a frame under its caller (a process under the root).
#[derive(Default)]
struct Node {
    name: u32,
    binary: u32,
    total: u64,
    self_samples: u64,
    base_total: u64,
    base_self: u64,
    children: Vec<u32>,
    /// For a Python frame: samples by the line being run (of the new profile).
    lines: Vec<(u32, u64)>,
}

#[derive(Default)]
struct TreeBuilder {
    names: Interner,
    binaries: Interner,
    nodes: Vec<Node>,
    /// `(parent, name)` → child.
    index: HashMap<(u32, u32), u32>,
}

impl TreeBuilder {
    fn new() -> Self {
        let mut b = TreeBuilder::default();
        let root = b.names.id("all");
        let none = b.binaries.id("");
        b.nodes.push(Node {
            name: root,
            binary: none,
            ..Node::default()
        });
        b
    }

    fn child(&mut self, parent: u32, name: u32, binary: u32) -> u32 {
        if let Some(&c) = self.index.get(&(parent, name)) {
            return c;
        }
        let c = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes.push(Node {
            name,
            binary,
            ..Node::default()
        });
        self.nodes[parent as usize].children.push(c);
        self.index.insert((parent, name), c);
        c
    }

    fn bump(&mut self, node: u32, count: u64, base: bool) {
        let n = &mut self.nodes[node as usize];
        if base {
            n.base_total += count;
        } else {
            n.total += count;
        }
    }

    /// Adds every stack of `profile`, rooted at its process, to the new or base counts.
    fn add(&mut self, profile: &Profile, base: bool) {
        let ids: Vec<(u32, u32, Option<u32>)> = profile
            .frames()
            .iter()
            .map(|f| {
                (
                    self.names.id(&f.folded_name().to_string()),
                    self.binaries.id(binary_of(f)),
                    f.line.filter(|_| f.kind == FrameKind::Python && !base),
                )
            })
            .collect();
        let none = self.binaries.id("");
        for s in profile.stacks() {
            let comm = self
                .names
                .id(s.labels.get(keys::COMM).unwrap_or("[unknown]"));
            self.bump(0, s.count, base);
            let mut node = self.child(0, comm, none);
            self.bump(node, s.count, base);
            for &f in s.frames {
                let (name, binary, line) = ids[f as usize];
                node = self.child(node, name, binary);
                self.bump(node, s.count, base);
                if let Some(line) = line {
                    let lines = &mut self.nodes[node as usize].lines;
                    match lines.iter_mut().find(|(l, _)| *l == line) {
                        Some((_, c)) => *c += s.count,
                        None => lines.push((line, s.count)),
                    }
                }
            }
            let n = &mut self.nodes[node as usize];
            if base {
                n.base_self += s.count;
            } else {
                n.self_samples += s.count;
            }
        }
    }
}

/// The call tree of `new` (and of `base`, when comparing), rooted at `all`, then the
/// process, then the stack's frames, as JSON for the UI's renderer:
///
/// - `names`, `binaries`: string tables;
/// - `nodes`: in depth-first order, biggest child first, each
///   `[depth, name, binary, total, self]` (samples), plus `base_total, base_self` when
///   there is a base;
/// - `lines`: for nodes of Python frames, by node index, `[[line, samples], ...]`: the
///   lines being run there, most samples first (at most five).
///
/// A node narrower than `min_fraction` of its profile's total (in both profiles, when
/// comparing) is left out with its subtree; its samples stay in its parent's total.
pub(crate) fn flame_tree(new: &Profile, base: Option<&Profile>, min_fraction: f64) -> Value {
    let mut b = TreeBuilder::new();
    b.add(new, false);
    if let Some(base) = base {
        b.add(base, true);
    }
    let min = |total: u64| -> u64 {
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a pixel's worth of samples, rounded up"
        )]
        let m = (total as f64 * min_fraction).ceil() as u64;
        m.max(1)
    };
    let (min_new, min_base) = (min(b.nodes[0].total), min(b.nodes[0].base_total));
    let (new_total, base_total) = (b.nodes[0].total.max(1), b.nodes[0].base_total.max(1));
    let mut names = Interner::default();
    let mut binaries = Interner::default();
    let mut out = Vec::new();
    // Row index -> the Python lines run there, most samples first (at most 5).
    let mut lines = serde_json::Map::new();
    let mut stack: Vec<(u32, u32)> = vec![(0, 0)];
    while let Some((id, depth)) = stack.pop() {
        let n = &b.nodes[id as usize];
        if !n.lines.is_empty() {
            let mut by_count = n.lines.clone();
            by_count.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            by_count.truncate(5);
            lines.insert(out.len().to_string(), json!(by_count));
        }
        let name = names.id(&b.names.names[n.name as usize]);
        let binary = binaries.id(&b.binaries.names[n.binary as usize]);
        let mut row = vec![
            Value::from(depth),
            Value::from(name),
            Value::from(binary),
            Value::from(n.total),
            Value::from(n.self_samples),
        ];
        if base.is_some() {
            row.push(Value::from(n.base_total));
            row.push(Value::from(n.base_self));
        }
        out.push(Value::Array(row));
        let mut kids: Vec<u32> = n
            .children
            .iter()
            .copied()
            .filter(|&c| {
                let c = &b.nodes[c as usize];
                c.total >= min_new || (base.is_some() && c.base_total >= min_base)
            })
            .collect();
        // Biggest first (by the larger of its two shares), then by name; pushed in
        // reverse so the biggest is drawn first.
        let weight = |c: u32| {
            let c = &b.nodes[c as usize];
            share(c.total, new_total).max(share(c.base_total, base_total))
        };
        kids.sort_by(|&x, &y| {
            weight(y).total_cmp(&weight(x)).then_with(|| {
                b.names.names[b.nodes[x as usize].name as usize]
                    .cmp(&b.names.names[b.nodes[y as usize].name as usize])
            })
        });
        stack.extend(kids.into_iter().rev().map(|c| (c, depth + 1)));
    }
    json!({ "names": names.names, "binaries": binaries.names, "nodes": out, "lines": lines })
}

// ---------------------------------------------------------------------------------------

/// Per function: self and total samples, by folded name.
fn function_samples(profile: &Profile) -> HashMap<String, (u64, u64)> {
    profiler_model::analysis::top_functions(profile)
        .into_iter()
        .map(|f| (f.name, (f.self_samples, f.total_samples)))
        .collect()
}

/// The `limit` functions whose self share grew most from `base` to `new`, and the
/// `limit` that shrank most, each with both shares and both sample counts. Functions
/// whose self share did not change (callers) are in neither list.
pub(crate) fn changes(base: &Profile, new: &Profile, limit: usize) -> (Vec<Value>, Vec<Value>) {
    let (b, n) = (function_samples(base), function_samples(new));
    let (bt, nt) = (base.total(), new.total());
    let mut rows: Vec<(f64, f64, &str)> = b
        .keys()
        .chain(n.keys().filter(|k| !b.contains_key(*k)))
        .map(|name| {
            let (bs, btot) = b.get(name).copied().unwrap_or_default();
            let (ns, ntot) = n.get(name).copied().unwrap_or_default();
            (
                share(ns, nt) - share(bs, bt),
                share(ntot, nt) - share(btot, bt),
                name.as_str(),
            )
        })
        .collect();
    rows.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(y.1.total_cmp(&x.1))
            .then_with(|| x.2.cmp(y.2))
    });
    let row = |&(self_delta, total_delta, name): &(f64, f64, &str)| {
        let (bs, btot) = b.get(name).copied().unwrap_or_default();
        let (ns, ntot) = n.get(name).copied().unwrap_or_default();
        json!({
            "name": name,
            "base_self": bs, "new_self": ns,
            "base_total": btot, "new_total": ntot,
            "base_self_share": share(bs, bt), "new_self_share": share(ns, nt),
            "base_total_share": share(btot, bt), "new_total_share": share(ntot, nt),
            "self_delta": self_delta, "total_delta": total_delta,
        })
    };
    let grew = rows
        .iter()
        .filter(|r| r.0 > 0.0)
        .take(limit)
        .map(row)
        .collect();
    let shrank = rows
        .iter()
        .rev()
        .filter(|r| r.0 < 0.0)
        .take(limit)
        .map(row)
        .collect();
    (grew, shrank)
}

// ---------------------------------------------------------------------------------------

/// One row of [`top_grouped`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupedStat {
    /// The process or binary.
    pub(crate) group: String,
    /// The folded function name.
    pub(crate) name: String,
    /// Samples whose leaf is this function (in this group).
    pub(crate) self_samples: u64,
    /// Samples whose stack holds this function (in this group), once per stack.
    pub(crate) total_samples: u64,
}

/// Self and total samples per function and process (`comm`) or binary, by self samples,
/// then total, then group and name. [`TopGroup::Function`] groups everything under `""`.
pub(crate) fn top_grouped(profile: &Profile, group: TopGroup) -> Vec<GroupedStat> {
    let frames: Vec<(String, &str)> = profile
        .frames()
        .iter()
        .map(|f| (f.folded_name().to_string(), binary_of(f)))
        .collect();
    let mut acc: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for s in profile.stacks() {
        seen.clear();
        let comm = s.labels.get(keys::COMM).unwrap_or("[unknown]");
        let key = |id: u32| {
            let (name, binary) = &frames[id as usize];
            let g = match group {
                TopGroup::Function => "",
                TopGroup::Process => comm,
                TopGroup::Binary => binary,
            };
            (g, name.as_str())
        };
        for &id in s.frames {
            if seen.insert(key(id)) {
                acc.entry(key(id)).or_default().1 += s.count;
            }
        }
        if let Some(&leaf) = s.frames.last() {
            acc.entry(key(leaf)).or_default().0 += s.count;
        }
    }
    let mut out: Vec<GroupedStat> = acc
        .into_iter()
        .map(|((g, name), (self_samples, total_samples))| GroupedStat {
            group: g.to_owned(),
            name: name.to_owned(),
            self_samples,
            total_samples,
        })
        .collect();
    out.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then(b.total_samples.cmp(&a.total_samples))
            .then_with(|| a.group.cmp(&b.group))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

// ---------------------------------------------------------------------------------------

/// For label values other than the process, the label that names what they are: a
/// thread id's thread name, otherwise the process.
fn hint_label(name: &str) -> Option<&'static str> {
    match name {
        keys::COMM => None,
        keys::TID => Some(keys::THREAD),
        _ => Some(keys::COMM),
    }
}

/// Every label's values with their samples and share, for the label explorer: the
/// samples of `profile` (the range's, all filters off, idle left out) that pass the
/// filter's matchers on the *other* labels, so a value's count says what choosing it
/// would draw. Each value carries a hint of what it is (a pid's process, a container's
/// main process); at most `limit` values per label, biggest first, with how many more
/// and how many samples lack the label.
pub(crate) fn explore(profile: &Profile, parts: &FilterParts, limit: usize) -> Value {
    let mut sets: HashMap<&Labels, u64> = HashMap::new();
    for s in profile.stacks() {
        *sets.entry(s.labels).or_default() += s.count;
    }
    let filters: Vec<(&str, LabelFilter)> =
        keys::ALL.iter().map(|&n| (n, parts.without(n))).collect();
    let mut out = Vec::new();
    for (name, filter) in &filters {
        let mut total = 0;
        let mut values: HashMap<&str, (u64, HashMap<&str, u64>)> = HashMap::new();
        for (labels, &count) in &sets {
            if !filter.matches(labels) {
                continue;
            }
            total += count;
            let Some(value) = labels.get(name) else {
                continue;
            };
            let v = values.entry(value).or_default();
            v.0 += count;
            if let Some(h) = hint_label(name).and_then(|h| labels.get(h)) {
                *v.1.entry(h).or_default() += count;
            }
        }
        let mut values: Vec<(&str, u64, String)> = values
            .into_iter()
            .map(|(value, (samples, hints))| {
                let mut hints: Vec<(&str, u64)> = hints.into_iter().collect();
                hints.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                let hint = match hints.as_slice() {
                    [] => String::new(),
                    [(h, _)] => (*h).to_owned(),
                    [(h, _), rest @ ..] => format!("{h} and {} more", rest.len()),
                };
                (value, samples, hint)
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let more = values.len().saturating_sub(limit);
        let rows: Vec<Value> = values
            .iter()
            .take(limit)
            .map(|(value, samples, hint)| {
                let mut row = json!({
                    "value": value,
                    "samples": samples,
                    "share": share(*samples, total),
                });
                if !hint.is_empty() {
                    row["hint"] = Value::from(hint.as_str());
                }
                row
            })
            .collect();
        let labelled: u64 = values.iter().map(|v| v.1).sum();
        out.push(json!({
            "name": name,
            "total_samples": total,
            "unlabelled_samples": total - labelled,
            "values": rows,
            "more": more,
        }));
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use profiler_model::ProfileMeta;

    use super::*;

    fn frame(name: &str, module: &str) -> Frame {
        let mut f = Frame::named(name, FrameKind::User);
        f.module = Some(module.into());
        f
    }

    fn split() -> Profile {
        let mut p = Profile::new(ProfileMeta::default());
        let l = Labels::new()
            .with(keys::COMM, "split")
            .with(keys::PID, "42")
            .with(keys::CONTAINER_ID, "abc");
        let main = frame("main", "/usr/bin/split");
        let a = frame("fn_a", "/usr/bin/split");
        let b = frame("fn_b", "/usr/bin/split");
        let memcpy = frame("memcpy", "/lib/libc.so.6");
        p.add(&l, &[main.clone(), a], 70);
        p.add(&l, &[main.clone(), b], 29);
        p.add(&l, &[main, memcpy], 1);
        let cat = Labels::new().with(keys::COMM, "cat").with(keys::PID, "7");
        p.add(&cat, &[frame("main", "/usr/bin/cat")], 20);
        p
    }

    #[test]
    fn filter_parts_drop_one_label_and_find_the_idle_task() {
        let (f, parts) = FilterParts::parse("comm=split, container=abc").expect("valid");
        assert_eq!(f.to_string(), "comm=split,container_id=abc");
        assert_eq!(parts.without("comm").to_string(), "container_id=abc");
        assert_eq!(
            parts.idle().expect("idle possible").to_string(),
            "comm=split,container_id=abc,pid=0"
        );
        let (_, parts) = FilterParts::parse("pid=42").expect("valid");
        assert!(parts.idle().is_none(), "pid=42 leaves the idle task out");
        let (_, parts) = FilterParts::parse("pid=42,pid=0").expect("valid");
        assert_eq!(parts.idle().expect("pid 0 named").to_string(), "pid=0");
        assert!(FilterParts::parse("nope=1").is_err());
    }

    #[test]
    fn python_frames_carry_their_lines_most_samples_first() {
        let py = |name: &str, line: u32| Frame {
            file: Some("/srv/app.py".into()),
            line: Some(line),
            ..Frame::named(name, FrameKind::Python)
        };
        let l = Labels::new()
            .with(keys::COMM, "python3")
            .with(keys::PID, "9");
        let mut p = Profile::default();
        p.add(&l, &[py("main (app.py)", 5), py("fn_a (app.py)", 17)], 6);
        p.add(&l, &[py("main (app.py)", 5), py("fn_a (app.py)", 18)], 3);
        p.add(&l, &[py("main (app.py)", 6)], 1);
        let tree = flame_tree(&p, None, 0.0);
        let names = tree["names"].as_array().expect("names");
        let nodes = tree["nodes"].as_array().expect("nodes");
        let row = |name: &str| {
            nodes
                .iter()
                .position(|r| names[r[1].as_u64().expect("name") as usize] == name)
                .expect("node")
        };
        let lines = &tree["lines"];
        assert_eq!(
            lines[row("fn_a (app.py)_[j]").to_string()],
            json!([[17, 6], [18, 3]])
        );
        assert_eq!(
            lines[row("main (app.py)_[j]").to_string()],
            json!([[5, 9], [6, 1]])
        );
        assert!(lines.get(row("python3").to_string()).is_none());
        let binaries = tree["binaries"].as_array().expect("binaries");
        let fn_a = &nodes[row("fn_a (app.py)_[j]")];
        assert_eq!(
            binaries[fn_a[2].as_u64().expect("binary") as usize],
            "[python]"
        );
    }

    #[test]
    fn the_tree_is_rooted_at_processes_biggest_first_and_pruned() {
        let tree = flame_tree(&split(), None, 0.05);
        let names: Vec<&str> = tree["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|v| v.as_str().expect("string"))
            .collect();
        let rows: Vec<(u64, &str, u64, u64)> = tree["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|r| {
                (
                    r[0].as_u64().expect("depth"),
                    names[r[1].as_u64().expect("name") as usize],
                    r[3].as_u64().expect("total"),
                    r[4].as_u64().expect("self"),
                )
            })
            .collect();
        // memcpy (1 of 120 samples) is under 5 % and left out; its sample stays in main.
        assert_eq!(
            rows,
            [
                (0, "all", 120, 0),
                (1, "split", 100, 0),
                (2, "main", 100, 0),
                (3, "fn_a", 70, 70),
                (3, "fn_b", 29, 29),
                (1, "cat", 20, 0),
                (2, "main", 20, 20),
            ]
        );
        let binaries = tree["binaries"].as_array().expect("binaries");
        let fn_a = &tree["nodes"][3];
        assert_eq!(
            binaries[fn_a[2].as_u64().expect("binary") as usize],
            "split"
        );
    }

    #[test]
    fn a_compared_tree_keeps_what_either_side_has() {
        let new = split();
        let mut base = Profile::new(ProfileMeta::default());
        let l = Labels::new().with(keys::COMM, "split");
        base.add(&l, &[frame("main", "m"), frame("old_fn", "m")], 10);
        let tree = flame_tree(&new, Some(&base), 0.05);
        let nodes = tree["nodes"].as_array().expect("nodes");
        assert_eq!(nodes[0][3], 120);
        assert_eq!(nodes[0][5], 10);
        let names = tree["names"].as_array().expect("names");
        let old = nodes
            .iter()
            .find(|r| names[r[1].as_u64().expect("id") as usize] == "old_fn")
            .expect("old_fn is kept: all of the base");
        assert_eq!((old[3].as_u64(), old[5].as_u64()), (Some(0), Some(10)));
    }

    #[test]
    fn changes_name_what_grew_and_shrank_with_shares_and_samples() {
        let base = split();
        let mut new = Profile::new(ProfileMeta::default());
        let l = Labels::new().with(keys::COMM, "split");
        new.add(&l, &[frame("main", "m"), frame("fn_a", "m")], 54);
        new.add(&l, &[frame("main", "m"), frame("fn_b", "m")], 46);
        let (grew, shrank) = changes(&base, &new, 5);
        assert_eq!(grew[0]["name"], "fn_b");
        assert_eq!(grew[0]["base_self"], 29);
        assert_eq!(grew[0]["new_self"], 46);
        let d = grew[0]["self_delta"].as_f64().expect("delta");
        assert!((d - (0.46 - 29.0 / 120.0)).abs() < 1e-9, "{d}");
        assert!(shrank.iter().any(|r| r["name"] == "main"), "{shrank:?}");
        assert!(grew.iter().all(|r| r["self_delta"].as_f64() >= Some(0.0)));
    }

    #[test]
    fn top_rows_per_process_and_binary() {
        let p = split();
        let by_process = top_grouped(&p, TopGroup::Process);
        assert_eq!(
            (by_process[0].group.as_str(), by_process[0].name.as_str()),
            ("split", "fn_a")
        );
        let cat_main = by_process
            .iter()
            .find(|r| r.group == "cat")
            .expect("cat's main is its own row");
        assert_eq!((cat_main.self_samples, cat_main.total_samples), (20, 20));
        let by_binary = top_grouped(&p, TopGroup::Binary);
        let memcpy = by_binary
            .iter()
            .find(|r| r.name == "memcpy")
            .expect("memcpy");
        assert_eq!(memcpy.group, "libc.so.6");
        let merged = top_grouped(&p, TopGroup::Function);
        let main = merged.iter().find(|r| r.name == "main").expect("main");
        assert_eq!((main.self_samples, main.total_samples), (20, 120));
    }

    #[test]
    fn the_explorer_counts_under_the_other_filters_with_hints() {
        let p = split();
        let (_, parts) = FilterParts::parse("comm=split").expect("valid");
        let labels = explore(&p, &parts, 10);
        let label = |n: &str| {
            labels
                .as_array()
                .expect("labels")
                .iter()
                .find(|l| l["name"] == n)
                .unwrap_or_else(|| panic!("{n} in {labels}"))
                .clone()
        };
        // The process list ignores comm=split itself: both processes, shares summing to 1.
        let comm = label("comm");
        assert_eq!(comm["total_samples"], 120);
        assert_eq!(comm["unlabelled_samples"], 0);
        let shares: f64 = comm["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| v["share"].as_f64().expect("share"))
            .sum();
        assert!((shares - 1.0).abs() < 1e-9);
        // The pid list respects comm=split and names the process.
        let pid = label("pid");
        assert_eq!(pid["total_samples"], 100);
        assert_eq!(pid["values"][0]["value"], "42");
        assert_eq!(pid["values"][0]["hint"], "split");
        assert_eq!(pid["values"].as_array().map(Vec::len), Some(1));
        let container = label("container_id");
        assert_eq!(container["values"][0]["hint"], "split");
        assert_eq!(
            container["unlabelled_samples"], 0,
            "under comm=split every sample has one"
        );
        let limited = explore(&p, &FilterParts::default(), 1);
        let comm = &limited[0];
        assert_eq!(
            (comm["name"].as_str(), comm["more"].as_u64()),
            (Some("comm"), Some(1))
        );
    }
}
