//! Classifier models (`bantam tune classify`): a head over a frozen featuriser,
//! answering `/v1/classify` without a generation engine.
//!
//! A head is loaded once per blob (and its featuriser once per name) and kept; the
//! featuriser's model must be the one the head was trained on (same digest).
//! Without `labels` the answer covers every label of the head; with `labels` it is
//! restricted to those (the probabilities renormalised over them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bantam_api::features::Embed;
use bantam_api::{BackendError, ClassifyTask};
use bantam_store::head::{ClassifierHead, ARCHITECTURE};
use bantam_store::{Manifest, Store};
use bantam_types::tasks::{Classification, ClassifyResponse, TaskUsage};

/// Most heads kept loaded (they are small; the featurisers are shared).
const MAX_HEADS: usize = 64;

/// Most classifier requests in progress or waiting at once.
pub const MAX_WAITING: usize = 64;

/// Whether a store model is a classifier (`bantam tune classify`), answered by
/// its head rather than a generation engine.
pub fn is_head(m: &Manifest) -> bool {
    m.architecture.as_deref() == Some(ARCHITECTURE)
}

/// Loaded heads and featurisers.
pub struct Heads {
    store: Store,
    threads: u32,
    /// Classifications in progress or waiting, at most [`MAX_WAITING`]: then 429
    /// rather than an ever longer queue of blocked threads.
    waiting: Arc<tokio::sync::Semaphore>,
    heads: Mutex<HashMap<String, Arc<ClassifierHead>>>,
    features: Mutex<HashMap<String, Arc<dyn Embed>>>,
}

impl Heads {
    pub(crate) fn new(store: Store, threads: u32) -> Self {
        Self {
            store,
            threads,
            waiting: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING)),
            heads: Mutex::default(),
            features: Mutex::default(),
        }
    }

    fn head(&self, backend: &str, m: &Manifest) -> Result<Arc<ClassifierHead>, BackendError> {
        if let Some(h) = self
            .heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&m.digest)
        {
            return Ok(h.clone());
        }
        let h = ClassifierHead::read(&self.store.blob_path(m)).map_err(|e| {
            coded(
                backend,
                "model_unusable",
                format!(
                    "{} cannot be used: {e}; train it again with `bantam tune classify`",
                    m.name
                ),
            )
        })?;
        let h = Arc::new(h);
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() >= MAX_HEADS {
            heads.clear();
        }
        heads.insert(m.digest.clone(), h.clone());
        Ok(h)
    }

    fn featuriser(
        &self,
        backend: &str,
        head: &ClassifierHead,
    ) -> Result<Arc<dyn Embed>, BackendError> {
        let name = head.meta.features.as_str();
        if let Some(model) = crate::featurise::features_model(name) {
            let m = self.store.get(model).map_err(|_| {
                coded(
                    backend,
                    "model_not_found",
                    format!("this classifier needs the embedding model {model}; run `bantam pull {model}`"),
                )
            })?;
            if m.digest != head.meta.features_digest {
                return Err(coded(
                    backend,
                    "model_unusable",
                    format!(
                        "this classifier was trained on another {model} ({}) than the one installed ({}); install that one or train the classifier again",
                        head.meta.features_digest, m.digest
                    ),
                ));
            }
        }
        if let Some(f) = self
            .features
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(f.clone());
        }
        let f = crate::featurise::featuriser(&self.store, name, self.threads, &mut |_, _| {})
            .map_err(|e| BackendError::Unavailable {
                backend: backend.to_string(),
                reason: e.to_string(),
            })?;
        self.features
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Answer a classification with the head `m`.
    pub(crate) async fn classify(
        self: &Arc<Self>,
        backend: &str,
        m: Manifest,
        req: &ClassifyTask,
    ) -> Result<ClassifyResponse, BackendError> {
        let Ok(_place) = self.waiting.clone().try_acquire_owned() else {
            return Err(BackendError::Overloaded {
                backend: backend.to_string(),
                message: format!(
                    "the server is busy: {MAX_WAITING} classifications are already waiting; retry later"
                ),
                retry_after_secs: Some(1),
            });
        };
        let started = Instant::now();
        let this = self.clone();
        let b = backend.to_string();
        // Reading the head and loading an encoder touch the disk: off the runtime.
        let (head, f) = tokio::task::spawn_blocking(move || {
            let head = this.head(&b, &m)?;
            let f = this.featuriser(&b, &head)?;
            Ok::<_, BackendError>((head, f))
        })
        .await
        .map_err(|e| BackendError::internal(backend, e.to_string()))??;
        // Which of the head's labels to answer with.
        let wanted: Vec<usize> = if req.labels.is_empty() {
            (0..head.meta.labels.len()).collect()
        } else {
            req.label_names()
                .iter()
                .map(|l| {
                    head.meta.labels.iter().position(|h| h == l).ok_or_else(|| {
                        BackendError::invalid(
                            backend,
                            Some("labels"),
                            format!(
                                "label {l:?} is not one this classifier knows; its labels: {}",
                                truncate_list(&head.meta.labels)
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let texts: Vec<String> = req.texts().to_vec();
        let vectors = if f.inline() {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            f.embed(&refs)
        } else {
            let f = f.clone();
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                f.embed(&refs)
            })
            .await
            .map_err(|e| BackendError::internal(backend, e.to_string()))?
        }
        .map_err(|e| BackendError::invalid(backend, Some("input"), e))?;
        let names: Vec<String> = wanted
            .iter()
            .map(|&k| head.meta.labels[k].clone())
            .collect();
        let threshold = req.threshold.unwrap_or(0.2) as f32;
        let min_conf = req.min_confidence.unwrap_or(0.0) as f32;
        let data = vectors
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let all = head.probabilities(x);
                let sum: f32 = wanted.iter().map(|&k| all[k]).sum::<f32>().max(1e-30);
                let probs: Vec<f32> = wanted.iter().map(|&k| all[k] / sum).collect();
                Classification::from_probabilities(
                    i,
                    &names,
                    &probs,
                    req.multi_label,
                    threshold,
                    min_conf,
                    true,
                )
            })
            .collect();
        Ok(ClassifyResponse {
            object: "list".into(),
            model: req.model.clone(),
            data,
            usage: TaskUsage {
                compute_ms: Some(started.elapsed().as_secs_f64() * 1e3),
                ..TaskUsage::default()
            },
        })
    }
}

/// A 400 about `model` with a machine-readable code.
fn coded(backend: &str, code: &str, message: String) -> BackendError {
    BackendError::Invalid {
        backend: backend.to_string(),
        param: Some("model".into()),
        code: Some(code.into()),
        message,
    }
}

fn truncate_list(labels: &[String]) -> String {
    let mut s = labels
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > 20 {
        s.push_str(&format!(", … ({} in all)", labels.len()));
    }
    s
}
