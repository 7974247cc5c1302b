//! A small reader for GGUF headers: metadata and tensor shapes, no weights.
//!
//! The store uses it to reject files that are not GGUF before they become visible,
//! and to record architecture, parameter count, quantization and context length in
//! the manifest without loading the model.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Serialize;

/// A metadata value (arrays are summarised, not kept).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetaValue {
    /// Any integer type.
    Int(i64),
    /// Unsigned 64-bit values that do not fit i64.
    UInt(u64),
    /// f32 / f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// string.
    Str(String),
    /// An array: its element count (and the first strings, for short string arrays).
    Array {
        /// Number of elements.
        len: u64,
    },
}

impl MetaValue {
    /// As a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As an integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MetaValue::Int(i) if *i >= 0 => Some(*i as u64),
            MetaValue::UInt(u) => Some(*u),
            _ => None,
        }
    }
}

/// One tensor's description (its data is not read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Name (`blk.0.attn_q.weight`).
    pub name: String,
    /// ggml dimensions, fastest-varying first.
    pub dims: Vec<u64>,
    /// ggml type id (0 = f32, 1 = f16, …).
    pub ggml_type: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, d| a.saturating_mul(*d))
    }

    /// Size of the data in bytes, for the unquantized types (f32, f16, bf16).
    pub fn byte_len(&self) -> Option<u64> {
        let size = match self.ggml_type {
            0 => 4,
            1 | 30 => 2,
            _ => return None,
        };
        Some(self.elements().saturating_mul(size))
    }
}

/// What the header says.
#[derive(Debug, Clone, Serialize)]
pub struct GgufInfo {
    /// GGUF version.
    pub version: u32,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Total elements over all tensors (the parameter count).
    pub parameters: u64,
    /// Metadata by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensor descriptions, in file order.
    #[serde(skip)]
    pub tensors: Vec<TensorInfo>,
    /// Byte offset of the data section in the file (tensor offsets count from here).
    #[serde(skip)]
    pub data_offset: u64,
}

/// Errors reading a GGUF header.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Reading failed.
    #[error("reading GGUF header: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with the GGUF magic.
    #[error("not a GGUF file (bad magic bytes)")]
    BadMagic,
    /// Unsupported version or a malformed field.
    #[error("malformed GGUF header: {0}")]
    Malformed(String),
}

impl GgufInfo {
    /// Read the header of the file at `path`.
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let f = std::fs::File::open(path)?;
        Self::from_reader(BufReader::new(f))
    }

    /// Read a header from any reader.
    pub fn from_reader(r: impl Read) -> Result<Self, GgufError> {
        let mut r = Counting { r, n: 0 };
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic);
        }
        let version = read_u32(&mut r)?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Malformed(format!(
                "unsupported version {version}"
            )));
        }
        let tensor_count = read_u64(&mut r)?;
        let kv_count = read_u64(&mut r)?;
        if tensor_count > 1 << 24 || kv_count > 1 << 20 {
            return Err(GgufError::Malformed(
                "implausible tensor or key count".into(),
            ));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = read_string(&mut r)?;
            let ty = read_u32(&mut r)?;
            let v = read_value(&mut r, ty)?;
            metadata.insert(key, v);
        }
        let mut parameters: u64 = 0;
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = read_string(&mut r)?;
            let n_dims = read_u32(&mut r)?;
            if n_dims > 8 {
                return Err(GgufError::Malformed(format!(
                    "tensor with {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| read_u64(&mut r))
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = read_u32(&mut r)?;
            let offset = read_u64(&mut r)?;
            let t = TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            };
            parameters = parameters.saturating_add(t.elements());
            tensors.push(t);
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(MetaValue::as_u64)
            .filter(|a| *a > 0)
            .unwrap_or(32);
        let data_offset = r.n.div_ceil(alignment) * alignment;
        Ok(Self {
            version,
            tensor_count,
            parameters,
            metadata,
            tensors,
            data_offset,
        })
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(MetaValue::as_str)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `<arch>.context_length`.
    pub fn context_length(&self) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata
            .get(&format!("{arch}.context_length"))
            .and_then(MetaValue::as_u64)
    }

    /// The quantization named by `general.file_type`.
    pub fn quantization(&self) -> Option<String> {
        let ft = self.metadata.get("general.file_type")?.as_u64()?;
        Some(file_type_name(ft).map_or_else(|| format!("file_type {ft}"), str::to_string))
    }

    /// Whether this is an embedding model: the file declares how token vectors are
    /// pooled into one per sequence (`<arch>.pooling_type` other than none), as
    /// BERT-family sentence encoders do.
    pub fn is_embedding_model(&self) -> bool {
        self.architecture()
            .and_then(|a| self.metadata.get(&format!("{a}.pooling_type")))
            .and_then(MetaValue::as_u64)
            .is_some_and(|p| p > 0)
    }

    /// Whether the file carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.metadata.contains_key("tokenizer.chat_template")
    }
}

