//! Subcommands.

pub mod bench;
pub mod classify;
pub mod eval;
pub mod generate_tasks;
pub mod router;
pub mod run;
pub mod serve;
pub mod store;
pub mod usage;

use std::path::Path;

use anyhow::Result;
use bantam_engine::{Engine, EngineConfig, ModelResolver};
use bantam_server::StoreResolver;
use bantam_store::{catalog, PullOptions, Store};

use crate::progress::Bars;

/// Load a model for a one-shot command: installed name, catalog name (pulled first)
/// or .gguf path, with the stored per-model options and these overrides.
pub fn load_engine(
    home: &Path,
    model: &str,
    parallel: u32,
    ctx_size: Option<u32>,
    threads: Option<u32>,
) -> Result<Engine> {
    let store = Store::open(home)?;
    if !model.ends_with(".gguf") && store.get(model).is_err() {
        if let Some(entry) = catalog::find(model) {
            eprintln!(
                "{} is not installed; pulling it from the catalog",
                entry.name
            );
            store.pull(entry.name, &PullOptions::default(), &Bars::default())?;
        }
    }
    let defaults = EngineConfig {
        parallel,
        ..EngineConfig::default()
    };
    let resolver = StoreResolver::new(store, defaults);
    let mut resolved = resolver.resolve(model).map_err(anyhow::Error::from)?;
    resolved.config.parallel = parallel;
    if let Some(c) = ctx_size {
        resolved.config.ctx_size = c;
    }
    if let Some(t) = threads {
        resolved.config.threads = t;
    }
    Ok(Engine::load(
        &resolved.name,
        &resolved.path,
        &resolved.config,
        resolved.template.as_deref(),
    )?)
}

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
