//! Query-string parameters: parsed once per request, every error naming its parameter.

use std::str::FromStr;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use profiler_model::time::{now_unix_ns, parse_time};
use profiler_model::{Format, LabelFilter, ProfileKind};

use super::error::ApiError;

/// How far back `from` reaches when it is not given.
pub(crate) const DEFAULT_FROM: &str = "now-15m";
/// The largest `limit` accepted.
pub(crate) const MAX_LIMIT: usize = 10_000;

/// The parameters of one request, checked against the endpoint's known names.
#[derive(Debug)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
    now_ns: u64,
}

impl Params {
    /// Checks that every parameter is one of `known` and none is repeated.
    pub(crate) fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) = query
            .map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::BadQuery(format!(
                    "unknown parameter `{name}` (this endpoint takes: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::param(name, "given more than once"));
            }
        }
        Ok(Params {
            pairs,
            now_ns: now_unix_ns(),
        })
    }

    /// The raw value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as a time in unix nanoseconds, `default` (itself a time expression) when absent.
    pub(crate) fn time(&self, name: &str, default: &str) -> Result<u64, ApiError> {
        let v = self.get(name).unwrap_or(default);
        parse_time(v, self.now_ns).map_err(|e| ApiError::param(name, e.to_string()))
    }

    /// `from` and `to` (named `from_name`, `to_name`) as a non-empty range.
    pub(crate) fn range(
        &self,
        from_name: &str,
        to_name: &str,
        default_from: &str,
        default_to: &str,
    ) -> Result<(u64, u64), ApiError> {
        let from = self.time(from_name, default_from)?;
        let to = self.time(to_name, default_to)?;
        if from >= to {
            return Err(ApiError::param(
                from_name,
                format!("`{from_name}` must be before `{to_name}` ({from} ns >= {to} ns)"),
            ));
        }
        Ok((from, to))
    }

    /// The `filter` parameter (everything when absent).
    pub(crate) fn filter(&self) -> Result<LabelFilter, ApiError> {
        LabelFilter::parse(self.get("filter").unwrap_or(""))
            .map_err(|e| ApiError::param("filter", e.to_string()))
    }

    /// A `true`/`false` parameter (also `1`/`0`), `false` when absent.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(v) => Err(ApiError::param(
                name,
                format!("`{v}` is not `true` or `false`"),
            )),
        }
    }

    /// `limit`: 1 to [`MAX_LIMIT`], `default` when absent.
    pub(crate) fn limit(&self, default: usize) -> Result<usize, ApiError> {
        let Some(v) = self.get("limit") else {
            return Ok(default);
        };
        let n: usize = v
            .parse()
            .map_err(|_| ApiError::param("limit", format!("`{v}` is not a whole number")))?;
        if n == 0 || n > MAX_LIMIT {
            return Err(ApiError::param(
                "limit",
                format!("{n} is out of range (1 to {MAX_LIMIT})"),
            ));
        }
        Ok(n)
    }

    /// A `format` parameter: one of `allowed`, `default` when absent.
    pub(crate) fn format(
        &self,
        name: &str,
        allowed: &[Format],
        default: Format,
    ) -> Result<Format, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match Format::from_name(v) {
            Some(f) if allowed.contains(&f) => Ok(f),
            _ => {
                let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
                Err(ApiError::param(
                    name,
                    format!("unknown value `{v}` (one of: {})", names.join(", ")),
                ))
            }
        }
    }

    /// A parameter that names one of a few choices, `default` when absent.
    pub(crate) fn choice<T: Choice>(&self, name: &str, default: T) -> Result<T, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|()| {
                ApiError::param(
                    name,
                    format!("unknown value `{v}` (one of: {})", T::NAMES.join(", ")),
                )
            }),
        }
    }
}

/// A parameter value from a fixed list.
pub(crate) trait Choice: FromStr<Err = ()> {
    /// The accepted spellings, for error messages.
    const NAMES: &'static [&'static str];
}

/// Declares a choice enum with its spellings.
macro_rules! choice {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name { $($(#[$vm])* $variant),+ }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(()),
                }
            }
        }

        impl Choice for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
        }
    };
}

