//! The plot of a suite's figures (SVG, through plotters): throughput against workers, one
//! chart per target with a line per kind of scenario, throughput against row width, and the
//! sinks' throughput as a ratio of the fair raw producers' against workers.
//! Each chart keeps its legend in a column of its own beside the data.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Delivery, EnvelopeKind, Figures, Format, Stage, Target};

/// One chart's size, and of that the column its legend takes.
const PANEL: (u32, u32) = (1000, 420);
const LEGEND_WIDTH: u32 = 360;
const FONT: &str = "sans-serif";

/// Tableau's ten colours, which stay apart on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

struct Chart {
    title: String,
    x_label: &'static str,
    /// Row widths double from one scenario to the next, so their axis is in powers of two.
    log2_x: bool,
    /// The values are ratios (`0.45×`), not rows/s.
    ratio_y: bool,
    series: Vec<Series>,
}

struct Series {
    label: String,
    /// (workers or columns, rows/s), in order of x.
    points: Vec<(f64, f64)>,
}

/// The SVG of every chart the figures make (a line needs two points), or `None` when they
/// make none.
pub fn render(rows: &[Figures]) -> Option<String> {
    let charts = charts(rows);
    if charts.is_empty() {
        return None;
    }
    let mut svg = String::new();
    {
        let height = PANEL.1 * charts.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (PANEL.0, height)).into_drawing_area();
        root.fill(&WHITE)
            .expect("drawing into a string cannot fail");
        for (area, chart) in root.split_evenly((charts.len(), 1)).iter().zip(&charts) {
            draw(area, chart).expect("drawing into a string cannot fail");
        }
        root.present().expect("drawing into a string cannot fail");
    }
    Some(svg)
}

/// What a line stands for: the scenario without the axis it varies.
fn kind(f: &Figures) -> String {
    let stage = match f.stage {
        Stage::Encode => "encode",
        Stage::Combine => "combine",
        Stage::EncodeCombine => "encode+combine",
        Stage::Sink => "sink",
    };
    let format = match f.format {
        Format::Json => "json",
        Format::Avro => "avro",
    };
    let envelope = match f.envelope {
        EnvelopeKind::Upsert => "upsert",
        EnvelopeKind::Debezium => "debezium",
    };
    let delivery = match f.delivery {
        Some(Delivery::ExactlyOnce) => " exactly-once",
        Some(Delivery::AtLeastOnce) => " at-least-once",
        None => "",
    };
    format!("{stage} {format} {envelope}{delivery}")
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::None => "broker-free",
        Target::Mock => "embedded mock broker",
        Target::Broker => "broker",
    }
}

fn charts(rows: &[Figures]) -> Vec<Chart> {
    let ok = rows
        .iter()
        .filter(|f| f.error.is_none() && f.rows_per_sec > 0.0);
    // Against workers: per target, a line per kind and width.
    let mut by_workers: BTreeMap<(u8, String), BTreeMap<u64, f64>> = BTreeMap::new();
    // Against width: a line per kind, target and worker count.
    let mut by_width: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for f in ok {
        let width = if f.columns == 8 {
            String::new()
        } else {
            format!(", {} columns", f.columns)
        };
        by_workers
            .entry((f.target as u8, format!("{}{width}", kind(f))))
            .or_default()
            .insert(f.workers as u64, f.rows_per_sec);
        let workers = if f.workers == 1 { "worker" } else { "workers" };
        let target = match f.target {
            Target::None => String::new(),
            other => format!(", {}", target_name(other)),
        };
        by_width
            .entry(format!("{}, {} {workers}{target}", kind(f), f.workers))
            .or_default()
            .insert(f.columns as u64, f.rows_per_sec);
    }
    let series = |label: String, points: BTreeMap<u64, f64>| Series {
        label,
        points: points.into_iter().map(|(x, y)| (x as f64, y)).collect(),
    };
    let mut charts = Vec::new();
    for target in [Target::None, Target::Mock, Target::Broker] {
        let lines: Vec<Series> = by_workers
            .iter()
            .filter(|((t, _), points)| *t == target as u8 && points.len() > 1)
            .map(|((_, label), points)| series(label.clone(), points.clone()))
            .collect();
        if !lines.is_empty() {
            charts.push(Chart {
                title: format!(
                    "Throughput against workers, {} (8 columns unless noted)",
                    target_name(target)
                ),
                x_label: "workers",
                log2_x: false,
                ratio_y: false,
                series: lines,
            });
        }
    }
    let lines: Vec<Series> = by_width
        .into_iter()
        .filter(|(_, points)| points.len() > 1)
        .map(|(label, points)| series(label, points))
        .collect();
    if !lines.is_empty() {
        charts.push(Chart {
            title: "Throughput against row width (broker-free unless noted)".to_string(),
            x_label: "columns per row (log scale)",
            log2_x: true,
            ratio_y: false,
            series: lines,
        });
    }
    // Sinks over the raw producers with their settings, messages, broker and commit cadence.
    let mut ratios: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for f in rows
        .iter()
        .filter(|f| f.error.is_none() && f.stage == Stage::Sink)
    {
        for (over, ratio) in [
            ("raw producer", f.ratio_vs_raw_producer),
            ("its parts", f.ratio_vs_parts),
        ] {
            if let Some(ratio) = ratio.filter(|r| *r > 0.0) {
                ratios
                    .entry(format!(
                        "{}, {}, over {over}",
                        kind(f),
                        target_name(f.target)
                    ))
                    .or_default()
                    .insert(f.workers as u64, ratio);
            }
        }
    }
    let lines: Vec<Series> = ratios
        .into_iter()
        .filter(|(_, points)| points.len() > 1)
        .map(|(label, points)| series(label, points))
        .collect();
    if !lines.is_empty() {
        charts.push(Chart {
            title: "Sink throughput over a raw producer with its settings (same broker), and over its parts"
                .to_string(),
            x_label: "workers",
            log2_x: false,
            ratio_y: true,
            series: lines,
        });
    }
    charts
}

