//! Multinomial logistic regression: full-batch Adam on standardised features, L2,
//! class weights for imbalance, early stopping on the validation loss, then
//! temperature scaling (Guo et al., 2017) on the validation set so that a
//! probability of 0.8 is right about 80 % of the time — which is what makes
//! `min_confidence` and a cascade's threshold mean what they say.

use serde::{Deserialize, Serialize};

use crate::adam::Adam;

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxOptions {
    /// L2 penalty on the (standardised) weights.
    pub l2: f32,
    /// Adam step size.
    pub lr: f32,
    /// Most full-batch steps.
    pub max_epochs: usize,
    /// Validation loss is checked every this many steps…
    pub check_every: usize,
    /// …and training stops after this many checks without improvement.
    pub patience: usize,
    /// Weigh each class inversely to its frequency.
    pub balanced: bool,
}

impl Default for SoftmaxOptions {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            lr: 0.02,
            max_epochs: 600,
            check_every: 10,
            patience: 6,
            balanced: true,
        }
    }
}

/// A trained classifier: `p = softmax((W·x + b) / T)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxModel {
    /// Number of classes.
    pub classes: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Weights, class-major (`classes × dim`), on the raw features (the
    /// standardisation used in training is folded in).
    pub weights: Vec<f32>,
    /// One bias per class.
    pub bias: Vec<f32>,
    /// Calibrated temperature (1 = as trained).
    pub temperature: f32,
}

/// How training went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxReport {
    /// Steps taken.
    pub epochs: usize,
    /// The step whose weights were kept (lowest validation loss).
    pub best_epoch: usize,
    /// Training loss (class-weighted cross-entropy) at the kept step.
    pub train_loss: f32,
    /// Validation cross-entropy at the kept step, before calibration.
    pub val_loss: f32,
    /// Validation cross-entropy after temperature scaling.
    pub val_loss_calibrated: f32,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Expected calibration error on validation (15 bins), before and after.
    pub val_ece: (f64, f64),
}

