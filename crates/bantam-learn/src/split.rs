//! A seeded, stratified train/validation split.

/// Split row indices so that each class keeps about `val_fraction` of its rows for
/// validation (at least one row per class stays in training; a class with a single
/// row is training-only). Deterministic for a given seed.
pub fn stratified_split(
    labels: &[usize],
    val_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &c) in labels.iter().enumerate() {
        by_class[c].push(i);
    }
    let mut rng = SplitMix(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for rows in &mut by_class {
        // Fisher–Yates with a fixed generator.
        for i in (1..rows.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            rows.swap(i, j);
        }
        let take =
            ((rows.len() as f64 * val_fraction).round() as usize).min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// SplitMix64 (Steele et al.): small, fast, and the same on every platform.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_seeded_and_complete() {
        let labels: Vec<usize> = (0..100)
            .map(|i| if i < 80 { 0 } else { 1 + i % 2 })
            .collect();
        let (t, v) = stratified_split(&labels, 0.2, 7);
        assert_eq!(t.len() + v.len(), 100);
        let in_val = |c: usize| v.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(in_val(0), 16);
        assert_eq!(in_val(1), 2);
        assert_eq!(in_val(2), 2);
        assert_eq!(stratified_split(&labels, 0.2, 7), (t.clone(), v.clone()));
        assert_ne!(stratified_split(&labels, 0.2, 8).1, v);
        // A class with one row stays in training.
        let (t, v) = stratified_split(&[0, 0, 0, 1], 0.5, 1);
        assert!(t.contains(&3) && !v.contains(&3));
    }
}
