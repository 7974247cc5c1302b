//! Classification metrics with scikit-learn's definitions: per-class precision,
//! recall and F1 with `zero_division=0`, macro averages over the sorted union of
//! true and predicted labels, micro averages over all decisions, and the confusion
//! matrix in that label order.

use std::collections::BTreeSet;

use serde::Serialize;

/// Scores of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The label.
    pub label: String,
    /// tp / (tp + fp), 0 when nothing was predicted as this label.
    pub precision: f64,
    /// tp / (tp + fn), 0 when the label never occurs.
    pub recall: f64,
    /// Harmonic mean, 0 when both are 0.
    pub f1: f64,
    /// Items whose true label this is.
    pub support: usize,
}

/// A classification report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Share of items predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1.
    pub macro_f1: f64,
    /// Unweighted mean of the per-class precision.
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recall.
    pub macro_recall: f64,
    /// F1 over all decisions (equals accuracy for single-label data).
    pub micro_f1: f64,
    /// Per class, in `labels` order.
    pub classes: Vec<ClassScores>,
    /// Sorted union of true and predicted labels.
    pub labels: Vec<String>,
    /// `confusion[i][j]`: items of true label `labels[i]` predicted as `labels[j]`.
    pub confusion: Vec<Vec<usize>>,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Evaluate single-label predictions. Panics if the lengths differ.
pub fn report(truth: &[String], pred: &[String]) -> Report {
    assert_eq!(truth.len(), pred.len(), "one prediction per item");
    let labels: Vec<String> = truth
        .iter()
        .chain(pred)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |l: &String| labels.binary_search(l).expect("label collected");
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (t, p) in truth.iter().zip(pred) {
        confusion[index(t)][index(p)] += 1;
    }
    let mut classes = Vec::with_capacity(k);
    let (mut tp_all, mut fp_all, mut fn_all) = (0, 0, 0);
    for (i, label) in labels.iter().enumerate() {
        let tp = confusion[i][i];
        let predicted: usize = (0..k).map(|r| confusion[r][i]).sum();
        let support: usize = confusion[i].iter().sum();
        tp_all += tp;
        fp_all += predicted - tp;
        fn_all += support - tp;
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        classes.push(ClassScores {
            label: label.clone(),
            precision,
            recall,
            f1: f1(precision, recall),
            support,
        });
    }
    let mean = |f: fn(&ClassScores) -> f64| {
        if classes.is_empty() {
            0.0
        } else {
            classes.iter().map(f).sum::<f64>() / classes.len() as f64
        }
    };
    let micro_p = ratio(tp_all, tp_all + fp_all);
    let micro_r = ratio(tp_all, tp_all + fn_all);
    Report {
        accuracy: ratio(tp_all, truth.len()),
        macro_f1: mean(|c| c.f1),
        macro_precision: mean(|c| c.precision),
        macro_recall: mean(|c| c.recall),
        micro_f1: f1(micro_p, micro_r),
        classes,
        labels,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn small_report() {
        let r = report(&s(&["a", "a", "b", "c"]), &s(&["a", "b", "b", "b"]));
        assert_eq!(r.labels, s(&["a", "b", "c"]));
        assert_eq!(r.accuracy, 0.5);
        assert_eq!(
            r.confusion,
            vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 1, 0]]
        );
        // a: p 1, r .5; b: p 1/3, r 1; c: 0.
        assert!((r.classes[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.classes[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(r.classes[2].f1, 0.0);
        assert!((r.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(r.micro_f1, 0.5);
    }
}