impl SoftmaxModel {
    /// Raw scores (before the temperature).
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        logits(&self.weights, &self.bias, self.dim, x)
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

fn logits(w: &[f32], b: &[f32], dim: usize, x: &[f32]) -> Vec<f32> {
    b.iter()
        .zip(w.chunks_exact(dim))
        .map(|(bk, wk)| bk + wk.iter().zip(x).map(|(a, c)| a * c).sum::<f32>())
        .collect()
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

pub(crate) fn softmax_in_place(z: &mut [f32]) {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    z.iter_mut().for_each(|v| *v /= s);
}

/// Cross-entropy of the true classes at temperature `t`.
pub(crate) fn nll(all_logits: &[Vec<f32>], y: &[usize], t: f32) -> f32 {
    let mut total = 0.0f64;
    for (z, &c) in all_logits.iter().zip(y) {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = z.iter().map(|v| ((v - m) / t).exp()).sum::<f32>().ln() + m / t;
        total += f64::from(lse - z[c] / t);
    }
    (total / y.len().max(1) as f64) as f32
}

/// Expected calibration error with 15 equal-width confidence bins.
pub fn expected_calibration_error(probs: &[Vec<f32>], y: &[usize]) -> f64 {
    const BINS: usize = 15;
    let mut conf = [0f64; BINS];
    let mut acc = [0f64; BINS];
    let mut n = [0usize; BINS];
    for (p, &c) in probs.iter().zip(y) {
        let k = argmax(p);
        let b = ((p[k] as f64 * BINS as f64) as usize).min(BINS - 1);
        conf[b] += p[k] as f64;
        acc[b] += f64::from(u8::from(k == c));
        n[b] += 1;
    }
    let total = y.len().max(1) as f64;
    (0..BINS)
        .filter(|&b| n[b] > 0)
        .map(|b| (n[b] as f64 / total) * ((acc[b] - conf[b]) / n[b] as f64).abs())
        .sum()
}

/// The temperature minimising the validation cross-entropy (golden-section search
/// over log T in [1/20, 20]).
pub fn fit_temperature(all_logits: &[Vec<f32>], y: &[usize]) -> f32 {
    if y.is_empty() {
        return 1.0;
    }
    let f = |lt: f32| nll(all_logits, y, lt.exp());
    let (mut a, mut b) = ((0.05f32).ln(), (20.0f32).ln());
    let g = 0.618_034f32;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Each feature's mean and standard deviation on the training set (at least
/// 1e-4, so that a constant feature does not divide by zero).
pub(crate) fn standardiser(x: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = x.len().max(1) as f32;
    let dim = x.first().map_or(0, Vec::len);
    let mut mean = vec![0f32; dim];
    for xi in x {
        mean.iter_mut().zip(xi).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut scale = vec![0f32; dim];
    for xi in x {
        for ((s, v), m) in scale.iter_mut().zip(xi).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    scale
        .iter_mut()
        .for_each(|s| *s = (*s / n).sqrt().max(1e-4));
    (mean, scale)
}

/// `x` standardised with the training set's `mean` and `scale`.
pub(crate) fn standardise(x: &[Vec<f32>], mean: &[f32], scale: &[f32]) -> Vec<Vec<f32>> {
    x.iter()
        .map(|xi| {
            xi.iter()
                .zip(mean)
                .zip(scale)
                .map(|((v, m), s)| (v - m) / s)
                .collect()
        })
        .collect()
}

/// A weight per class: `n / (classes · count)` when `balanced` (each class then
/// weighs as much in the loss as the others), else 1.
pub(crate) fn class_weights(y: &[usize], classes: usize, balanced: bool) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    y.iter().for_each(|&c| counts[c] += 1);
    counts
        .iter()
        .map(|&c| {
            if balanced && c > 0 {
                y.len() as f32 / (classes as f32 * c as f32)
            } else {
                1.0
            }
        })
        .collect()
}

/// Train on `(x, y)` with classes `0..classes`, stopping early on `(val_x, val_y)`
/// (with an empty validation set: `max_epochs` steps, temperature 1). `progress` is
/// called at each check with the step and the validation loss.
pub fn train_softmax(
    x: &[Vec<f32>],
    y: &[usize],
    val_x: &[Vec<f32>],
    val_y: &[usize],
    classes: usize,
    opts: SoftmaxOptions,
    progress: &mut dyn FnMut(usize, f32),
) -> (SoftmaxModel, SoftmaxReport) {
    let n = x.len();
    let dim = x.first().map_or(0, Vec::len);
    let (mean, scale) = standardiser(x);
    let xs = standardise(x, &mean, &scale);
    let vs = standardise(val_x, &mean, &scale);

    let class_weight = class_weights(y, classes, opts.balanced);

    // Parameters: weights (class-major), then biases.
    let wlen = classes * dim;
    let mut p = vec![0f32; wlen + classes];
    let mut grad = vec![0f32; wlen + classes];
    let mut adam = Adam::new(p.len(), opts.lr);
    let inv = 1.0 / n.max(1) as f32;
    let mut best = (f32::INFINITY, 0usize, p.clone(), 0f32);
    let mut since_best = 0;
    let mut epochs = 0;
    let mut z = vec![0f32; classes];
    for epoch in 1..=opts.max_epochs {
        epochs = epoch;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0f32;
        let (w, b) = p.split_at(wlen);
        let (gw, gb) = grad.split_at_mut(wlen);
        for (xi, &c) in xs.iter().zip(y) {
            for (k, zk) in z.iter_mut().enumerate() {
                *zk = b[k]
                    + w[k * dim..(k + 1) * dim]
                        .iter()
                        .zip(xi)
                        .map(|(a, v)| a * v)
                        .sum::<f32>();
            }
            softmax_in_place(&mut z);
            let cw = class_weight[c];
            loss -= cw * z[c].max(1e-12).ln();
            for k in 0..classes {
                let d = cw * (z[k] - f32::from(u8::from(k == c)));
                gb[k] += d;
                for (g, v) in gw[k * dim..(k + 1) * dim].iter_mut().zip(xi) {
                    *g += d * v;
                }
            }
        }
        for (g, pv) in gw.iter_mut().zip(w) {
            *g = *g * inv + opts.l2 * pv;
        }
        gb.iter_mut().for_each(|g| *g *= inv);
        adam.step(&mut p, &grad);
        let check = epoch % opts.check_every.max(1) == 0 || epoch == opts.max_epochs;
        if check && !vs.is_empty() {
            let (w, b) = p.split_at(wlen);
            let vl: Vec<Vec<f32>> = vs.iter().map(|v| logits(w, b, dim, v)).collect();
            let val_loss = nll(&vl, val_y, 1.0);
            progress(epoch, val_loss);
            if val_loss < best.0 - 1e-5 {
                best = (val_loss, epoch, p.clone(), loss * inv);
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= opts.patience {
                    break;
                }
            }
        } else if check {
            progress(epoch, loss * inv);
            best = (f32::NAN, epoch, p.clone(), loss * inv);
        }
    }
    let (val_loss, best_epoch, params, train_loss) = best;
    let (w, b) = params.split_at(wlen);
    let val_logits: Vec<Vec<f32>> = vs.iter().map(|v| logits(w, b, dim, v)).collect();
    let (temperature, report) = calibrated_report(
        &val_logits,
        val_y,
        SoftmaxReport {
            epochs,
            best_epoch,
            train_loss,
            val_loss,
            ..SoftmaxReport::default()
        },
    );
    // Fold the standardisation into the weights: w·((x−m)/s) + b = (w/s)·x + (b − Σ w·m/s).
    let mut weights = vec![0f32; wlen];
    let mut bias = b.to_vec();
    for k in 0..classes {
        for j in 0..dim {
            let wk = w[k * dim + j] / scale[j];
            weights[k * dim + j] = wk;
            bias[k] -= wk * mean[j];
        }
    }
    let model = SoftmaxModel {
        classes,
        dim,
        weights,
        bias,
        temperature,
    };
    (model, report)
}

/// Fit the temperature on the validation logits and fill in the validation
/// figures of `report` (its training figures are kept): the temperature and the
/// report. Shared by the linear and the MLP head.
pub(crate) fn calibrated_report(
    val_logits: &[Vec<f32>],
    val_y: &[usize],
    report: SoftmaxReport,
) -> (f32, SoftmaxReport) {
    let temperature = fit_temperature(val_logits, val_y);
    let probs = |t: f32| -> Vec<Vec<f32>> {
        val_logits
            .iter()
            .map(|z| {
                let mut z: Vec<f32> = z.iter().map(|v| v / t).collect();
                softmax_in_place(&mut z);
                z
            })
            .collect()
    };
    let correct = val_logits
        .iter()
        .zip(val_y)
        .filter(|(z, &c)| argmax(z) == c)
        .count();
    let report = SoftmaxReport {
        val_loss_calibrated: nll(val_logits, val_y, temperature),
        val_accuracy: correct as f64 / val_y.len().max(1) as f64,
        val_ece: (
            expected_calibration_error(&probs(1.0), val_y),
            expected_calibration_error(&probs(temperature), val_y),
        ),
        ..report
    };
    (temperature, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian-ish blobs in 2-d, deterministic.
    fn blobs(n: usize, offset: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let centres = [(0.0, 0.0), (3.0, 0.0), (0.0, 3.0)];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % 3;
            let j = (i + offset) as f32;
            let jitter = ((j * 12.9898).sin() * 43758.547).fract() - 0.5;
            let jitter2 = ((j * 78.233).sin() * 12345.679).fract() - 0.5;
            x.push(vec![
                centres[c].0 + 1.5 * jitter + 100.0,
                centres[c].1 + 1.5 * jitter2 - 50.0,
            ]);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn learns_blobs_and_folds_the_standardisation_in() {
        let (x, y) = blobs(300, 0);
        let (vx, vy) = blobs(90, 1000);
        let (m, r) = train_softmax(
            &x,
            &y,
            &vx,
            &vy,
            3,
            SoftmaxOptions::default(),
            &mut |_, _| {},
        );
        assert!(r.val_accuracy > 0.95, "{r:?}");
        // The folded weights work on raw (unstandardised, offset) features.
        let right = vx
            .iter()
            .zip(&vy)
            .filter(|(v, &c)| m.predict(v) == c)
            .count();
        assert!(right as f64 / vy.len() as f64 > 0.95);
        let p = m.probabilities(&vx[0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(r.best_epoch > 0 && r.best_epoch <= r.epochs);
    }

    #[test]
    fn the_same_data_gives_the_same_model() {
        let (x, y) = blobs(60, 0);
        let (vx, vy) = blobs(30, 7);
        let a = train_softmax(
            &x,
            &y,
            &vx,
            &vy,
            3,
            SoftmaxOptions::default(),
            &mut |_, _| {},
        );
        let b = train_softmax(
            &x,
            &y,
            &vx,
            &vy,
            3,
            SoftmaxOptions::default(),
            &mut |_, _| {},
        );
        assert_eq!(a.0, b.0);
    }

    #[test]
    fn temperature_scaling_fixes_overconfidence() {
        // Logits 10× too sharp for labels that are right 70 % of the time.
        let mut logits = Vec::new();
        let mut y = Vec::new();
        for i in 0..100 {
            logits.push(vec![10.0, 0.0]);
            y.push(usize::from(i % 10 >= 7));
        }
        let t = fit_temperature(&logits, &y);
        // softmax(10/T, 0) should come out near 0.7: T ≈ 10 / ln(7/3) ≈ 11.8.
        assert!((t - 11.8).abs() < 0.5, "{t}");
        assert!(nll(&logits, &y, t) < nll(&logits, &y, 1.0));
    }

    #[test]
    fn calibration_error_is_zero_when_confidence_matches_accuracy() {
        let probs = vec![vec![0.75, 0.25]; 4];
        let y = vec![0, 0, 0, 1];
        assert!(expected_calibration_error(&probs, &y) < 1e-9);
    }
}
