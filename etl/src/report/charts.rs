//! The report's charts, drawn with `plotters` into SVG strings. Text is left to
//! the browser's sans-serif font (no font files are read), so sizes of labels
//! are estimates and the label areas are generous.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

const FONT: &str = "sans-serif";
/// Chart width in pixels; the page scales charts down to the column width.
pub(crate) const WIDTH: u32 = 640;
/// Main series colour.
pub(crate) const BLUE: RGBColor = RGBColor(49, 104, 176);
/// Second series colour.
pub(crate) const ORANGE: RGBColor = RGBColor(230, 126, 34);
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(40, 40, 40);

fn text(size: u32, pos: Pos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
        .color(&INK)
        .pos(pos)
}

/// Draws into a fresh SVG of the given size and returns the `<svg>` element,
/// without the XML namespace (inline SVG in HTML does not need it).
fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> Drawn) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(ReportError::chart)?;
        draw(&root).map_err(ReportError::chart)?;
        root.present().map_err(ReportError::chart)?;
    }
    Ok(buf.replace(r#" xmlns="http://www.w3.org/2000/svg""#, ""))
}

fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    v * 1.12
}

/// Horizontal bars, one per (label, value), top to bottom in the given order.
pub(crate) fn bars(
    items: &[(String, u64)],
    colour: RGBColor,
    x_desc: &str,
) -> Result<String, ReportError> {
    let n = items.len().max(1) as u32;
    let label_width = items
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(4) as u32
        * 10
        + 20;
    let height = 80 + 34 * n;
    let max = nice_max(items.iter().map(|i| i.1).max().unwrap_or(0) as f64);
    let total: u64 = items.iter().map(|i| i.1).sum();
    svg((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..max, (0u32..n - 1).into_segmented())?;
        // Top to bottom reads in order, so item k sits in segment n-1-k.
        let name = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => items
                .get((n - 1 - *i) as usize)
                .map(|x| x.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .y_labels(n as usize)
            .y_label_formatter(&name)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(x_desc)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .draw()?;
        chart.draw_series(items.iter().enumerate().map(|(k, (_, v))| {
            let seg = n - 1 - k as u32;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(seg)),
                    (*v as f64, SegmentValue::Exact(seg + 1)),
                ],
                colour.filled(),
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))?;
        chart.draw_series(items.iter().enumerate().map(|(k, (_, v))| {
            let share = if total > 0 {
                100.0 * *v as f64 / total as f64
            } else {
                0.0
            };
            Text::new(
                format!(" {v} ({share:.1}%)"),
                (*v as f64, SegmentValue::CenterOf(n - 1 - k as u32)),
                text(15, Pos::new(HPos::Left, VPos::Center)),
            )
        }))?;
        Ok(())
    })
}

/// A histogram of pre-binned counts: bins are (left edge, right edge, count).
pub(crate) fn histogram(
    bins: &[(f64, f64, u64)],
    x_desc: &str,
    y_desc: &str,
) -> Result<String, ReportError> {
    let lo = bins.first().map_or(0.0, |b| b.0);
    let hi = bins.last().map_or(1.0, |b| b.1).max(lo + f64::EPSILON);
    let max = nice_max(bins.iter().map(|b| b.2).max().unwrap_or(0) as f64);
    svg((WIDTH, 340), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..max)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .draw()?;
        chart.draw_series(bins.iter().map(|&(a, b, c)| {
            let mut r = Rectangle::new([(a, 0.0), (b, c as f64)], BLUE.filled());
            r.set_margin(0, 0, 1, 1);
            r
        }))?;
        Ok(())
    })
}

