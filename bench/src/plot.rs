//! SVG charts of the benchmark's results, drawn with `plotters`' SVG backend.
//!
//! plotters is built without its `ttf` feature, so it has no font files: text is written as SVG
//! `<text>` elements (the viewer picks the font) and plotters lays it out with a fixed per-character
//! width estimate, which is why the charts leave generous room around labels.
//!
//! Both charts are rendered into a string first and then written to the file in one go, so a
//! failed render never leaves a half-written file behind, and I/O errors name the path.
//!
//! With nothing to draw (no series, or only series without a usable sample), both functions still
//! write a chart: the title and a "no data" notice. A report that links the file keeps working.

use std::fmt::Display;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Size of both charts, in pixels.
const SIZE: (u32, u32) = (1000, 600);
/// Width of the legend column at the right of the latency chart.
const LEGEND_WIDTH: u32 = 270;
/// Latencies below this (zero and negative ones included) are drawn at this value (1 µs), since
/// a log axis has no zero. The legend's percentiles use the values as measured.
const MIN_MS: f64 = 1e-3;
/// A series with more samples than this is drawn through this many evenly spaced quantiles
/// instead of every step, which keeps the SVG small and looks the same.
const MAX_POINTS: usize = 1000;
pub(crate) const FONT: &str = "sans-serif";

/// Line colors, cycled (a colorblind-friendly ten-color palette).
pub(crate) const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One series: a label and its latency samples in milliseconds (unsorted, non-empty; skip empty ones).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub samples_ms: Vec<f64>,
}

/// A series ready to draw.
#[derive(Debug)]
struct Prepared<'a> {
    label: &'a str,
    color: RGBColor,
    /// The finite samples, sorted, as measured (for the legend's percentiles).
    sorted: Vec<f64>,
    /// The empirical CDF as (latency clamped to `MIN_MS`, fraction) points.
    cdf: Vec<(f64, f64)>,
}

/// Draws the latency distributions as an SVG file at `path` (overwrites it): one chart, title `title`
/// (e.g. "hello latency, 2 cores, kernel 6.1, rev abc123"), latency on a log10 x axis in ms,
/// y = cumulative fraction of calls (an empirical CDF, 0..1), one colored line per series, with a legend
/// naming each series and its p50. Size about 1000x600.
///
/// The legend also gives each series' p99 and sample count. NaN and infinite samples are
/// skipped, samples below 1 µs (zero and negative ones included) are drawn at 1 µs, and series
/// left without samples are left out. With no series left, the file holds the title and
/// "no data". The x axis spans whole decades around all samples (at least one decade).
pub fn latency_cdf(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let prepared: Vec<Prepared<'_>> = series
        .iter()
        .filter_map(|s| {
            let mut sorted: Vec<f64> = s
                .samples_ms
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if sorted.is_empty() {
                return None;
            }
            sorted.sort_by(f64::total_cmp);
            let cdf = cdf_points(&sorted);
            Some((s.label.as_str(), sorted, cdf))
        })
        .enumerate()
        .map(|(i, (label, sorted, cdf))| Prepared {
            label,
            color: COLORS[i % COLORS.len()],
            sorted,
            cdf,
        })
        .collect();
    render(path, |root| {
        if prepared.is_empty() {
            return no_data(root, title);
        }
        draw_cdf(root, title, &prepared)
    })
}

/// A second chart for throughput: x = concurrency (1, 8, 64 ...), y = requests/s, one bar or point+line
/// per concurrency; `points` are (concurrency, req_per_s).
///
/// Draws one bar per point, in order of concurrency, with its value above it. Points whose
/// rate is NaN or infinite are skipped and negative rates are drawn as 0. With no point left,
/// the file holds the title and "no data".
pub fn throughput(path: &Path, title: &str, points: &[(u32, f64)]) -> Result<()> {
    let mut points: Vec<(u32, f64)> = points
        .iter()
        .filter(|(_, r)| r.is_finite())
        .map(|&(c, r)| (c, r.max(0.0)))
        .collect();
    points.sort_by_key(|&(c, _)| c);
    render(path, |root| {
        if points.is_empty() {
            return no_data(root, title);
        }
        draw_throughput(root, title, &points)
    })
}

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Turns any plotters error into one that names the file being drawn.
fn plot_err(path: &Path, e: impl Display) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", path.display())
}

