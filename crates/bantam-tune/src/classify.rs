//! Classifier heads: labelled texts → features from a frozen featuriser →
//! multinomial logistic regression with class weights and early stopping on a
//! stratified validation split → temperature scaling on the same split → a
//! [`ClassifierHead`] GGUF in the store (architecture `bantam-classifier`), with its
//! lineage (featuriser digest, dataset sha256, row counts, the training report).
//!
//! The head is linear (softmax regression) or a small MLP (one hidden ReLU
//! layer). With several candidate featurisers and heads (`--features auto`,
//! `--head auto`) each pair is trained and the one with the best validation
//! accuracy is kept (the first given on a tie: the simpler); every candidate's
//! result is reported.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use bantam_api::features::{Embed, STATIC_PREFIX};
use bantam_learn::mlp::train_mlp;
use bantam_learn::{
    softmax::train_softmax, stratified_split, MlpOptions, SoftmaxOptions, SoftmaxReport,
};
use bantam_store::head::{ClassifierHead, HeadMeta, HiddenLayer};
use bantam_store::{Lineage, Manifest, PullOptions, Store};
use serde::Serialize;
use sha2::Digest;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// Its label.
    pub label: String,
}

/// Why tuning failed (each says what to do).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuneError {
    /// The data cannot train a classifier.
    #[error("{0}")]
    Data(String),
    /// A featuriser could not be made or failed.
    #[error("features {features}: {reason}")]
    Features {
        /// Featuriser name.
        features: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing or installing the result failed.
    #[error("installing the result: {0}")]
    Install(String),
    /// Training failed.
    #[error("training: {0}")]
    Train(String),
}

/// The learner over the features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Multinomial logistic regression.
    Linear,
    /// One hidden ReLU layer, then the softmax.
    Mlp,
}

impl HeadKind {
    /// `linear` or `mlp`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Linear => "linear",
            HeadKind::Mlp => "mlp",
        }
    }

    /// `auto` (both, linear first), or a comma-separated list of `linear`, `mlp`.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, TuneError> {
        if s.trim() == "auto" {
            return Ok(vec![HeadKind::Linear, HeadKind::Mlp]);
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let k = match part {
                "linear" => HeadKind::Linear,
                "mlp" => HeadKind::Mlp,
                other => {
                    return Err(TuneError::Data(format!(
                        "head {other:?}: use linear, mlp or auto"
                    )))
                }
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
        if out.is_empty() {
            return Err(TuneError::Data("no head: use linear, mlp or auto".into()));
        }
        Ok(out)
    }
}

/// Settings.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Featurisers to try (the best on validation is kept).
    pub features: Vec<String>,
    /// Heads to try on each featuriser.
    pub heads: Vec<HeadKind>,
    /// Share of each class held out for validation when no validation set is given.
    pub val_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// The linear head's settings.
    pub learner: SoftmaxOptions,
    /// The MLP head's settings (its seed is `seed`).
    pub mlp: MlpOptions,
    /// Threads of an encoder featuriser (0 = physical cores).
    pub threads: u32,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            features: vec![format!("{STATIC_PREFIX}all-minilm:l6-v2")],
            heads: vec![HeadKind::Linear],
            val_fraction: 0.15,
            seed: 42,
            learner: SoftmaxOptions::default(),
            mlp: MlpOptions::default(),
            threads: 0,
        }
    }
}

/// One featuriser's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Featuriser name.
    pub features: String,
    /// The head.
    pub head: HeadKind,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Validation cross-entropy after calibration.
    pub val_loss: f32,
    /// Seconds spent computing features (training and validation texts; shared
    /// by the heads of one featuriser).
    pub featurise_secs: f64,
    /// Seconds spent training.
    pub train_secs: f64,
    /// The learner's report.
    pub report: SoftmaxReport,
}