/// `1.2M`, `250k`, `900`.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (plot_area, legend_area) = area.split_horizontally(PANEL.0 - LEGEND_WIDTH);
    let fx = |x: f64| if chart.log2_x { x.log2() } else { x };
    let xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(x, _)| *x))
        .collect();
    let mut ticks: Vec<f64> = xs.iter().map(|x| fx(*x)).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (x_min, x_max) = (ticks[0], ticks[ticks.len() - 1]);
    // Room beyond the outermost points, so that no marker is cut at the edge.
    let pad = ((x_max - x_min) * 0.06).max(0.2);
    let y_max = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max)
        * 1.15;

    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(&chart.title, (FONT, 17))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min - pad)..(x_max + pad), 0f64..y_max)?;
    let (log2_x, ratio_y) = (chart.log2_x, chart.ratio_y);
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(if chart.ratio_y {
            "× raw producer"
        } else {
            "rows/s"
        })
        .axis_desc_style((FONT, 14))
        .label_style((FONT, 13))
        // Ticks at the whole numbers the points stand on, labelled with what they stand for.
        .x_labels((x_max - x_min).round() as usize + 1)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() > 1e-6 {
                return String::new();
            }
            let shown = if log2_x { x.round().exp2() } else { x.round() };
            format!("{shown}")
        })
        .disable_x_mesh()
        .y_label_formatter(&|y| {
            if ratio_y {
                format!("{y:.2}×")
            } else {
                rate(*y)
            }
        })
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()?;
    for (i, series) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = series.points.iter().map(|(x, y)| (fx(*x), *y)).collect();
        ctx.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        ctx.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }

    let text = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let top = 64;
    for (i, series) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let y = top + 22 * i as i32;
        legend_area.draw(&PathElement::new(
            vec![(4, y), (30, y)],
            color.stroke_width(2),
        ))?;
        legend_area.draw(&Circle::new((17, y), 4, color.filled()))?;
        legend_area.draw(&Text::new(series.label.clone(), (38, y), text.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(
        stage: Stage,
        target: Target,
        format: Format,
        delivery: Option<Delivery>,
        workers: usize,
        columns: usize,
        rows_per_sec: f64,
    ) -> Figures {
        Figures {
            name: String::new(),
            stage,
            target,
            broker: None,
            format,
            envelope: EnvelopeKind::Upsert,
            delivery,
            workers,
            columns,
            snapshot_rows: 200_000,
            stream_changes: 100_000,
            rows_per_sec,
            mb_per_sec: rows_per_sec * 170.0 / 1e6,
            snapshot_rows_per_sec: rows_per_sec,
            snapshot_mb_per_sec: 0.0,
            stream_rows_per_sec: rows_per_sec,
            stream_mb_per_sec: 0.0,
            latency_p50_ms: 1.0,
            latency_p99_ms: 2.0,
            paced_interval_ms: 50,
            paced_rows_per_sec: rows_per_sec / 10.0,
            allocations_per_row: 4.0,
            encode_combine_allocations_per_row: Some(4.0),
            cpu_us_per_row: Default::default(),
            peak_rss_bytes: 0,
            transactions_per_sec: None,
            commit_interval_ms: None,
            commit_p50_ms: None,
            commit_p99_ms: None,
            raw_commit_p50_ms: None,
            raw_commit_p99_ms: None,
            ratio_vs_raw_producer: (stage == Stage::Sink).then_some(0.5),
            ratio_vs_parts: (stage == Stage::Sink).then_some(0.4),
            encode_combine_rows_per_sec: None,
            ratio_vs_encode_loop: None,
            encode_loop_rows_per_sec: 0.0,
            ratio_vs_serde_json: 1.0,
            raw_producer_rows_per_sec: 0.0,
            serde_json_rows_per_sec: 0.0,
            error: None,
        }
    }

    /// Figures shaped like the standard suite's.
    pub(super) fn suite() -> Vec<Figures> {
        use Stage::*;
        let none = Target::None;
        let mut rows = Vec::new();
        for (workers, scale) in [(1, 1.0), (2, 1.8)] {
            for (stage, rate) in [(Encode, 900e3), (Combine, 420e3), (EncodeCombine, 310e3)] {
                rows.push(figures(
                    stage,
                    none,
                    Format::Json,
                    None,
                    workers,
                    8,
                    rate * scale,
                ));
            }
            rows.push(figures(
                EncodeCombine,
                none,
                Format::Avro,
                None,
                workers,
                8,
                280e3 * scale,
            ));
            for (delivery, rate) in [
                (Delivery::ExactlyOnce, 80e3),
                (Delivery::AtLeastOnce, 150e3),
            ] {
                let sink = figures(
                    Sink,
                    Target::Mock,
                    Format::Json,
                    Some(delivery),
                    workers,
                    8,
                    rate * scale,
                );
                rows.push(sink);
            }
        }
        for (columns, rate) in [(2, 610e3), (4, 450e3), (16, 170e3), (32, 90e3)] {
            rows.push(figures(
                EncodeCombine,
                none,
                Format::Json,
                None,
                1,
                columns,
                rate,
            ));
        }
        let mut failed = figures(
            Sink,
            Target::Mock,
            Format::Avro,
            Some(Delivery::ExactlyOnce),
            2,
            8,
            0.0,
        );
        failed.error = Some("broker down".to_string());
        rows.push(failed);
        rows
    }

    #[test]
    fn a_suite_makes_a_chart_per_target_one_per_width_and_one_of_ratios() {
        let charts = charts(&suite());
        let titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles.len(), 4, "{titles:?}");
        assert!(titles[0].contains("workers, broker-free"));
        assert!(titles[1].contains("workers, embedded mock broker"));
        assert!(titles[2].contains("row width"));
        assert!(titles[3].contains("over a raw producer"), "{titles:?}");
        let ratio_labels: Vec<&str> = charts[3].series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            ratio_labels,
            [
                "sink json upsert at-least-once, embedded mock broker, over its parts",
                "sink json upsert at-least-once, embedded mock broker, over raw producer",
                "sink json upsert exactly-once, embedded mock broker, over its parts",
                "sink json upsert exactly-once, embedded mock broker, over raw producer",
            ]
        );
        let labels: Vec<&str> = charts[0].series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "combine json upsert",
                "encode json upsert",
                "encode+combine avro upsert",
                "encode+combine json upsert"
            ]
        );
        let width = &charts[2].series;
        assert_eq!(width.len(), 1);
        assert_eq!(width[0].label, "encode+combine json upsert, 1 worker");
        let columns: Vec<f64> = width[0].points.iter().map(|p| p.0).collect();
        assert_eq!(columns, [2.0, 4.0, 8.0, 16.0, 32.0]);

        let svg = render(&suite()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for label in [
            "sink json upsert exactly-once",
            "rows/s",
            "columns per row (log scale)",
        ] {
            assert!(svg.contains(label), "{label} is missing");
        }
        assert_eq!(render(&[]), None);
    }
}
