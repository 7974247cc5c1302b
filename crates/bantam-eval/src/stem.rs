//! The Porter stemmer exactly as NLTK's `PorterStemmer()` (mode `NLTK_EXTENSIONS`),
//! which `rouge-score` uses with `use_stemmer=True`. Input is ASCII lower-case
//! (ROUGE tokens are `[a-z0-9]+`).

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// NLTK's `_is_consonant`.
fn is_consonant(w: &[u8], mut i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == b'y' {
        let mut negate = false;
        while i > 0 && w[i] == b'y' {
            negate = !negate;
            i -= 1;
        }
        return is_vowel(w[i]) == negate;
    }
    true
}

/// NLTK's `_consonant_flags`.
fn consonant_flags(w: &[u8]) -> Vec<bool> {
    let mut f: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let v = if is_vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !f[i - 1]
        } else {
            true
        };
        f.push(v);
    }
    f
}

/// Number of vowel→consonant transitions ("VC" in the CV pattern).
fn measure(stem: &[u8]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[u8]) -> bool {
    !consonant_flags(stem).iter().all(|&c| c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// NLTK's `_apply_rule_list`: the first rule whose suffix matches decides.
fn apply(word: &[u8], rules: &[(&str, &str, Option<Cond>)]) -> Vec<u8> {
    for (suffix, rep, cond) in rules {
        if *suffix == "*d" {
            if ends_double_consonant(word) {
                let stem = &word[..word.len() - 2];
                return if cond.is_none_or(|c| c(stem)) {
                    [stem, rep.as_bytes()].concat()
                } else {
                    word.to_vec()
                };
            }
            continue;
        }
        if word.ends_with(suffix.as_bytes()) {
            let stem = &word[..word.len() - suffix.len()];
            return if cond.is_none_or(|c| c(stem)) {
                [stem, rep.as_bytes()].concat()
            } else {
                word.to_vec()
            };
        }
    }
    word.to_vec()
}

fn positive(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn step1a(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return [&w[..1], b"ie"].concat();
    }
    apply(
        w,
        &[
            ("sses", "ss", None),
            ("ies", "i", None),
            ("ss", "ss", None),
            ("s", "", None),
        ],
    )
}

fn step1b(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return if w.len() == 4 {
            [&w[..1], b"ie"].concat()
        } else {
            [&w[..w.len() - 3], b"i"].concat()
        };
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            [stem, b"ee"].concat()
        } else {
            w.to_vec()
        };
    }
    let mut inter: Option<&[u8]> = None;
    for suffix in [&b"ed"[..], b"ing"] {
        if w.ends_with(suffix) {
            let s = &w[..w.len() - suffix.len()];
            if contains_vowel(s) {
                inter = Some(s);
                break;
            }
        }
    }
    let Some(s) = inter else {
        return w.to_vec();
    };
    let last = s.last().copied().unwrap_or(b' ');
    let last_str = (last as char).to_string();
    let keep_double = |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let add_e = |stem: &[u8]| measure(stem) == 1 && ends_cvc(stem);
    apply(
        s,
        &[
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", &last_str, Some(&keep_double)),
            ("", "e", Some(&add_e)),
        ],
    )
}

fn step1c(w: &[u8]) -> Vec<u8> {
    let cond = |stem: &[u8]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply(w, &[("y", "i", Some(&cond))])
}

fn step2(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(&[&w[..w.len() - 4], b"al"].concat());
    }
    let p: Cond = &positive;
    let logi = |_: &[u8]| positive(&w[..w.len().saturating_sub(3)]);
    apply(
        w,
        &[
            ("ational", "ate", Some(p)),
            ("tional", "tion", Some(p)),
            ("enci", "ence", Some(p)),
            ("anci", "ance", Some(p)),
            ("izer", "ize", Some(p)),
            ("bli", "ble", Some(p)),
            ("alli", "al", Some(p)),
            ("entli", "ent", Some(p)),
            ("eli", "e", Some(p)),
            ("ousli", "ous", Some(p)),
            ("ization", "ize", Some(p)),
            ("ation", "ate", Some(p)),
            ("ator", "ate", Some(p)),
            ("alism", "al", Some(p)),
            ("iveness", "ive", Some(p)),
            ("fulness", "ful", Some(p)),
            ("ousness", "ous", Some(p)),
            ("aliti", "al", Some(p)),
            ("iviti", "ive", Some(p)),
            ("biliti", "ble", Some(p)),
            ("fulli", "ful", Some(p)),
            ("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: &[u8]) -> Vec<u8> {
    let p: Cond = &positive;
    apply(
        w,
        &[
            ("icate", "ic", Some(p)),
            ("ative", "", Some(p)),
            ("alize", "al", Some(p)),
            ("iciti", "ic", Some(p)),
            ("ical", "ic", Some(p)),
            ("ful", "", Some(p)),
            ("ness", "", Some(p)),
        ],
    )
}

fn step4(w: &[u8]) -> Vec<u8> {
    let m: Cond = &|s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply(
        w,
        &[
            ("al", "", Some(m)),
            ("ance", "", Some(m)),
            ("ence", "", Some(m)),
            ("er", "", Some(m)),
            ("ic", "", Some(m)),
            ("able", "", Some(m)),
            ("ible", "", Some(m)),
            ("ant", "", Some(m)),
            ("ement", "", Some(m)),
            ("ment", "", Some(m)),
            ("ent", "", Some(m)),
            ("ion", "", Some(&ion)),
            ("ou", "", Some(m)),
            ("ism", "", Some(m)),
            ("ate", "", Some(m)),
            ("iti", "", Some(m)),
            ("ous", "", Some(m)),
            ("ive", "", Some(m)),
            ("ize", "", Some(m)),
        ],
    )
}

fn step5a(w: &[u8]) -> Vec<u8> {
    if let Some(stem) = w.strip_suffix(b"e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w.to_vec()
}

fn step5b(w: &[u8]) -> Vec<u8> {
    let cond = |_: &[u8]| measure(&w[..w.len() - 1]) > 1;
    apply(w, &[("ll", "l", Some(&cond))])
}

/// Stem one lower-case ASCII word.
pub fn stem(word: &str) -> String {
    let irregular = match word {
        "sky" | "skies" => Some("sky"),
        "dying" => Some("die"),
        "lying" => Some("lie"),
        "tying" => Some("tie"),
        "news" => Some("news"),
        "innings" | "inning" => Some("inning"),
        "outings" | "outing" => Some("outing"),
        "cannings" | "canning" => Some("canning"),
        "howe" => Some("howe"),
        "proceed" => Some("proceed"),
        "exceed" => Some("exceed"),
        "succeed" => Some("succeed"),
        _ => None,
    };
    if let Some(s) = irregular {
        return s.to_string();
    }
    if word.len() <= 2 || !word.is_ascii() {
        return word.to_string();
    }
    let w = word.as_bytes();
    let w = step1a(w);
    let w = step1b(&w);
    let w = step1c(&w);
    let w = step2(&w);
    let w = step3(&w);
    let w = step4(&w);
    let w = step5a(&w);
    let w = step5b(&w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn classic_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("running", "run"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("happily", "happili"),
            ("skies", "sky"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
