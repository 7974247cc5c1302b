//! Make llama.cpp's shared libraries loadable from the build tree.
//!
//! llama-cpp-sys-2 builds llama.cpp as shared libraries (ggml's CPU variants are
//! loadable modules, which needs shared ggml). Its own copy step links only the
//! unversioned `libX.so` symlinks into the target directory, while executables ask
//! for the versioned sonames (`libllama.so.0`). Here the real files are copied, under
//! their sonames, next to the binaries (`target/<profile>`) and the test binaries
//! (`target/<profile>/deps`). The `$ORIGIN` rpath set in `.cargo/config.toml` finds
//! them there; `scripts/install.sh` copies the same files into an installation.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(backends) = std::env::var_os("DEP_LLAMA_BACKENDS_DIR").map(PathBuf::from) else {
        return;
    };
    let out_root = backends
        .parent()
        .expect("backends dir has a parent")
        .to_path_buf();
    // OUT_DIR = target/<profile>/build/<pkg>-<hash>/out
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("target/<profile>")
        .to_path_buf();
    for libdir in ["lib", "lib64"] {
        let dir = out_root.join(libdir);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Sonames look like libllama.so.0 (one version component). The unversioned
            // libllama.so is replaced too: llama-cpp-sys-2 leaves it as a dangling
            // symlink, which makes its own build script fail the next time it runs.
            let is_soname = name.starts_with("lib")
                && name.split(".so.").nth(1).is_some_and(|v| !v.contains('.'));
            let is_dev_link = name.starts_with("lib") && name.ends_with(".so");
            if is_soname || is_dev_link {
                for dst_dir in [
                    profile_dir.clone(),
                    profile_dir.join("deps"),
                    profile_dir.join("examples"),
                ] {
                    copy_if_changed(&e.path(), &dst_dir.join(&name));
                }
            }
        }
    }
    // Tell the binary crate where the libraries and CPU variants live (install script).
    println!("cargo:libdir={}", out_root.join("lib").display());
    println!("cargo:backends_dir={}", backends.display());
}

fn copy_if_changed(src: &Path, dst: &Path) {
    let src_meta = std::fs::metadata(src).ok();
    let dst_meta = std::fs::symlink_metadata(dst).ok();
    // `metadata` follows symlinks: a dangling link counts as missing.
    let same = match (&src_meta, &dst_meta) {
        (Some(s), Some(d)) => {
            d.is_file() && s.len() == d.len() && s.modified().ok() <= d.modified().ok()
        }
        _ => false,
    };
    if !same {
        if let Some(p) = dst.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = std::fs::remove_file(dst);
        if let Err(e) = std::fs::copy(src, dst) {
            println!(
                "cargo:warning=could not copy {} to {}: {e}",
                src.display(),
                dst.display()
            );
        }
    }
}
