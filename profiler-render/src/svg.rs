//! Flame graph SVGs, drawn by inferno from folded lines, and the SVG that says there is
//! nothing to draw (inferno refuses empty input).

use std::io::{self, Write};

use profiler_model::analysis::{self, DiffLine};
use profiler_model::{Profile, ProfileKind, folded};

use crate::RenderOptions;

/// inferno's options for `options`: one place for the palette, determinism and layout of
/// every flame graph Ember draws.
fn inferno(options: &RenderOptions, kind: ProfileKind) -> inferno::flamegraph::Options<'static> {
    use inferno::flamegraph::{Direction, color};
    let mut opts = inferno::flamegraph::Options::default();
    opts.title.clone_from(&options.title);
    opts.subtitle.clone_from(&options.subtitle);
    // Tooltips say what a count is: samples, or microseconds off CPU.
    opts.count_name = kind.unit().to_owned();
    // Colour by the frame's kind (`_[k]` kernel, `_[i]` inlined) and keep the same
    // colours for the same names across runs; differential graphs colour by change.
    opts.colors = color::Palette::Multi(color::MultiPalette::Java);
    opts.hash = true;
    opts.deterministic = true;
    opts.direction = if options.icicle {
        Direction::Inverted
    } else {
        Direction::Straight
    };
    if let Some(w) = options.width_px {
        #[expect(
            clippy::cast_precision_loss,
            reason = "page widths are small integers, exact in f64"
        )]
        let one_pixel_pct = 100.0 / w.max(1) as f64;
        opts.min_width = one_pixel_pct;
    }
    opts
}

/// Renders `profile` as an interactive flame graph SVG (inferno's, with its built-in
/// zoom and search); an empty profile gets [`empty_svg`].
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn flamegraph_svg(profile: &Profile, options: &RenderOptions, w: impl Write) -> io::Result<()> {
    if profile.is_empty() {
        return empty_svg(&options.title, options.subtitle.as_deref(), w);
    }
    let lines: Vec<String> = folded::lines(profile, options.folded)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    inferno::flamegraph::from_lines(
        &mut inferno(options, profile.meta.kind),
        lines.iter().map(String::as_str),
        w,
    )
}

/// Renders differential folded lines (`stack base new`) as inferno's differential flame
/// graph: widths are the new profile, red frames grew and blue frames shrank. Lines
/// without new samples get [`empty_svg`].
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn differential_svg(
    lines: &[DiffLine],
    options: &RenderOptions,
    w: impl Write,
) -> io::Result<()> {
    if lines.iter().all(|l| l.new == 0) {
        return empty_svg(&options.title, options.subtitle.as_deref(), w);
    }
    let text = analysis::diff_folded_text(lines);
    inferno::flamegraph::from_lines(&mut inferno(options, ProfileKind::Cpu), text.lines(), w)
}

/// `s` with the five characters XML gives meaning to escaped.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The SVG for a graph with no samples: the title, `No samples`, and the subtitle when
/// there is one, every text escaped (titles carry filters and process names).
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn empty_svg(title: &str, subtitle: Option<&str>, mut w: impl Write) -> io::Result<()> {
    let subtitle = subtitle.map_or_else(String::new, |s| {
        format!(
            "<text x=\"600\" y=\"80\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
            xml_escape(s)
        )
    });
    write!(
        w,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"100\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-size=\"17\">{}</text>\
         <text x=\"600\" y=\"58\" text-anchor=\"middle\" font-size=\"14\">No samples to draw</text>\
         {subtitle}</svg>\n",
        xml_escape(title)
    )
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
            &RenderOptions::titled("ember record: split")
                .with_subtitle("5.0 s at 99 Hz, 100 samples"),
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

    #[test]
    fn empty_svg_escapes_every_xml_character() {
        let mut out = Vec::new();
        flamegraph_svg(
            &Profile::default(),
            &RenderOptions::titled("comm=<a&b> \"q\" 'x'").with_subtitle("0 < 1"),
            &mut out,
        )
        .unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(
            svg.contains("comm=&lt;a&amp;b&gt; &quot;q&quot; &apos;x&apos;"),
            "{svg}"
        );
        assert!(
            svg.contains("0 &lt; 1") && svg.contains("No samples"),
            "{svg}"
        );
        assert!(!svg.contains("<a&b>"));
        // Well-formed: every `<` opens a tag.
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }
}
