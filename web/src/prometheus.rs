//! The one Prometheus text-format writer: the agent's metrics (`ember`) and the
//! API's own both go through it, so every metric has `# HELP` and `# TYPE` and every label
//! value is escaped the same way.
//!
//! ```
//! use web::prometheus::{Kind, Text};
//!
//! let mut t = Text::new();
//! t.family("ember_windows_written_total", Kind::Counter, "Windows written to the store.")
//!     .sample(&[], 7);
//! t.family("ember_samples_lost_total", Kind::Counter, "Samples lost, by reason.")
//!     .sample(&[("reason", "counts_full")], 3)
//!     .sample(&[("reason", "stack_lost")], 0);
//! assert!(t.finish().contains("ember_samples_lost_total{reason=\"counts_full\"} 3\n"));
//! ```

use std::fmt::Write as _;

/// A metric family's type, as `# TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count ([`Family::histogram`]).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value: a count or a float.
pub trait Value {
    /// Appends the value as Prometheus spells it.
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Prometheus text being written, one family after another.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Empty text.
    #[must_use]
    pub fn new() -> Self {
        Text::default()
    }

    /// Starts the family `name` (writes its `# HELP` and `# TYPE`); add its samples to the
    /// returned [`Family`].
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// The text written so far.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

/// One family's samples; see [`Text::family`].
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// One sample of the family, with `labels` (name, value) in order.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Value) -> &mut Self {
        self.line("", labels, None, &value);
        self
    }

    /// One histogram series: `bounds` are the buckets' upper bounds and `counts` the
    /// observations in each (not cumulative; one more than `bounds`, the last for `+Inf`).
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> &mut Self {
        let mut cumulative = 0u64;
        for (i, count) in counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(*count);
            let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
            let mut le_text = String::new();
            le.write_to(&mut le_text);
            self.line("_bucket", labels, Some(&le_text), &cumulative);
        }
        self.line("_sum", labels, None, &sum);
        self.line("_count", labels, None, &cumulative);
        self
    }

    fn line(&mut self, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, value: &dyn Value) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        let extra = le.map(|le| ("le", le));
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(self.out);
        self.out.push('\n');
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// `# HELP` text: `\` and newlines escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut t = Text::new();
        t.family("a_total", Kind::Counter, "Things.\nMore")
            .sample(&[], 3)
            .sample(&[("path", "x\"y\\z\nw"), ("k", "v")], 1);
        t.family("b", Kind::Gauge, "A float.").sample(&[], 1.5);
        let text = t.finish();
        assert_eq!(
            text,
            "# HELP a_total Things.\\nMore\n# TYPE a_total counter\na_total 3\n\
             a_total{path=\"x\\\"y\\\\z\\nw\",k=\"v\"} 1\n\
             # HELP b A float.\n# TYPE b gauge\nb 1.5\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut t = Text::new();
        t.family("d_seconds", Kind::Histogram, "Latency.")
            .histogram(&[("endpoint", "/a")], &[0.1, 1.0], &[2, 0, 1], 3.25);
        let text = t.finish();
        assert!(text.contains("d_seconds_bucket{endpoint=\"/a\",le=\"0.1\"} 2\n"));
        assert!(text.contains("d_seconds_bucket{endpoint=\"/a\",le=\"1\"} 2\n"));
        assert!(text.contains("d_seconds_bucket{endpoint=\"/a\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("d_seconds_sum{endpoint=\"/a\"} 3.25\n"));
        assert!(text.contains("d_seconds_count{endpoint=\"/a\"} 3\n"));
        let mut nan = String::new();
        f64::NAN.write_to(&mut nan);
        assert_eq!(nan, "NaN");
    }
}
