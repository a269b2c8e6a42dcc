//! The report's charts, drawn once with plotters onto any backend: an SVG string for the page
//! and a PNG file beside it, so both show the same picture.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};

/// The family name the charts ask for; [`register_font`] gives it a face.
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 960;

/// One bar: a run's score on a task, with its standard error when it has one.
#[derive(Debug, Clone)]
pub struct Bar {
    /// The task (a label on the vertical axis).
    pub task: String,
    /// Which run (its colour).
    pub run: usize,
    /// The score.
    pub value: f64,
    /// Standard error: the bar's 95% interval is ±1.96 of it ([`interval`]).
    pub stderr: Option<f64>,
}

/// One point of a score-against-step line.
#[derive(Debug, Clone)]
pub struct Point {
    /// The training step.
    pub step: f64,
    /// The score.
    pub value: f64,
    /// Standard error.
    pub stderr: Option<f64>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub enum Chart {
    /// Every task's score on one metric, one bar per run, with 95% intervals.
    Bars {
        /// The metric (the title).
        metric: String,
        /// Run labels (the legend), indexed by [`Bar::run`].
        runs: Vec<String>,
        /// The bars, grouped by task in order.
        bars: Vec<Bar>,
    },
    /// One metric against the training step, one line per task.
    Steps {
        /// The metric (the title).
        metric: String,
        /// (task, its points in step order).
        lines: Vec<(String, Vec<Point>)>,
    },
}

/// Where one chart went: its inline SVG and the PNG file written beside the report.
pub struct Drawn {
    /// The chart as an SVG document, for the page.
    pub svg: String,
    /// The PNG file, relative to the report's folder.
    pub png: PathBuf,
}

/// Gives the charts' font family a face: `$EVALKIT_FONT`, else the first of the usual system
/// sans-serif fonts found. plotters measures every label with it, in the SVG too.
pub fn register_font() -> anyhow::Result<()> {
    const CANDIDATES: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
    ];
    let explicit = std::env::var_os("EVALKIT_FONT").map(PathBuf::from);
    let path = match &explicit {
        Some(p) => p.clone(),
        None => CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the report's charts need a TrueType font and none was found (looked for {}); \
                     install one (Debian: fonts-dejavu-core) or set EVALKIT_FONT=path/to/font.ttf",
                    CANDIDATES.join(", ")
                )
            })?,
    };
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading the font {}: {e}", path.display()))?;
    // plotters keeps fonts for the life of the process; this runs once per report.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType font plotters can read", path.display()))
}

impl Chart {
    /// The chart's height in pixels (bars grow it; lines don't).
    fn height(&self) -> u32 {
        match self {
            Chart::Bars { bars, runs, .. } => 90 + 22 * bars.len() as u32 + 18 * runs.len() as u32,
            Chart::Steps { lines, .. } => 390 + legend_layout(lines).1,
        }
    }

    /// Draws the chart as SVG and as `dir/file.png`; returns the SVG and the PNG's path
    /// relative to `dir`.
    pub fn draw(&self, dir: &Path, file: &str) -> anyhow::Result<Drawn> {
        let size = (WIDTH, self.height());
        let mut svg = String::new();
        self.draw_on(SVGBackend::with_string(&mut svg, size).into_drawing_area())?;
        let png = PathBuf::from("charts").join(format!("{file}.png"));
        let full = dir.join(&png);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let area = BitMapBackend::new(&full, size).into_drawing_area();
        self.draw_on(area)?;
        Ok(Drawn { svg, png })
    }

    fn draw_on<B: DrawingBackend>(&self, root: DrawingArea<B, plotters::coord::Shift>) -> anyhow::Result<()>
    where
        B::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(plot_error)?;
        match self {
            Chart::Bars { metric, runs, bars } => draw_bars(&root, metric, runs, bars)?,
            Chart::Steps { metric, lines } => draw_steps(&root, metric, lines)?,
        }
        root.present().map_err(plot_error)
    }
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// The 95% interval of a score on `metric`: value ± 1.96 standard errors, within the values
/// the metric can take ([`bounds`]: an accuracy of 0.015 ± 0.017 is [0, 0.032], not below 0).
pub fn interval(metric: &str, value: f64, stderr: Option<f64>) -> (f64, f64) {
    match stderr.filter(|s| s.is_finite()) {
        Some(s) => {
            let (lo, hi) = bounds(metric);
            ((value - 1.96 * s).max(lo), (value + 1.96 * s).min(hi))
        }
        None => (value, value),
    }
}

/// The values `metric` can take: accuracies (`acc`, `acc_*`), exact matches and pass@k are
/// proportions in [0, 1], perplexities at least 1, bits per byte at least 0; any other metric
/// (a benchmark's own) is taken as unbounded.
fn bounds(metric: &str) -> (f64, f64) {
    if metric == "acc" || metric.starts_with("acc_") || metric.starts_with("exact_match") || metric.starts_with("pass@")
    {
        (0.0, 1.0)
    } else if metric.ends_with("perplexity") {
        (1.0, f64::INFINITY)
    } else if metric == "bits_per_byte" {
        (0.0, f64::INFINITY)
    } else {
        (f64::NEG_INFINITY, f64::INFINITY)
    }
}

