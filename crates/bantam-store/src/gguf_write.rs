//! A small GGUF writer (version 3, little-endian): metadata in the order it was
//! added, then tensor descriptions, then the tensor data, each tensor aligned to
//! [`ALIGNMENT`] bytes.
//!
//! Nothing depends on the clock or on hash-map order, so the same inputs always give
//! the same bytes (the catalog pins converted files by sha256).

use std::io::{self, Write};

/// Alignment of the data section and of every tensor in it (GGUF's default, so no
/// `general.alignment` key is written).
pub const ALIGNMENT: u64 = 32;

/// ggml's type id for f32 tensors.
pub const GGML_TYPE_F32: u32 = 0;

/// ggml's type id for f16 tensors.
pub const GGML_TYPE_F16: u32 = 1;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(String),
    /// Array of strings.
    StrArray(Vec<String>),
    /// Array of `int32`.
    I32Array(Vec<i32>),
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::StrArray(_) | Value::I32Array(_) => 9,
        }
    }
}

/// One tensor: its ggml dimensions (fastest-varying first) and raw little-endian data.
#[derive(Debug, Clone)]
pub struct Tensor<'a> {
    /// Name (at most 63 bytes, ggml's limit).
    pub name: String,
    /// ggml dimensions, `ne[0]` first.
    pub dims: Vec<u64>,
    /// ggml type id ([`GGML_TYPE_F32`], …).
    pub ggml_type: u32,
    /// The bytes, exactly `product(dims) * element size` long.
    pub data: &'a [u8],
}

/// Errors building a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufWriteError {
    /// Writing failed.
    #[error("writing GGUF: {0}")]
    Io(#[from] io::Error),
    /// A tensor or key that llama.cpp would reject.
    #[error("invalid GGUF content: {0}")]
    Invalid(String),
}

/// Collects metadata and tensors, then writes the file in one pass.
#[derive(Debug, Default)]
pub struct GgufWriter<'a> {
    kv: Vec<(String, Value)>,
    tensors: Vec<Tensor<'a>>,
}

fn element_size(ggml_type: u32) -> Option<u64> {
    match ggml_type {
        GGML_TYPE_F32 => Some(4),
        GGML_TYPE_F16 => Some(2),
        _ => None,
    }
}

fn padding(offset: u64) -> u64 {
    (ALIGNMENT - offset % ALIGNMENT) % ALIGNMENT
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a metadata key (keys must be unique).
    pub fn kv(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.kv.push((key.into(), value));
        self
    }

    /// Add a tensor; its data is written in the order tensors were added.
    pub fn tensor(&mut self, t: Tensor<'a>) -> &mut Self {
        self.tensors.push(t);
        self
    }

    /// Number of tensors added so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    fn validate(&self) -> Result<(), GgufWriteError> {
        let mut keys: Vec<&str> = self.kv.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(GgufWriteError::Invalid(format!("duplicate key {:?}", w[0])));
        }
        let mut names: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(GgufWriteError::Invalid(format!(
                "duplicate tensor {:?}",
                w[0]
            )));
        }
        for t in &self.tensors {
            if t.name.len() >= 64 {
                return Err(GgufWriteError::Invalid(format!(
                    "tensor name {:?} is longer than 63 bytes",
                    t.name
                )));
            }
            if t.dims.is_empty() || t.dims.len() > 4 || t.dims.contains(&0) {
                return Err(GgufWriteError::Invalid(format!(
                    "tensor {:?} has dimensions {:?}",
                    t.name, t.dims
                )));
            }
            let size = element_size(t.ggml_type).ok_or_else(|| {
                GgufWriteError::Invalid(format!(
                    "tensor {:?}: unsupported ggml type {}",
                    t.name, t.ggml_type
                ))
            })?;
            let want = t.dims.iter().product::<u64>() * size;
            if want != t.data.len() as u64 {
                return Err(GgufWriteError::Invalid(format!(
                    "tensor {:?}: {} bytes of data for dimensions {:?} (expected {want})",
                    t.name,
                    t.data.len(),
                    t.dims
                )));
            }
        }
        Ok(())
    }

    /// Write the whole file to `w`. Returns the number of bytes written.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<u64, GgufWriteError> {
        self.validate()?;
        let mut out = Counter { w, n: 0 };
        out.write_all(b"GGUF")?;
        out.write_all(&3u32.to_le_bytes())?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        out.write_all(&(self.kv.len() as u64).to_le_bytes())?;
        for (k, v) in &self.kv {
            write_str(&mut out, k)?;
            out.write_all(&v.type_id().to_le_bytes())?;
            write_value(&mut out, v)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_str(&mut out, &t.name)?;
            out.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                out.write_all(&d.to_le_bytes())?;
            }
            out.write_all(&t.ggml_type.to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
            offset += t.data.len() as u64;
            offset += padding(offset);
        }
        let pad = padding(out.n);
        out.write_all(&vec![0u8; pad as usize])?;
        for t in &self.tensors {
            out.write_all(t.data)?;
            let pad = padding(t.data.len() as u64);
            out.write_all(&vec![0u8; pad as usize])?;
        }
        Ok(out.n)
    }
}

