//! Flame graph SVGs, drawn by inferno from folded lines.

use std::io::{self, Write};

use profiler_model::{Profile, folded};

/// What to put on a flame graph besides the stacks.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SvgOptions {
    /// The title line.
    pub title: String,
    /// The line under the title (duration, frequency, sample count, ...).
    pub subtitle: Option<String>,
    /// Folded-line options (root frame, kernel frames).
    pub folded: folded::Options,
}

impl SvgOptions {
    /// Options with a title.
    #[must_use]
    pub fn titled(title: impl Into<String>) -> Self {
        SvgOptions {
            title: title.into(),
            ..SvgOptions::default()
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
}

/// Renders `profile` as an interactive flame graph SVG (inferno's, with its built-in
/// zoom and search).
///
/// # Errors
/// Whatever writing to `w` returns, or inferno's error for a profile with no samples.
pub fn flamegraph_svg(profile: &Profile, options: &SvgOptions, w: impl Write) -> io::Result<()> {
    let lines: Vec<String> = folded::lines(profile, options.folded)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    let mut opts = inferno::flamegraph::Options::default();
    opts.title.clone_from(&options.title);
    opts.subtitle.clone_from(&options.subtitle);
    opts.count_name = "samples".to_owned();
    // Colour by the frame's kind (`_[k]` kernel, `_[i]` inlined) and keep the same
    // colours for the same names across runs.
    opts.colors =
        inferno::flamegraph::color::Palette::Multi(inferno::flamegraph::color::MultiPalette::Java);
    opts.hash = true;
    opts.deterministic = true;
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_model::{Frame, FrameKind, Labels, keys};

    #[test]
    fn svg_has_title_subtitle_and_frames() {
        let mut p = Profile::default();
        let l = Labels::new().with(keys::COMM, "split").with(keys::PID, "1");
        p.add(
            &l,
            &[
                Frame::named("main", FrameKind::User),
                Frame::named("fn_a", FrameKind::User),
            ],
            70,
        );
        p.add(
            &l,
            &[
                Frame::named("main", FrameKind::User),
                Frame::named("fn_b", FrameKind::User),
            ],
            30,
        );
        let mut out = Vec::new();
        flamegraph_svg(
            &p,
            &SvgOptions::titled("ember record: split").with_subtitle("5.0 s at 99 Hz, 100 samples"),
            &mut out,
        )
        .unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("ember record: split"));
        assert!(svg.contains("5.0 s at 99 Hz, 100 samples"));
        assert!(svg.contains("fn_a (70 samples, 70.00%)"), "{svg}");
        assert!(svg.contains("fn_b (30 samples, 30.00%)"));
    }
}