/// An axis tick: plain for everyday magnitudes, in scientific notation for the huge or tiny
/// (perplexities of untrained models).
fn tick(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// An axis range that holds every value (and zero, for bars), with a little room, within the
/// values the axis can take (`within`: [`bounds`] of a metric; an accuracy axis never shows
/// negative accuracies). Where every value is the same (all scores 0), the room is a twentieth
/// of their magnitude, at least 0.05, rather than a sliver around them.
fn span(values: impl Iterator<Item = f64>, with_zero: bool, within: (f64, f64)) -> (f64, f64) {
    let (mut lo, mut hi) = if with_zero { (0.0, 0.0) } else { (f64::MAX, f64::MIN) };
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let scale = lo.abs().max(hi.abs()).max(1.0);
    let pad = if hi - lo > 1e-9 * scale {
        (hi - lo) * 0.08
    } else {
        0.05 * scale
    };
    let low = if with_zero && lo >= 0.0 { 0.0 } else { lo - pad };
    let (low, high) = (low.max(within.0.min(lo)), (hi + pad).min(within.1.max(hi)));
    if high > low {
        (low, high)
    } else {
        (low, low + pad)
    }
}

fn draw_bars<B: DrawingBackend>(
    root: &DrawingArea<B, plotters::coord::Shift>,
    metric: &str,
    runs: &[String],
    bars: &[Bar],
) -> anyhow::Result<()>
where
    B::ErrorType: 'static,
{
    let (lo, hi) = span(
        bars.iter().flat_map(|b| {
            let (l, h) = interval(metric, b.value, b.stderr);
            [l, h]
        }),
        true,
        bounds(metric),
    );
    let labels: Vec<String> = bars
        .iter()
        .map(|b| {
            if runs.len() > 1 {
                format!("{} · {}", b.task, runs[b.run])
            } else {
                b.task.clone()
            }
        })
        .collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4).min(48) as u32 * 7 + 16;
    let legend_height = if runs.len() > 1 { 18 * runs.len() as u32 } else { 0 };
    let (top, body) = root.split_vertically(legend_height + 34);
    top.titled(&format!("{metric} (bars: score; lines: 95% interval)"), (FAMILY, 17))
        .map_err(plot_error)?;
    if runs.len() > 1 {
        for (i, r) in runs.iter().enumerate() {
            let y = 30 + 18 * i as i32;
            top.draw(&Rectangle::new([(12, y), (24, y + 12)], Palette99::pick(i).filled()))
                .map_err(plot_error)?;
            top.draw(&Text::new(r.clone(), (30, y), (FAMILY, 13)))
                .map_err(plot_error)?;
        }
    }
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&body)
        .margin(8)
        .margin_right(70)
        .x_label_area_size(28)
        .y_label_area_size(label_width)
        // plotters' integer ranges hold their end: 0..n-1 is n segments (one bar gets an empty
        // segment above it; an empty range would not draw).
        .build_cartesian_2d(lo..hi, (0..(n - 1).max(1)).into_segmented())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < n => labels[n - 1 - *i].clone(),
            SegmentValue::CenterOf(_) => String::new(),
            SegmentValue::Exact(_) | SegmentValue::Last => String::new(),
        })
        .label_style((FAMILY, 12))
        .draw()
        .map_err(plot_error)?;
    // The first bar at the top: bar `k` sits in segment `n - 1 - k`.
    for (k, b) in bars.iter().enumerate() {
        let i = n - 1 - k;
        let colour = Palette99::pick(b.run);
        let mut rect = Rectangle::new(
            [
                (0.0_f64.max(lo), SegmentValue::Exact(i)),
                (b.value, SegmentValue::Exact(i + 1)),
            ],
            colour.mix(0.8).filled(),
        );
        rect.set_margin(4, 4, 0, 0);
        chart.draw_series(std::iter::once(rect)).map_err(plot_error)?;
        let (l, h) = interval(metric, b.value, b.stderr);
        if b.stderr.is_some() {
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    SegmentValue::CenterOf(i),
                    l,
                    b.value,
                    h,
                    BLACK.stroke_width(1),
                    8,
                )))
                .map_err(plot_error)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.4}", b.value),
                (h.max(b.value), SegmentValue::CenterOf(i)),
                (FAMILY, 11),
            )))
            .map_err(plot_error)?;
    }
    Ok(())
}