/// A trained head and how it was chosen.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// The head.
    pub head: ClassifierHead,
    /// Every candidate tried, in the order given.
    pub candidates: Vec<Candidate>,
    /// Index of the kept candidate.
    pub chosen: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Validation rows.
    pub val_rows: usize,
}

/// Read labelled texts from JSONL or CSV (`bantam eval`'s loader and field
/// options). Blank texts are skipped (counted in the second value); labels must
/// be strings.
pub fn load_examples(
    path: &Path,
    text_field: &str,
    label_field: &str,
) -> Result<(Vec<Example>, usize), TuneError> {
    let items = bantam_eval::dataset::load(path, text_field, label_field)
        .map_err(|e| TuneError::Data(e.to_string()))?;
    let mut out = Vec::with_capacity(items.len());
    let mut blank = 0;
    for it in items {
        let label = match &it.expected {
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            other => {
                return Err(TuneError::Data(format!(
                "{}: row {}: the label ({label_field:?}) must be a non-empty string, got {other}",
                path.display(),
                it.index + 1
            )))
            }
        };
        if it.input.trim().is_empty() {
            blank += 1;
            continue;
        }
        out.push(Example {
            text: it.input,
            label,
        });
    }
    Ok((out, blank))
}

/// What a featuriser name depends on in the store: the digest of its model
/// (empty for built-in features).
fn features_digest(store: &Store, features: &str) -> Result<String, TuneError> {
    let Some(model) = bantam_local::features_model(features) else {
        return Ok(String::new());
    };
    store
        .get(model)
        .map(|m| m.digest)
        .map_err(|e| TuneError::Features {
            features: features.to_string(),
            reason: format!("{e}; run `bantam pull {model}`"),
        })
}

fn featurise(
    f: &dyn Embed,
    features: &str,
    texts: &[&str],
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<Vec<f32>>, TuneError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let v = f.embed(chunk).map_err(|reason| TuneError::Features {
            features: features.to_string(),
            reason,
        })?;
        out.extend(v);
        progress(features, out.len(), texts.len());
    }
    Ok(out)
}

