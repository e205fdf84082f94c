//! Label filters: which samples a query keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Labels;

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
    pub reason: &'static str,
}

impl LabelFilter {
    /// The filter that keeps every sample.
    #[must_use]
    pub fn all() -> Self {
        LabelFilter::default()
    }

    /// Adds a matcher: `name` must be `value` (or another value given for the same name).
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
    /// string is the filter that keeps everything.
    ///
    /// # Errors
    /// A part without `=`, or with an empty name, names that part.
    pub fn parse(input: &str) -> Result<Self, LabelFilterError> {
        let mut filter = LabelFilter::all();
        for part in input.split(',').map(str::trim) {
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(LabelFilterError {
                    input: input.to_owned(),
                    part: part.to_owned(),
                    reason: "empty matcher (stray comma)",
                });
            }
            let err = |reason| LabelFilterError {
                input: input.to_owned(),
                part: part.to_owned(),
                reason,
            };
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| err("expected `name=value`"))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                return Err(err("empty label name"));
            }
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
    }
}