/// Renders with `draw` into an SVG string of `SIZE` and writes it to `path`. `draw` returns
/// plotters' errors as strings; they are reported with the path.
fn render(path: &Path, draw: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<()> {
    render_sized(path, SIZE, draw)
}

/// [`render`] at another size.
pub(crate) fn render_sized(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), String>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// Maps a plotters error to a string (plotters' error types are generic over the backend).
pub(crate) fn s<E: Display>(e: E) -> String {
    e.to_string()
}

fn no_data(root: &Area<'_>, title: &str) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let area = root.titled(title, (FONT, 24)).map_err(s)?;
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 28).into_font())
        .color(&RGBColor(127, 127, 127))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new("no data", (w as i32 / 2, h as i32 / 2), style))
        .map_err(s)
}

/// The points of the empirical CDF of `sorted` (finite, ascending, non-empty), latencies clamped
/// to `MIN_MS`: a staircase through every sample, or through `MAX_POINTS` quantiles for big
/// series.
fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let nf = n as f64;
    let x = |i: usize| sorted[i].max(MIN_MS);
    if n <= MAX_POINTS {
        let mut pts = Vec::with_capacity(2 * n);
        for i in 0..n {
            pts.push((x(i), i as f64 / nf));
            pts.push((x(i), (i + 1) as f64 / nf));
        }
        pts
    } else {
        let mut pts = Vec::with_capacity(MAX_POINTS + 2);
        pts.push((x(0), 0.0));
        let mut last = usize::MAX;
        for k in 0..=MAX_POINTS {
            let i = ((k as f64 / MAX_POINTS as f64) * (nf - 1.0)).round() as usize;
            let i = i.min(n - 1);
            if i != last {
                pts.push((x(i), (i + 1) as f64 / nf));
                last = i;
            }
        }
        pts
    }
}

/// The nearest-rank percentile `q` (0..=1) of `sorted` (non-empty, ascending).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = (q * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// A latency for the legend: three significant digits or so.
fn fmt_ms(v: f64) -> String {
    let a = v.abs();
    if a >= 1e5 {
        format!("{v:.2e} ms")
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0} ms")
    } else if a >= 10.0 {
        format!("{v:.1} ms")
    } else if a >= 1.0 {
        format!("{v:.2} ms")
    } else if a >= 0.01 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.1e} ms")
    }
}