/// Train a head on `train`, validated on `val` (or on a stratified split of
/// `train` when `val` is `None`). `progress(what, done, total)` reports featurising.
pub fn tune_classifier(
    store: &Store,
    train: &[Example],
    val: Option<&[Example]>,
    opts: &TuneOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Tuned, TuneError> {
    // Labels in order of first appearance in the training data.
    let mut labels: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in train {
        if !index.contains_key(&e.label) {
            index.insert(e.label.clone(), labels.len());
            labels.push(e.label.clone());
        }
    }
    if labels.len() < 2 {
        return Err(TuneError::Data(format!(
            "the training data has {} label{}; a classifier needs at least two",
            labels.len(),
            if labels.len() == 1 { "" } else { "s" }
        )));
    }
    if labels.len() > 10_000 {
        return Err(TuneError::Data(format!(
            "{} labels; at most 10000",
            labels.len()
        )));
    }
    let y_all: Vec<usize> = train.iter().map(|e| index[&e.label]).collect();
    let (tr, va): (Vec<&Example>, Vec<&Example>) = match val {
        Some(v) => {
            let unknown: Vec<&str> = v
                .iter()
                .filter(|e| !index.contains_key(&e.label))
                .map(|e| e.label.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !unknown.is_empty() {
                return Err(TuneError::Data(format!(
                    "labels only in the validation data: {}; add training examples for them",
                    unknown.join(", ")
                )));
            }
            (train.iter().collect(), v.iter().collect())
        }
        None => {
            let (t, v) = stratified_split(&y_all, opts.val_fraction, opts.seed);
            (
                t.iter().map(|&i| &train[i]).collect(),
                v.iter().map(|&i| &train[i]).collect(),
            )
        }
    };
    if va.is_empty() {
        return Err(TuneError::Data(
            "no validation examples: give more examples per label or --val FILE".into(),
        ));
    }
    let ty: Vec<usize> = tr.iter().map(|e| index[&e.label]).collect();
    let vy: Vec<usize> = va.iter().map(|e| index[&e.label]).collect();
    let tt: Vec<&str> = tr.iter().map(|e| e.text.as_str()).collect();
    let vt: Vec<&str> = va.iter().map(|e| e.text.as_str()).collect();

    let mut candidates: Vec<Candidate> = Vec::new();
    let mut best: Option<(usize, ClassifierHead)> = None;
    for features in &opts.features {
        let digest = features_digest(store, features)?;
        let mut distil = |done: usize, total: usize| progress("distilling", done, total);
        let f =
            bantam_local::featuriser(store, features, opts.threads, &mut distil).map_err(|e| {
                TuneError::Features {
                    features: features.clone(),
                    reason: e.to_string(),
                }
            })?;
        let started = Instant::now();
        let all: Vec<&str> = tt.iter().chain(&vt).copied().collect();
        let mut x = featurise(f.as_ref(), features, &all, progress)?;
        let vx = x.split_off(tt.len());
        let featurise_secs = started.elapsed().as_secs_f64();
        for &kind in &opts.heads {
            let started = Instant::now();
            let (head, report) = train_head(kind, &x, &ty, &vx, &vy, labels.len(), opts);
            let train_secs = started.elapsed().as_secs_f64();
            tracing::info!(
                features = %features,
                head = kind.name(),
                val_accuracy = report.val_accuracy,
                epochs = report.epochs,
                "trained a classifier head"
            );
            let c = Candidate {
                features: features.clone(),
                head: kind,
                val_accuracy: report.val_accuracy,
                val_loss: report.val_loss_calibrated,
                featurise_secs,
                train_secs,
                report,
            };
            let better = best
                .as_ref()
                .is_none_or(|(i, _)| c.val_accuracy > candidates[*i].val_accuracy);
            let head = ClassifierHead {
                meta: HeadMeta {
                    format: 1,
                    labels: labels.clone(),
                    features: features.clone(),
                    features_digest: digest.clone(),
                    temperature: head.temperature,
                    training: serde_json::Value::Null,
                },
                dim: head.dim,
                hidden: head.hidden,
                weights: head.weights,
                bias: head.bias,
            };
            candidates.push(c);
            if better {
                best = Some((candidates.len() - 1, head));
            }
        }
    }
    let (chosen, mut head) = best.ok_or_else(|| TuneError::Data("no featuriser to try".into()))?;
    let c = &candidates[chosen];
    let per_label: BTreeMap<&str, usize> = labels
        .iter()
        .map(|l| (l.as_str(), ty.iter().filter(|&&y| labels[y] == *l).count()))
        .collect();
    let learner = match c.head {
        HeadKind::Linear => "softmax regression (bantam-learn), balanced class weights, early stopping, temperature scaling".to_string(),
        HeadKind::Mlp => format!(
            "MLP (bantam-learn): {} ReLU units, dropout {}, mini-batches of {}, balanced class weights, early stopping, temperature scaling",
            opts.mlp.hidden, opts.mlp.dropout, opts.mlp.batch
        ),
    };
    let (l2, lr) = match c.head {
        HeadKind::Linear => (opts.learner.l2, opts.learner.lr),
        HeadKind::Mlp => (opts.mlp.l2, opts.mlp.lr),
    };
    head.meta.training = serde_json::json!({
        "learner": learner,
        "head": c.head.name(),
        "train_rows": tr.len(),
        "val_rows": va.len(),
        "val_accuracy": c.val_accuracy,
        "val_loss": c.val_loss,
        "val_ece": [c.report.val_ece.0, c.report.val_ece.1],
        "epochs": c.report.epochs,
        "best_epoch": c.report.best_epoch,
        "seed": opts.seed,
        "l2": l2,
        "lr": lr,
        "examples_per_label": per_label,
        "candidates": candidates.iter().map(|c| serde_json::json!({
            "features": c.features, "head": c.head.name(),
            "val_accuracy": c.val_accuracy, "val_loss": c.val_loss,
        })).collect::<Vec<_>>(),
    });
    Ok(Tuned {
        head,
        candidates,
        chosen,
        train_rows: tr.len(),
        val_rows: va.len(),
    })
}

/// Train one head on features `x` (labels `y`), validated on `(vx, vy)`. The
/// returned head's metadata is a placeholder for the caller to fill in, except
/// the temperature.
fn train_head(
    kind: HeadKind,
    x: &[Vec<f32>],
    y: &[usize],
    vx: &[Vec<f32>],
    vy: &[usize],
    classes: usize,
    opts: &TuneOptions,
) -> (HeadWeights, SoftmaxReport) {
    match kind {
        HeadKind::Linear => {
            let (m, r) = train_softmax(x, y, vx, vy, classes, opts.learner, &mut |_, _| {});
            let w = HeadWeights {
                dim: m.dim,
                hidden: None,
                weights: m.weights,
                bias: m.bias,
                temperature: m.temperature,
            };
            (w, r)
        }
        HeadKind::Mlp => {
            let mlp = MlpOptions {
                seed: opts.seed,
                ..opts.mlp
            };
            let (m, r) = train_mlp(x, y, vx, vy, classes, mlp, &mut |_, _| {});
            let w = HeadWeights {
                dim: m.dim,
                hidden: Some(HiddenLayer {
                    width: m.hidden,
                    weights: m.w1,
                    bias: m.b1,
                }),
                weights: m.w2,
                bias: m.b2,
                temperature: m.temperature,
            };
            (w, r)
        }
    }
}

/// A trained head's numbers, before its metadata is known.
struct HeadWeights {
    dim: usize,
    hidden: Option<HiddenLayer>,
    weights: Vec<f32>,
    bias: Vec<f32>,
    temperature: f32,
}

/// sha256 of the training data as given (lineage).
pub fn data_sha256(path: &Path) -> Result<String, TuneError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TuneError::Data(format!("reading {}: {e}", path.display())))?;
    Ok(hex::encode(sha2::Sha256::digest(bytes)))
}

