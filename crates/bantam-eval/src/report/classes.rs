//! The classification sections of the report: F1 per class (all classes, or the
//! best and worst when there are many) and a confusion-matrix heat map per target
//! with its most frequent confusions.

use std::fmt::Write;

use serde_json::{Map, Value};

use super::charts::{Row, Series};
use super::heatmap;
use super::svg::{escape, shown};

/// One class of one target's report.
struct ClassScore {
    f1: f64,
    precision: f64,
    recall: f64,
    support: u64,
}

fn classes(s: &Value) -> Vec<(String, ClassScore)> {
    s.get("classes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let f = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    Some((
                        c.get("label")?.as_str()?.to_string(),
                        ClassScore {
                            f1: f("f1"),
                            precision: f("precision"),
                            recall: f("recall"),
                            support: c.get("support").and_then(Value::as_u64).unwrap_or(0),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Classes beyond this many are shown as the best and the worst half of it.
const MAX_CLASS_ROWS: usize = 40;

pub(super) fn per_class(h: &mut String, targets: &Map<String, Value>, series: &[Series]) {
    let per_target: Vec<Vec<(String, ClassScore)>> = targets.values().map(classes).collect();
    let mut labels: Vec<&str> = Vec::new();
    for c in per_target.iter().flatten() {
        if !labels.contains(&c.0.as_str()) {
            labels.push(&c.0);
        }
    }
    if labels.is_empty() {
        return;
    }
    let find = |t: usize, l: &str| per_target[t].iter().find(|c| c.0 == l).map(|c| &c.1);
    let mean = |l: &str| -> f64 {
        (0..per_target.len())
            .map(|t| find(t, l).map_or(0.0, |c| c.f1))
            .sum::<f64>()
            / per_target.len() as f64
    };
    let mut order: Vec<(&str, f64)> = labels.iter().map(|l| (*l, mean(l))).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let n = order.len();
    let (shown_rows, gap, note): (Vec<(&str, f64)>, Option<usize>, String) = if n > MAX_CLASS_ROWS {
        let half = MAX_CLASS_ROWS / 2;
        let mut v = order[..half].to_vec();
        v.extend_from_slice(&order[n - half..]);
        (
            v,
            Some(half - 1),
            format!(
                "The {half} best and the {half} worst of {n} classes by mean F1 over the \
                 targets; the {} in between are in summary.json.",
                n - MAX_CLASS_ROWS
            ),
        )
    } else {
        (
            order,
            None,
            format!("All {n} classes, by mean F1 over the targets."),
        )
    };
    let rows: Vec<Row> = shown_rows
        .iter()
        .map(|(l, _)| Row {
            label: l.to_string(),
            values: series
                .iter()
                .enumerate()
                .map(|(t, se)| {
                    find(t, l).map(|c| {
                        (
                            c.f1,
                            format!(
                                "{} — {}\nF1 {:.3} · precision {:.3} · recall {:.3} · support {}",
                                shown(l),
                                se.name,
                                c.f1,
                                c.precision,
                                c.recall,
                                c.support
                            ),
                        )
                    })
                })
                .collect(),
        })
        .collect();
    let gap_text = format!("… {} classes left out …", n.saturating_sub(MAX_CLASS_ROWS));
    let _ = write!(
        h,
        "<section id=\"per-class\"><h2>F1 per class</h2><figure>{}<figcaption>{note} Hover a bar for \
         precision, recall and support. A label that was only predicted (support 0) has \
         F1 0 and counts in macro F1, as in scikit-learn; “(none)” is an empty \
         prediction.</figcaption></figure></section>",
        super::charts::class_bars(&rows, series, gap.map(|g| (g, gap_text.as_str())))
    );
}

/// The most frequent confusions of one target's matrix: (true, predicted, count).
pub(super) fn top_confusions<'a>(
    labels: &'a [String],
    m: &[Vec<usize>],
    k: usize,
) -> Vec<(&'a str, &'a str, usize)> {
    let mut v: Vec<(&str, &str, usize)> = Vec::new();
    for (i, row) in m.iter().enumerate().take(labels.len()) {
        for (j, &c) in row.iter().enumerate().take(labels.len()) {
            if i != j && c > 0 {
                v.push((&labels[i], &labels[j], c));
            }
        }
    }
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
    v.truncate(k);
    v
}

pub(super) fn matrix(s: &Value) -> Option<(Vec<String>, Vec<Vec<usize>>)> {
    let labels: Vec<String> = s
        .get("labels")?
        .as_array()?
        .iter()
        .map(|l| l.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    let m: Vec<Vec<usize>> = s
        .get("confusion")?
        .as_array()?
        .iter()
        .map(|r| {
            r.as_array()?
                .iter()
                .map(|c| c.as_u64().map(|c| c as usize))
                .collect::<Option<Vec<_>>>()
        })
        .collect::<Option<_>>()?;
    (m.len() == labels.len() && m.iter().all(|r| r.len() == labels.len())).then_some((labels, m))
}

pub(super) fn confusion(h: &mut String, targets: &Map<String, Value>, series: &[Series]) {
    let mut figures = String::new();
    let mut many = false;
    for (se, s) in series.iter().zip(targets.values()) {
        let Some((labels, m)) = matrix(s) else {
            continue;
        };
        many |= !heatmap::labels_shown(labels.len());
        let _ = write!(
            figures,
            "<figure><h3><span class=\"swatch\" style=\"background:{}\"></span>{}</h3><div class=\"row\"><div>{}</div>",
            se.colour,
            escape(se.name),
            heatmap::heatmap(&labels, &m)
        );
        let top = top_confusions(&labels, &m, 10);
        if top.is_empty() {
            figures.push_str("<p class=\"note\">No confusions.</p>");
        } else {
            figures.push_str(
                "<table class=\"small\"><thead><tr><th>true</th><th>predicted as</th><th>items</th></tr></thead><tbody>",
            );
            for (t, p, c) in top {
                let _ = write!(
                    figures,
                    "<tr><td>{}</td><td>{}</td><td>{c}</td></tr>",
                    escape(shown(t)),
                    escape(shown(p))
                );
            }
            figures.push_str("</tbody></table>");
        }
        figures.push_str("</div></figure>");
    }
    if figures.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<section id=\"confusion\"><h2>Confusion matrices</h2><p class=\"note\">Rows are true labels, \
         columns predicted labels, both in summary.json's (sorted) label order; a cell's \
         colour is its share of the row's items, so a dark diagonal is good, and a \
         diagonal cell has a black outline. Hover a cell for the labels and the count. \
         {}Beside each matrix: its most frequent confusions.</p>{figures}</section>",
        if many {
            "With this many classes the axis labels are left out so the cells stay \
             legible; hover the cells instead. "
        } else {
            ""
        }
    );
}
