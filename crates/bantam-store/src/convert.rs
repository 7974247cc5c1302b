//! Converting a sentence-transformers BERT model (a directory with `config.json`,
//! `model.safetensors`, `vocab.txt`, `tokenizer_config.json` and a pooling module)
//! into a GGUF file that llama.cpp loads with its `bert` architecture.
//!
//! Weights stay f32 and are copied byte for byte: a Hugging Face weight of shape
//! `[out, in]` (row-major) is the ggml tensor of dimensions `[in, out]` with the
//! same bytes. The WordPiece vocabulary is rewritten the way llama.cpp's WPM
//! tokenizer expects it: every word starts with U+2581, so a continuation piece
//! `##ing` is stored as `ing`, a word-initial piece `walk` as `▁walk`, and bracketed
//! tokens (`[CLS]`, `[unused0]`) are kept as they are.
//!
//! The output depends only on the input files and the [`ConvertOptions`] — tensors
//! and keys are written in a fixed order and nothing records the time — so the
//! catalog can pin the sha256 of a converted model.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::IoContext;
use crate::gguf_write::{GgufWriter, Tensor, Value, GGML_TYPE_F32};
use crate::StoreError;

/// Read access to the files of a model directory (on disk or inside a wheel).
pub trait ModelFiles {
    /// The contents of `name` (a `/`-separated path relative to the model
    /// directory), or `None` if there is no such file.
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// What these files are, for error messages.
    fn describe(&self) -> String;
}

/// A model directory on disk.
#[derive(Debug, Clone)]
pub struct DirFiles(pub PathBuf);

impl ModelFiles for DirFiles {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.0.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("reading", &p),
        }
    }
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// A model directory inside a zip archive (a wheel).
pub(crate) struct ZipFiles<'a, R: Read + std::io::Seek> {
    pub zip: &'a mut zip::ZipArchive<R>,
    /// The directory inside the archive, with a trailing `/`.
    pub prefix: String,
    /// The archive, for messages.
    pub archive: PathBuf,
}

impl<R: Read + std::io::Seek> ModelFiles for ZipFiles<'_, R> {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = format!("{}{name}", self.prefix);
        let mut entry = match self.zip.by_name(&full) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => {
                return Err(StoreError::Corrupt {
                    what: format!("wheel {}", self.archive.display()),
                    reason: format!("{full}: {e}"),
                })
            }
        };
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut buf)
            .ctx("extracting from", &self.archive)?;
        Ok(Some(buf))
    }
    fn describe(&self) -> String {
        format!("{}:{}", self.archive.display(), self.prefix)
    }
}

/// What to record in the converted file besides the model itself.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// `general.name`.
    pub name: Option<String>,
    /// `general.license`.
    pub license: Option<String>,
}

/// How token vectors are pooled into one sentence vector (llama.cpp's
/// `llama_pooling_type` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens (sentence-transformers' `pooling_mode_mean_tokens`).
    Mean = 1,
    /// The `[CLS]` token's vector.
    Cls = 2,
    /// The last token's vector.
    Last = 3,
}

/// A summary of a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Bytes written.
    pub bytes: u64,
    /// Tensors written.
    pub tensors: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Transformer layers.
    pub layers: u32,
    /// Width of the sentence vectors.
    pub embedding_length: u32,
    /// Pooling recorded in the file.
    pub pooling: Pooling,
}