/// Install the head in the store under `name` (atomically: the store verifies the
/// file and moves it into place before the name appears); `source` says where it
/// came from (`bantam tune classify DATA`).
pub fn install(
    store: &Store,
    name: &str,
    tuned: &Tuned,
    data_sha256: &str,
    source: &str,
) -> Result<Manifest, TuneError> {
    let mut tmp = store
        .staging_file()
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    tuned
        .head
        .write_to(name, tmp.as_file_mut())
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    let opts = PullOptions {
        name: Some(name.to_string()),
        lineage: Lineage {
            base_model: Some(tuned.head.meta.features.clone()),
            training_data_hash: Some(data_sha256.to_string()),
            ..Lineage::default()
        },
        ..PullOptions::default()
    };
    let mut m = store
        .import_file(tmp.path(), &opts, &bantam_store::NoProgress)
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    // Where it came from, rather than the temporary file's name.
    m.source = source.to_string();
    store
        .write_manifest(&m)
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bantam_api::features::hashed;

    fn ex(text: &str, label: &str) -> Example {
        Example {
            text: text.into(),
            label: label.into(),
        }
    }

    fn hashed_opts() -> TuneOptions {
        TuneOptions {
            features: vec![hashed::NAME.into()],
            ..TuneOptions::default()
        }
    }

    #[test]
    fn trains_installs_and_serves_a_head_on_hashed_features() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut data = Vec::new();
        for i in 0..40 {
            data.push(ex(&format!("my card was declined at the shop {i}"), "card"));
            data.push(ex(
                &format!("please send money to my friend now {i}"),
                "transfer",
            ));
            data.push(ex(
                &format!("what is the exchange rate for euros {i}"),
                "fx",
            ));
        }
        let tuned =
            tune_classifier(&store, &data, None, &hashed_opts(), &mut |_, _, _| {}).unwrap();
        assert_eq!(tuned.head.meta.labels, ["card", "transfer", "fx"]);
        assert!(
            tuned.candidates[0].val_accuracy > 0.9,
            "{:?}",
            tuned.candidates
        );
        let m = install(&store, "intents:v1", &tuned, "abc", "tune:test").unwrap();
        assert_eq!(m.source, "tune:test");
        assert_eq!(m.architecture.as_deref(), Some("bantam-classifier"));
        assert_eq!(m.lineage.training_data_hash.as_deref(), Some("abc"));
        let back = ClassifierHead::read(&store.blob_path(&m)).unwrap();
        assert_eq!(back.meta.labels, tuned.head.meta.labels);
        let x = bantam_api::features::HashedNgrams.features("my card was declined");
        let p = back.probabilities(&x);
        assert_eq!(bantam_learn::softmax::argmax(&p), 0, "{p:?}");
    }

    #[test]
    fn an_mlp_head_is_tried_beside_the_linear_one_and_served_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut data = Vec::new();
        for i in 0..30 {
            data.push(ex(&format!("card declined at the shop {i}"), "card"));
            data.push(ex(&format!("send money to a friend {i}"), "transfer"));
        }
        let opts = TuneOptions {
            heads: HeadKind::parse_list("auto").unwrap(),
            mlp: MlpOptions {
                hidden: 8,
                max_epochs: 30,
                ..MlpOptions::default()
            },
            ..hashed_opts()
        };
        let tuned = tune_classifier(&store, &data, None, &opts, &mut |_, _, _| {}).unwrap();
        let heads: Vec<HeadKind> = tuned.candidates.iter().map(|c| c.head).collect();
        assert_eq!(heads, [HeadKind::Linear, HeadKind::Mlp]);
        assert!(
            tuned.candidates[1].val_accuracy > 0.9,
            "{:?}",
            tuned.candidates
        );
        // Force the MLP and check that the installed file answers like it.
        let opts = TuneOptions {
            heads: vec![HeadKind::Mlp],
            ..opts
        };
        let tuned = tune_classifier(&store, &data, None, &opts, &mut |_, _, _| {}).unwrap();
        assert_eq!(tuned.head.hidden.as_ref().map(|h| h.width), Some(8));
        assert_eq!(tuned.head.meta.training["head"], "mlp");
        let m = install(&store, "intents:mlp", &tuned, "abc", "tune:test").unwrap();
        let back = ClassifierHead::read(&store.blob_path(&m)).unwrap();
        assert_eq!(back.format(), 2);
        let x = bantam_api::features::HashedNgrams.features("send money to my friend");
        assert_eq!(back.probabilities(&x), tuned.head.probabilities(&x));
        assert_eq!(bantam_learn::softmax::argmax(&back.probabilities(&x)), 1);
        for bad in ["", "deep", "linear,tree"] {
            assert!(HeadKind::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_that_cannot_train_a_classifier_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let one = vec![ex("a", "x"), ex("b", "x")];
        let e = tune_classifier(&store, &one, None, &hashed_opts(), &mut |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
        let two = vec![ex("a", "x"), ex("b", "y"), ex("c", "x"), ex("d", "y")];
        let val = vec![ex("e", "z")];
        let e = tune_classifier(&store, &two, Some(&val), &hashed_opts(), &mut |_, _, _| {})
            .unwrap_err();
        assert!(
            e.to_string().contains("only in the validation data: z"),
            "{e}"
        );
        let opts = TuneOptions {
            features: vec!["static:nothing:here".into()],
            ..TuneOptions::default()
        };
        let e = tune_classifier(&store, &two, None, &opts, &mut |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("no validation examples"), "{e}");
        let more: Vec<Example> = (0..20)
            .map(|i| ex(&format!("t{i}"), ["x", "y"][i % 2]))
            .collect();
        let e = tune_classifier(&store, &more, None, &opts, &mut |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("bantam pull nothing:here"), "{e}");
    }
}
