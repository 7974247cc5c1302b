//! The frozen base: a decoder-only transformer read from a GGUF file and
//! dequantized to f32, with the forward pass written in candle's
//! differentiable ops so that gradients reach the adapters.
//!
//! The forward pass is the one llama.cpp runs for the same file, in the
//! GGUF's own tensor layout: LLaMA-family files (SmolLM2) store Q and K rows
//! permuted for llama.cpp's interleaved ("normal") RoPE, Qwen2 files keep
//! Hugging Face's layout and use NeoX RoPE. Training in that layout means
//! the adapter applies to exactly the tensors llama.cpp multiplies when it
//! serves the adapter.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, D};

use crate::lora::{Lora, Target};
use crate::LoraError;

/// How rotary position embedding pairs dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama.cpp's `LLAMA_ROPE_TYPE_NORM`.
    Interleaved,
    /// Halves (i, i + d/2): llama.cpp's `LLAMA_ROPE_TYPE_NEOX`, Hugging Face's `rotate_half`.
    Neox,
}

/// The shape of the base model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
    pub rope: RopeStyle,
    pub context_length: usize,
}

/// Architectures whose forward pass this crate implements.
pub const SUPPORTED_ARCHS: &[&str] = &["llama", "qwen2"];

struct Layer {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    ffn_norm: Tensor,
    w_gate: Tensor,
    w_up: Tensor,
    w_down: Tensor,
}

/// The frozen base model (f32, on the CPU).
pub struct BaseModel {
    pub config: ModelConfig,
    embd: Tensor,
    layers: Vec<Layer>,
    out_norm: Tensor,
    output: Tensor,
}

fn meta_u32(c: &gguf_file::Content, key: &str) -> Result<usize, LoraError> {
    c.metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .or_else(|| v.to_u64().ok().map(|x| x as u32))
        })
        .map(|v| v as usize)
        .ok_or_else(|| LoraError::Model(format!("the GGUF has no `{key}`")))
}

