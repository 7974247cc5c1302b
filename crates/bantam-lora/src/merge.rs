//! `bantam merge`: base + adapter written as one GGUF, `W' = W + (α/r)·B·A`
//! for every adapted tensor, matrices in F16 (or F32), norms and biases in F32,
//! every metadata key of the base kept (tokenizer, chat template, …).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, Write};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::LoraError;

/// The precision of the merged file's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeType {
    F16,
    F32,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    pub tensors: usize,
    pub adapted: usize,
    pub rank: usize,
    pub alpha: f32,
}

fn read(path: &Path) -> Result<(gguf_file::Content, BufReader<File>), LoraError> {
    let mut f = BufReader::new(File::open(path).map_err(|e| LoraError::Io(path.into(), e))?);
    let c = gguf_file::Content::read(&mut f)
        .map_err(|e| LoraError::Model(format!("{}: {e}", path.display())))?;
    Ok((c, f))
}

fn meta_str(c: &gguf_file::Content, k: &str) -> Option<String> {
    c.metadata.get(k).and_then(|v| v.to_string().ok()).cloned()
}

/// Writes `base` with `adapter` folded in to `out` under `name`.
pub fn merge<W: Write + Seek>(
    base: &Path,
    adapter: &Path,
    name: &str,
    dtype: MergeType,
    out: &mut W,
) -> Result<MergeReport, LoraError> {
    let dev = Device::Cpu;
    let (ac, mut af) = read(adapter)?;
    if meta_str(&ac, "general.type").as_deref() != Some("adapter") {
        return Err(LoraError::Model(format!(
            "{} is not a LoRA adapter",
            adapter.display()
        )));
    }
    let alpha = ac
        .metadata
        .get("adapter.lora.alpha")
        .and_then(|v| v.to_f32().ok())
        .ok_or_else(|| LoraError::Model("the adapter has no adapter.lora.alpha".into()))?;
    let (bc, mut bf) = read(base)?;
    if meta_str(&ac, "general.architecture") != meta_str(&bc, "general.architecture") {
        return Err(LoraError::Model(
            "the adapter was made for another architecture".into(),
        ));
    }
    // Pairs by the base tensor they adapt.
    let mut pairs: HashMap<String, (Tensor, Tensor)> = HashMap::new();
    for n in ac.tensor_infos.keys() {
        if let Some(base_name) = n.strip_suffix(".lora_a") {
            let b_name = format!("{base_name}.lora_b");
            let a = ac.tensor(&mut af, n, &dev)?.dequantize(&dev)?;
            let b = ac.tensor(&mut af, &b_name, &dev)?.dequantize(&dev)?;
            pairs.insert(base_name.to_string(), (a, b));
        }
    }
    let rank = pairs
        .values()
        .next()
        .map(|(a, _)| a.dim(0))
        .transpose()?
        .unwrap_or(0);
    let mut names: Vec<&String> = bc.tensor_infos.keys().collect();
    names.sort_by_key(|n| bc.tensor_infos[*n].offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    let mut adapted = 0;
    for n in names {
        let q = bc.tensor(&mut bf, n, &dev)?;
        let mut w = q.dequantize(&dev)?;
        if let Some((a, b)) = pairs.get(n.as_str()) {
            if w.dims() != [b.dim(0)?, a.dim(1)?] {
                return Err(LoraError::Model(format!(
                    "{n}: the adapter's shape does not fit the base"
                )));
            }
            let delta = (b.matmul(a)? * (alpha as f64 / a.dim(0)? as f64))?;
            w = (w + delta)?;
            adapted += 1;
        }
        let t = if w.rank() >= 2 && dtype == MergeType::F16 {
            GgmlDType::F16
        } else {
            GgmlDType::F32
        };
        tensors.push((n.clone(), QTensor::quantize(&w, t)?));
    }
    if adapted != pairs.len() {
        return Err(LoraError::Model(format!(
            "{} of the adapter's {} tensors have no counterpart in the base",
            pairs.len() - adapted,
            pairs.len()
        )));
    }
    // Every key of the base except those the new file changes.
    let file_type = gguf_file::Value::U32(match dtype {
        MergeType::F32 => 0,
        MergeType::F16 => 1,
    });
    let name_v = gguf_file::Value::String(name.to_string());
    let mut meta: Vec<(&str, &gguf_file::Value)> = Vec::new();
    let mut keys: Vec<&String> = bc.metadata.keys().collect();
    keys.sort();
    for k in keys {
        match k.as_str() {
            "general.alignment"
            | "general.file_type"
            | "general.name"
            | "general.quantization_version" => {}
            _ => meta.push((k.as_str(), &bc.metadata[k])),
        }
    }
    meta.push(("general.file_type", &file_type));
    meta.push(("general.name", &name_v));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(out, &meta, &refs)?;
    Ok(MergeReport {
        tensors: tensors.len(),
        adapted,
        rank,
        alpha,
    })
}
