//! llama.cpp's quantizer (`llama_model_quantize`, what `llama-quantize` runs).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::runtime::Runtime;

/// Target types Bantam offers (llama.cpp's `llama_ftype`s by their usual names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    /// 32-bit floats (dequantizes a quantized model, with --allow-requantize).
    F32,
    /// 16-bit floats.
    F16,
    /// 8-bit.
    Q8_0,
    /// 6-bit k-quant.
    Q6K,
    /// 5-bit k-quant, medium.
    Q5KM,
    /// 5-bit k-quant, small.
    Q5KS,
    /// 4-bit k-quant, medium.
    Q4KM,
    /// 4-bit k-quant, small.
    Q4KS,
    /// 4-bit legacy.
    Q4_0,
    /// 3-bit k-quant, medium.
    Q3KM,
    /// 2-bit k-quant.
    Q2K,
}

impl QuantType {
    /// Every type, by name.
    pub const ALL: [(&'static str, QuantType); 11] = [
        ("f32", QuantType::F32),
        ("f16", QuantType::F16),
        ("q8_0", QuantType::Q8_0),
        ("q6_k", QuantType::Q6K),
        ("q5_k_m", QuantType::Q5KM),
        ("q5_k_s", QuantType::Q5KS),
        ("q4_k_m", QuantType::Q4KM),
        ("q4_k_s", QuantType::Q4KS),
        ("q4_0", QuantType::Q4_0),
        ("q3_k_m", QuantType::Q3KM),
        ("q2_k", QuantType::Q2K),
    ];

    /// Parse a name (`q4_k_m`, case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }

    /// The name (`q4_k_m`).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        use llama_cpp_sys_2 as s;
        match self {
            QuantType::F32 => s::LLAMA_FTYPE_ALL_F32,
            QuantType::F16 => s::LLAMA_FTYPE_MOSTLY_F16,
            QuantType::Q8_0 => s::LLAMA_FTYPE_MOSTLY_Q8_0,
            QuantType::Q6K => s::LLAMA_FTYPE_MOSTLY_Q6_K,
            QuantType::Q5KM => s::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            QuantType::Q5KS => s::LLAMA_FTYPE_MOSTLY_Q5_K_S,
            QuantType::Q4KM => s::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            QuantType::Q4KS => s::LLAMA_FTYPE_MOSTLY_Q4_K_S,
            QuantType::Q4_0 => s::LLAMA_FTYPE_MOSTLY_Q4_0,
            QuantType::Q3KM => s::LLAMA_FTYPE_MOSTLY_Q3_K_M,
            QuantType::Q2K => s::LLAMA_FTYPE_MOSTLY_Q2_K,
        }
    }
}

/// Why quantizing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// A path llama.cpp cannot take (not UTF-8, or with a NUL byte).
    #[error("path {0} cannot be passed to llama.cpp")]
    BadPath(PathBuf),
    /// llama.cpp reported a failure (its log says why).
    #[error("llama.cpp could not quantize {0} (see the log above)")]
    Failed(PathBuf),
}

/// Quantize the GGUF model at `src` into `dst` with `threads` threads (0 = all).
/// The caller checks beforehand that `src` loads as a model (llama.cpp asserts on
/// some malformed inputs instead of returning an error). `allow_requantize`
/// permits sources whose tensors are already quantized (quality compounds).
pub fn quantize(
    _rt: &Runtime,
    src: &Path,
    dst: &Path,
    to: QuantType,
    threads: u32,
    allow_requantize: bool,
) -> Result<(), QuantizeError> {
    let c = |p: &Path| {
        p.to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| QuantizeError::BadPath(p.to_path_buf()))
    };
    let (csrc, cdst) = (c(src)?, c(dst)?);
    // SAFETY: default params are plain data.
    let mut p = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    p.nthread = threads as i32;
    p.ftype = to.ftype();
    p.allow_requantize = allow_requantize;
    // SAFETY: both paths are valid C strings and `p` is a fully initialised struct
    // whose pointer fields are the defaults' (null).
    let rc = unsafe { llama_cpp_sys_2::llama_model_quantize(csrc.as_ptr(), cdst.as_ptr(), &p) };
    if rc == 0 {
        Ok(())
    } else {
        Err(QuantizeError::Failed(src.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, t) in QuantType::ALL {
            assert_eq!(QuantType::parse(n), Some(t));
            assert_eq!(t.name(), n);
        }
        assert_eq!(QuantType::parse("Q4_K_M"), Some(QuantType::Q4KM));
        assert_eq!(QuantType::parse("q4"), None);
    }
}
