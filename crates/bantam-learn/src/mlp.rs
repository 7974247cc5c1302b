//! A small multilayer perceptron head: one hidden ReLU layer between the frozen
//! features and the softmax, for label sets a linear boundary separates poorly.
//! Mini-batch Adam on standardised features with an L2 penalty, dropout on the
//! hidden layer and balanced class weights; early stopping on the validation loss
//! (the best epoch's weights are kept), then temperature scaling on the same
//! validation set, as [`crate::softmax`] does. Seeded: the same data and options
//! give the same weights.

use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::softmax::{
    argmax, calibrated_report, class_weights, nll, softmax_in_place, standardise, standardiser,
    SoftmaxReport,
};
use crate::split::SplitMix;

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpOptions {
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Adam step size.
    pub lr: f32,
    /// Examples per step.
    pub batch: usize,
    /// Most epochs.
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
    /// Share of hidden units dropped in training.
    pub dropout: f32,
    /// Weigh each class inversely to its frequency.
    pub balanced: bool,
    /// Seed of the initial weights, the shuffling and the dropout masks.
    pub seed: u64,
}

impl Default for MlpOptions {
    fn default() -> Self {
        Self {
            hidden: 256,
            lr: 1e-3,
            batch: 32,
            max_epochs: 200,
            patience: 8,
            l2: 1e-4,
            dropout: 0.2,
            balanced: true,
            seed: 42,
        }
    }
}

/// A trained MLP head: `p = softmax((W2·relu(W1·x + b1) + b2) / T)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpModel {
    /// Number of classes.
    pub classes: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Hidden weights, unit-major (`hidden × dim`), on the raw features (the
    /// standardisation used in training is folded in).
    pub w1: Vec<f32>,
    /// Hidden biases.
    pub b1: Vec<f32>,
    /// Output weights, class-major (`classes × hidden`).
    pub w2: Vec<f32>,
    /// Output biases.
    pub b2: Vec<f32>,
    /// Calibrated temperature (1 = as trained).
    pub temperature: f32,
}

fn affine(w: &[f32], b: &[f32], inputs: usize, x: &[f32], out: &mut [f32]) {
    for ((o, bk), wk) in out.iter_mut().zip(b).zip(w.chunks_exact(inputs)) {
        *o = bk + wk.iter().zip(x).map(|(a, c)| a * c).sum::<f32>();
    }
}

impl MlpModel {
    /// The hidden layer's activations.
    pub fn hidden_of(&self, x: &[f32]) -> Vec<f32> {
        let mut h = vec![0f32; self.hidden];
        affine(&self.w1, &self.b1, self.dim, x, &mut h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        h
    }

    /// Raw scores (before the temperature).
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let h = self.hidden_of(x);
        let mut z = vec![0f32; self.classes];
        affine(&self.w2, &self.b2, self.hidden, &h, &mut z);
        z
    }

    /// Class probabilities.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let mut z = self.logits(x);
        let t = self.temperature.max(1e-3);
        z.iter_mut().for_each(|v| *v /= t);
        softmax_in_place(&mut z);
        z
    }

    /// The most likely class.
    pub fn predict(&self, x: &[f32]) -> usize {
        argmax(&self.logits(x))
    }
}

/// Where each tensor sits in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Layout {
    dim: usize,
    hidden: usize,
    classes: usize,
}

impl Layout {
    fn w1(&self) -> std::ops::Range<usize> {
        0..self.hidden * self.dim
    }
    fn b1(&self) -> std::ops::Range<usize> {
        let s = self.hidden * self.dim;
        s..s + self.hidden
    }
    fn w2(&self) -> std::ops::Range<usize> {
        let s = self.b1().end;
        s..s + self.classes * self.hidden
    }
    fn b2(&self) -> std::ops::Range<usize> {
        let s = self.w2().end;
        s..s + self.classes
    }
    fn len(&self) -> usize {
        self.b2().end
    }

