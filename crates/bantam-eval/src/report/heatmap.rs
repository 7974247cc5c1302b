//! A confusion matrix as an SVG heat map.

use std::fmt::Write;

use super::svg::{blues, clip, escape, num, open, rect, shown, text, text_width};

const MUTED: &str = "fill=\"#555\"";

/// The side of a heat-map cell for `n` classes (the matrix is about 560 px).
fn cell_side(n: usize) -> f64 {
    (560.0 / n.max(1) as f64).floor().clamp(6.0, 36.0)
}

/// Whether a heat map of `n` classes has axis labels (cells of at least 10 px).
pub fn labels_shown(n: usize) -> bool {
    cell_side(n) >= 10.0
}

/// A confusion matrix as a heat map: rows are true labels, columns predicted labels,
/// colour is the share of the row's items. Axis labels are drawn while cells are at
/// least 10 px; beyond that (many classes) labels are only in hover texts.
pub fn heatmap(labels: &[String], m: &[Vec<usize>]) -> String {
    let cell = cell_side(labels.len());
    let show_labels = labels_shown(labels.len());
    let fs = (cell - 1.0).min(11.0);
    let label_w = if show_labels {
        labels
            .iter()
            .map(|l| text_width(&clip(shown(l), 22), fs))
            .fold(20.0, f64::max)
            + 8.0
    } else {
        8.0
    };
    let left = 22.0 + label_w;
    let top = 22.0 + label_w;
    let side = cell * labels.len() as f64;
    let legend_h = 40.0;
    let w = (left + side + 16.0).max(300.0);
    let h = top + side + 12.0 + legend_h;
    let mut s = open(w, h, "confusion matrix");
    rect(
        &mut s,
        left,
        top,
        side,
        side,
        "fill=\"#fff\" stroke=\"#bbb\"",
        None,
    );
    text(
        &mut s,
        left + side / 2.0,
        12.0,
        &format!("text-anchor=\"middle\" {MUTED}"),
        "predicted →",
    );
    let cy = top + side / 2.0;
    text(
        &mut s,
        12.0,
        cy,
        &format!(
            "text-anchor=\"middle\" {MUTED} transform=\"rotate(-90 12 {})\"",
            num(cy)
        ),
        "true →",
    );
    for (i, l) in labels.iter().enumerate() {
        let name = shown(l);
        let c = left + (i as f64 + 0.5) * cell;
        let r = top + (i as f64 + 0.5) * cell;
        // The diagonal, so a class with no correct item still shows where hits go.
        rect(
            &mut s,
            left + i as f64 * cell,
            top + i as f64 * cell,
            cell,
            cell,
            "fill=\"#eeeeee\"",
            None,
        );
        if show_labels {
            let _ = write!(s, "<g><title>{}</title>", escape(name));
            text(
                &mut s,
                left - 4.0,
                r + fs / 3.0,
                &format!("text-anchor=\"end\" font-size=\"{}\"", num(fs)),
                &clip(name, 22),
            );
            text(
                &mut s,
                c + fs / 3.0,
                top - 4.0,
                &format!(
                    "font-size=\"{}\" transform=\"rotate(-90 {} {})\"",
                    num(fs),
                    num(c + fs / 3.0),
                    num(top - 4.0)
                ),
                &clip(name, 22),
            );
            s.push_str("</g>");
        }
    }
    for (i, row) in m.iter().enumerate().take(labels.len()) {
        let total: usize = row.iter().sum();
        for (j, &v) in row.iter().enumerate().take(labels.len()) {
            if v == 0 {
                continue;
            }
            let share = v as f64 / total.max(1) as f64;
            let (x, y) = (left + j as f64 * cell, top + i as f64 * cell);
            let title = format!(
                "true: {}\npredicted: {}\n{v} of {total} ({:.0} %)",
                shown(&labels[i]),
                shown(&labels[j]),
                share * 100.0
            );
            // Even a small share stays visible against white.
            let fill = blues(0.12 + 0.88 * share);
            let stroke = if i == j {
                " stroke=\"#000\" stroke-width=\"0.6\""
            } else {
                ""
            };
            rect(
                &mut s,
                x,
                y,
                cell,
                cell,
                &format!("fill=\"{fill}\"{stroke}"),
                Some(&title),
            );
            if cell >= 22.0 {
                let ink = if share > 0.5 { "#fff" } else { "#111" };
                text(
                    &mut s,
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0,
                    &format!("text-anchor=\"middle\" font-size=\"10\" fill=\"{ink}\""),
                    &v.to_string(),
                );
            }
        }
    }
    // Colour legend: six steps of the row share.
    let ly = top + side + 14.0;
    text(
        &mut s,
        left,
        ly + 11.0,
        "font-size=\"11\"",
        "share of the true class:",
    );
    let lx = left + 140.0;
    for k in 0..=5 {
        let t = f64::from(k) / 5.0;
        let x = lx + f64::from(k) * 26.0;
        rect(
            &mut s,
            x,
            ly,
            26.0,
            12.0,
            &format!("fill=\"{}\"", blues(0.12 + 0.88 * t)),
            None,
        );
        text(
            &mut s,
            x + 13.0,
            ly + 25.0,
            "text-anchor=\"middle\" font-size=\"10\"",
            &format!("{t:.1}"),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::svg::coords_finite;

    #[test]
    fn heatmap_labels_only_while_legible() {
        let few: Vec<String> = (0..5).map(|i| format!("class_{i}")).collect();
        let m: Vec<Vec<usize>> = (0..5)
            .map(|i| {
                (0..5)
                    .map(|j| usize::from(i == j) * 4 + usize::from(j == 0))
                    .collect()
            })
            .collect();
        let svg = heatmap(&few, &m);
        assert!(svg.contains(">class_3</text>"));
        assert!(svg.contains("true: class_3\npredicted: class_0\n1 of 5 (20 %)"));
        let many: Vec<String> = (0..77).map(|i| format!("c{i}")).collect();
        let m: Vec<Vec<usize>> = (0..77)
            .map(|i| (0..77).map(|j| usize::from(i == j)).collect())
            .collect();
        let svg = heatmap(&many, &m);
        assert!(!svg.contains(">c5</text>"));
        assert!(svg.contains("true: c5\npredicted: c5\n1 of 1 (100 %)"));
        coords_finite(&svg);
    }

    #[test]
    fn degenerate_matrices_draw_valid_charts() {
        coords_finite(&heatmap(&["only".into()], &[vec![3]]));
        coords_finite(&heatmap(&[], &[]));
        coords_finite(&heatmap(
            &["a".into(), "b".into()],
            &[vec![0, 0], vec![0, 0]],
        ));
        // A matrix smaller than its labels (a malformed summary) draws what it has.
        coords_finite(&heatmap(&["a".into(), "b".into()], &[vec![1]]));
    }
}
