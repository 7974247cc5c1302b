//! Subcommands.

pub mod bench;
pub mod run;
pub mod serve;
pub mod store;

use std::path::Path;

use anyhow::Result;

/// `bantam info`.
pub fn info(home: &Path) -> Result<()> {
    let rt = bantam_engine::runtime_info();
    println!("bantam {}", env!("CARGO_PKG_VERSION"));
    println!("store            {}", home.display());
    println!(
        "physical cores   {}",
        bantam_engine::config::physical_cores()
    );
    println!(
        "cpu kernels      {}",
        rt.cpu_variant
            .as_deref()
            .unwrap_or("built in (no loadable CPU variants found)")
    );
    println!(
        "backends dir     {}",
        rt.backends_dir
            .as_ref()
            .map_or("-".to_string(), |d| d.display().to_string())
    );
    println!("devices          {}", rt.devices.join(", "));
    println!("llama.cpp        {}", rt.system_info.trim());
    Ok(())
}