/// Convert the model in `files` and write the GGUF to `out`.
pub fn convert_sentence_transformers(
    files: &mut dyn ModelFiles,
    opts: &ConvertOptions,
    out: &mut dyn Write,
) -> Result<Converted, StoreError> {
    let what = files.describe();
    let fail = |reason: String| StoreError::Convert {
        what: what.clone(),
        reason,
    };
    let modules = Modules::read(files).map_err(&fail)?;
    let base = modules.transformer.clone();
    let mut need = |name: &str| -> Result<Vec<u8>, StoreError> {
        let full = join(&base, name);
        files
            .read(&full)?
            .ok_or_else(|| fail(format!("{full} is missing")))
    };
    let config = parse_json(&need("config.json")?, "config.json").map_err(&fail)?;
    let hp = Hparams::from_config(&config).map_err(&fail)?;
    let vocab_txt = need("vocab.txt")?;
    let safetensors = need("model.safetensors")?;
    let tok_config = match files.read(&join(&base, "tokenizer_config.json"))? {
        Some(b) => parse_json(&b, "tokenizer_config.json").map_err(&fail)?,
        None => Json::Object(Default::default()),
    };
    let special_map = match files.read(&join(&base, "special_tokens_map.json"))? {
        Some(b) => parse_json(&b, "special_tokens_map.json").map_err(&fail)?,
        None => Json::Object(Default::default()),
    };
    let pooling = match &modules.pooling {
        Some(dir) => {
            let name = join(dir, "config.json");
            let bytes = files
                .read(&name)?
                .ok_or_else(|| fail(format!("{name} is missing")))?;
            pooling_from_config(&parse_json(&bytes, &name).map_err(&fail)?).map_err(&fail)?
        }
        None => return Err(fail("modules.json has no Pooling module".into())),
    };

    let vocab = read_vocab(&vocab_txt).map_err(&fail)?;
    let tok = Tokenizer::new(&vocab, &tok_config, &special_map).map_err(&fail)?;
    let st = SafeTensors::parse(&safetensors).map_err(&fail)?;
    let tensors = map_tensors(&st, &hp, vocab.len()).map_err(&fail)?;

    let mut g = GgufWriter::new();
    g.kv("general.architecture", Value::Str("bert".into()));
    if let Some(n) = &opts.name {
        g.kv("general.name", Value::Str(n.clone()));
    }
    g.kv("general.file_type", Value::U32(0));
    if let Some(l) = &opts.license {
        g.kv("general.license", Value::Str(l.clone()));
    }
    g.kv("bert.context_length", Value::U32(hp.max_positions))
        .kv("bert.embedding_length", Value::U32(hp.hidden))
        .kv("bert.feed_forward_length", Value::U32(hp.intermediate))
        .kv("bert.block_count", Value::U32(hp.layers))
        .kv("bert.attention.head_count", Value::U32(hp.heads))
        .kv("bert.attention.layer_norm_epsilon", Value::F32(hp.eps))
        .kv("bert.attention.causal", Value::Bool(false))
        .kv("bert.pooling_type", Value::U32(pooling as u32))
        .kv("tokenizer.ggml.model", Value::Str("bert".into()))
        .kv("tokenizer.ggml.tokens", Value::StrArray(tok.tokens))
        .kv("tokenizer.ggml.token_type", Value::I32Array(tok.types))
        .kv("tokenizer.ggml.token_type_count", Value::U32(hp.type_vocab))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(tok.cls))
        .kv("tokenizer.ggml.seperator_token_id", Value::U32(tok.sep))
        .kv("tokenizer.ggml.unknown_token_id", Value::U32(tok.unk))
        .kv("tokenizer.ggml.padding_token_id", Value::U32(tok.pad))
        .kv("tokenizer.ggml.cls_token_id", Value::U32(tok.cls))
        .kv("tokenizer.ggml.mask_token_id", Value::U32(tok.mask))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .kv("tokenizer.ggml.add_sep_token", Value::Bool(true))
        .kv(
            "tokenizer.ggml.normalizer.lowercase",
            Value::Bool(tok.lowercase),
        )
        .kv(
            "tokenizer.ggml.normalizer.strip_accents",
            Value::Bool(tok.strip_accents),
        );
    for t in tensors {
        g.tensor(t);
    }
    let n_tensors = g.tensor_count();
    let bytes = g.write_to(out).map_err(|e| match e {
        crate::gguf_write::GgufWriteError::Io(io) => StoreError::Io {
            action: "writing the GGUF converted from",
            path: PathBuf::from(&what),
            source: io,
        },
        other => fail(other.to_string()),
    })?;
    Ok(Converted {
        bytes,
        tensors: n_tensors,
        vocab: vocab.len(),
        layers: hp.layers,
        embedding_length: hp.hidden,
        pooling,
    })
}

/// Convert the model directory `dir` into the GGUF file `dest`, atomically: the
/// file is written next to `dest`, synced, and renamed over it.
pub fn convert_dir(
    dir: &Path,
    dest: &Path,
    opts: &ConvertOptions,
) -> Result<Converted, StoreError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".convert-")
        .tempfile_in(&parent)
        .ctx("creating a temporary file in", &parent)?;
    let mut w = BufWriter::new(tmp.as_file());
    let summary = convert_sentence_transformers(&mut DirFiles(dir.to_path_buf()), opts, &mut w)?;
    w.flush().ctx("writing", tmp.path())?;
    drop(w);
    tmp.as_file().sync_all().ctx("syncing", tmp.path())?;
    tmp.persist(dest).map_err(|e| StoreError::Io {
        action: "renaming into",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(summary)
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", base.trim_end_matches('/'))
    }
}