    fn logits(&self, p: &[f32], x: &[f32], h: &mut [f32], z: &mut [f32]) {
        affine(&p[self.w1()], &p[self.b1()], self.dim, x, h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        affine(&p[self.w2()], &p[self.b2()], self.hidden, h, z);
    }
}

/// Add the gradient of the class-weighted cross-entropy summed over `rows`
/// (divided by `rows.len()`) to `grad`; return that loss. With `dropout`, each
/// hidden unit is dropped with probability `rate` (the rest scaled by
/// `1/(1−rate)`), drawn from the generator.
#[allow(clippy::too_many_arguments)]
fn batch_gradient(
    l: Layout,
    p: &[f32],
    xs: &[Vec<f32>],
    y: &[usize],
    cw: &[f32],
    rows: &[usize],
    mut dropout: Option<(f32, &mut SplitMix)>,
    grad: &mut [f32],
) -> f32 {
    let inv = 1.0 / rows.len().max(1) as f32;
    let mut h = vec![0f32; l.hidden];
    let mut keep = vec![1f32; l.hidden];
    let mut z = vec![0f32; l.classes];
    let mut dh = vec![0f32; l.hidden];
    let mut loss = 0f32;
    let (w2, ob) = (l.w2(), l.b2());
    for &i in rows {
        let x = &xs[i];
        affine(&p[l.w1()], &p[l.b1()], l.dim, x, &mut h);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        if let Some((rate, rng)) = dropout.as_mut() {
            for k in keep.iter_mut() {
                let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                *k = if u < *rate { 0.0 } else { 1.0 / (1.0 - *rate) };
            }
            h.iter_mut().zip(&keep).for_each(|(v, k)| *v *= k);
        }
        affine(&p[w2.clone()], &p[ob.clone()], l.hidden, &h, &mut z);
        softmax_in_place(&mut z);
        let c = y[i];
        let weight = cw[c] * inv;
        loss -= weight * z[c].max(1e-12).ln();
        // Output layer.
        dh.iter_mut().for_each(|d| *d = 0.0);
        for (k, &pk) in z.iter().enumerate() {
            let d = weight * (pk - f32::from(u8::from(k == c)));
            grad[ob.start + k] += d;
            let row = w2.start + k * l.hidden;
            for (j, hj) in h.iter().enumerate() {
                grad[row + j] += d * hj;
                dh[j] += d * p[row + j];
            }
        }
        // Hidden layer: through the ReLU and the dropout mask.
        for (j, d) in dh.iter().enumerate() {
            if h[j] <= 0.0 {
                continue;
            }
            let d = d * keep[j];
            grad[l.b1().start + j] += d;
            let row = j * l.dim;
            for (g, v) in grad[row..row + l.dim].iter_mut().zip(x) {
                *g += d * v;
            }
        }
    }
    loss
}

/// Train on `(x, y)` with classes `0..classes`, stopping early on `(val_x, val_y)`
/// (with an empty validation set: `max_epochs` epochs, temperature 1).
/// `progress` is called after each epoch with the epoch and the validation loss
/// (the training loss when there is no validation set).
pub fn train_mlp(
    x: &[Vec<f32>],
    y: &[usize],
    val_x: &[Vec<f32>],
    val_y: &[usize],
    classes: usize,
    opts: MlpOptions,
    progress: &mut dyn FnMut(usize, f32),
) -> (MlpModel, SoftmaxReport) {
    let dim = x.first().map_or(0, Vec::len);
    let (mean, scale) = standardiser(x);
    let xs = standardise(x, &mean, &scale);
    let vs = standardise(val_x, &mean, &scale);
    let cw = class_weights(y, classes, opts.balanced);
    let l = Layout {
        dim,
        hidden: opts.hidden.max(1),
        classes,
    };
    let mut rng = SplitMix(opts.seed);
    let mut uniform = |a: f32| ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a;
    let mut p = vec![0f32; l.len()];
    // He-uniform for the ReLU layer, Glorot-uniform for the output.
    let a1 = (6.0 / dim.max(1) as f32).sqrt();
    p[l.w1()].iter_mut().for_each(|w| *w = uniform(a1));
    let a2 = (6.0 / (l.hidden + classes) as f32).sqrt();
    p[l.w2()].iter_mut().for_each(|w| *w = uniform(a2));
    let mut rng = SplitMix(opts.seed ^ 0x5EED_D0D0);

    let mut grad = vec![0f32; p.len()];
    let mut adam = Adam::new(p.len(), opts.lr);
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut best = (f32::INFINITY, 0usize, p.clone(), 0f32);
    let mut since_best = 0;
    let mut epochs = 0;
    let mut h = vec![0f32; l.hidden];
    let val_logits = |p: &[f32], h: &mut [f32]| -> Vec<Vec<f32>> {
        vs.iter()
            .map(|v| {
                let mut z = vec![0f32; classes];
                l.logits(p, v, h, &mut z);
                z
            })
            .collect()
    };
    for epoch in 1..=opts.max_epochs {
        epochs = epoch;
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut train_loss = 0f32;
        for rows in order.chunks(opts.batch.max(1)) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let loss = batch_gradient(
                l,
                &p,
                &xs,
                y,
                &cw,
                rows,
                (opts.dropout > 0.0).then_some((opts.dropout, &mut rng)),
                &mut grad,
            );
            train_loss += loss * rows.len() as f32;
            for r in [l.w1(), l.w2()] {
                for (g, w) in grad[r.clone()].iter_mut().zip(&p[r]) {
                    *g += opts.l2 * w;
                }
            }
            adam.step(&mut p, &grad);
        }
        let train_loss = train_loss / xs.len().max(1) as f32;
        if vs.is_empty() {
            progress(epoch, train_loss);
            best = (f32::NAN, epoch, p.clone(), train_loss);
            continue;
        }
        let val_loss = nll(&val_logits(&p, &mut h), val_y, 1.0);
        progress(epoch, val_loss);
        if val_loss < best.0 - 1e-5 {
            best = (val_loss, epoch, p.clone(), train_loss);
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= opts.patience {
                break;
            }
        }
    }
    let (val_loss, best_epoch, params, train_loss) = best;
    let vl = val_logits(&params, &mut h);
    let (temperature, report) = calibrated_report(
        &vl,
        val_y,
        SoftmaxReport {
            epochs,
            best_epoch,
            train_loss,
            val_loss,
            ..SoftmaxReport::default()
        },
    );
    // Fold the standardisation into the hidden layer.
    let mut w1 = params[l.w1()].to_vec();
    let mut b1 = params[l.b1()].to_vec();
    for (row, b) in w1.chunks_exact_mut(dim.max(1)).zip(b1.iter_mut()) {
        for ((w, s), m) in row.iter_mut().zip(&scale).zip(&mean) {
            *w /= s;
            *b -= *w * m;
        }
    }
    let model = MlpModel {
        classes,
        dim,
        hidden: l.hidden,
        w1,
        b1,
        w2: params[l.w2()].to_vec(),
        b2: params[l.b2()].to_vec(),
        temperature,
    };
    (model, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::softmax::{train_softmax, SoftmaxOptions};

    /// Four quadrants labelled like XOR (no line separates them), offset and
    /// scaled so that standardisation matters.
    fn xor(n: usize, offset: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix(offset as u64);
        let mut u = || (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (a, b) = (u(), u());
            if a.abs() < 0.1 || b.abs() < 0.1 {
                continue;
            }
            x.push(vec![a * 10.0 + 50.0, b - 3.0]);
            y.push(usize::from((a > 0.0) != (b > 0.0)));
        }
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let l = Layout {
            dim: 3,
            hidden: 4,
            classes: 3,
        };
        let mut rng = SplitMix(9);
        let mut u = || (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let p: Vec<f32> = (0..l.len()).map(|_| u()).collect();
        let xs: Vec<Vec<f32>> = (0..5).map(|_| vec![u() * 4.0, u() * 4.0, u()]).collect();
        let y = vec![0, 2, 1, 1, 0];
        let cw = vec![1.0, 2.0, 0.5];
        let rows = [0, 1, 2, 3, 4];
        let mut grad = vec![0f32; l.len()];
        batch_gradient(l, &p, &xs, &y, &cw, &rows, None, &mut grad);
        let loss = |p: &[f32]| {
            let mut g = vec![0f32; l.len()];
            f64::from(batch_gradient(l, p, &xs, &y, &cw, &rows, None, &mut g))
        };
        let eps = 1e-3f32;
        for i in 0..l.len() {
            let (mut a, mut b) = (p.clone(), p.clone());
            a[i] += eps;
            b[i] -= eps;
            let numeric = (loss(&a) - loss(&b)) / (2.0 * f64::from(eps));
            assert!(
                (numeric - f64::from(grad[i])).abs() < 2e-3,
                "parameter {i}: finite differences {numeric}, backprop {}",
                grad[i]
            );
        }
    }

    #[test]
    fn learns_what_a_linear_head_cannot() {
        let (x, y) = xor(800, 1);
        let (vx, vy) = xor(300, 2);
        let (_, linear) = train_softmax(
            &x,
            &y,
            &vx,
            &vy,
            2,
            SoftmaxOptions::default(),
            &mut |_, _| {},
        );
        let opts = MlpOptions {
            hidden: 16,
            lr: 1e-2,
            dropout: 0.0,
            ..MlpOptions::default()
        };
        let (m, r) = train_mlp(&x, &y, &vx, &vy, 2, opts, &mut |_, _| {});
        assert!(linear.val_accuracy < 0.75, "{linear:?}");
        assert!(r.val_accuracy > 0.95, "{r:?}");
        // The folded weights work on the raw features.
        let right = vx
            .iter()
            .zip(&vy)
            .filter(|(v, &c)| m.predict(v) == c)
            .count();
        assert!(right as f64 / vy.len() as f64 > 0.95);
        let p = m.probabilities(&vx[0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(r.best_epoch > 0 && r.best_epoch <= r.epochs);
        assert!(r.val_ece.1 <= r.val_ece.0 + 0.02, "{r:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_model_and_another_seed_another() {
        let (x, y) = xor(200, 3);
        let (vx, vy) = xor(60, 4);
        let opts = MlpOptions {
            hidden: 8,
            max_epochs: 20,
            ..MlpOptions::default()
        };
        let a = train_mlp(&x, &y, &vx, &vy, 2, opts, &mut |_, _| {});
        let b = train_mlp(&x, &y, &vx, &vy, 2, opts, &mut |_, _| {});
        assert_eq!(a.0, b.0);
        let c = train_mlp(
            &x,
            &y,
            &vx,
            &vy,
            2,
            MlpOptions { seed: 7, ..opts },
            &mut |_, _| {},
        );
        assert_ne!(a.0, c.0);
    }
}
