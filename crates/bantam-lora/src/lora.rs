//! The trainable low-rank adapters and their GGUF form.
//!
//! Each adapted weight `W [out, in]` gets `A [r, in]` and `B [out, r]`; the
//! layer computes `W x + (α / r) · B (A x)`. `A` starts as PEFT initialises it
//! (Kaiming-uniform, bound `1/√in`) and `B` at zero, so training starts from
//! the base model exactly.
//!
//! In the GGUF, PEFT's row-major `lora_A [r, in]` is ggml `ne = [in, r]` and
//! `lora_B [out, r]` is `ne = [r, out]`: the bytes are the row-major data, as
//! llama.cpp's `convert_lora_to_gguf.py` writes them.

use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;

use bantam_store::gguf_write::{GgufWriter, Tensor as GTensor, Value, GGML_TYPE_F32};
use candle_core::{Device, Tensor, Var};

use crate::model::BaseModel;
use crate::LoraError;

/// A linear layer an adapter can attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// llama.cpp's tensor name within a block.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    /// The Hugging Face / PEFT module name (`q_proj`, …).
    pub fn hf_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }
}

impl FromStr for Target {
    type Err = LoraError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Target::ALL
            .into_iter()
            .find(|t| t.gguf_name() == s || t.hf_name() == s || t.hf_name().starts_with(&format!("{s}_")))
            .ok_or_else(|| {
                LoraError::Options(format!(
                    "unknown LoRA target `{s}`; use q, k, v, o, gate, up, down (or q_proj, attn_q, …)"
                ))
            })
    }
}

/// Parses a comma-separated target list (`q,v` or `all`).
pub fn parse_targets(s: &str) -> Result<Vec<Target>, LoraError> {
    if s.trim() == "all" {
        return Ok(Target::ALL.to_vec());
    }
    let mut v: Vec<Target> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Target::from_str)
        .collect::<Result<_, _>>()?;
    v.sort();
    v.dedup();
    if v.is_empty() {
        return Err(LoraError::Options("no LoRA targets given".into()));
    }
    Ok(v)
}

/// SplitMix64: small, seedable, the same on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A set of adapters over one base.
pub struct Lora {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<Target>,
    /// (layer, target) → (A, B).
    pub pairs: BTreeMap<(usize, Target), (Var, Var)>,
}

impl Lora {
    /// Fresh adapters: `A` Kaiming-uniform from `seed`, `B` zero.
    pub fn init(
        base: &BaseModel,
        targets: &[Target],
        rank: usize,
        alpha: f64,
        seed: u64,
    ) -> Result<Self, LoraError> {
        if rank == 0 {
            return Err(LoraError::Options("--rank must be at least 1".into()));
        }
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(LoraError::Options(
                "--alpha must be a positive number".into(),
            ));
        }
        let mut rng = SplitMix::new(seed);
        let mut pairs = BTreeMap::new();
        for layer in 0..base.config.n_layer {
            for &t in targets {
                let (out, inp) = base.target_shape(t);
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..rank * inp)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &Device::Cpu)?)?;
                let b = Var::from_tensor(&Tensor::zeros(
                    (out, rank),
                    candle_core::DType::F32,
                    &Device::Cpu,
                )?)?;
                pairs.insert((layer, t), (a, b));
            }
        }
        Ok(Lora {
            rank,
            alpha,
            targets: targets.to_vec(),
            pairs,
        })
    }

    /// `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The pair for a layer's target, with the scale, if adapted.
    pub fn pair(&self, layer: usize, t: Target) -> Option<(&Tensor, &Tensor, f64)> {
        self.pairs
            .get(&(layer, t))
            .map(|(a, b)| (a.as_tensor(), b.as_tensor(), self.scale()))
    }

    /// Every trainable tensor under its GGUF name, in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut v = Vec::with_capacity(self.pairs.len() * 2);
        for ((layer, t), (a, b)) in &self.pairs {
            let base = format!("blk.{layer}.{}.weight", t.gguf_name());
            v.push((format!("{base}.lora_a"), a));
            v.push((format!("{base}.lora_b"), b));
        }
        v
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.pairs
            .values()
            .map(|(a, b)| a.as_tensor().elem_count() + b.as_tensor().elem_count())
            .sum()
    }

    /// Writes the adapter as llama.cpp reads it (`general.type = adapter`).
    pub fn write_gguf(
        &self,
        arch: &str,
        name: &str,
        extra: &[(&str, String)],
        w: &mut dyn Write,
    ) -> Result<(), LoraError> {
        let mut data: Vec<(String, Vec<u64>, Vec<u8>)> = Vec::new();
        for (n, var) in self.named_vars() {
            let t = var.as_tensor();
            let (rows, cols) = t.dims2()?;
            let vals: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let bytes: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
            data.push((n, vec![cols as u64, rows as u64], bytes));
        }
        let mut g = GgufWriter::new();
        g.kv("general.architecture", Value::Str(arch.to_string()))
            .kv("general.type", Value::Str("adapter".into()))
            .kv("general.name", Value::Str(name.to_string()))
            .kv("adapter.type", Value::Str("lora".into()))
            .kv("adapter.lora.alpha", Value::F32(self.alpha as f32));
        for (k, v) in extra {
            g.kv(*k, Value::Str(v.clone()));
        }
        for (n, dims, bytes) in &data {
            g.tensor(GTensor {
                name: n.clone(),
                dims: dims.clone(),
                ggml_type: GGML_TYPE_F32,
                data: bytes,
            });
        }
        g.write_to(w)
            .map_err(|e| LoraError::Model(format!("writing the adapter: {e}")))?;
        Ok(())
    }
}
