//! The report's charts as inline SVG strings: a quality-vs-latency scatter, grouped
//! vertical bars (a few metrics per target) and grouped horizontal bars (per-class
//! F1); the heat map is in `heatmap`. Every user string is escaped; every coordinate
//! goes through [`num`], so degenerate data (no latency, one class, one target) draws
//! an empty but valid chart.

use std::fmt::Write;

use super::svg::{clip, escape, legend, line, num, open, rect, shown, text, text_width, Axis};

const GRID: &str = "stroke=\"#e3e3e3\" stroke-width=\"1\"";
const AXIS: &str = "stroke=\"#555\" stroke-width=\"1\"";
const MUTED: &str = "fill=\"#555\"";

/// One series of bars or points: a target and its colour.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Target name.
    pub name: &'a str,
    /// Fill colour.
    pub colour: &'static str,
}

/// A target in the scatter.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    /// Target and colour.
    pub series: Series<'a>,
    /// Latency (x).
    pub x: f64,
    /// A second latency drawn as a whisker from `x` (p95).
    pub x_hi: Option<f64>,
    /// Quality (y).
    pub y: f64,
    /// Second label line (the cost).
    pub note: String,
    /// Hover text.
    pub title: String,
}

/// Quality (y) against latency (x), one labelled point per target, with a whisker
/// from p50 to p95.
pub fn scatter(points: &[Point], x_label: &str, y_label: &str) -> String {
    let (w, h) = (820.0, 420.0);
    let (left, right, top, bottom) = (64.0, 24.0, 16.0, 52.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x_max = points
        .iter()
        .map(|p| p.x_hi.unwrap_or(p.x).max(p.x))
        .fold(0.0, f64::max);
    let xa = Axis::new(x_max * 1.05, 6);
    let y_max = points.iter().map(|p| p.y).fold(0.0, f64::max);
    let ya = if y_max <= 1.0 {
        Axis::unit()
    } else {
        Axis::new(y_max, 5)
    };
    let px = |v: f64| left + xa.frac(v) * pw;
    let py = |v: f64| top + ph - ya.frac(v) * ph;
    let mut s = open(w, h, &format!("{y_label} against {x_label}"));
    for &t in &xa.ticks {
        line(&mut s, px(t), top, px(t), top + ph, GRID);
        text(
            &mut s,
            px(t),
            top + ph + 16.0,
            "text-anchor=\"middle\"",
            &xa.label(t),
        );
    }
    for &t in &ya.ticks {
        line(&mut s, left, py(t), left + pw, py(t), GRID);
        text(
            &mut s,
            left - 6.0,
            py(t) + 4.0,
            "text-anchor=\"end\"",
            &ya.label(t),
        );
    }
    line(&mut s, left, top + ph, left + pw, top + ph, AXIS);
    line(&mut s, left, top, left, top + ph, AXIS);
    text(
        &mut s,
        left + pw / 2.0,
        h - 10.0,
        "text-anchor=\"middle\"",
        x_label,
    );
    text(
        &mut s,
        16.0,
        top + ph / 2.0,
        &format!(
            "text-anchor=\"middle\" transform=\"rotate(-90 16 {})\"",
            num(top + ph / 2.0)
        ),
        y_label,
    );
    if points.is_empty() {
        text(
            &mut s,
            left + pw / 2.0,
            top + ph / 2.0,
            "text-anchor=\"middle\"",
            "no data",
        );
    }
    // Labels left of their points (whiskers go right); where that would cross the
    // y axis, right of the point and above its whisker. Then pushed apart vertically
    // and kept inside the plot.
    let label_w =
        |p: &Point| text_width(&clip(p.series.name, 30), 12.0).max(text_width(&p.note, 11.0));
    let place: Vec<(f64, f64, bool)> = points
        .iter()
        .map(|p| {
            let (x, y) = (px(p.x), py(p.y));
            if x - 12.0 - label_w(p) >= left + 4.0 {
                (x - 12.0, y, true)
            } else {
                (x + 10.0, y - 22.0, false)
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| place[a].1.total_cmp(&place[b].1));
    let mut label_y = vec![0.0; points.len()];
    let mut last = f64::NEG_INFINITY;
    for &i in &order {
        let y = place[i].1.max(last + 30.0);
        label_y[i] = y;
        last = y;
    }
    let overflow = (last + 14.0 - (top + ph - 4.0)).max(0.0);
    for y in &mut label_y {
        *y = (*y - overflow).max(top + 10.0);
    }
    for (i, p) in points.iter().enumerate() {
        let (x, y) = (px(p.x), py(p.y));
        let _ = write!(s, "<g><title>{}</title>", escape(&p.title));
        if let Some(hi) = p.x_hi {
            let x2 = px(hi);
            let stroke = format!(
                "stroke=\"{}\" stroke-width=\"2\" stroke-opacity=\"0.55\"",
                p.series.colour
            );
            line(&mut s, x, y, x2, y, &stroke);
            line(&mut s, x2, y - 5.0, x2, y + 5.0, &stroke);
        }
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"{}\" r=\"7\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1.5\"/>",
            num(x),
            num(y),
            p.series.colour
        );
        let (lx, base, left_side) = place[i];
        let ly = label_y[i];
        let anchor = if left_side { "end" } else { "start" };
        if (ly - base).abs() > 8.0 {
            line(
                &mut s,
                x,
                y,
                lx,
                ly - 4.0,
                "stroke=\"#999\" stroke-width=\"0.75\"",
            );
        }
        text(
            &mut s,
            lx,
            ly,
            &format!("text-anchor=\"{anchor}\" font-weight=\"600\""),
            &clip(p.series.name, 30),
        );
        text(
            &mut s,
            lx,
            ly + 14.0,
            &format!("text-anchor=\"{anchor}\" font-size=\"11\" {MUTED}"),
            &p.note,
        );
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// Grouped vertical bars: for each group (a metric), one bar per series (target).
/// `values[series][group]`; `None` draws nothing. Scores (all ≤ 1) use a 0–1 axis.
pub fn grouped_bars(
    groups: &[&str],
    series: &[Series],
    values: &[Vec<Option<f64>>],
    y_label: &str,
    fmt: fn(f64) -> String,
) -> String {
    let bar = if series.len() > 4 { 14.0 } else { 32.0 };
    let group_w = (series.len() as f64 * bar + 28.0).max(96.0);
    let (left, right, bottom) = (64.0, 16.0, 40.0);
    let w = (left + right + group_w * groups.len() as f64).max(480.0);
    let names: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    let mut legend_svg = String::new();
    let legend_h = legend(&mut legend_svg, &names, left, 8.0, w - left - right);
    let top = 8.0 + legend_h + 14.0;
    let ph = 240.0;
    let h = top + ph + bottom;
    let max = values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let ya = if max <= 1.0 {
        Axis::unit()
    } else {
        Axis::new(max, 5)
    };
    let py = |v: f64| top + ph - ya.frac(v) * ph;
    let mut s = open(w, h, y_label);
    s.push_str(&legend_svg);
    for &t in &ya.ticks {
        line(&mut s, left, py(t), w - right, py(t), GRID);
        text(
            &mut s,
            left - 6.0,
            py(t) + 4.0,
            "text-anchor=\"end\"",
            &ya.label(t),
        );
    }
    let cy = top + ph / 2.0;
    text(
        &mut s,
        16.0,
        cy,
        &format!(
            "text-anchor=\"middle\" transform=\"rotate(-90 16 {})\"",
            num(cy)
        ),
        y_label,
    );
    let inner = group_w * groups.len() as f64;
    let x0 = left + ((w - left - right) - inner) / 2.0;
    for (g, name) in groups.iter().enumerate() {
        let gx = x0 + g as f64 * group_w;
        let bx0 = gx + (group_w - bar * series.len() as f64) / 2.0;
        for (k, se) in series.iter().enumerate() {
            let Some(v) = values.get(k).and_then(|r| r.get(g)).copied().flatten() else {
                continue;
            };
            let v = if v.is_finite() { v } else { 0.0 };
            let x = bx0 + k as f64 * bar;
            rect(
                &mut s,
                x + 1.0,
                py(v),
                bar - 2.0,
                top + ph - py(v),
                &format!("fill=\"{}\"", se.colour),
                Some(&format!("{} — {name}: {}", se.name, fmt(v))),
            );
            if bar >= 24.0 {
                text(
                    &mut s,
                    x + bar / 2.0,
                    py(v) - 3.0,
                    "text-anchor=\"middle\" font-size=\"9.5\"",
                    &fmt(v),
                );
            }
        }
        text(
            &mut s,
            gx + group_w / 2.0,
            top + ph + 18.0,
            "text-anchor=\"middle\"",
            name,
        );
    }
    line(&mut s, left, top + ph, w - right, top + ph, AXIS);
    s.push_str("</svg>");
    s
}

/// A row of [`class_bars`]: a class and one value per series.
#[derive(Debug, Clone)]
pub struct Row {
    /// The class label.
    pub label: String,
    /// Per series: the value and a hover text (`None`: the class is not in that
    /// target's report).
    pub values: Vec<Option<(f64, String)>>,
}

/// Grouped horizontal bars on a 0–1 axis, one row per class; `gap` is a row index
/// after which a band with a note is drawn (rows left out).
pub fn class_bars(rows: &[Row], series: &[Series], gap: Option<(usize, &str)>) -> String {
    let bh = if series.len() >= 3 { 6.0 } else { 8.0 };
    let row_h = bh * series.len().max(1) as f64 + 6.0;
    let label_w = rows
        .iter()
        .map(|r| text_width(&clip(shown(&r.label), 34), 11.0))
        .fold(60.0, f64::max)
        + 10.0;
    let w = 820.0;
    let (left, right) = (label_w, 24.0);
    let pw = w - left - right;
    let names: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.colour)).collect();
    let mut legend_svg = String::new();
    let legend_h = legend(&mut legend_svg, &names, left, 8.0, pw);
    let top = 8.0 + legend_h + 24.0;
    let gap_h = if gap.is_some() { 26.0 } else { 0.0 };
    let ph = row_h * rows.len() as f64 + gap_h;
    let h = top + ph + 30.0;
    let xa = Axis::unit();
    let px = |v: f64| left + xa.frac(v) * pw;
    let mut s = open(w, h, "F1 per class");
    s.push_str(&legend_svg);
    for &t in &xa.ticks {
        line(&mut s, px(t), top - 4.0, px(t), top + ph, GRID);
        text(
            &mut s,
            px(t),
            top - 8.0,
            "text-anchor=\"middle\"",
            &xa.label(t),
        );
        text(
            &mut s,
            px(t),
            top + ph + 14.0,
            "text-anchor=\"middle\"",
            &xa.label(t),
        );
    }
    text(
        &mut s,
        left + pw / 2.0,
        h - 2.0,
        "text-anchor=\"middle\"",
        "F1",
    );
    let mut y = top;
    for (i, r) in rows.iter().enumerate() {
        let label = shown(&r.label);
        let _ = write!(s, "<g><title>{}</title>", escape(label));
        text(
            &mut s,
            left - 8.0,
            y + row_h / 2.0 + 3.5,
            "text-anchor=\"end\" font-size=\"11\"",
            &clip(label, 34),
        );
        s.push_str("</g>");
        for (k, se) in series.iter().enumerate() {
            let by = y + 3.0 + k as f64 * bh;
            match r.values.get(k).cloned().flatten() {
                Some((v, title)) => {
                    let v = if v.is_finite() { v } else { 0.0 };
                    // Zero-width bars still show a hairline, so F1 = 0 is visible.
                    rect(
                        &mut s,
                        left,
                        by,
                        (px(v) - left).max(1.0),
                        bh - 1.0,
                        &format!("fill=\"{}\"", se.colour),
                        Some(&title),
                    );
                }
                None => text(
                    &mut s,
                    left + 4.0,
                    by + bh - 1.0,
                    &format!("font-size=\"{}\" {MUTED}", num(bh)),
                    "n/a",
                ),
            }
        }
        y += row_h;
        if let Some((after, note)) = gap {
            if i == after {
                line(
                    &mut s,
                    8.0,
                    y + gap_h / 2.0,
                    w - right,
                    y + gap_h / 2.0,
                    "stroke=\"#999\" stroke-dasharray=\"4 4\"",
                );
                let tw = text_width(note, 11.0) + 12.0;
                rect(
                    &mut s,
                    left + pw / 2.0 - tw / 2.0,
                    y + gap_h / 2.0 - 9.0,
                    tw,
                    18.0,
                    "fill=\"#fff\"",
                    None,
                );
                text(
                    &mut s,
                    left + pw / 2.0,
                    y + gap_h / 2.0 + 4.0,
                    &format!("text-anchor=\"middle\" font-size=\"11\" {MUTED}"),
                    note,
                );
                y += gap_h;
            }
        }
    }
    line(&mut s, left, top - 4.0, left, top + ph, AXIS);
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::svg::coords_finite;

    fn s<'a>(name: &'a str, colour: &'static str) -> Series<'a> {
        Series { name, colour }
    }

    #[test]
    fn scatter_places_points_by_value() {
        let pts = [
            Point {
                series: s("fast", "#111111"),
                x: 100.0,
                x_hi: Some(200.0),
                y: 0.2,
                note: "local, no price".into(),
                title: "fast".into(),
            },
            Point {
                series: s("good <b>", "#222222"),
                x: 300.0,
                x_hi: None,
                y: 0.9,
                note: "$0.0100 / 1k".into(),
                title: "good".into(),
            },
        ];
        let svg = scatter(&pts, "p50 latency (ms)", "accuracy");
        coords_finite(&svg);
        assert!(svg.contains("good &lt;b&gt;") && !svg.contains("<b>"));
        let cx = |fill: &str| -> (f64, f64) {
            let i = svg
                .find(&format!("fill=\"{fill}\" stroke=\"#fff\""))
                .unwrap();
            let c = &svg[..i];
            let c = &c[c.rfind("<circle").unwrap()..];
            let get = |a: &str| -> f64 {
                let p = c.find(&format!("{a}=\"")).unwrap() + a.len() + 2;
                c[p..p + c[p..].find('"').unwrap()].parse().unwrap()
            };
            (get("cx"), get("cy"))
        };
        let (a, b) = (cx("#111111"), cx("#222222"));
        assert!(a.0 < b.0, "slower is further right");
        assert!(a.1 > b.1, "better is higher");
    }

    #[test]
    fn scatter_labels_stay_inside_the_plot_and_apart() {
        // Three weak targets near the origin, one of them with a long whisker.
        let pts: Vec<Point> = [
            (160.0, 0.09, 2000.0),
            (1400.0, 0.04, 1560.0),
            (240.0, 0.23, 600.0),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(x, y, hi))| Point {
            series: s(
                ["gemma3:270m", "smollm2:135m", "qwen2.5-coder:0.5b"][i],
                "#123456",
            ),
            x,
            x_hi: Some(hi),
            y,
            note: "local, no price".into(),
            title: String::new(),
        })
        .collect();
        let svg = scatter(&pts, "ms", "accuracy");
        coords_finite(&svg);
        let mut ys: Vec<f64> = svg
            .split("<text ")
            .filter(|t| t.contains("font-weight=\"600\""))
            .map(|t| {
                let p = t.find(" y=\"").unwrap() + 4;
                t[p..p + t[p..].find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(ys.len(), 3);
        ys.sort_by(f64::total_cmp);
        // Plot area: y from 16 to 420 - 52; the note line is 14 px below the name.
        assert!(ys.iter().all(|&y| y >= 16.0 && y + 14.0 <= 368.0), "{ys:?}");
        assert!(ys.windows(2).all(|w| w[1] - w[0] >= 30.0 - 1e-9), "{ys:?}");
    }

    #[test]
    fn degenerate_inputs_draw_valid_charts() {
        let one = [Point {
            series: s("only", "#000000"),
            x: 0.0,
            x_hi: Some(0.0),
            y: f64::NAN,
            note: String::new(),
            title: String::new(),
        }];
        coords_finite(&scatter(&one, "ms", "q"));
        coords_finite(&scatter(&[], "ms", "q"));
        let bars = grouped_bars(
            &["a", "b"],
            &[s("t", "#000000")],
            &[vec![Some(0.0), None]],
            "score",
            |v| format!("{v:.2}"),
        );
        coords_finite(&bars);
        coords_finite(&grouped_bars(&[], &[], &[], "score", |v| v.to_string()));
        let rows = [Row {
            label: String::new(),
            values: vec![Some((f64::NAN, "x".into()))],
        }];
        let cb = class_bars(&rows, &[s("t", "#000000")], None);
        coords_finite(&cb);
        assert!(cb.contains("(none)"));
        coords_finite(&class_bars(&[], &[], Some((0, "none"))));
    }

    #[test]
    fn class_bars_draw_the_gap_note_and_missing_values() {
        let rows: Vec<Row> = (0..4)
            .map(|i| Row {
                label: format!("l{i}"),
                values: vec![Some((0.25 * f64::from(i), format!("l{i} F1"))), None],
            })
            .collect();
        let svg = class_bars(
            &rows,
            &[s("a", "#000000"), s("b", "#111111")],
            Some((1, "… 3 classes left out …")),
        );
        assert!(svg.contains("… 3 classes left out …"));
        assert_eq!(svg.matches(">n/a</text>").count(), 4);
        assert!(svg.contains("<title>l3 F1</title>"));
        coords_finite(&svg);
    }
}
