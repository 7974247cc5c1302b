//! Process-wide llama.cpp initialisation and run-time CPU kernel selection.
//!
//! ggml is built with every x86-64 CPU variant as a loadable module
//! (`libggml-cpu-<variant>.so`). [`runtime`] loads them from the first directory that
//! holds them; ggml scores each variant against the CPU's real feature bits (CPUID)
//! and keeps the best one, so a binary built on one machine never executes an
//! instruction another machine lacks.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Proof that llama.cpp's global state is initialised; obtained from [`runtime`].
#[derive(Debug)]
pub struct Runtime {
    info: RuntimeInfo,
}

/// What the runtime found on this machine.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// Directory the ggml backend modules were loaded from, if any were found.
    pub backends_dir: Option<PathBuf>,
    /// The CPU backend module ggml chose (e.g. `libggml-cpu-zen4.so`).
    pub cpu_variant: Option<String>,
    /// llama.cpp's own feature summary (`llama_print_system_info`).
    pub system_info: String,
    /// Names and descriptions of the devices ggml can use.
    pub devices: Vec<String>,
}

impl Runtime {
    /// Information about the loaded backends.
    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOADED_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Initialise llama.cpp once for the process and return the proof token.
///
/// Backend modules are searched in `$BANTAM_BACKENDS_DIR`, next to the executable,
/// in `<exe>/../lib/bantam`, and finally in the directory they were built into.
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        // SAFETY: installing a log callback is allowed at any time; the callback is a
        // plain function with no captured state and never unwinds.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
        let backends_dir = find_backends_dir();
        if let Some(dir) = &backends_dir {
            if let Some(s) = dir.to_str().and_then(|s| CString::new(s).ok()) {
                // SAFETY: `s` is a valid NUL-terminated path that outlives the call.
                unsafe { llama_cpp_sys_2::ggml_backend_load_all_from_path(s.as_ptr()) };
            }
        } else {
            // SAFETY: no arguments; ggml searches its default locations.
            unsafe { llama_cpp_sys_2::ggml_backend_load_all() };
        }
        // SAFETY: global initialisation, guarded by the OnceLock so it runs once.
        unsafe { llama_cpp_sys_2::llama_backend_init() };
        let cpu_variant = LOADED_LINES
            .lock()
            .ok()
            .and_then(|lines| {
                lines
                    .iter()
                    .find(|l| l.contains("loaded CPU backend from"))
                    .cloned()
            })
            .and_then(|l| l.trim().rsplit('/').next().map(|s| s.trim().to_string()));
        // SAFETY: returns a pointer to a static buffer owned by llama.cpp.
        let system_info = unsafe { cstr_to_string(llama_cpp_sys_2::llama_print_system_info()) };
        let devices = list_devices();
        Runtime {
            info: RuntimeInfo {
                backends_dir,
                cpu_variant,
                system_info,
                devices,
            },
        }
    })
}

fn find_backends_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("BANTAM_BACKENDS_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.to_path_buf());
            candidates.push(dir.join("../lib/bantam"));
        }
    }
    if let Some(dir) = llama_cpp_sys_2::BACKENDS_DIR {
        candidates.push(PathBuf::from(dir));
    }
    candidates.into_iter().find(|d| has_cpu_module(d))
}

fn has_cpu_module(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libggml-cpu") && name.ends_with(".so")
            })
        })
        .unwrap_or(false)
}

fn list_devices() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: ggml's device registry is initialised by the loads above; each index
    // below the count names a valid device whose strings are static.
    unsafe {
        let n = llama_cpp_sys_2::ggml_backend_dev_count();
        for i in 0..n {
            let dev = llama_cpp_sys_2::ggml_backend_dev_get(i);
            if dev.is_null() {
                continue;
            }
            let name = cstr_to_string(llama_cpp_sys_2::ggml_backend_dev_name(dev));
            let desc = cstr_to_string(llama_cpp_sys_2::ggml_backend_dev_description(dev));
            out.push(format!("{name} ({desc})"));
        }
    }
    out
}

/// # Safety
/// `p` must be null or point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn cstr_to_string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

unsafe extern "C" fn log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated message valid for this call.
    let msg = CStr::from_ptr(text).to_string_lossy();
    if msg.contains("loaded CPU backend from") {
        if let Ok(mut lines) = LOADED_LINES.lock() {
            lines.push(msg.to_string());
        }
    }
    let msg = msg.trim_end();
    if msg.is_empty() {
        return;
    }
    match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", "{msg}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => tracing::info!(target: "llama.cpp", "{msg}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => tracing::debug!(target: "llama.cpp", "{msg}"),
        _ => tracing::trace!(target: "llama.cpp", "{msg}"),
    }
}