/// A log axis tick: only 1, 2 and 5 times a power of ten are labelled (only powers of ten when
/// `decades_only`; the other grid lines stay unlabelled), with as many decimals as the value needs.
fn fmt_log_tick(v: f64, decades_only: bool) -> String {
    if !(v.is_finite() && v > 0.0) {
        return String::new();
    }
    let exp = v.log10().floor();
    let mantissa = v / 10f64.powf(exp);
    let m = mantissa.round();
    let shown = if decades_only {
        m == 1.0 || m == 10.0
    } else {
        m == 1.0 || m == 2.0 || m == 5.0 || m == 10.0
    };
    if (mantissa - m).abs() > 1e-6 * m || !shown {
        return String::new();
    }
    if !(-3.0..5.0).contains(&exp) {
        // Far from milliseconds: short scientific labels.
        let (m, exp) = if m >= 10.0 {
            (m / 10.0, exp + 1.0)
        } else {
            (m, exp)
        };
        return format!("{m}e{exp}");
    }
    let decimals = (-exp).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// The x range: whole decades around all the (clamped) samples, at least one decade wide.
fn log_range(series: &[Prepared<'_>]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in series {
        for &(x, _) in &p.cdf {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.1, 1.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    (lo, hi)
}

fn draw_cdf(root: &Area<'_>, title: &str, series: &[Prepared<'_>]) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let area = root.titled(title, (FONT, 24)).map_err(s)?;
    let (w, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(w.saturating_sub(LEGEND_WIDTH));

    let (lo, hi) = log_range(series);
    // Ten key points per decade make plotters put one at every 1..9 times a power of ten (more
    // would make it split decades into 100); `fmt_log_tick` labels only 1, 2 and 5.
    let decades = ((hi / lo).log10().round() as usize).max(1);
    // Widened by a hair: plotters starts its key points at 10^ceil(log10(lo)), and log10(0.1)
    // computed as ln(0.1)/ln(10) is a hair above -1, which would skip the first decade.
    let (lo, hi) = (lo * (1.0 - 1e-9), hi * (1.0 + 1e-9));
    let last_tick = std::cell::Cell::new(f64::NAN);
    let mut chart = ChartBuilder::on(&plot)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.02)
        .map_err(s)?;
    chart
        .configure_mesh()
        .x_labels(10 * decades)
        .y_labels(11)
        .x_label_formatter(&|v| {
            // plotters 0.3.7 yields each power of ten twice (as 10x the one before, then as
            // itself), consecutively: label it once.
            if (v - last_tick.get()).abs() <= 1e-9 * v.abs() {
                return String::new();
            }
            last_tick.set(*v);
            // Past four decades, 2 and 5 would crowd the axis.
            fmt_log_tick(*v, decades > 4)
        })
        .y_label_formatter(&|v| format!("{v:.1}"))
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of calls")
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(s)?;
    // Darker grid lines at the powers of ten.
    let mut decade = 10f64.powf(lo.log10().ceil());
    while decade <= hi {
        chart
            .draw_series(LineSeries::new(
                [(decade, 0.0), (decade, 1.02)],
                RGBColor(190, 190, 190).stroke_width(1),
            ))
            .map_err(s)?;
        decade *= 10.0;
    }
    // The median, as a dashed guide.
    chart
        .draw_series(DashedLineSeries::new(
            [(lo, 0.5), (hi, 0.5)],
            6,
            4,
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(s)?;
    for p in series {
        chart
            .draw_series(LineSeries::new(
                p.cdf.iter().copied(),
                p.color.stroke_width(2),
            ))
            .map_err(s)?;
    }

    draw_legend(&legend, series)
}

/// The legend column: per series, a line in its color, its label, and p50 / p99 / sample count.
fn draw_legend(area: &Area<'_>, series: &[Prepared<'_>]) -> Result<(), String> {
    const TOP: i32 = 30;
    const STEP: i32 = 46;
    let label_style =
        TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let stats_style = TextStyle::from((FONT, 13).into_font())
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, p) in series.iter().enumerate() {
        let y = TOP + STEP * i as i32;
        area.draw(&PathElement::new(
            vec![(4, y), (28, y)],
            p.color.stroke_width(3),
        ))
        .map_err(s)?;
        area.draw(&Text::new(p.label.to_owned(), (34, y), label_style.clone()))
            .map_err(s)?;
        let stats = format!(
            "p50 {} · p99 {} · n={}",
            fmt_ms(percentile(&p.sorted, 0.50)),
            fmt_ms(percentile(&p.sorted, 0.99)),
            p.sorted.len()
        );
        area.draw(&Text::new(stats, (34, y + 18), stats_style.clone()))
            .map_err(s)?;
    }
    Ok(())
}

/// A request rate for the bar labels.
fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn draw_throughput(root: &Area<'_>, title: &str, points: &[(u32, f64)]) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let area = root.titled(title, (FONT, 24)).map_err(s)?;
    let n = i32::try_from(points.len()).map_err(s)?;
    let max = points.iter().map(|&(_, r)| r).fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    // One slot per point (integer ranges are inclusive here). A lone point gets an empty slot
    // on each side: plotters cannot map a segmented axis of a single slot.
    let slots = if n == 1 { -1..1 } else { 0..n - 1 };
    let mut chart = ChartBuilder::on(&area)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        // Bar `i` is the `i`th point; the axis labels name its concurrency.
        .build_cartesian_2d(slots.clone().into_segmented(), 0.0..top)
        .map_err(s)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len() + 1)
        .y_labels(8)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| points.get(i))
                .map(|(c, _)| c.to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("concurrency")
        .y_desc("requests/s")
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(s)?;
    // Bars at most `MAX_BAR` pixels wide, with at least 20 pixels between them.
    const MAX_BAR: u32 = 160;
    let segment = chart.plotting_area().dim_in_pixel().0 / (slots.end - slots.start + 1) as u32;
    let bar_margin = (segment.saturating_sub(MAX_BAR) / 2).max(10);
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(COLORS[0].filled())
                .margin(bar_margin)
                .data((0..n).zip(points.iter().map(|&(_, r)| r))),
        )
        .map_err(s)?;
    let value_style =
        TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series((0..n).zip(points).map(|(i, &(_, r))| {
            Text::new(
                fmt_rate(r),
                (SegmentValue::CenterOf(i), r),
                value_style.clone(),
            )
        }))
        .map_err(s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "lambdaworker-plot-{}-{name}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn series(label: &str, samples_ms: Vec<f64>) -> Series {
        Series {
            label: label.to_owned(),
            samples_ms,
        }
    }

    /// Draws `series` and returns the SVG text, after the checks every chart must pass.
    fn cdf_svg(name: &str, series: &[Series]) -> String {
        let dir = Scratch::new(name);
        let path = dir.0.join("latency.svg");
        latency_cdf(&path, "hello latency, test", series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("hello latency, test"));
        svg
    }

    /// A spread of latencies between `lo` and `hi` ms.
    fn spread(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| lo * (hi / lo).powf(((i * 7919) % n) as f64 / n as f64))
            .collect()
    }

    #[test]
    fn latency_chart_has_every_series() {
        let all = [
            series("fresh python", spread(20.0, 100.0, 200)),
            series("runc", spread(40.0, 90.0, 100)),
            series("crun", spread(15.0, 40.0, 100)),
            series("lambdaworker cold", spread(3.0, 12.0, 5000)),
            series("lambdaworker warm", spread(0.5, 2.0, 5000)),
            series("direct socket", spread(0.3, 0.6, 5000)),
        ];
        let svg = cdf_svg("all", &all);
        for s in &all {
            assert!(svg.contains(&s.label), "missing {}", s.label);
        }
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        assert!(svg.matches("<polyline").count() >= all.len());
        assert!(svg.contains("p50 "));
        assert!(svg.contains("latency (ms, log scale)"));
        assert!(svg.contains("fraction of calls"));
        // Decade labels of the log axis.
        for tick in [">0.1<", ">1<", ">10<", ">100<"] {
            assert!(
                svg.contains(&tick.replace('>', ">\n").replace('<', "\n<")) || svg.contains(tick),
                "missing tick {tick}"
            );
        }
        // Big series are thinned out.
        assert!(svg.len() < 400_000, "{} bytes", svg.len());
    }

    #[test]
    fn latency_edge_cases_do_not_panic() {
        cdf_svg("one", &[series("one", vec![1.5])]);
        cdf_svg("equal", &[series("equal", vec![2.0; 50])]);
        cdf_svg("zero", &[series("zero", vec![0.0, -3.0, 0.0])]);
        cdf_svg("mixed", &[series("mixed", vec![-1.0, 0.0, 0.5, 7.0])]);
        let svg = cdf_svg(
            "nan",
            &[
                series("nan", vec![f64::NAN, 1.0, f64::INFINITY, 2.0]),
                series("only nan", vec![f64::NAN]),
                series("empty", vec![]),
            ],
        );
        assert!(svg.contains(">\nnan\n<") || svg.contains(">nan<"));
        assert!(!svg.contains("only nan"));
        assert!(!svg.contains("empty"));
        let svg = cdf_svg("none", &[]);
        assert!(svg.contains("no data"));
        let svg = cdf_svg("none usable", &[series("x", vec![f64::NAN])]);
        assert!(svg.contains("no data"));
        // Many series: colors cycle.
        let many: Vec<Series> = (0..13)
            .map(|i| series(&format!("s{i}"), vec![f64::from(i) + 1.0]))
            .collect();
        cdf_svg("many", &many);
        // Huge and tiny values.
        cdf_svg("wide", &[series("wide", vec![1e-9, 1e9])]);
    }

    #[test]
    fn labels_and_ticks() {
        assert_eq!(fmt_log_tick(0.1, false), "0.1");
        assert_eq!(fmt_log_tick(0.2, false), "0.2");
        assert_eq!(fmt_log_tick(0.3, false), "");
        assert_eq!(fmt_log_tick(5.0, false), "5");
        assert_eq!(fmt_log_tick(100.0, false), "100");
        assert_eq!(fmt_log_tick(0.005, false), "0.005");
        assert_eq!(fmt_log_tick(0.0, false), "");
        assert_eq!(fmt_log_tick(0.2, true), "");
        assert_eq!(fmt_log_tick(1000.0, true), "1000");
        assert_eq!(fmt_log_tick(1e6, true), "1e6");
        assert_eq!(fmt_log_tick(2e-5, false), "2e-5");
        assert_eq!(fmt_ms(1.234), "1.23 ms");
        assert_eq!(fmt_ms(0.3), "0.300 ms");
        assert_eq!(fmt_ms(123.4), "123 ms");
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 0.5), 2.0);
        assert_eq!(percentile(&sorted, 0.99), 4.0);
        assert_eq!(percentile(&[7.0], 0.5), 7.0);
        let pts = cdf_points(&[1.0, 2.0]);
        assert_eq!(pts, vec![(1.0, 0.0), (1.0, 0.5), (2.0, 0.5), (2.0, 1.0)]);
        let big: Vec<f64> = (0..10_000).map(f64::from).collect();
        let pts = cdf_points(&big);
        assert!(pts.len() <= MAX_POINTS + 2);
        assert_eq!(pts.last(), Some(&(9999.0, 1.0)));
    }

    #[test]
    fn throughput_chart() {
        let dir = Scratch::new("tput");
        let path = dir.0.join("throughput.svg");
        throughput(
            &path,
            "hello throughput",
            &[(64, 9000.0), (1, 800.0), (8, 5000.5)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for label in [
            "hello throughput",
            "concurrency",
            "requests/s",
            "9000",
            "800",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
        assert!(svg.contains("<rect"));

        for (name, pts) in [
            ("empty", vec![]),
            ("one", vec![(1, 100.0)]),
            ("zero", vec![(1, 0.0), (8, 0.0)]),
            ("bad", vec![(1, f64::NAN), (8, -5.0), (64, f64::INFINITY)]),
            ("nan only", vec![(1, f64::NAN)]),
        ] {
            let p = dir.0.join(format!("{name}.svg"));
            throughput(&p, name, &pts).unwrap();
            let svg = std::fs::read_to_string(&p).unwrap();
            assert!(svg.starts_with("<svg"), "{name}");
            if name == "empty" || name == "nan only" {
                assert!(svg.contains("no data"), "{name}");
            }
        }
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let dir = Scratch::new("bad");
        let path = dir.0.join("missing-dir").join("x.svg");
        let err = latency_cdf(&path, "t", &[series("a", vec![1.0])]).unwrap_err();
        assert!(format!("{err:#}").contains("missing-dir"), "{err:#}");
    }
}