choice! {
    /// `sort` of `/api/v1/top`.
    TopSort {
        /// By self samples.
        SelfSamples = "self",
        /// By total samples.
        Total = "total",
    }
}

choice! {
    /// `orientation` of flame graphs.
    Orientation {
        /// Root at the bottom, callees above.
        Flame = "flame",
        /// Root at the top, callees below (inferno's `Direction::Inverted`).
        Icicle = "icicle",
    }
}

choice! {
    /// `root`: the first frame of folded lines.
    RootFrame {
        /// The process name.
        Comm = "comm",
        /// `comm-pid`.
        CommPid = "comm-pid",
        /// No extra frame.
        None = "none",
    }
}

impl From<RootFrame> for profiler_model::folded::Root {
    fn from(r: RootFrame) -> Self {
        match r {
            RootFrame::Comm => Self::Comm,
            RootFrame::CommPid => Self::CommPid,
            RootFrame::None => Self::None,
        }
    }
}

choice! {
    /// `type`: which kind of profile a query is about (the store's window kind).
    ProfileType {
        /// Samples of code running on a CPU, at the sampling frequency.
        Cpu = "cpu",
        /// Microseconds threads spent off CPU (blocked or waiting to run), charged to the
        /// stack they left the CPU in (`ember agent --off-cpu`).
        OffCpu = "off-cpu",
    }
}

impl ProfileType {
    /// The type of a stored kind.
    pub(crate) fn of(kind: ProfileKind) -> ProfileType {
        match kind {
            ProfileKind::Cpu => ProfileType::Cpu,
            ProfileKind::OffCpu => ProfileType::OffCpu,
        }
    }

    /// The store's kind of windows.
    pub(crate) fn kind(self) -> ProfileKind {
        match self {
            ProfileType::Cpu => ProfileKind::Cpu,
            ProfileType::OffCpu => ProfileKind::OffCpu,
        }
    }

    /// The spelling of `type=` (the model's kind name).
    pub(crate) fn name(self) -> &'static str {
        self.kind().name()
    }

    /// What people call it.
    pub(crate) fn title(self) -> &'static str {
        match self {
            ProfileType::Cpu => "CPU time",
            ProfileType::OffCpu => "Off-CPU time",
        }
    }

    /// What one count of an answer is, as the JSON answers say it (`unit`): a sample, or
    /// a microsecond off CPU.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            ProfileType::Cpu => "samples",
            ProfileType::OffCpu => "microseconds",
        }
    }

    /// What the answers' totals add up to, per second of range: cores for CPU samples,
    /// threads waiting for off-CPU time.
    pub(crate) fn rate_unit(self) -> &'static str {
        match self {
            ProfileType::Cpu => "cpu_seconds",
            ProfileType::OffCpu => "off_cpu_seconds",
        }
    }
}

choice! {
    /// `group` of `/api/v1/top`: what each row is.
    TopGroup {
        /// One row per function, merged across processes (the default).
        Function = "function",
        /// One row per function and process (`comm`).
        Process = "process",
        /// One row per function and binary (the file its code is in).
        Binary = "binary",
    }
}

impl Params {
    /// `type`: [`ProfileType::Cpu`] when absent.
    pub(crate) fn profile_type(&self) -> Result<ProfileType, ApiError> {
        self.choice("type", ProfileType::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_types_parse_by_their_api_names_and_map_to_store_kinds() {
        assert_eq!("cpu".parse::<ProfileType>(), Ok(ProfileType::Cpu));
        assert_eq!("off-cpu".parse::<ProfileType>(), Ok(ProfileType::OffCpu));
        for bad in ["offcpu", "off_cpu", "CPU", ""] {
            assert!(bad.parse::<ProfileType>().is_err(), "{bad}");
        }
        assert_eq!(ProfileType::NAMES, ["cpu", "off-cpu"]);
        for kind in ProfileKind::ALL {
            let t = ProfileType::of(kind);
            assert_eq!(t.kind(), kind);
            assert_eq!(t.name(), kind.name());
        }
        assert_eq!(ProfileType::OffCpu.unit(), "microseconds");
    }
}
