//! Ember's **render** stage, the last of sample → aggregate → symbolize → store → query →
//! render/export: a [`Profile`] in, bytes in a [`Format`] out.
//!
//! [`write()`] is the one dispatch from a format to its writer, for `ember record`,
//! `ember export` and the API's `/api/v1/profile` alike; [`write_diff`] is the same for
//! two profiles compared (`ember diff`, `/api/v1/diff`). The flame graphs are inferno's
//! ([`svg`]); the text formats' writers live with their formats in `profiler-model`.
//!
//! Options apply to every format that can honour them: `no_kernel` drops kernel frames
//! from all of them (the stack's samples stay), the title names speedscope's profile too,
//! and an empty profile still gives a valid file (an SVG that says so, an empty folded
//! file, a pprof with no samples).

pub mod svg;

use std::io::{self, Write};

use profiler_model::time::TimeRange;
use profiler_model::{Format, Profile, analysis, folded, json, pprof, speedscope};

pub use svg::{differential_svg, empty_svg, flamegraph_svg};

/// How a profile is rendered, beyond its format.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RenderOptions {
    /// The flame graph's title; speedscope's profile name.
    pub title: String,
    /// The line under the title (duration, frequency, sample count, ...).
    pub subtitle: Option<String>,
    /// Folded-line options (root frame, kernel frames); `no_kernel` applies to every
    /// format.
    pub folded: folded::Options,
    /// Root at the top (an icicle graph) instead of the bottom.
    pub icicle: bool,
    /// Width of the graph on the page, in pixels: frames narrower than one such pixel are
    /// pruned before rendering, so a node-sized profile stays a small SVG. `None` keeps
    /// inferno's default.
    pub width_px: Option<usize>,
    /// The time range the profile covers, for JSON; the profile's own window when `None`.
    pub range: Option<TimeRange>,
    /// The base profile's range, for a diff's JSON; its own window when `None`.
    pub base_range: Option<TimeRange>,
    /// Rows of a diff's JSON (functions, biggest change first); all when `None`.
    pub limit: Option<usize>,
}

impl RenderOptions {
    /// Options with a title.
    #[must_use]
    pub fn titled(title: impl Into<String>) -> Self {
        RenderOptions {
            title: title.into(),
            ..RenderOptions::default()
        }
    }

    /// Sets the subtitle.
    #[must_use]
    pub fn with_subtitle(mut self, subtitle: impl Into<String>) -> Self {
        self.subtitle = Some(subtitle.into());
        self
    }

    /// Sets the folded-line options.
    #[must_use]
    pub fn with_folded(mut self, folded: folded::Options) -> Self {
        self.folded = folded;
        self
    }

    /// Sets the orientation: `true` for an icicle graph.
    #[must_use]
    pub fn with_icicle(mut self, icicle: bool) -> Self {
        self.icicle = icicle;
        self
    }

    /// Sets the page width that frames narrower than a pixel are pruned by.
    #[must_use]
    pub fn with_width_px(mut self, width_px: Option<usize>) -> Self {
        self.width_px = width_px;
        self
    }

    /// Sets the time range the (new) profile covers.
    #[must_use]
    pub fn with_range(mut self, range: TimeRange) -> Self {
        self.range = Some(range);
        self
    }

    /// Sets the time range of a diff's base profile.
    #[must_use]
    pub fn with_base_range(mut self, range: TimeRange) -> Self {
        self.base_range = Some(range);
        self
    }

    /// Sets the rows of a diff's JSON.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The format has no form for what was asked (a diff as pprof, say).
    #[error("{what} cannot be written as {format} (use folded, svg or json)")]
    Unsupported {
        /// What was to be written.
        what: &'static str,
        /// The format asked for.
        format: Format,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `profile`, or it without kernel frames when the options say so.
fn kernel_as_asked<'a>(
    profile: &'a Profile,
    options: &RenderOptions,
    owned: &'a mut Option<Profile>,
) -> &'a Profile {
    if options.folded.no_kernel {
        owned.insert(profile.without_kernel())
    } else {
        profile
    }
}

/// Writes `profile` in `format` to `w`: the one writer dispatch of every format.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn write(
    profile: &Profile,
    format: Format,
    options: &RenderOptions,
    mut w: impl Write,
) -> io::Result<()> {
    let mut owned = None;
    let profile = kernel_as_asked(profile, options, &mut owned);
    match format {
        Format::Folded => folded::write(profile, options.folded, w),
        Format::Svg => flamegraph_svg(profile, options, w),
        Format::Pprof => pprof::encode(profile, w),
        Format::Speedscope => speedscope::write(profile, &options.title, w),
        Format::Json => {
            let range = options.range.unwrap_or_else(|| TimeRange::of(profile));
            json::write(&json::profile(profile, range), &mut w)
        }
    }
}

