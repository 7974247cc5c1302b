//! Subcommands.

pub mod bench;
pub mod classify;
pub mod eval;
pub mod generate_tasks;
pub mod router;
pub mod run;
pub mod serve;
pub mod store;
pub mod tune;
pub mod tune_lora;
pub mod usage;

use std::path::Path;

use anyhow::Result;
use bantam_engine::{Engine, EngineConfig, EngineOverrides, ModelResolver};
use bantam_local::StoreResolver;
use bantam_store::{catalog, PullOptions, Store};

use crate::progress::Bars;

/// The store, with `model` pulled first if it is a catalog name that is not
/// installed.
fn store_with(home: &Path, model: &str) -> Result<Store> {
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
    Ok(store)
}

/// A local model as a backend for a one-shot command (`bantam eval`): one slot,
/// `threads`, loaded now so that its first answer does not pay for loading.
pub fn local_backend(
    home: &Path,
    model: &str,
    threads: Option<u32>,
    rt: &tokio::runtime::Runtime,
) -> Result<bantam_local::LocalBackend> {
    let store = store_with(home, model)?;
    let overrides = EngineOverrides {
        parallel: Some(1),
        threads,
        ..EngineOverrides::default()
    };
    let resolver = StoreResolver::new(store.clone(), EngineConfig::default(), overrides);
    let pool = std::sync::Arc::new(bantam_engine::ModelPool::new(
        std::sync::Arc::new(resolver),
        bantam_engine::PoolConfig {
            max_loaded: 1,
            keep_alive_secs: 0,
        },
    ));
    // A classifier model has no engine to load (its head answers).
    let classifier = store
        .get(model)
        .is_ok_and(|m| bantam_local::is_classifier_model(&m));
    if !classifier {
        rt.block_on(pool.preload(model))?;
    }
    let local = bantam_local::Local::new(pool, store, 2, threads.unwrap_or(1));
    Ok(local.backend(model, model))
}

/// Load a model for a one-shot command: installed name, catalog name (pulled first)
/// or .gguf path, with the stored per-model options and these overrides.
pub fn load_engine(
    home: &Path,
    model: &str,
    parallel: u32,
    ctx_size: Option<u32>,
    threads: Option<u32>,
) -> Result<Engine> {
    let store = store_with(home, model)?;
    // The command's own choices win over the model's stored options.
    let overrides = EngineOverrides {
        parallel: Some(parallel),
        ctx_size,
        threads,
        ..EngineOverrides::default()
    };
    let resolver = StoreResolver::new(store, EngineConfig::default(), overrides);
    let resolved = resolver.resolve(model).map_err(anyhow::Error::from)?;
    Ok(Engine::load_resolved(&resolved, None, None)?)
}

/// A validation error about a request parameter, as the flag to fix (`--top-p`).
pub fn flag_error(e: bantam_api::Invalid) -> anyhow::Error {
    match e.param {
        Some(p) => anyhow::anyhow!("--{}: {}", p.replace('_', "-"), e.message),
        None => anyhow::anyhow!("{}", e.message),
    }
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
