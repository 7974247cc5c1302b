//! [`LoraAdapter`]: a GGUF LoRA adapter loaded over a model, applied to the
//! contexts created with it ([`crate::ContextParams::adapter`]).

use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::model::{LoadError, Model};

/// A loaded LoRA adapter. It keeps its model alive; contexts keep it alive.
#[derive(Debug)]
pub struct LoraAdapter {
    ptr: NonNull<llama_cpp_sys_2::llama_adapter_lora>,
    model: Arc<Model>,
    /// The scale applied with it (1.0: the adapter as trained).
    pub scale: f32,
}

// SAFETY: after loading, an adapter's tensors are only read (contexts add them to
// their compute graphs); llama-server shares one adapter between all its slots.
unsafe impl Send for LoraAdapter {}
// SAFETY: see `Send` above.
unsafe impl Sync for LoraAdapter {}

impl Drop for LoraAdapter {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from llama_adapter_lora_init on `self.model`, which is
        // still alive (we hold an Arc to it), and is freed exactly once. Contexts
        // that use the adapter hold an Arc to it, so none outlives it.
        unsafe { llama_cpp_sys_2::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}

impl LoraAdapter {
    /// Loads the adapter at `path` for `model`. llama.cpp checks that it names
    /// the model's architecture and that every tensor's shape fits.
    pub fn load(model: &Arc<Model>, path: &Path) -> Result<Self, LoadError> {
        let c_path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| LoadError::BadPath(path.to_path_buf()))?;
        // SAFETY: the model pointer is valid (held by the Arc) and `c_path` is a
        // valid C string; llama.cpp returns null (after logging) on any failure.
        let raw =
            unsafe { llama_cpp_sys_2::llama_adapter_lora_init(model.as_ptr(), c_path.as_ptr()) };
        let ptr = NonNull::new(raw).ok_or_else(|| LoadError::Rejected(path.to_path_buf()))?;
        Ok(Self {
            ptr,
            model: model.clone(),
            scale: 1.0,
        })
    }

    /// The model this adapter belongs to.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub(crate) fn as_ptr(&self) -> *mut llama_cpp_sys_2::llama_adapter_lora {
        self.ptr.as_ptr()
    }
}
