//! `bantam quantize`: llama.cpp's quantizer on a store model, the result installed
//! with its lineage, and a report of what it cost: size, speed, and how far its
//! outputs moved from the source's on held-out text (embedding models: cosine
//! similarity of the sentence vectors; generative models: KL divergence of the
//! next-token distributions, same-top-token rate and perplexity, as llama.cpp's
//! `llama-perplexity --kl-divergence` reports).

use std::path::Path;
use std::time::Instant;

use bantam_engine::compare::{compare_models, Divergence};
use bantam_engine::Embedder;
use bantam_llama::QuantType;
use bantam_store::gguf::GgufInfo;
use bantam_store::{Lineage, Manifest, PullOptions, Store};

use crate::TuneError;

/// Held-out sentences the report compares on when none are given: short and long,
/// several domains, some numbers and names.
pub const DEFAULT_TEXTS: &[&str] = &[
    "My card was declined at the supermarket this morning.",
    "How long does an international transfer to Germany take?",
    "The quarterly report shows revenue up 12 percent on the same period last year.",
    "Please reset my password; I no longer have access to the old email address.",
    "The patient was prescribed 20 mg of atorvastatin once daily.",
    "Our flight from Lisbon was delayed by three hours because of fog.",
    "Can I change the delivery address after the order has shipped?",
    "The contract terminates automatically unless either party gives 90 days' notice.",
    "Set an alarm for 6:45 tomorrow and remind me to call the dentist.",
    "What is the exchange rate between the euro and the Japanese yen today?",
    "The pump on line 3 overheated twice during the night shift.",
    "She translated the manual from French into Portuguese in two weeks.",
    "Is it going to rain in Manchester this weekend?",
    "I was charged twice for the same subscription in March.",
    "The server returned a 503 error after the deployment at 14:00 UTC.",
    "Add two cups of flour, a pinch of salt and let the dough rest overnight.",
    "Which documents do I need to open a business account?",
    "The court adjourned the hearing until the expert witness is available.",
    "Book a table for four at an Italian restaurant near the station.",
    "Battery health dropped to 81 percent after eighteen months of use.",
];

/// How far the quantized model moved, and what it saves.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// Source model.
    pub source: String,
    /// Installed result.
    pub target: String,
    /// Target type.
    pub to: String,
    /// Bytes before and after.
    pub size_before: u64,
    /// Bytes after.
    pub size_after: u64,
    /// Texts compared.
    pub texts: usize,
    /// Embedding models: mean and lowest cosine similarity of the sentence vectors.
    pub cosine: Option<(f64, f64)>,
    /// Generative models: how the next-token distributions moved.
    pub divergence: Option<Divergence>,
    /// Texts per second through the source and through the result (same threads):
    /// embedding models, sentences embedded; generative models, texts scored.
    pub texts_per_s: (f64, f64),
    /// Seconds quantizing took.
    pub quantize_secs: f64,
}

/// Whether any tensor of the file is already quantized (not F32/F16/BF16).
fn quantized_tensor(info: &GgufInfo) -> Option<u32> {
    info.tensors
        .iter()
        .find(|t| !matches!(t.ggml_type, 0 | 1 | 30))
        .map(|t| t.ggml_type)
}

fn vectors(e: &Embedder, texts: &[&str]) -> Result<(Vec<Vec<f32>>, f64), TuneError> {
    let started = Instant::now();
    let v = e
        .embed(texts)
        .map_err(|e| TuneError::Install(e.to_string()))?;
    Ok((
        v,
        texts.len() as f64 / started.elapsed().as_secs_f64().max(1e-9),
    ))
}

/// Quantize store model `source` to `to`, install it as `out` and compare the two on
/// `texts`. `threads` = 0 uses every core.
pub fn quantize_model(
    store: &Store,
    source: &str,
    to: QuantType,
    out: &str,
    threads: u32,
    allow_requantize: bool,
    texts: &[&str],
) -> Result<(Manifest, QuantizeReport), TuneError> {
    let m = store
        .get(source)
        .map_err(|e| TuneError::Data(e.to_string()))?;
    let src = store.blob_path(&m);
    let info = GgufInfo::read(&src).map_err(|e| TuneError::Data(e.to_string()))?;
    if info.architecture() == Some(bantam_store::head::ARCHITECTURE) {
        return Err(TuneError::Data(format!(
            "{source} is a classifier head; quantize the model its features come from instead"
        )));
    }
    if let Some(t) = quantized_tensor(&info) {
        if !allow_requantize {
            return Err(TuneError::Data(format!(
                "{source} is already quantized ({}, a tensor of ggml type {t}); quantizing it again compounds the loss — quantize an F32/F16 source, or pass --allow-requantize",
                m.quantization.as_deref().unwrap_or("?")
            )));
        }
    }
    let embedding = info.is_embedding_model();
    // llama.cpp asserts on some malformed inputs instead of returning an error: make
    // sure the source loads as a model first.
    bantam_llama::Model::load(bantam_llama::runtime(), &src, &Default::default())
        .map_err(|e| TuneError::Data(format!("{source}: {e}")))?;
    // llama.cpp writes the file by name; the staging file's lock stays ours.
    let tmp = store
        .staging_file()
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    let started = Instant::now();
    bantam_llama::quantize(
        bantam_llama::runtime(),
        &src,
        tmp.path(),
        to,
        threads,
        allow_requantize,
    )
    .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    let quantize_secs = started.elapsed().as_secs_f64();
    let (cosine, divergence, texts_per_s) = if embedding {
        let load = |p: &Path| {
            Embedder::load(p, threads).map_err(|e| TuneError::Data(format!("{source}: {e}")))
        };
        let (v0, s0) = vectors(&load(&src)?, texts)?;
        let (v1, s1) = vectors(&load(tmp.path())?, texts)?;
        let cos: Vec<f64> = v0
            .iter()
            .zip(&v1)
            .map(|(a, b)| {
                let dot: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum();
                let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                dot / (na * nb).max(1e-12)
            })
            .collect();
        let mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
        let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        (Some((mean, min)), None, (s0, s1))
    } else {
        let started = Instant::now();
        let d = compare_models(&src, tmp.path(), texts, threads)
            .map_err(|e| TuneError::Data(format!("comparing with {source}: {e}")))?;
        // Both models scored every text once.
        let per = texts.len() as f64 / (started.elapsed().as_secs_f64() / 2.0).max(1e-9);
        (None, Some(d), (per, per))
    };
    let opts = PullOptions {
        name: Some(out.to_string()),
        lineage: Lineage {
            base_model: Some(m.name.clone()),
            quantization: Some(to.name().to_uppercase()),
            parent_digest: Some(m.digest.clone()),
            ..m.lineage.clone()
        },
        template: m.template.clone(),
        ..PullOptions::default()
    };
    let mut installed = store
        .import_file(tmp.path(), &opts, &bantam_store::NoProgress)
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    installed.source = format!("bantam quantize {source} --to {}", to.name());
    if installed.options.is_empty() {
        installed.options = m.options.clone();
    }
    store
        .write_manifest(&installed)
        .map_err(|e| TuneError::Install(format!("{e}{}", store.full_disk_hint())))?;
    let report = QuantizeReport {
        source: m.name.clone(),
        target: installed.name.clone(),
        to: to.name().to_string(),
        size_before: m.size,
        size_after: installed.size,
        texts: texts.len(),
        cosine,
        divergence,
        texts_per_s,
        quantize_secs,
    };
    Ok((installed, report))
}
