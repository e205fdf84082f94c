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
    /// Root at the top (an icicle graph) instead of the bottom.
    pub icicle: bool,
    /// Width of the graph on the page, in pixels: frames narrower than one such pixel are
    /// pruned before rendering, so a node-sized profile stays a small SVG. `None` keeps
    /// inferno's default.
    pub width_px: Option<usize>,
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

    /// inferno's options for these: one place for the palette, determinism and layout of
    /// every flame graph Ember draws.
    fn inferno(&self) -> inferno::flamegraph::Options<'static> {
        use inferno::flamegraph::{Direction, color};
        let mut opts = inferno::flamegraph::Options::default();
        opts.title.clone_from(&self.title);
        opts.subtitle.clone_from(&self.subtitle);
        opts.count_name = "samples".to_owned();
        // Colour by the frame's kind (`_[k]` kernel, `_[i]` inlined) and keep the same
        // colours for the same names across runs; differential graphs colour by change.
        opts.colors = color::Palette::Multi(color::MultiPalette::Java);
        opts.hash = true;
        opts.deterministic = true;
        opts.direction = if self.icicle {
            Direction::Inverted
        } else {
            Direction::Straight
        };
        if let Some(w) = self.width_px {
            #[expect(
                clippy::cast_precision_loss,
                reason = "page widths are small integers, exact in f64"
            )]
            let one_pixel_pct = 100.0 / w.max(1) as f64;
            opts.min_width = one_pixel_pct;
        }
        opts
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
    inferno::flamegraph::from_lines(&mut options.inferno(), lines.iter().map(String::as_str), w)
}

/// Renders differential folded lines (`stack base new`) as inferno's differential flame
/// graph: widths are the new profile, red frames grew and blue frames shrank.
///
/// # Errors
/// Whatever writing to `w` returns, or inferno's error for empty input.
pub fn differential_svg<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    options: &SvgOptions,
    w: impl Write,
) -> io::Result<()> {
    inferno::flamegraph::from_lines(&mut options.inferno(), lines, w)
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