fn meta_f32(c: &gguf_file::Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl BaseModel {
    /// Reads and dequantizes a GGUF model.
    pub fn load(path: &Path) -> Result<Self, LoraError> {
        let mut f = BufReader::new(File::open(path).map_err(|e| LoraError::Io(path.into(), e))?);
        let content = gguf_file::Content::read(&mut f)
            .map_err(|e| LoraError::Model(format!("{}: {e}", path.display())))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| LoraError::Model("the GGUF has no general.architecture".into()))?;
        if !SUPPORTED_ARCHS.contains(&arch.as_str()) {
            return Err(LoraError::UnsupportedArch(arch));
        }
        let n_embd = meta_u32(&content, &format!("{arch}.embedding_length"))?;
        let n_head = meta_u32(&content, &format!("{arch}.attention.head_count"))?;
        let n_head_kv =
            meta_u32(&content, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
        let head_dim =
            meta_u32(&content, &format!("{arch}.rope.dimension_count")).unwrap_or(n_embd / n_head);
        if head_dim * n_head != n_embd {
            return Err(LoraError::Model(format!(
                "head dimension {head_dim} × {n_head} heads ≠ embedding {n_embd}: not supported"
            )));
        }
        let dev = Device::Cpu;
        let mut get = |name: &str| -> Result<Tensor, LoraError> {
            let q = content
                .tensor(&mut f, name, &dev)
                .map_err(|e| LoraError::Model(format!("tensor {name}: {e}")))?;
            q.dequantize(&dev)
                .map_err(|e| LoraError::Model(format!("dequantize {name}: {e}")))
        };
        let embd = get("token_embd.weight")?;
        let n_vocab = embd.dim(0).map_err(LoraError::from)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            get("output.weight")?
        } else {
            embd.clone()
        };
        let out_norm = get("output_norm.weight")?;
        let n_layer = meta_u32(&content, &format!("{arch}.block_count"))?;
        let has = |n: &str| content.tensor_infos.contains_key(n);
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}.");
            let opt = |n: &str, get: &mut dyn FnMut(&str) -> Result<Tensor, LoraError>| {
                let full = format!("{p}{n}");
                if has(&full) {
                    get(&full).map(Some)
                } else {
                    Ok(None)
                }
            };
            let layer = Layer {
                attn_norm: get(&format!("{p}attn_norm.weight"))?,
                wq: get(&format!("{p}attn_q.weight"))?,
                wk: get(&format!("{p}attn_k.weight"))?,
                wv: get(&format!("{p}attn_v.weight"))?,
                wo: get(&format!("{p}attn_output.weight"))?,
                bq: opt("attn_q.bias", &mut get)?,
                bk: opt("attn_k.bias", &mut get)?,
                bv: opt("attn_v.bias", &mut get)?,
                ffn_norm: get(&format!("{p}ffn_norm.weight"))?,
                w_gate: get(&format!("{p}ffn_gate.weight"))?,
                w_up: get(&format!("{p}ffn_up.weight"))?,
                w_down: get(&format!("{p}ffn_down.weight"))?,
            };
            layers.push(layer);
        }
        let n_ff = layers
            .first()
            .map(|l| l.w_up.dim(0))
            .transpose()?
            .unwrap_or(0);
        let config = ModelConfig {
            rms_eps: meta_f32(
                &content,
                &format!("{arch}.attention.layer_norm_rms_epsilon"),
            )
            .unwrap_or(1e-5) as f64,
            rope_base: meta_f32(&content, &format!("{arch}.rope.freq_base")).unwrap_or(10000.0)
                as f64,
            rope: if arch == "qwen2" {
                RopeStyle::Neox
            } else {
                RopeStyle::Interleaved
            },
            context_length: meta_u32(&content, &format!("{arch}.context_length")).unwrap_or(2048),
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
        };
        Ok(BaseModel {
            config,
            embd,
            layers,
            out_norm,
            output,
        })
    }

    /// The (out, in) shape of a target's frozen weight.
    pub fn target_shape(&self, t: Target) -> (usize, usize) {
        let c = &self.config;
        let kv = c.n_head_kv * c.head_dim;
        match t {
            Target::Q => (c.n_embd, c.n_embd),
            Target::K | Target::V => (kv, c.n_embd),
            Target::O => (c.n_embd, c.n_embd),
            Target::Gate | Target::Up => (c.n_ff, c.n_embd),
            Target::Down => (c.n_embd, c.n_ff),
        }
    }

    /// Final hidden states (after the output norm) for one sequence: `[t, n_embd]`.
    pub fn hidden(&self, tokens: &[u32], lora: Option<&Lora>) -> Result<Tensor, LoraError> {
        let c = &self.config;
        let dev = Device::Cpu;
        let t = tokens.len();
        let ids = Tensor::from_slice(tokens, t, &dev)?;
        let mut x = self.embd.index_select(&ids, 0)?; // [t, d]
        let (cos, sin) = rope_tables(c, t)?;
        let mask = causal_mask(t)?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let n_rep = c.n_head / c.n_head_kv;
        for (i, l) in self.layers.iter().enumerate() {
            let lin = |x: &Tensor, w: &Tensor, b: Option<&Tensor>, tg: Target| {
                linear(x, w, b, lora.and_then(|lo| lo.pair(i, tg)))
            };
            let h = rms_norm(&x, &l.attn_norm, c.rms_eps)?;
            let q = lin(&h, &l.wq, l.bq.as_ref(), Target::Q)?;
            let k = lin(&h, &l.wk, l.bk.as_ref(), Target::K)?;
            let v = lin(&h, &l.wv, l.bv.as_ref(), Target::V)?;
            // [t, heads, hd] → [heads, t, hd]
            let q = q.reshape((t, c.n_head, c.head_dim))?.transpose(0, 1)?;
            let k = k.reshape((t, c.n_head_kv, c.head_dim))?.transpose(0, 1)?;
            let v = v
                .reshape((t, c.n_head_kv, c.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let q = rope(&q.contiguous()?, &cos, &sin, c.rope)?;
            let k = rope(&k.contiguous()?, &cos, &sin, c.rope)?;
            let (k, v) = if n_rep > 1 {
                (repeat_kv(&k, n_rep)?, repeat_kv(&v, n_rep)?)
            } else {
                (k, v)
            };
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let p = softmax_last(&scores)?;
            let a = p.matmul(&v)?; // [heads, t, hd]
            let a = a.transpose(0, 1)?.contiguous()?.reshape((t, c.n_embd))?;
            let o = lin(&a, &l.wo, None, Target::O)?;
            x = (x + o)?;
            let h = rms_norm(&x, &l.ffn_norm, c.rms_eps)?;
            let g = lin(&h, &l.w_gate, None, Target::Gate)?.silu()?;
            let u = lin(&h, &l.w_up, None, Target::Up)?;
            let d = lin(&(g * u)?, &l.w_down, None, Target::Down)?;
            x = (x + d)?;
        }
        rms_norm(&x, &self.out_norm, c.rms_eps)
    }

    /// Summed cross-entropy of the tokens at `targets` (positions whose
    /// token is predicted from the previous position) and their count.
    pub fn loss_sum(
        &self,
        tokens: &[u32],
        mask: &[bool],
        lora: Option<&Lora>,
    ) -> Result<(Tensor, usize), LoraError> {
        // Position p predicts token p+1; it counts when token p+1 is masked in.
        let mut pos = Vec::new();
        let mut tgt = Vec::new();
        for p in 0..tokens.len().saturating_sub(1) {
            if mask[p + 1] {
                pos.push(p as u32);
                tgt.push(tokens[p + 1]);
            }
        }
        if pos.is_empty() {
            return Err(LoraError::Data(
                "an example has no answer tokens to learn".into(),
            ));
        }
        let h = self.hidden(tokens, lora)?;
        let dev = Device::Cpu;
        let n = pos.len();
        let pos_t = Tensor::from_slice(&pos, n, &dev)?;
        let tgt_t = Tensor::from_slice(&tgt, (n, 1), &dev)?;
        let hs = h.index_select(&pos_t, 0)?;
        let logits = frozen_matmul(&hs, &self.output)?; // [n, vocab]
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let picked = shifted.gather(&tgt_t, 1)?;
        let loss = (lse - picked)?.sum_all()?;
        Ok((loss, n))
    }

    /// Logits at every position (for tests and scoring): `[t, vocab]`.
    pub fn logits(&self, tokens: &[u32], lora: Option<&Lora>) -> Result<Tensor, LoraError> {
        let h = self.hidden(tokens, lora)?;
        frozen_matmul(&h, &self.output)
    }
}

/// `x W^T` for a frozen `W`: the backward pass returns only `∂L/∂x = g W`.
///
/// candle's own matmul backward also computes the weight's gradient, a full
/// `[out, in]` product per layer that a frozen base throws away; for a LoRA
/// step it is half the backward work and most of its memory.
struct FrozenLinear {
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = s.as_slice::<f32>()?;
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("frozen-linear needs a contiguous input");
        };
        let x = Tensor::from_slice(&data[start..end], l.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.w.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x W^T` with `W` frozen (no weight gradient is ever computed).
pub(crate) fn frozen_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor, LoraError> {
    Ok(x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })?)
}

/// `x W^T + b`, plus the adapter's `scale · (x A^T) B^T` when one is given.
fn linear(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    ab: Option<(&Tensor, &Tensor, f64)>,
) -> Result<Tensor, LoraError> {
    let mut y = frozen_matmul(x, w)?;
    if let Some(b) = b {
        y = y.broadcast_add(b)?;
    }
    if let Some((a, bm, scale)) = ab {
        let d = x.matmul(&a.t()?)?.matmul(&bm.t()?)?;
        y = (y + (d * scale)?)?;
    }
    Ok(y)
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor, LoraError> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(xn.broadcast_mul(w)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor, LoraError> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

fn causal_mask(t: usize) -> Result<Tensor, LoraError> {
    let mut m = vec![0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            m[i * t + j] = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(m, (t, t), &Device::Cpu)?)
}

/// cos/sin tables `[t, head_dim/2]` (llama.cpp's θ_i = base^(-2i/d)).
fn rope_tables(c: &ModelConfig, t: usize) -> Result<(Tensor, Tensor), LoraError> {
    let half = c.head_dim / 2;
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in 0..t {
        for i in 0..half {
            let theta = (p as f64) * c.rope_base.powf(-2.0 * i as f64 / c.head_dim as f64);
            cos.push(theta.cos() as f32);
            sin.push(theta.sin() as f32);
        }
    }
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(cos, (t, half), &dev)?,
        Tensor::from_vec(sin, (t, half), &dev)?,
    ))
}

/// Rotates `x: [heads, t, hd]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, style: RopeStyle) -> Result<Tensor, LoraError> {
    let (h, t, hd) = x.dims3()?;
    let half = hd / 2;
    match style {
        RopeStyle::Neox => {
            let x1 = x.narrow(2, 0, half)?;
            let x2 = x.narrow(2, half, half)?;
            let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
            let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
            Ok(Tensor::cat(&[r1, r2], 2)?)
        }
        RopeStyle::Interleaved => {
            let xp = x.reshape((h, t, half, 2))?;
            let x1 = xp.narrow(3, 0, 1)?.squeeze(3)?;
            let x2 = xp.narrow(3, 1, 1)?.squeeze(3)?;
            let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
            let r2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
            Ok(Tensor::stack(&[r1, r2], 3)?.reshape((h, t, hd))?)
        }
    }
}

fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor, LoraError> {
    let (kvh, t, hd) = x.dims3()?;
    Ok(x.unsqueeze(1)?
        .broadcast_as((kvh, n_rep, t, hd))?
        .contiguous()?
        .reshape((kvh * n_rep, t, hd))?)
}
