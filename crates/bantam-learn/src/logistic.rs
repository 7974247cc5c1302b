//! Binary logistic regression: full-batch Adam with an L2 penalty and optional
//! class balancing (the learned router's "does this prompt need the larger model?").

use crate::adam::Adam;

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    /// L2 penalty on the weights.
    pub l2: f32,
    /// Full-batch steps.
    pub epochs: usize,
    /// Adam step size.
    pub lr: f32,
    /// Weigh the classes inversely to their frequency (rare positive labels).
    pub balanced: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            l2: 1e-4,
            epochs: 400,
            lr: 0.05,
            balanced: true,
        }
    }
}

/// The logistic function.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Fit logistic regression. Returns the weights and the bias.
pub fn train_binary(x: &[Vec<f32>], y: &[bool], opts: TrainOptions) -> (Vec<f32>, f32) {
    let n = x.len();
    let dim = x.first().map_or(0, Vec::len);
    let pos = y.iter().filter(|&&v| v).count();
    let (wp, wn) = if opts.balanced && pos > 0 && pos < n {
        (
            n as f32 / (2.0 * pos as f32),
            n as f32 / (2.0 * (n - pos) as f32),
        )
    } else {
        (1.0, 1.0)
    };
    // Parameters: the weights, then the bias (not penalised).
    let mut p = vec![0f32; dim + 1];
    let mut grad = vec![0f32; dim + 1];
    let mut adam = Adam::new(dim + 1, opts.lr);
    let inv = 1.0 / n.max(1) as f32;
    for _ in 0..opts.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        for (xi, &yi) in x.iter().zip(y) {
            let z: f32 = p[..dim].iter().zip(xi).map(|(a, b)| a * b).sum::<f32>() + p[dim];
            let (target, weight) = if yi { (1.0, wp) } else { (0.0, wn) };
            let d = weight * (sigmoid(z) - target);
            for (g, v) in grad[..dim].iter_mut().zip(xi) {
                *g += d * v;
            }
            grad[dim] += d;
        }
        for j in 0..dim {
            grad[j] = grad[j] * inv + opts.l2 * p[j];
        }
        grad[dim] *= inv;
        adam.step(&mut p, &grad);
    }
    let b = p[dim];
    p.truncate(dim);
    (p, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_a_separable_set_and_balances_rare_labels() {
        // 1-d: positives above 0.5, and only 3 of 30.
        let x: Vec<Vec<f32>> = (0..30).map(|i| vec![i as f32 / 30.0]).collect();
        let y: Vec<bool> = (0..30).map(|i| i >= 27).collect();
        let (w, b) = train_binary(&x, &y, TrainOptions::default());
        let right = x
            .iter()
            .zip(&y)
            .filter(|(xi, &yi)| (sigmoid(w[0] * xi[0] + b) >= 0.5) == yi)
            .count();
        assert!(right >= 27, "{right}/30");
        assert!(w[0] > 0.0);
    }
}