fn draw_steps<B: DrawingBackend>(
    root: &DrawingArea<B, plotters::coord::Shift>,
    metric: &str,
    lines: &[(String, Vec<Point>)],
) -> anyhow::Result<()>
where
    B::ErrorType: 'static,
{
    let points = || lines.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = span(points().map(|p| p.step), false, (f64::NEG_INFINITY, f64::INFINITY));
    let (y0, y1) = span(
        points().flat_map(|p| {
            let (l, h) = interval(metric, p.value, p.stderr);
            [l, h]
        }),
        false,
        bounds(metric),
    );
    // The title, then the legend above the plot (inside it, a legend hides the lines it names).
    let (at, legend_height) = legend_layout(lines);
    let (top, body) = root.split_vertically(legend_height);
    top.titled(&format!("{metric} against the training step"), (FAMILY, 17))
        .map_err(plot_error)?;
    for (i, ((task, _), &(x, y))) in lines.iter().zip(&at).enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        top.draw(&PathElement::new(
            vec![(x, y + 7), (x + 16, y + 7)],
            colour.stroke_width(2),
        ))
        .map_err(plot_error)?;
        top.draw(&Text::new(task.clone(), (x + 22, y), (FAMILY, 13)))
            .map_err(plot_error)?;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| tick(*v))
        .y_desc(metric)
        .label_style((FAMILY, 12))
        .draw()
        .map_err(plot_error)?;
    for (i, (_, pts)) in lines.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.step, p.value)),
                colour.stroke_width(2),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.step, p.value), 3, colour.filled())))
            .map_err(plot_error)?;
        chart
            .draw_series(pts.iter().filter(|p| p.stderr.is_some()).map(|p| {
                let (l, h) = interval(metric, p.value, p.stderr);
                ErrorBar::new_vertical(p.step, l, p.value, h, colour.stroke_width(1), 8)
            }))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Where a steps chart's legend entries go — each line's swatch and task name, flowing in
/// rows across the width below the 30 pixels of the title (names measured at 7 pixels a
/// character, as the bars' labels are) — and the height of title and legend together.
fn legend_layout(lines: &[(String, Vec<Point>)]) -> (Vec<(i32, i32)>, u32) {
    let (mut x, mut y) = (12i32, 30i32);
    let mut at = Vec::with_capacity(lines.len());
    for (task, _) in lines {
        let width = 22 + 7 * task.chars().count() as i32 + 18;
        if x > 12 && x + width > WIDTH as i32 - 12 {
            (x, y) = (12, y + 18);
        }
        at.push((x, y));
        x += width;
    }
    let height = if lines.is_empty() { 34 } else { y + 18 + 6 };
    (at, height as u32)
}

#[cfg(test)]
mod tests {
    use super::{bounds, interval, span};

    #[test]
    fn axes_hold_the_values_within_the_metrics_range() {
        // Every accuracy 0 (untrained checkpoints): room above 0, nothing below it.
        assert_eq!(span([0.0, 0.0].into_iter(), false, bounds("acc")), (0.0, 0.05));
        assert_eq!(span([0.0].into_iter(), true, bounds("acc")), (0.0, 0.05));
        // Accuracies near 1 stop at 1; a perplexity axis at 1; an unbounded one pads both ways.
        let (lo, hi) = span([0.9, 1.0].into_iter(), false, bounds("acc"));
        assert!((lo - 0.892).abs() < 1e-12 && hi == 1.0, "{lo} {hi}");
        let (lo, _) = span([1.0, 3.0].into_iter(), false, bounds("perplexity"));
        assert_eq!(lo, 1.0);
        let (lo, hi) = span([-1.0, 1.0].into_iter(), false, bounds("margin"));
        assert!((lo + 1.16).abs() < 1e-12 && (hi - 1.16).abs() < 1e-12, "{lo} {hi}");
        // One step: room either side of it.
        assert_eq!(
            span([200.0].into_iter(), false, (f64::NEG_INFINITY, f64::INFINITY)),
            (190.0, 210.0)
        );
    }

    #[test]
    fn intervals_stay_within_the_metrics_range() {
        let close = |(a, b): (f64, f64), (c, d): (f64, f64)| (a - c).abs() < 1e-12 && (b - d).abs() < 1e-12;
        assert!(close(interval("acc", 0.5, Some(0.1)), (0.304, 0.696)));
        assert!(close(
            interval("acc_norm", 0.015, Some(0.0086)),
            (0.0, 0.015 + 1.96 * 0.0086)
        ));
        assert!(close(
            interval("exact_match_strict", 0.99, Some(0.01)),
            (0.99 - 0.0196, 1.0)
        ));
        assert!(close(interval("perplexity", 1.2, Some(0.5)), (1.0, 1.2 + 0.98)));
        assert!(close(interval("bits_per_byte", 0.1, Some(0.1)), (0.0, 0.296)));
        // A benchmark's own metric may be negative.
        assert!(close(interval("margin", 0.0, Some(1.0)), (-1.96, 1.96)));
        assert!(close(interval("acc", 0.3, None), (0.3, 0.3)));
    }
}
