//! SVG charts (plotters' SVG backend: no system fonts needed, the viewer draws the text).

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn draw_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A line chart of named series of `(x, y)` points.
///
/// # Errors
/// The file cannot be written.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> std::io::Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (1.0_f64, 0.0_f64);
    let mut x_min = f64::INFINITY;
    for &(x, y) in points {
        x_max = x_max.max(x);
        x_min = x_min.min(x);
        y_max = y_max.max(y);
    }
    if !x_min.is_finite() {
        x_min = 0.0;
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0.0..(y_max * 1.1).max(1e-9))
        .map_err(draw_err)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(draw_err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// A line chart of named series with labelled vertical marks (events at an `x`).
///
/// # Errors
/// The file cannot be written.
pub fn lines_marked(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[(f64, String)],
) -> std::io::Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max) = (1.0_f64, 0.0_f64);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    let y_top = (y_max * 1.2).max(1e-9);
    let root = SVGBackend::new(path, (900, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_top)
        .map_err(draw_err)?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(draw_err)?;
    let grey = RGBColor(120, 120, 120);
    for (x, label) in marks {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*x, 0.0), (*x, y_top)],
                grey.stroke_width(1),
            )))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, y_top * 0.97),
                ("sans-serif", 13).into_font().color(&grey),
            )))
            .map_err(draw_err)?;
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// A horizontal bar chart of named values, with a dashed reference line (e.g. ratio 1.0).
///
/// # Errors
/// The file cannot be written.
pub fn bars(
    path: &Path,
    title: &str,
    x_label: &str,
    values: &[(String, f64)],
    reference: Option<f64>,
) -> std::io::Result<()> {
    let height = 80 + 26 * values.len().max(1) as u32;
    let max = values.iter().map(|(_, v)| *v).fold(reference.unwrap_or(0.0), f64::max) * 1.15;
    let root = SVGBackend::new(path, (820, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let n = values.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..max.max(1e-9), (0..n).into_segmented())
        .map_err(draw_err)?;
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_labels(values.len().max(1))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .disable_y_mesh()
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, (_, v))| {
            let color = match reference {
                Some(r) if *v < r => COLORS[3],
                _ => COLORS[2],
            };
            let i = i as i32;
            Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                color.mix(0.8).filled(),
            )
        }))
        .map_err(draw_err)?;
    if let Some(r) = reference {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(r, SegmentValue::Exact(0)), (r, SegmentValue::Exact(n))],
                BLACK.stroke_width(1),
            )))
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_svg() {
        let dir = std::env::temp_dir().join(format!("anna-bench-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = dir.join("l.svg");
        lines(&line, "t", "x", "y", &[("a".into(), vec![(1.0, 2.0), (2.0, 3.0)])]).unwrap();
        let bar = dir.join("b.svg");
        bars(&bar, "t", "ratio", &[("a".into(), 0.5), ("b".into(), 1.5)], Some(1.0)).unwrap();
        for path in [line, bar] {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("<svg") && text.contains("</svg>"), "{}", path.display());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
