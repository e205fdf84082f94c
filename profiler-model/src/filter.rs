//! Label filters: which samples a query keeps, in the one syntax `ember export --filter`
//! and the API's `filter=` share.
//!
//! A filter is comma-separated `name=value` matchers. Names are the labels samples carry
//! ([`keys::ALL`]), or an alias of one (`container` for `container_id`); `pid` and `tid`
//! take whole numbers. Anything that could match nothing valid is refused with the reason,
//! rather than answered with an empty profile: an unknown or upper-case name, a
//! non-numeric id, and the matchers of other query languages this one does not have
//! (`!=`, `=~`, `{name="value"}`, quoted values).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{Labels, keys};

/// Other names filters accept for a label: `(alias, label)`.
pub const ALIASES: &[(&str, &str)] = &[("container", keys::CONTAINER_ID)];

/// Which label sets a query keeps: a list of `name=value` matchers.
///
/// Matchers with different names must all match; matchers with the same name are
/// alternatives (`comm=a,comm=b` keeps both processes). A label set without a matched name
/// does not match. The empty filter keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelFilter {
    /// name → accepted values.
    matchers: BTreeMap<String, Vec<String>>,
}

/// A label filter string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad label matcher `{part}` in `{input}`: {reason}")]
pub struct LabelFilterError {
    /// The whole filter string.
    pub input: String,
    /// The comma-separated part that is wrong.
    pub part: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The label `name` stands for: itself, or what it is an alias of.
fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |&(_, label)| label)
}

/// Why the matcher `name=value` can match nothing valid, if it cannot.
fn check(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty label name".to_owned());
    }
    if let Some(n) = name.strip_suffix('!') {
        return Err(format!(
            "`!=` is not supported: a filter keeps what matches, as `{}=VALUE`",
            n.trim()
        ));
    }
    if name.starts_with('{') || value.ends_with('}') {
        return Err(
            "selector braces are not supported: write `name=value,name=value`, unquoted".to_owned(),
        );
    }
    if value.starts_with('~') {
        return Err(format!(
            "`=~` (regular expressions) is not supported: list the values, as \
             `{name}=a,{name}=b`"
        ));
    }
    if value.len() >= 2
        && (value.starts_with('"') && value.ends_with('"')
            || value.starts_with('\'') && value.ends_with('\''))
    {
        return Err(format!(
            "values are not quoted: write `{name}={}`",
            &value[1..value.len() - 1]
        ));
    }
    if !keys::ALL.contains(&name) {
        let lower = name.to_ascii_lowercase();
        if lower != name && keys::ALL.contains(&canonical(&lower)) {
            return Err(format!(
                "unknown label `{name}`: label names are lower-case (`{lower}`)"
            ));
        }
        let aliases: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
        return Err(format!(
            "unknown label `{name}` (labels: {}; also {})",
            keys::ALL.join(", "),
            aliases.join(", ")
        ));
    }
    // `u32::from_str` takes a leading `+`; a label value never has one.
    if keys::NUMERIC.contains(&name) && (value.starts_with('+') || value.parse::<u32>().is_err()) {
        return Err(format!("`{value}` is not a {name} (a whole number)"));
    }
    Ok(())
}

impl LabelFilter {
    /// The filter that keeps every sample.
    #[must_use]
    pub fn all() -> Self {
        LabelFilter::default()
    }