fn parse_json(bytes: &[u8], name: &str) -> Result<Json, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{name}: {e}"))
}

/// The module layout from `modules.json`: where the transformer and the pooling
/// configuration live.
struct Modules {
    transformer: String,
    pooling: Option<String>,
}

impl Modules {
    fn read(files: &mut dyn ModelFiles) -> Result<Self, String> {
        let Some(bytes) = files.read("modules.json").map_err(|e| e.to_string())? else {
            // A bare Hugging Face BERT directory with a sentence-transformers pooling
            // folder next to it.
            return Ok(Self {
                transformer: String::new(),
                pooling: Some("1_Pooling".into()),
            });
        };
        let json = parse_json(&bytes, "modules.json")?;
        let list = json
            .as_array()
            .ok_or("modules.json is not a list of modules")?;
        let mut out = Self {
            transformer: String::new(),
            pooling: None,
        };
        for m in list {
            let ty = m.get("type").and_then(Json::as_str).unwrap_or_default();
            let path = m
                .get("path")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            match ty.rsplit('.').next().unwrap_or_default() {
                "Transformer" => out.transformer = path,
                "Pooling" => out.pooling = Some(path),
                // Applied by the embedder (every vector is L2-normalised).
                "Normalize" => {}
                _ => {
                    return Err(format!(
                        "module {ty:?} is not supported (llama.cpp runs the transformer and the pooling only)"
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn pooling_from_config(c: &Json) -> Result<Pooling, String> {
    let on = |k: &str| c.get(k).and_then(Json::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_lasttoken", Some(Pooling::Last)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
    ];
    let chosen: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
    match chosen.as_slice() {
        [(_, Some(p))] => Ok(*p),
        [(k, None)] => Err(format!("pooling mode {k} is not supported by llama.cpp")),
        [] => Err("the pooling configuration enables no pooling mode".into()),
        _ => Err("the pooling configuration combines several modes".into()),
    }
}

/// The hyper-parameters llama.cpp's `bert` architecture needs.
#[derive(Debug, Clone)]
struct Hparams {
    hidden: u32,
    layers: u32,
    heads: u32,
    intermediate: u32,
    max_positions: u32,
    type_vocab: u32,
    eps: f32,
}

impl Hparams {
    fn from_config(c: &Json) -> Result<Self, String> {
        let model_type = c.get("model_type").and_then(Json::as_str).unwrap_or("");
        if model_type != "bert" {
            return Err(format!(
                "config.json model_type is {model_type:?}; only \"bert\" models are supported"
            ));
        }
        let u = |k: &str| -> Result<u32, String> {
            c.get(k)
                .and_then(Json::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("config.json: {k} is missing or not a positive integer"))
        };
        let act = c.get("hidden_act").and_then(Json::as_str).unwrap_or("gelu");
        if act != "gelu" {
            return Err(format!(
                "hidden_act {act:?} is not supported (llama.cpp's bert uses gelu)"
            ));
        }
        let pos = c
            .get("position_embedding_type")
            .and_then(Json::as_str)
            .unwrap_or("absolute");
        if pos != "absolute" {
            return Err(format!("position_embedding_type {pos:?} is not supported"));
        }
        let hp = Self {
            hidden: u("hidden_size")?,
            layers: u("num_hidden_layers")?,
            heads: u("num_attention_heads")?,
            intermediate: u("intermediate_size")?,
            max_positions: u("max_position_embeddings")?,
            type_vocab: u("type_vocab_size").unwrap_or(2),
            eps: c
                .get("layer_norm_eps")
                .and_then(Json::as_f64)
                .unwrap_or(1e-12) as f32,
        };
        if !hp.hidden.is_multiple_of(hp.heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                hp.hidden, hp.heads
            ));
        }
        if hp.layers > 512 {
            return Err(format!(
                "{} layers is more than llama.cpp supports",
                hp.layers
            ));
        }
        Ok(hp)
    }
}

fn read_vocab(bytes: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "vocab.txt is not UTF-8".to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let vocab: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect();
    if vocab.len() < 5 {
        return Err("vocab.txt has fewer than 5 tokens".into());
    }
    Ok(vocab)
}

/// The vocabulary as llama.cpp's WPM tokenizer reads it.
struct Tokenizer {
    tokens: Vec<String>,
    types: Vec<i32>,
    cls: u32,
    sep: u32,
    unk: u32,
    pad: u32,
    mask: u32,
    lowercase: bool,
    strip_accents: bool,
}

/// llama.cpp's `llama_token_type` values.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;

/// `##piece` → `piece`, `[SPECIAL]` unchanged, `word` → `▁word` (a bare `##`, which
/// no input can produce as a continuation, stays a word: `▁##`).
pub fn wpm_token(tok: &str) -> String {
    if tok.len() > 2 && tok.starts_with('[') && tok.ends_with(']') {
        tok.to_string()
    } else if let Some(rest) = tok.strip_prefix("##").filter(|r| !r.is_empty()) {
        rest.to_string()
    } else {
        format!("\u{2581}{tok}")
    }
}

impl Tokenizer {
    fn new(vocab: &[String], config: &Json, special_map: &Json) -> Result<Self, String> {
        let ids: BTreeMap<&str, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let special = |key: &str, default: &str| -> Result<u32, String> {
            let from = |j: &Json| -> Option<String> {
                match j.get(key)? {
                    Json::String(s) => Some(s.clone()),
                    Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
                    _ => None,
                }
            };
            let text = from(config)
                .or_else(|| from(special_map))
                .unwrap_or_else(|| default.to_string());
            ids.get(text.as_str())
                .copied()
                .ok_or_else(|| format!("{key} {text:?} is not in vocab.txt"))
        };
        let cls = special("cls_token", "[CLS]")?;
        let sep = special("sep_token", "[SEP]")?;
        let unk = special("unk_token", "[UNK]")?;
        let pad = special("pad_token", "[PAD]")?;
        let mask = special("mask_token", "[MASK]")?;
        let control: HashSet<u32> = [cls, sep, unk, pad, mask].into_iter().collect();
        let tokens: Vec<String> = vocab.iter().map(|t| wpm_token(t)).collect();
        let mut seen = HashSet::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() {
                return Err(format!("vocab.txt line {} is empty", i + 1));
            }
            // llama.cpp aborts on a vocabulary with duplicate entries.
            if !seen.insert(t.as_str()) {
                return Err(format!(
                    "vocab.txt line {} ({:?}) duplicates an earlier token",
                    i + 1,
                    vocab[i]
                ));
            }
        }
        let types = (0..tokens.len() as u32)
            .map(|i| {
                if control.contains(&i) {
                    TOKEN_CONTROL
                } else {
                    TOKEN_NORMAL
                }
            })
            .collect();
        let lowercase = config
            .get("do_lower_case")
            .and_then(Json::as_bool)
            .unwrap_or(true);
        let strip_accents = config
            .get("strip_accents")
            .and_then(Json::as_bool)
            .unwrap_or(lowercase);
        Ok(Self {
            tokens,
            types,
            cls,
            sep,
            unk,
            pad,
            mask,
            lowercase,
            strip_accents,
        })
    }
}

/// A parsed `.safetensors` buffer.
struct SafeTensors<'a> {
    tensors: BTreeMap<String, StTensor<'a>>,
}

struct StTensor<'a> {
    dtype: String,
    shape: Vec<u64>,
    data: &'a [u8],
}

impl<'a> SafeTensors<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, String> {
        let bad = |r: &str| format!("model.safetensors: {r}");
        let n = buf
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| bad("shorter than its header"))?;
        let header_end = 8usize
            .checked_add(usize::try_from(n).map_err(|_| bad("header too large"))?)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| bad("header runs past the end of the file"))?;
        let header: serde_json::Map<String, Json> =
            serde_json::from_slice(&buf[8..header_end]).map_err(|e| bad(&e.to_string()))?;
        let data = &buf[header_end..];
        let mut tensors = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = v
                .get("dtype")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(&format!("{name}: no dtype")))?
                .to_string();
            let shape = v
                .get("shape")
                .and_then(Json::as_array)
                .ok_or_else(|| bad(&format!("{name}: no shape")))?
                .iter()
                .map(|d| d.as_u64().ok_or_else(|| bad(&format!("{name}: bad shape"))))
                .collect::<Result<Vec<u64>, _>>()?;
            let offs = v
                .get("data_offsets")
                .and_then(Json::as_array)
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)))
                .ok_or_else(|| bad(&format!("{name}: bad data_offsets")))?;
            if offs.0 > offs.1 || offs.1 > data.len() {
                return Err(bad(&format!("{name}: data outside the file")));
            }
            tensors.insert(
                name,
                StTensor {
                    dtype,
                    shape,
                    data: &data[offs.0..offs.1],
                },
            );
        }
        Ok(Self { tensors })
    }
}