/// Red (0) to yellow to green (1).
fn ramp(v: f64) -> RGBColor {
    let stops = [
        (215.0, 48.0, 39.0),
        (254.0, 224.0, 139.0),
        (26.0, 152.0, 80.0),
    ];
    let v = v.clamp(0.0, 1.0) * 2.0;
    let (i, t) = if v >= 1.0 { (1, v - 1.0) } else { (0, v) };
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A grid of cells `cells[row][col]` = (mean in 0..1, customers), rows bottom to top.
pub(crate) fn heatmap(
    cols: &[String],
    rows: &[String],
    cells: &[Vec<Option<(f64, u64)>>],
    x_desc: &str,
    y_desc: &str,
) -> Result<String, ReportError> {
    let (nx, ny) = (cols.len().max(1) as u32, rows.len().max(1) as u32);
    let height = 90 + 46 * ny;
    svg((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (0u32..nx - 1).into_segmented(),
                (0u32..ny - 1).into_segmented(),
            )?;
        let label = |names: &[String], v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx as usize)
            .y_labels(ny as usize)
            .x_label_formatter(&|v| label(cols, v))
            .y_label_formatter(&|v| label(rows, v))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .draw()?;
        let cell = |i: u32, j: u32| {
            [
                (SegmentValue::Exact(i), SegmentValue::Exact(j)),
                (SegmentValue::Exact(i + 1), SegmentValue::Exact(j + 1)),
            ]
        };
        let all = cells.iter().enumerate().flat_map(|(j, r)| {
            r.iter()
                .enumerate()
                .map(move |(i, c)| (i as u32, j as u32, *c))
        });
        chart.draw_series(all.clone().map(|(i, j, c)| {
            let fill = c.map_or(RGBColor(242, 242, 242), |(m, _)| ramp(m));
            let mut r = Rectangle::new(cell(i, j), fill.filled());
            r.set_margin(1, 1, 1, 1);
            r
        }))?;
        chart.draw_series(all.filter_map(|(i, j, c)| {
            let (m, n) = c?;
            let at = (SegmentValue::CenterOf(i), SegmentValue::CenterOf(j));
            Some(Text::new(
                format!("{m:.2} ({n})"),
                at,
                text(15, Pos::new(HPos::Center, VPos::Center)),
            ))
        }))?;
        Ok(())
    })
}

/// One line of a [`lines`] chart.
pub(crate) struct Series<'a> {
    /// Legend text.
    pub(crate) name: &'a str,
    /// Points in data coordinates.
    pub(crate) points: Vec<(f64, f64)>,
    /// Line colour.
    pub(crate) colour: RGBColor,
    /// Draw a dot on each point.
    pub(crate) dots: bool,
}

/// Axes and decorations of a [`lines`] chart.
pub(crate) struct LineAxes<'a> {
    /// Horizontal axis title.
    pub(crate) x_desc: &'a str,
    /// Vertical axis title.
    pub(crate) y_desc: &'a str,
    /// Horizontal tick label from a value.
    pub(crate) x_label: &'a dyn Fn(&f64) -> String,
    /// Number of horizontal ticks wanted.
    pub(crate) x_ticks: usize,
    /// A dashed vertical marker: position and caption.
    pub(crate) marker: Option<(f64, &'a str)>,
}

/// Lines over a shared x axis, with a legend.
pub(crate) fn lines(series: &[Series], axes: &LineAxes) -> Result<String, ReportError> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let pad = (x1 - x0) * 0.03;
    let ymax = nice_max(pts().map(|p| p.1).fold(0.0, f64::max));
    svg((WIDTH, 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..ymax)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .x_labels(axes.x_ticks)
            .x_label_formatter(axes.x_label)
            .y_label_formatter(&|v| {
                if ymax >= 20.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 17))
            .draw()?;
        if let Some((x, caption)) = axes.marker {
            chart.draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, ymax)],
                6,
                4,
                BLACK.mix(0.45).stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                format!(" {caption}"),
                (x, ymax * 0.97),
                text(15, Pos::new(HPos::Left, VPos::Top)),
            )))?;
        }
        for s in series {
            let colour = s.colour;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            if s.dots {
                chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw()?;
        Ok(())
    })
}
