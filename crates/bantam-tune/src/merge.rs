//! `bantam merge ADAPTER --out NAME [--to TYPE]`: a LoRA adapter folded into
//! its base as one standalone model, in F16/F32 or quantized by llama.cpp
//! (with the quantization's cost measured against the F16 merge).

use std::time::Instant;

use bantam_engine::compare::{compare_models, Divergence};
use bantam_llama::QuantType;
use bantam_lora::merge::{merge, MergeReport, MergeType};
use bantam_store::{Lineage, Manifest, PullOptions, Store};

use crate::TuneError;

/// What `merge_adapter` did.
#[derive(Debug, Clone)]
pub struct Merged {
    pub manifest: Manifest,
    pub report: MergeReport,
    /// The quantized file against the F16 merge, when a quantized type was asked for.
    pub divergence: Option<Divergence>,
    pub secs: f64,
}

/// Merges store adapter `adapter` into its base and installs the result as `out`.
pub fn merge_adapter(
    store: &Store,
    adapter: &str,
    out: &str,
    to: QuantType,
    threads: u32,
    texts: &[&str],
) -> Result<Merged, TuneError> {
    let started = Instant::now();
    let data = |e: String| TuneError::Data(e);
    let inst = |e: String| TuneError::Install(format!("{e}{}", store.full_disk_hint()));
    let am = store.get(adapter).map_err(|e| data(e.to_string()))?;
    if !am.is_adapter() {
        return Err(data(format!(
            "{adapter} is not a LoRA adapter (`bantam tune lora` makes them)"
        )));
    }
    let base_name = am
        .lineage
        .base_model
        .clone()
        .ok_or_else(|| data(format!("{adapter} names no base model")))?;
    let bm = store.get(&base_name).map_err(|e| {
        data(format!(
            "{adapter}'s base model {base_name} is not in the store: {e}"
        ))
    })?;
    if let Some(want) = &am.lineage.parent_digest {
        if *want != bm.digest {
            return Err(data(format!(
                "{adapter} was trained on another version of {base_name} ({want}); restore it or train again"
            )));
        }
    }
    let mtype = if to == QuantType::F32 {
        MergeType::F32
    } else {
        MergeType::F16
    };
    let mut merged = store.staging_file().map_err(|e| inst(e.to_string()))?;
    let report = merge(
        &store.blob_path(&bm),
        &store.blob_path(&am),
        out,
        mtype,
        merged.as_file_mut(),
    )
    .map_err(|e| TuneError::Train(e.to_string()))?;
    merged
        .as_file()
        .sync_all()
        .map_err(|e| inst(e.to_string()))?;
    // The merged file must load before anything is installed.
    bantam_llama::Model::load(bantam_llama::runtime(), merged.path(), &Default::default())
        .map_err(|e| inst(format!("llama.cpp cannot load the merged file: {e}")))?;
    let (file, divergence) = if matches!(to, QuantType::F16 | QuantType::F32) {
        (merged, None)
    } else {
        let q = store.staging_file().map_err(|e| inst(e.to_string()))?;
        bantam_llama::quantize(
            bantam_llama::runtime(),
            merged.path(),
            q.path(),
            to,
            threads,
            false,
        )
        .map_err(|e| inst(e.to_string()))?;
        let d = compare_models(merged.path(), q.path(), texts, threads)
            .map_err(|e| data(format!("comparing the quantized merge: {e}")))?;
        (q, Some(d))
    };
    let opts = PullOptions {
        name: Some(out.to_string()),
        lineage: Lineage {
            base_model: Some(base_name.clone()),
            adapter: Some(am.name.clone()),
            training_data_hash: am.lineage.training_data_hash.clone(),
            parent_digest: Some(am.digest.clone()),
            quantization: Some(to.name().to_uppercase()),
        },
        template: bm.template.clone(),
        ..PullOptions::default()
    };
    let mut m = store
        .import_file(file.path(), &opts, &bantam_store::NoProgress)
        .map_err(|e| inst(e.to_string()))?;
    m.source = format!("bantam merge {adapter} --to {}", to.name());
    m.training = am.training.clone();
    if m.options.is_empty() {
        m.options = bm.options.clone();
    }
    store.write_manifest(&m).map_err(|e| inst(e.to_string()))?;
    Ok(Merged {
        manifest: m,
        report,
        divergence,
        secs: started.elapsed().as_secs_f64(),
    })
}
