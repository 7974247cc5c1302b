//! Corpus BLEU as sacrebleu computes it by default (`BLEU()`: tokenizer `13a`, case
//! kept, `exp` smoothing, 4-grams, closest reference length, n-gram counts clipped
//! by the maximum count over the references).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// Highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// A corpus BLEU score and its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bleu {
    /// 0–100.
    pub score: f64,
    /// n-gram precisions (0–100).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis tokens.
    pub sys_len: usize,
    /// Reference tokens (closest reference per segment).
    pub ref_len: usize,
}

fn rules() -> &'static [(Regex, &'static str); 4] {
    static R: OnceLock<[(Regex, &'static str); 4]> = OnceLock::new();
    R.get_or_init(|| {
        [
            (
                Regex::new(r"([\{-~\[-` -&\(-\+:-@/])").expect("valid"),
                " $1 ",
            ),
            (Regex::new(r"([^0-9])([\.,])").expect("valid"), "$1 $2 "),
            (Regex::new(r"([\.,])([^0-9])").expect("valid"), " $1 $2"),
            (Regex::new(r"([0-9])(-)").expect("valid"), "$1 $2 "),
        ]
    })
}

/// sacrebleu's `13a` tokenizer (mteval-v13a).
pub fn tokenize_13a(line: &str) -> String {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in rules() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

type Counts = HashMap<Vec<String>, usize>;

fn ngrams(tokens: &[String]) -> Counts {
    let mut c = Counts::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *c.entry(w.to_vec()).or_insert(0) += 1;
        }
    }
    c
}

fn tokens(s: &str) -> Vec<String> {
    tokenize_13a(s.trim_end())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Corpus BLEU of `hyps` against `refs[i]`, the references of segment `i` (one or
/// more per segment).
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>]) -> Bleu {
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0, 0);
    for (h, rs) in hyps.iter().zip(refs) {
        let ht = tokens(h);
        let mut max_ref = Counts::new();
        let mut lens = Vec::new();
        for r in rs {
            let rt = tokens(r);
            lens.push(rt.len());
            for (g, c) in ngrams(&rt) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        // Closest reference length; ties go to the shorter one.
        let hl = ht.len();
        let closest = lens
            .iter()
            .copied()
            .min_by_key(|&l| (l.abs_diff(hl), l))
            .unwrap_or(0);
        sys_len += hl;
        ref_len += closest;
        for (g, c) in ngrams(&ht) {
            let n = g.len() - 1;
            total[n] += c;
            if let Some(&m) = max_ref.get(&g) {
                correct[n] += c.min(m);
            }
        }
    }
    compute(&correct, &total, sys_len, ref_len)
}

fn compute(
    correct: &[usize; MAX_ORDER],
    total: &[usize; MAX_ORDER],
    sys: usize,
    refl: usize,
) -> Bleu {
    let bp = if sys < refl {
        if sys > 0 {
            (1.0 - refl as f64 / sys as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    if correct.iter().all(|&c| c == 0) {
        return Bleu {
            score: 0.0,
            precisions,
            bp,
            sys_len: sys,
            ref_len: refl,
        };
    }
    let mut smooth = 1.0;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let score = bp * (precisions.iter().map(|&p| log(p)).sum::<f64>() / MAX_ORDER as f64).exp();
    Bleu {
        score,
        precisions,
        bp,
        sys_len: sys,
        ref_len: refl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("Hello, world! It costs 3.50 (approx)."),
            "Hello , world ! It costs 3.50 ( approx ) ."
        );
        assert_eq!(tokenize_13a("a&amp;b 10-20"), "a & b 10 - 20");
    }

    #[test]
    fn identical_is_100_and_empty_is_0() {
        let h = vec!["the cat sat on the mat".to_string()];
        let r = vec![vec!["the cat sat on the mat".to_string()]];
        assert!((corpus_bleu(&h, &r).score - 100.0).abs() < 1e-9);
        let h = vec!["xyz".to_string()];
        assert_eq!(corpus_bleu(&h, &r).score, 0.0);
    }
}
