//! Exact match and token F1 with the SQuAD v1.1 evaluation script's normalisation:
//! lower case, punctuation removed, articles (a, an, the) removed, whitespace
//! collapsed; the best score over the reference answers counts.

use std::collections::HashMap;

/// ASCII punctuation, as Python's `string.punctuation`.
const PUNCT: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// SQuAD's `normalize_answer`.
pub fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !PUNCT.contains(*c)).collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1.0 when the normalised prediction equals a normalised answer.
pub fn exact_match(pred: &str, answers: &[String]) -> f64 {
    let p = normalize(pred);
    if answers.iter().any(|a| normalize(a) == p) {
        1.0
    } else {
        0.0
    }
}

fn f1_one(pred: &str, answer: &str) -> f64 {
    let p = normalize(pred);
    let a = normalize(answer);
    let pt: Vec<&str> = p.split_whitespace().collect();
    let at: Vec<&str> = a.split_whitespace().collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &at {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut same = 0;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / at.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Token F1: the best over the answers.
pub fn token_f1(pred: &str, answers: &[String]) -> f64 {
    answers.iter().map(|a| f1_one(pred, a)).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_scores() {
        assert_eq!(normalize("The  Eiffel Tower!"), "eiffel tower");
        let ans = vec!["the Eiffel Tower".to_string(), "Tour Eiffel".to_string()];
        assert_eq!(exact_match("eiffel tower.", &ans), 1.0);
        assert_eq!(exact_match("tower", &ans), 0.0);
        // "eiffel tower in paris" vs "eiffel tower": p 2/4, r 1 → 2/3.
        assert!((token_f1("Eiffel Tower in Paris", &ans) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1("London", &ans), 0.0);
    }
}