/// A reader that counts the bytes read (to find the data section).
struct Counting<R> {
    r: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.r.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// llama.cpp's `llama_ftype` names.
fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4",
        _ => return None,
    })
}

fn read_u8(r: &mut impl Read) -> Result<u8, GgufError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}
fn read_u16(r: &mut impl Read) -> Result<u16, GgufError> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}
fn read_u32(r: &mut impl Read) -> Result<u32, GgufError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}
fn read_u64(r: &mut impl Read) -> Result<u64, GgufError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut impl Read) -> Result<String, GgufError> {
    let len = read_u64(r)?;
    if len > 64 << 20 {
        return Err(GgufError::Malformed(format!("string of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(|_| GgufError::Malformed("string is not UTF-8".into()))
}

fn read_value(r: &mut impl Read, ty: u32) -> Result<MetaValue, GgufError> {
    Ok(match ty {
        0 => MetaValue::Int(i64::from(read_u8(r)?)),
        1 => MetaValue::Int(i64::from(read_u8(r)? as i8)),
        2 => MetaValue::Int(i64::from(read_u16(r)?)),
        3 => MetaValue::Int(i64::from(read_u16(r)? as i16)),
        4 => MetaValue::Int(i64::from(read_u32(r)?)),
        5 => MetaValue::Int(i64::from(read_u32(r)? as i32)),
        6 => MetaValue::Float(f64::from(f32::from_bits(read_u32(r)?))),
        7 => MetaValue::Bool(read_u8(r)? != 0),
        8 => MetaValue::Str(read_string(r)?),
        9 => {
            let elem = read_u32(r)?;
            let len = read_u64(r)?;
            if len > 1 << 26 {
                return Err(GgufError::Malformed(format!("array of {len} elements")));
            }
            for _ in 0..len {
                read_value(r, elem)?;
            }
            MetaValue::Array { len }
        }
        10 => {
            let v = read_u64(r)?;
            i64::try_from(v).map_or(MetaValue::UInt(v), MetaValue::Int)
        }
        11 => MetaValue::Int(read_u64(r)? as i64),
        12 => MetaValue::Float(f64::from_bits(read_u64(r)?)),
        t => return Err(GgufError::Malformed(format!("unknown value type {t}"))),
    })
}

/// Build a minimal GGUF file (for tests across the workspace).
#[doc(hidden)]
pub fn tiny_gguf(arch: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&(3 + extra.len() as u64).to_le_bytes());
    s(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    s(&mut out, arch);
    s(&mut out, "general.file_type");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes());
    s(&mut out, &format!("{arch}.context_length"));
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&2048u32.to_le_bytes());
    for (k, v) in extra {
        s(&mut out, k);
        out.extend_from_slice(&8u32.to_le_bytes());
        s(&mut out, v);
    }
    s(&mut out, "token_embd.weight");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&64u64.to_le_bytes());
    out.extend_from_slice(&10u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&[0u8; 64]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tiny_header() {
        let bytes = tiny_gguf("llama", &[("general.license", "mit")]);
        let info = GgufInfo::from_reader(&bytes[..]).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.quantization().as_deref(), Some("Q4_1"));
        assert_eq!(info.context_length(), Some(2048));
        assert_eq!(info.parameters, 640);
        assert_eq!(info.get_str("general.license"), Some("mit"));
    }

    #[test]
    fn rejects_non_gguf_and_truncated() {
        assert!(matches!(
            GgufInfo::from_reader(&b"PK\x03\x04...."[..]),
            Err(GgufError::BadMagic)
        ));
        let bytes = tiny_gguf("llama", &[]);
        assert!(GgufInfo::from_reader(&bytes[..20]).is_err());
    }
}
