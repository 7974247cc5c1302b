//! ROUGE-1/2/L/Lsum F-measures as the `rouge-score` package computes them with
//! `RougeScorer([...], use_stemmer=True)`: lower-case, every run of characters other
//! than `a-z0-9` is a separator, tokens longer than 3 characters are Porter-stemmed
//! (NLTK's variant, [`crate::stem`]); ROUGE-Lsum splits texts into sentences at
//! newlines and uses the summary-level union LCS. With several references, each type
//! takes the reference with the best F-measure.

use std::collections::HashMap;

use serde::Serialize;

use crate::stem::stem;

/// Precision, recall and F-measure of one ROUGE type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F-measure.
    pub fmeasure: f64,
}

impl Score {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum of one prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rouge {
    /// Unigrams.
    pub rouge1: Score,
    /// Bigrams.
    pub rouge2: Score,
    /// Longest common subsequence.
    pub rouge_l: Score,
    /// Summary-level LCS over newline-separated sentences.
    pub rouge_lsum: Score,
}

/// rouge-score's tokenizer with stemming.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if t.len() > 3 { stem(t) } else { t.to_string() })
        .filter(|t| !t.is_empty())
        .collect()
}

fn ngram_counts(toks: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m: HashMap<&[String], usize> = HashMap::new();
    for w in toks.windows(n) {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

fn ngram_score(target: &[String], pred: &[String], n: usize) -> Score {
    let (t, p) = (ngram_counts(target, n), ngram_counts(pred, n));
    let inter: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let tn: usize = t.values().sum();
    let pn: usize = p.values().sum();
    Score::new(
        inter as f64 / pn.max(1) as f64,
        inter as f64 / tn.max(1) as f64,
    )
}

fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

fn lcs_score(target: &[String], pred: &[String]) -> Score {
    if target.is_empty() || pred.is_empty() {
        return Score::default();
    }
    let l = lcs_table(target, pred)[target.len()][pred.len()] as f64;
    Score::new(l / pred.len() as f64, l / target.len() as f64)
}

/// Indices into `r` of one LCS with `c`, read back as rouge-score does.
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j) = (r.len(), c.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

fn summary_lcs(refs: &[Vec<String>], cands: &[Vec<String>]) -> Score {
    if refs.is_empty() || cands.is_empty() {
        return Score::default();
    }
    let m: usize = refs.iter().map(Vec::len).sum();
    let n: usize = cands.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return Score::default();
    }
    let mut cnt_r: HashMap<&str, usize> = HashMap::new();
    let mut cnt_c: HashMap<&str, usize> = HashMap::new();
    for s in refs {
        for t in s {
            *cnt_r.entry(t).or_insert(0) += 1;
        }
    }
    for s in cands {
        for t in s {
            *cnt_c.entry(t).or_insert(0) += 1;
        }
    }
    let mut hits = 0usize;
    for r in refs {
        let mut union: Vec<usize> = cands.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for i in union {
            let t = r[i].as_str();
            let (cc, cr) = (
                cnt_c.get(t).copied().unwrap_or(0),
                cnt_r.get(t).copied().unwrap_or(0),
            );
            if cc > 0 && cr > 0 {
                hits += 1;
                cnt_c.insert(t, cc - 1);
                cnt_r.insert(t, cr - 1);
            }
        }
    }
    Score::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

fn sentences(text: &str) -> Vec<Vec<String>> {
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(tokenize)
        .collect()
}

/// ROUGE of `prediction` against one reference.
pub fn score(target: &str, prediction: &str) -> Rouge {
    let (t, p) = (tokenize(target), tokenize(prediction));
    Rouge {
        rouge1: ngram_score(&t, &p, 1),
        rouge2: ngram_score(&t, &p, 2),
        rouge_l: lcs_score(&t, &p),
        rouge_lsum: summary_lcs(&sentences(target), &sentences(prediction)),
    }
}

/// ROUGE against several references: per type, the reference with the best
/// F-measure (rouge-score's `score_multi`; the first wins ties).
pub fn score_multi(targets: &[String], prediction: &str) -> Rouge {
    let all: Vec<Rouge> = targets.iter().map(|t| score(t, prediction)).collect();
    let best = |f: fn(&Rouge) -> Score| {
        all.iter()
            .map(f)
            .fold(None::<Score>, |acc, s| match acc {
                Some(a) if a.fmeasure >= s.fmeasure => Some(a),
                _ => Some(s),
            })
            .unwrap_or_default()
    };
    Rouge {
        rouge1: best(|r| r.rouge1),
        rouge2: best(|r| r.rouge2),
        rouge_l: best(|r| r.rouge_l),
        rouge_lsum: best(|r| r.rouge_lsum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_one() {
        let r = score(
            "The cats are running.\nThey ran home.",
            "the cat is running\nthey ran home",
        );
        assert!(r.rouge1.fmeasure > 0.7);
        let r = score("a b c", "a b c");
        assert_eq!(r.rouge_l.fmeasure, 1.0);
        assert_eq!(score("", "x").rouge1.fmeasure, 0.0);
    }
}
