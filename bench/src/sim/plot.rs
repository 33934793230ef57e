//! The simulation's chart: warm-hit rate and the p99 time the platform adds, against the
//! number of workers, one line per policy, one row of panels per trace.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::report::Row;
use crate::plot::{render_sized, s, Area, COLORS, FONT};

const SIZE: (u32, u32) = (1200, 900);

/// Draws `rows` (in sweep order, grouped by trace) to an SVG at `path`.
pub fn chart(path: &Path, rows: &[Row]) -> Result<()> {
    render_sized(path, SIZE, |root| draw(root, rows))
}

fn draw(root: &Area<'_>, rows: &[Row]) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let area = root
        .titled(
            "placement policies, 1 to 100 workers (simulated)",
            (FONT, 24),
        )
        .map_err(s)?;
    let mut traces: Vec<&'static str> = rows.iter().map(|r| r.trace).collect();
    traces.dedup();
    let panels = area.split_evenly((traces.len().max(1), 2));
    for (t, trace) in traces.iter().enumerate() {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.trace == *trace).collect();
        panel(&panels[2 * t], trace, &rows, Metric::WarmRate)?;
        panel(&panels[2 * t + 1], trace, &rows, Metric::OverheadP99)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    WarmRate,
    OverheadP99,
}

fn panel(area: &Area<'_>, trace: &str, rows: &[&Row], metric: Metric) -> Result<(), String> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let value = |o: &super::Outcome| match metric {
        Metric::WarmRate => o.warm_rate() * 100.0,
        // On a log scale, drawn as log10 on a linear axis; 1 µs at the least.
        Metric::OverheadP99 => o.overhead_p99.max(1e-3).log10(),
    };
    let (lo, hi) = match metric {
        Metric::WarmRate => (0.0, 100.0),
        Metric::OverheadP99 => {
            let all = rows.iter().flat_map(|r| r.outcomes.iter().map(value));
            let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            (lo.floor().min(0.0), hi.ceil().max(lo.floor() + 1.0))
        }
    };
    let (title, y_desc) = match metric {
        Metric::WarmRate => (format!("{trace}: warm-hit rate"), "warm starts (%)"),
        Metric::OverheadP99 => (
            format!("{trace}: p99 of queueing + start"),
            "ms (log scale)",
        ),
    };
    let last = rows.len().saturating_sub(1).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.2..last + 0.2, lo..hi)
        .map_err(s)?;
    let workers: Vec<usize> = rows.iter().map(|r| r.workers).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 5)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            workers
                .get(i as usize)
                .map(|w| w.to_string())
                .unwrap_or_default()
        })
        .y_labels(match metric {
            Metric::WarmRate => 11,
            Metric::OverheadP99 => (hi - lo) as usize + 1,
        })
        .y_label_formatter(&|v| match metric {
            Metric::WarmRate => format!("{v:.0}"),
            Metric::OverheadP99 => fmt_ms(10f64.powf(*v)),
        })
        .x_desc("workers")
        .y_desc(y_desc)
        .axis_desc_style((FONT, 14))
        .label_style((FONT, 12))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(s)?;
    for (p, kind) in first.outcomes.iter().map(|o| o.policy).enumerate() {
        let color = COLORS[p % COLORS.len()];
        let points: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.outcomes.get(p).map(|o| (i as f64, value(o))))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(s)?
            .label(kind.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&c| Circle::new(c, 3, color.filled())))
            .map_err(s)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 12))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(s)?;
    Ok(())
}

fn fmt_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').to_owned()
    }
}
