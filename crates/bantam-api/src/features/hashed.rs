//! A built-in featuriser for learned routes that needs no model: hashed word
//! unigrams and bigrams plus character 3–5-grams of each word (fastText's subwords),
//! signed feature hashing into a fixed number of dimensions, L2-normalised.
//!
//! It costs microseconds per prompt where all-MiniLM-L6-v2 costs milliseconds on a
//! CPU, and it knows words rather than meanings: `BENCHMARKS.md` compares what the
//! two cost in routing quality on CLINC150.

use super::Embed;

/// The name a router model records for this featuriser (`--embedder hashed-ngrams`).
pub const NAME: &str = "hashed-ngrams";

/// Dimensions.
pub const DIM: usize = 4096;

/// The featuriser.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashedNgrams;

/// FNV-1a, 64 bits: stable across platforms and releases (a saved router's weights
/// depend on it).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl HashedNgrams {
    /// The feature vector of one text.
    pub fn features(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; DIM];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut add = |h: u64| {
            let i = (h % DIM as u64) as usize;
            v[i] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        };
        for (k, w) in words.iter().enumerate() {
            add(fnv1a(&[b"w:", w.as_bytes()]));
            if let Some(next) = words.get(k + 1) {
                add(fnv1a(&[b"b:", w.as_bytes(), b" ", next.as_bytes()]));
            }
            // Character n-grams of "<word>", on characters (not bytes).
            let chars: Vec<char> = std::iter::once('<')
                .chain(w.chars())
                .chain(std::iter::once('>'))
                .collect();
            let mut buf = [0u8; 4];
            for n in 3..=5 {
                for win in chars.windows(n) {
                    let mut s = Vec::with_capacity(n * 2 + 2);
                    s.extend_from_slice(b"c:");
                    for c in win {
                        s.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    add(fnv1a(&[&s]));
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for x in &mut v {
                *x /= norm;
            }
        }
        v
    }
}

impl Embed for HashedNgrams {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| self.features(t)).collect())
    }

    fn inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn normalised_deterministic_and_similar_for_shared_words() {
        let f = HashedNgrams;
        let a = f.features("How do I reset my card PIN?");
        assert_eq!(a.len(), DIM);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(a, f.features("how do i reset my card pin"));
        let near = f.features("reset the PIN of my card");
        let far = f.features("Is this non-compete clause enforceable?");
        assert!(
            dot(&a, &near) > dot(&a, &far) + 0.2,
            "{} {}",
            dot(&a, &near),
            dot(&a, &far)
        );
        assert!(f.features("  ?! ").iter().all(|x| *x == 0.0));
        // Non-ASCII words are cut on characters, not bytes.
        assert!(dot(&f.features("Überweisung"), &f.features("überweisung")) > 0.99);
    }

    #[test]
    fn the_hash_is_pinned() {
        // Saved routers depend on these values; changing the hash breaks them.
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"w:", b"card"]), fnv1a(&[b"w:card"]));
    }
}
