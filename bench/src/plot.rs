//! SVG plots of bench results with plotters (svg backend: no font libraries needed).

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

/// One step of a load ramp (`scenarios/ramp.rs`), as plotted.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub offered_per_sec: f64,
    pub achieved_per_sec: f64,
    /// The operation whose latency the step reports (the one with the highest p99).
    pub op: String,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub missed: u64,
    pub errors: u64,
    /// Verification violations the step found (`tail` checks every step's tailers).
    pub violations: u64,
}

/// A plotted line: its name, its colour, and the step's value it shows (µs).
type Series = (&'static str, RGBColor, fn(&Step) -> u64);

/// Latency percentiles (ms, log scale) of `scenario`'s steps against offered load, with
/// the knee marked; the title names the scenario and each step's slowest operation.
pub fn latency_vs_load(path: &Path, scenario: &str, steps: &[Step], knee: Option<usize>) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let x_max = steps.iter().map(|s| s.offered_per_sec).fold(1.0, f64::max) * 1.05;
    let ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let y_min = steps.iter().map(|s| ms(s.p50_us)).fold(f64::MAX, f64::min).max(0.001) / 2.0;
    let y_max = steps.iter().map(|s| ms(s.p999_us)).fold(0.0, f64::max).max(y_min * 4.0) * 2.0;
    let mut ops: Vec<&str> = steps.iter().map(|s| s.op.as_str()).collect();
    ops.dedup();
    let title = format!("{scenario}: {} latency against offered load (open loop)", ops.join("/"));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered requests/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y >= 1.0 { format!("{y:.0}") } else { format!("{y}") })
        .y_desc("latency (ms, from the scheduled send)")
        .draw()
        .map_err(|e| err(&e))?;
    let series: [Series; 3] = [("p50", BLUE, |s| s.p50_us), ("p99", RED, |s| s.p99_us), ("p99.9", MAGENTA, |s| s.p999_us)];
    for (name, color, pick) in series {
        let points: Vec<(f64, f64)> = steps.iter().map(|s| (s.offered_per_sec, ms(pick(s)))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| err(&e))?;
    }
    if let Some(k) = knee {
        let x = steps[k].offered_per_sec;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x, y_min), (x, y_max)], BLACK.stroke_width(1))))
            .map_err(|e| err(&e))?
            .label("knee")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