struct Counter<'w, W: Write + ?Sized> {
    w: &'w mut W,
    n: u64,
}

impl<W: Write + ?Sized> Write for Counter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.w.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::Str(s) => write_str(w, s),
        Value::StrArray(items) => {
            w.write_all(&8u32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        Value::I32Array(items) => {
            w.write_all(&5u32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufInfo, MetaValue};

    #[test]
    fn round_trips_through_the_reader() {
        let a: Vec<u8> = (0..6u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let b: Vec<u8> = [1.5f32].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut g = GgufWriter::new();
        g.kv("general.architecture", Value::Str("bert".into()))
            .kv("bert.block_count", Value::U32(2))
            .kv("bert.attention.layer_norm_epsilon", Value::F32(1e-12))
            .kv("bert.attention.causal", Value::Bool(false))
            .kv("t.tokens", Value::StrArray(vec!["a".into(), "bc".into()]))
            .kv("t.types", Value::I32Array(vec![1, 3]))
            .tensor(Tensor {
                name: "m".into(),
                dims: vec![3, 2],
                ggml_type: GGML_TYPE_F32,
                data: &a,
            })
            .tensor(Tensor {
                name: "v".into(),
                dims: vec![1],
                ggml_type: GGML_TYPE_F32,
                data: &b,
            });
        let mut buf = Vec::new();
        let n = g.write_to(&mut buf).unwrap();
        assert_eq!(n, buf.len() as u64);
        assert_eq!(buf.len() as u64 % ALIGNMENT, 0);
        let info = GgufInfo::from_reader(&buf[..]).unwrap();
        assert_eq!(info.architecture(), Some("bert"));
        assert_eq!(info.metadata["bert.block_count"], MetaValue::Int(2));
        assert_eq!(
            info.metadata["bert.attention.causal"],
            MetaValue::Bool(false)
        );
        assert_eq!(info.metadata["t.tokens"], MetaValue::Array { len: 2 });
        assert_eq!(info.parameters, 7);
        assert_eq!(info.tensors.len(), 2);
        assert_eq!(info.tensors[0].dims, vec![3, 2]);
        let data = |i: usize| {
            let t = &info.tensors[i];
            let start = (info.data_offset + t.offset) as usize;
            &buf[start..start + t.byte_len().unwrap() as usize]
        };
        assert_eq!(data(0), &a[..]);
        assert_eq!(data(1), &b[..]);
        assert_eq!(info.data_offset % ALIGNMENT, 0);
        assert_eq!(info.tensors[1].offset % ALIGNMENT, 0);
    }

    #[test]
    fn rejects_what_llama_cpp_would() {
        let d = [0u8; 8];
        let bad = |t: Tensor| {
            let mut g = GgufWriter::new();
            g.tensor(t);
            g.write_to(&mut Vec::new()).unwrap_err()
        };
        let t = |name: &str, dims: Vec<u64>| Tensor {
            name: name.into(),
            dims,
            ggml_type: GGML_TYPE_F32,
            data: &d,
        };
        assert!(bad(t("x", vec![3])).to_string().contains("bytes of data"));
        assert!(bad(t(&"n".repeat(64), vec![2])).to_string().contains("63"));
        assert!(bad(t("x", vec![2, 0])).to_string().contains("dimensions"));
        let mut g = GgufWriter::new();
        g.kv("k", Value::U32(1)).kv("k", Value::U32(2));
        assert!(g.write_to(&mut Vec::new()).is_err());
    }
}
