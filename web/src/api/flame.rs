//! The flame graph knobs the UI asks for: orientation (flame or icicle) and pruning of
//! frames narrower than a pixel of the page's graph, read from the query and handed to
//! `profiler-render`.

use profiler_render::RenderOptions;

use super::error::ApiError;
use super::params::{Orientation, Params};

/// The smallest and largest `width` accepted, in CSS pixels.
pub(crate) const WIDTH_RANGE: (usize, usize) = (100, 20_000);

/// How a flame graph is drawn, from the `orientation` and `width` parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Root at the top (icicle) instead of the bottom.
    pub(crate) icicle: bool,
    /// The page's graph width, when given: frames narrower than one such pixel are dropped
    /// before rendering, so a node-wide profile of 100,000 stacks stays a small SVG.
    pub(crate) width_px: Option<usize>,
}

impl Layout {
    /// Reads `orientation` (default `default`) and `width`.
    pub(crate) fn from_params(p: &Params, default: Orientation) -> Result<Self, ApiError> {
        let icicle = p.choice("orientation", default)? == Orientation::Icicle;
        let width_px = match p.get("width") {
            None => None,
            Some(v) => {
                let n: usize = v.parse().map_err(|_| {
                    ApiError::param("width", format!("`{v}` is not a whole number of pixels"))
                })?;
                let (lo, hi) = WIDTH_RANGE;
                if !(lo..=hi).contains(&n) {
                    return Err(ApiError::param(
                        "width",
                        format!("{n} is out of range ({lo} to {hi} pixels)"),
                    ));
                }
                Some(n)
            }
        };
        Ok(Layout { icicle, width_px })
    }

    /// Puts the layout into the renderer's options.
    pub(crate) fn apply(self, options: RenderOptions) -> RenderOptions {
        options
            .with_icicle(self.icicle)
            .with_width_px(self.width_px)
    }
}