    /// Adds a matcher: `name` must be `value` (or another value given for the same name).
    /// Nothing is checked: [`LabelFilter::parse`] is for what people type.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let values = self.matchers.entry(name.into()).or_default();
        let value = value.into();
        if !values.contains(&value) {
            values.push(value);
        }
        self
    }

    /// Parses `name=value,name=value`; whitespace around parts is ignored and an empty
    /// string is the filter that keeps everything. Aliases become the label they stand
    /// for (`container=ID` is `container_id=ID`).
    ///
    /// # Errors
    /// A part without `=`, with an unknown name, a non-numeric `pid` or `tid`, or another
    /// language's matcher (`!=`, `=~`, braces, quotes) names that part and says why.
    pub fn parse(input: &str) -> Result<Self, LabelFilterError> {
        let mut filter = LabelFilter::all();
        for part in input.split(',').map(str::trim) {
            let err = |reason: String| LabelFilterError {
                input: input.to_owned(),
                part: part.to_owned(),
                reason,
            };
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty matcher (stray comma)".to_owned()));
            }
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| err("expected `name=value`".to_owned()))?;
            let (name, value) = (canonical(name.trim()), value.trim());
            check(name, value).map_err(err)?;
            filter = filter.with(name, value);
        }
        Ok(filter)
    }

    /// Whether the filter keeps everything.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Whether `labels` pass the filter.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(name, values)| {
            labels
                .get(name)
                .is_some_and(|v| values.iter().any(|want| want == v))
        })
    }
}

impl FromStr for LabelFilter {
    type Err = LabelFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelFilter::parse(s)
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, values) in &self.matchers {
            for v in values {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{name}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_with_alternatives_per_name() {
        let f = LabelFilter::parse("comm=split, pid=42,comm=join").expect("valid filter");
        assert_eq!(f.to_string(), "comm=split,comm=join,pid=42");
        let l = |c: &str, p: &str| Labels::new().with("comm", c).with("pid", p);
        assert!(f.matches(&l("split", "42")));
        assert!(f.matches(&l("join", "42")));
        assert!(!f.matches(&l("split", "43")));
        assert!(!f.matches(&Labels::new().with("comm", "split")));
        assert!(LabelFilter::parse("").expect("empty is all").is_all());
    }

    #[test]
    fn bad_parts_are_named() {
        let e = LabelFilter::parse("comm=x,pid42").expect_err("no `=`");
        assert_eq!(e.part, "pid42");
        assert_eq!(
            e.to_string(),
            "bad label matcher `pid42` in `comm=x,pid42`: expected `name=value`"
        );
        assert_eq!(
            LabelFilter::parse("=x").expect_err("no name").reason,
            "empty label name"
        );
        assert!(LabelFilter::parse("a=b,,c=d").is_err());
        assert!(LabelFilter::parse("comm=b,,pid=1").is_err());
    }

    #[test]
    fn aliases_become_their_label() {
        let f = LabelFilter::parse("container=4f8a1c2b3d4e, comm=x").expect("valid");
        assert_eq!(f.to_string(), "comm=x,container_id=4f8a1c2b3d4e");
        assert_eq!(
            LabelFilter::parse(" container = c1").expect("valid"),
            LabelFilter::all().with("container_id", "c1")
        );
    }

    #[test]
    fn matchers_that_match_nothing_valid_are_refused() {
        for (input, reason) in [
            ("pid=abc", "`abc` is not a pid (a whole number)"),
            ("pid=-1", "`-1` is not a pid"),
            ("pid=+1", "`+1` is not a pid"),
            ("pid=", "`` is not a pid"),
            ("tid=1.5", "`1.5` is not a tid"),
            ("pid=99999999999", "is not a pid"),
            (
                "COMM=split",
                "unknown label `COMM`: label names are lower-case (`comm`)",
            ),
            ("Container=c1", "label names are lower-case (`container`)"),
            ("job=web", "unknown label `job` (labels: comm, pid, thread"),
            ("comm!=split", "`!=` is not supported"),
            (
                "comm=~split.*",
                "`=~` (regular expressions) is not supported",
            ),
            ("{comm=\"split\"}", "selector braces are not supported"),
            (
                "comm=\"split\"",
                "values are not quoted: write `comm=split`",
            ),
        ] {
            let e = LabelFilter::parse(input).expect_err(input);
            assert!(e.reason.contains(reason), "{input}: {}", e.reason);
            assert_eq!(e.input, input);
        }
        // Values of other labels are free text, numbers included.
        assert!(LabelFilter::parse("comm=1,thread=a b,pid=0,tid=4294967295").is_ok());
    }
}