/// Map Hugging Face BERT weights to llama.cpp's tensor names, in a fixed order, and
/// check every shape against the configuration.
fn map_tensors<'a>(
    st: &SafeTensors<'a>,
    hp: &Hparams,
    n_vocab: usize,
) -> Result<Vec<Tensor<'a>>, String> {
    // Some checkpoints prefix every weight with "bert.".
    let lookup: BTreeMap<&str, &StTensor<'a>> = st
        .tensors
        .iter()
        .map(|(k, v)| (k.strip_prefix("bert.").unwrap_or(k), v))
        .collect();
    let (h, ff) = (u64::from(hp.hidden), u64::from(hp.intermediate));
    let mut plan: Vec<(String, String, Vec<u64>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            "token_embd.weight".into(),
            vec![n_vocab as u64, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            "token_types.weight".into(),
            vec![u64::from(hp.type_vocab), h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            "position_embd.weight".into(),
            vec![u64::from(hp.max_positions), h],
        ),
        (
            "embeddings.LayerNorm.weight".into(),
            "token_embd_norm.weight".into(),
            vec![h],
        ),
        (
            "embeddings.LayerNorm.bias".into(),
            "token_embd_norm.bias".into(),
            vec![h],
        ),
    ];
    for i in 0..hp.layers {
        let hf = |s: &str| format!("encoder.layer.{i}.{s}");
        let gg = |s: &str| format!("blk.{i}.{s}");
        for (from, to) in [
            ("attention.self.query", "attn_q"),
            ("attention.self.key", "attn_k"),
            ("attention.self.value", "attn_v"),
            ("attention.output.dense", "attn_output"),
        ] {
            plan.push((
                hf(&format!("{from}.weight")),
                gg(&format!("{to}.weight")),
                vec![h, h],
            ));
            plan.push((
                hf(&format!("{from}.bias")),
                gg(&format!("{to}.bias")),
                vec![h],
            ));
        }
        for (from, to) in [
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("output.LayerNorm", "layer_output_norm"),
        ] {
            plan.push((
                hf(&format!("{from}.weight")),
                gg(&format!("{to}.weight")),
                vec![h],
            ));
            plan.push((
                hf(&format!("{from}.bias")),
                gg(&format!("{to}.bias")),
                vec![h],
            ));
        }
        plan.push((
            hf("intermediate.dense.weight"),
            gg("ffn_up.weight"),
            vec![ff, h],
        ));
        plan.push((hf("intermediate.dense.bias"), gg("ffn_up.bias"), vec![ff]));
        plan.push((
            hf("output.dense.weight"),
            gg("ffn_down.weight"),
            vec![h, ff],
        ));
        plan.push((hf("output.dense.bias"), gg("ffn_down.bias"), vec![h]));
    }
    let mut used: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(plan.len());
    for (from, to, shape) in plan {
        let (key, t) = lookup
            .get_key_value(from.as_str())
            .ok_or_else(|| format!("model.safetensors has no tensor {from}"))?;
        if t.dtype != "F32" {
            return Err(format!(
                "{from} is {}; only F32 checkpoints are supported",
                t.dtype
            ));
        }
        if t.shape != shape {
            return Err(format!(
                "{from} has shape {:?}, expected {shape:?} from config.json and vocab.txt",
                t.shape
            ));
        }
        used.insert(key);
        out.push(Tensor {
            name: to,
            // Row-major [out, in] is ggml's [in, out]: reverse the dimensions.
            dims: shape.iter().rev().copied().collect(),
            ggml_type: GGML_TYPE_F32,
            data: t.data,
        });
    }
    // Buffers and heads llama.cpp's bert does not use.
    let ignorable =
        |k: &str| k.ends_with("position_ids") || k.starts_with("pooler.") || k.starts_with("cls.");
    if let Some(extra) = lookup.keys().find(|k| !used.contains(*k) && !ignorable(k)) {
        return Err(format!(
            "model.safetensors has a tensor llama.cpp's bert would not load: {extra}"
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gguf::{GgufInfo, MetaValue};

    /// Write a tiny sentence-transformers BERT directory: 2 layers, hidden 8,
    /// 2 heads, intermediate 16, 16 positions, and a 12-token vocabulary. Weights are
    /// distinct values so a misplaced tensor shows.
    pub(crate) fn tiny_bert_dir(dir: &Path) {
        let vocab = [
            "[PAD]",
            "[unused0]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            "the",
            "cat",
            "##s",
            "sat",
            ".",
            "!",
        ];
        std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"model_type":"bert","hidden_size":8,"num_hidden_layers":2,
               "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":16,
               "type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu","vocab_size":12}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"do_lower_case":true,"cls_token":"[CLS]","sep_token":{"content":"[SEP]"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
               {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
               {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"word_embedding_dimension":8,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}"#,
        )
        .unwrap();
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![12, 8]),
            ("embeddings.position_embeddings.weight".into(), vec![16, 8]),
            ("embeddings.token_type_embeddings.weight".into(), vec![2, 8]),
            ("embeddings.LayerNorm.weight".into(), vec![8]),
            ("embeddings.LayerNorm.bias".into(), vec![8]),
        ];
        for i in 0..2 {
            for (n, s) in [
                ("attention.self.query.weight", vec![8, 8]),
                ("attention.self.query.bias", vec![8]),
                ("attention.self.key.weight", vec![8, 8]),
                ("attention.self.key.bias", vec![8]),
                ("attention.self.value.weight", vec![8, 8]),
                ("attention.self.value.bias", vec![8]),
                ("attention.output.dense.weight", vec![8, 8]),
                ("attention.output.dense.bias", vec![8]),
                ("attention.output.LayerNorm.weight", vec![8]),
                ("attention.output.LayerNorm.bias", vec![8]),
                ("intermediate.dense.weight", vec![16, 8]),
                ("intermediate.dense.bias", vec![16]),
                ("output.dense.weight", vec![8, 16]),
                ("output.dense.bias", vec![8]),
                ("output.LayerNorm.weight", vec![8]),
                ("output.LayerNorm.bias", vec![8]),
            ] {
                shapes.push((format!("encoder.layer.{i}.{n}"), s));
            }
        }
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut data: Vec<u8> = Vec::new();
        // position_ids is an i64 buffer that the converter must skip.
        let pos: Vec<u8> = (0..16i64).flat_map(|i| i.to_le_bytes()).collect();
        header.insert(
            "embeddings.position_ids".into(),
            serde_json::json!({"dtype":"I64","shape":[1,16],"data_offsets":[0, pos.len()]}),
        );
        data.extend_from_slice(&pos);
        let mut counter = 0f32;
        for (name, shape) in &shapes {
            let n: usize = shape.iter().product();
            let start = data.len();
            for _ in 0..n {
                counter += 1.0;
                data.extend_from_slice(&(counter * 1e-3).to_le_bytes());
            }
            header.insert(
                name.clone(),
                serde_json::json!({"dtype":"F32","shape":shape,"data_offsets":[start, data.len()]}),
            );
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut file = (h.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&h);
        file.extend_from_slice(&data);
        std::fs::write(dir.join("model.safetensors"), file).unwrap();
    }

    fn safetensor_bytes(dir: &Path, name: &str) -> Vec<u8> {
        let buf = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::parse(&buf).unwrap();
        st.tensors[name].data.to_vec()
    }

    #[test]
    fn wpm_vocabulary_form() {
        assert_eq!(wpm_token("##s"), "s");
        assert_eq!(wpm_token("cat"), "\u{2581}cat");
        assert_eq!(wpm_token("[CLS]"), "[CLS]");
        assert_eq!(wpm_token("[unused7]"), "[unused7]");
        assert_eq!(wpm_token("["), "\u{2581}[");
        assert_eq!(wpm_token("#"), "\u{2581}#");
        assert_eq!(wpm_token("##"), "\u{2581}##");
    }

    #[test]
    fn converts_a_tiny_bert_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        tiny_bert_dir(dir.path());
        let out = dir.path().join("tiny.gguf");
        let opts = ConvertOptions {
            name: Some("tiny".into()),
            license: Some("apache-2.0".into()),
        };
        let summary = convert_dir(dir.path(), &out, &opts).unwrap();
        assert_eq!(summary.tensors, 5 + 2 * 16);
        assert_eq!(summary.vocab, 12);
        assert_eq!(summary.pooling, Pooling::Mean);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(summary.bytes, bytes.len() as u64);
        let info = GgufInfo::read(&out).unwrap();
        let m = &info.metadata;
        assert_eq!(info.architecture(), Some("bert"));
        assert_eq!(info.quantization().as_deref(), Some("F32"));
        assert_eq!(info.context_length(), Some(16));
        assert_eq!(info.get_str("general.name"), Some("tiny"));
        assert_eq!(info.get_str("general.license"), Some("apache-2.0"));
        assert_eq!(info.get_str("tokenizer.ggml.model"), Some("bert"));
        for (k, v) in [
            ("bert.embedding_length", 8),
            ("bert.feed_forward_length", 16),
            ("bert.block_count", 2),
            ("bert.attention.head_count", 2),
            ("bert.pooling_type", 1),
            ("tokenizer.ggml.token_type_count", 2),
            ("tokenizer.ggml.bos_token_id", 3),
            ("tokenizer.ggml.cls_token_id", 3),
            ("tokenizer.ggml.seperator_token_id", 4),
            ("tokenizer.ggml.unknown_token_id", 2),
            ("tokenizer.ggml.padding_token_id", 0),
            ("tokenizer.ggml.mask_token_id", 5),
        ] {
            assert_eq!(m[k], MetaValue::Int(v), "{k}");
        }
        assert_eq!(m["bert.attention.causal"], MetaValue::Bool(false));
        assert_eq!(
            m["tokenizer.ggml.normalizer.lowercase"],
            MetaValue::Bool(true)
        );
        assert!(
            matches!(m["bert.attention.layer_norm_epsilon"], MetaValue::Float(e) if (e - 1e-12).abs() < 1e-15)
        );
        assert_eq!(m["tokenizer.ggml.tokens"], MetaValue::Array { len: 12 });
        assert_eq!(m["tokenizer.ggml.token_type"], MetaValue::Array { len: 12 });
        // position_ids is skipped; the parameter count is the F32 weights only.
        let f32_params: u64 =
            12 * 8 + 16 * 8 + 2 * 8 + 16 + 2 * (4 * (64 + 8) + 4 * 8 + 2 * 128 + 16 + 8);
        assert_eq!(info.parameters, f32_params);
        let names: Vec<&str> = info.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            &names[..6],
            &[
                "token_embd.weight",
                "token_types.weight",
                "position_embd.weight",
                "token_embd_norm.weight",
                "token_embd_norm.bias",
                "blk.0.attn_q.weight"
            ]
        );
        let find = |n: &str| info.tensors.iter().find(|t| t.name == n).unwrap();
        assert_eq!(find("token_embd.weight").dims, vec![8, 12]);
        assert_eq!(find("blk.1.ffn_up.weight").dims, vec![8, 16]);
        assert_eq!(find("blk.1.ffn_down.weight").dims, vec![16, 8]);
        assert_eq!(find("blk.0.layer_output_norm.bias").dims, vec![8]);
        // Same bytes as the safetensors weights, at the offsets the header names.
        for (gg, hf) in [
            (
                "blk.1.ffn_down.weight",
                "encoder.layer.1.output.dense.weight",
            ),
            (
                "blk.0.attn_v.bias",
                "encoder.layer.0.attention.self.value.bias",
            ),
            (
                "blk.1.attn_output_norm.weight",
                "encoder.layer.1.attention.output.LayerNorm.weight",
            ),
            (
                "token_types.weight",
                "embeddings.token_type_embeddings.weight",
            ),
        ] {
            let t = find(gg);
            let start = (info.data_offset + t.offset) as usize;
            let got = &bytes[start..start + t.byte_len().unwrap() as usize];
            assert_eq!(got, &safetensor_bytes(dir.path(), hf)[..], "{gg}");
        }
        // Deterministic: a second conversion gives the same bytes.
        let again = dir.path().join("again.gguf");
        convert_dir(dir.path(), &again, &opts).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".convert-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn converts_from_a_wheel_and_installs_as_an_embedding_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        tiny_bert_dir(&model);
        let direct = dir.path().join("direct.gguf");
        let opts = ConvertOptions {
            name: Some("pkg".into()),
            license: None,
        };
        convert_dir(&model, &direct, &opts).unwrap();
        // The same directory inside a wheel, as `bantam pull` sees it.
        let wheel = dir.path().join("pkg-0.1-py3-none-any.whl");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("pkg/__init__.py", o).unwrap();
            for name in [
                "config.json",
                "vocab.txt",
                "tokenizer_config.json",
                "modules.json",
                "model.safetensors",
                "1_Pooling/config.json",
            ] {
                z.start_file(format!("pkg/model/{name}"), o).unwrap();
                z.write_all(&std::fs::read(model.join(name)).unwrap())
                    .unwrap();
            }
            z.finish().unwrap();
        }
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
        let mut files = ZipFiles {
            zip: &mut zip,
            prefix: "pkg/model/".into(),
            archive: wheel.clone(),
        };
        let mut from_wheel = Vec::new();
        convert_sentence_transformers(&mut files, &opts, &mut from_wheel).unwrap();
        assert_eq!(from_wheel, std::fs::read(&direct).unwrap());

        let info = GgufInfo::read(&direct).unwrap();
        assert!(info.is_embedding_model());
        let plain = crate::gguf::tiny_gguf("llama", &[]);
        assert!(!GgufInfo::from_reader(&plain[..])
            .unwrap()
            .is_embedding_model());

        let store = crate::Store::open(dir.path().join("home")).unwrap();
        let m = store
            .pull(
                direct.to_str().unwrap(),
                &crate::PullOptions {
                    name: Some("tiny-bert:test".into()),
                    ..Default::default()
                },
                &crate::NoProgress,
            )
            .unwrap();
        assert_eq!(m.architecture.as_deref(), Some("bert"));
        assert_eq!(m.quantization.as_deref(), Some("F32"));
        assert_eq!(m.context_length, Some(16));
        assert!(m.options.is_empty(), "{:?}", m.options);
    }

    #[test]
    fn rejects_what_llama_cpp_cannot_run() {
        let convert = |edit: &dyn Fn(&Path)| {
            let dir = tempfile::tempdir().unwrap();
            tiny_bert_dir(dir.path());
            edit(dir.path());
            let mut sink = Vec::new();
            convert_sentence_transformers(
                &mut DirFiles(dir.path().to_path_buf()),
                &ConvertOptions::default(),
                &mut sink,
            )
            .unwrap_err()
            .to_string()
        };
        let e = convert(&|d| std::fs::remove_file(d.join("vocab.txt")).unwrap());
        assert!(e.contains("vocab.txt is missing"), "{e}");
        let e = convert(&|d| {
            std::fs::write(
                d.join("1_Pooling/config.json"),
                r#"{"pooling_mode_max_tokens":true}"#,
            )
            .unwrap()
        });
        assert!(e.contains("pooling_mode_max_tokens"), "{e}");
        let e = convert(&|d| {
            let v = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
            // "##▁cat" and "cat" both become "▁cat".
            std::fs::write(d.join("vocab.txt"), v.replace("##s", "##\u{2581}cat")).unwrap();
        });
        assert!(e.contains("duplicates"), "{e}");
        let e = convert(&|d| {
            let v = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
            std::fs::write(d.join("vocab.txt"), v + "extra\n").unwrap();
        });
        assert!(e.contains("shape"), "{e}");
        let e = convert(&|d| {
            let c = std::fs::read_to_string(d.join("config.json")).unwrap();
            std::fs::write(d.join("config.json"), c.replace("\"gelu\"", "\"relu\"")).unwrap();
        });
        assert!(e.contains("relu"), "{e}");
        let e = convert(&|d| {
            let c = std::fs::read_to_string(d.join("modules.json")).unwrap();
            std::fs::write(
                d.join("modules.json"),
                c.replace("models.Normalize", "models.Dense"),
            )
            .unwrap();
        });
        assert!(e.contains("Dense"), "{e}");
    }
}