/// Writes what changed from `base` to `new` in `format`: three-column folded lines
/// (`stack base new`, the base scaled to the new total), a differential flame graph, or
/// the per-function share changes as JSON.
///
/// # Errors
/// [`RenderError::Unsupported`] for pprof and speedscope, which have no diff form; and
/// whatever writing to `w` returns.
pub fn write_diff(
    base: &Profile,
    new: &Profile,
    format: Format,
    options: &RenderOptions,
    mut w: impl Write,
) -> Result<(), RenderError> {
    let (mut owned_base, mut owned_new) = (None, None);
    let base = kernel_as_asked(base, options, &mut owned_base);
    let new = kernel_as_asked(new, options, &mut owned_new);
    match format {
        Format::Folded => {
            let lines = analysis::diff_folded(base, new, options.folded);
            w.write_all(analysis::diff_folded_text(&lines).as_bytes())?;
        }
        Format::Svg => {
            let lines = analysis::diff_folded(base, new, options.folded);
            differential_svg(&lines, options, w)?;
        }
        Format::Json => {
            let value = json::diff(
                base,
                options.base_range.unwrap_or_else(|| TimeRange::of(base)),
                new,
                options.range.unwrap_or_else(|| TimeRange::of(new)),
                options.limit.unwrap_or(usize::MAX),
            );
            json::write(&value, &mut w)?;
        }
        Format::Pprof | Format::Speedscope => {
            return Err(RenderError::Unsupported {
                what: "a diff",
                format,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_model::{Frame, FrameKind, Labels, keys};

    fn profile() -> Profile {
        let mut p = Profile::default();
        let l = Labels::new().with(keys::COMM, "app").with(keys::PID, "3");
        let main = Frame::named("main", FrameKind::User);
        let k = Frame::named("irq", FrameKind::Kernel);
        p.add(&l, &[main.clone(), k.clone()], 4);
        p.add(&l, &[main], 6);
        p.add(&l, &[k], 1);
        p
    }

    fn written(format: Format, options: &RenderOptions) -> Vec<u8> {
        let mut out = Vec::new();
        write(&profile(), format, options, &mut out).unwrap();
        out
    }

    #[test]
    fn no_kernel_applies_to_every_format() {
        let opts =
            RenderOptions::titled("t").with_folded(folded::Options::default().with_no_kernel(true));
        let back = pprof::decode(&written(Format::Pprof, &opts)[..]).unwrap();
        assert!(back.frames().iter().all(|f| f.kind == FrameKind::User));
        assert_eq!(back.total(), 11);
        let lines = folded::lines(&back, folded::Options::default());
        assert_eq!(lines.get("app;main"), Some(&10));
        // The kernel-only stack keeps its sample, with no frames under the process.
        assert_eq!(lines.get("app"), Some(&1));
        assert_eq!(
            String::from_utf8(written(Format::Folded, &opts)).unwrap(),
            "app 1\napp;main 10\n"
        );
        for format in [Format::Svg, Format::Speedscope, Format::Json] {
            let text = String::from_utf8(written(format, &opts)).unwrap();
            assert!(!text.contains("irq"), "{format}: {text}");
            let text = String::from_utf8(written(format, &RenderOptions::titled("t"))).unwrap();
            assert!(text.contains("irq"), "{format}: {text}");
        }
    }

    #[test]
    fn json_takes_the_range_given_and_speedscope_the_title() {
        let opts = RenderOptions::titled("my profile").with_range(TimeRange::new(5, 9));
        let v: serde_json::Value = serde_json::from_slice(&written(Format::Json, &opts)).unwrap();
        assert_eq!(
            (v["from_unix_ns"].clone(), v["to_unix_ns"].clone()),
            (5.into(), 9.into())
        );
        let text = String::from_utf8(written(Format::Speedscope, &opts)).unwrap();
        assert!(text.contains("my profile"), "{text}");
    }

    #[test]
    fn diffs_are_folded_svg_or_json_only() {
        let base = folded::parse(&b"app;main;fn_a 70\napp;main;fn_b 30\n"[..]).unwrap();
        let new = folded::parse(&b"app;main;fn_a 100\napp;main;fn_b 100\n"[..]).unwrap();
        let opts = RenderOptions::titled("d")
            .with_folded(folded::Options::default().with_root(folded::Root::None));
        let mut out = Vec::new();
        write_diff(&base, &new, Format::Folded, &opts, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "app;main;fn_a 140 100\napp;main;fn_b 60 100\n"
        );
        let mut out = Vec::new();
        write_diff(&base, &new, Format::Svg, &opts, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("fn_b (100 samples, 50.00%; +20.00%)"), "{svg}");
        let mut out = Vec::new();
        write_diff(
            &base,
            &new,
            Format::Json,
            &opts.clone().with_limit(1),
            &mut out,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["functions"].as_array().unwrap().len(), 1);
        assert_eq!(v["new"]["total_samples"], 200);
        let err = write_diff(&base, &new, Format::Pprof, &opts, Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a diff cannot be written as pprof (use folded, svg or json)"
        );
        // Nothing new: the empty SVG, not inferno's error.
        let mut out = Vec::new();
        write_diff(&base, &Profile::default(), Format::Svg, &opts, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("No samples"));
    }
}
