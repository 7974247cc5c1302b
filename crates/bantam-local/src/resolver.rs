//! Model names → files, chat templates and engine settings, through the store.

use std::path::Path;

use bantam_engine::{EngineConfig, EngineError, ModelResolver, ResolvedModel};
use bantam_store::{Manifest, Store};

pub use bantam_engine::config::EngineOverrides;

/// Resolves names through the model store; a path to a `.gguf` file also works.
///
/// A model's engine settings, lowest precedence first: the defaults, the options
/// stored in its manifest (`bantam config`, the flash-attention choice `bantam pull`
/// measured), then the operator's overrides (TOML file, `BANTAM_*`, flags).
#[derive(Debug, Clone)]
pub struct StoreResolver {
    store: Store,
    defaults: EngineConfig,
    overrides: EngineOverrides,
    /// Which `.gguf` paths name files: all (the CLI's convenience) or only those the
    /// operator named (a server's `--preload` and declared backends; an HTTP client
    /// must not make the server load arbitrary files).
    paths: Option<std::collections::HashSet<String>>,
}

impl StoreResolver {
    /// A resolver over `store` with these defaults and overrides.
    pub fn new(store: Store, defaults: EngineConfig, overrides: EngineOverrides) -> Self {
        Self {
            store,
            defaults,
            overrides,
            paths: None,
        }
    }

    /// Only models of the store, and files only where `allowed` (paths the operator
    /// named) lists them: any other name that looks like a path is not found.
    pub fn store_only(mut self, allowed: impl IntoIterator<Item = String>) -> Self {
        self.paths = Some(allowed.into_iter().collect());
        self
    }

    /// Engine settings for a manifest: defaults, its stored options, the overrides.
    pub fn engine_config(&self, m: &Manifest) -> Result<EngineConfig, EngineError> {
        let mut v = serde_json::to_value(&self.defaults).map_err(|e| EngineError::Load {
            model: m.name.clone(),
            reason: e.to_string(),
        })?;
        if let Some(obj) = v.as_object_mut() {
            for (k, val) in &m.options {
                obj.insert(k.clone(), val.clone());
            }
        }
        let mut cfg: EngineConfig = serde_json::from_value(v).map_err(|e| EngineError::Load {
            model: m.name.clone(),
            reason: format!(
                "invalid stored option: {e}; fix it with `bantam config {} --unset KEY`",
                m.name
            ),
        })?;
        self.overrides.apply(&mut cfg);
        cfg.check().map_err(|reason| EngineError::Load {
            model: m.name.clone(),
            reason: format!(
                "{reason}; fix the stored option with `bantam config {} --set` or the server's setting",
                m.name
            ),
        })?;
        Ok(cfg)
    }
}

impl StoreResolver {
    /// An adapter is served by its base model's file, template and settings,
    /// with the adapter on top. The base must be the one it was trained on.
    fn resolve_adapter(&self, m: &Manifest) -> Result<ResolvedModel, EngineError> {
        let load_err = |reason: String| EngineError::Load {
            model: m.name.clone(),
            reason,
        };
        let base_name = m
            .lineage
            .base_model
            .as_deref()
            .ok_or_else(|| load_err("the adapter's manifest names no base model".into()))?;
        let base = self.store.get(base_name).map_err(|e| {
            load_err(format!(
                "its base model {base_name} is not in the store ({e}); `bantam pull {base_name}` or import it"
            ))
        })?;
        if let Some(want) = &m.lineage.parent_digest {
            if *want != base.digest {
                return Err(load_err(format!(
                    "it was trained on {base_name} {}, but the store's {base_name} is now {}; \
                     restore that version or train the adapter again",
                    &want[..want.len().min(19)],
                    &base.digest[..base.digest.len().min(19)]
                )));
            }
        }
        Ok(ResolvedModel {
            name: m.name.clone(),
            path: self.store.blob_path(&base),
            template: base.template.clone(),
            config: self.engine_config(&base)?,
            adapter: Some(self.store.blob_path(m)),
        })
    }
}

impl ModelResolver for StoreResolver {
    fn resolve(&self, name: &str) -> Result<ResolvedModel, EngineError> {
        let p = Path::new(name);
        let allowed = self.paths.as_ref().is_none_or(|ok| ok.contains(name));
        if allowed && name.ends_with(".gguf") && p.is_file() {
            let mut config = self.defaults.clone();
            self.overrides.apply(&mut config);
            return Ok(ResolvedModel {
                name: name.to_string(),
                path: p.to_path_buf(),
                template: None,
                config,
                adapter: None,
            });
        }
        let m = self.store.get(name).map_err(|e| match e {
            bantam_store::StoreError::NotFound(_) | bantam_store::StoreError::BadName(_) => {
                EngineError::ModelNotFound(name.to_string())
            }
            other => EngineError::Load {
                model: name.to_string(),
                reason: other.to_string(),
            },
        })?;
        if m.is_adapter() {
            return self.resolve_adapter(&m);
        }
        Ok(ResolvedModel {
            name: m.name.clone(),
            path: self.store.blob_path(&m),
            template: m.template.clone(),
            config: self.engine_config(&m)?,
            adapter: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bantam_engine::config::FlashAttnSetting;

    #[test]
    fn operator_settings_beat_stored_options_which_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema": 1, "name": "m:1", "digest": "sha256:00", "size": 0, "format": "gguf",
            "architecture": null, "parameters": 0, "quantization": null,
            "context_length": null, "license": null, "source": "test",
            "created": "2026-01-01T00:00:00Z"}))
        .unwrap();
        m.options
            .insert("flash_attention".into(), serde_json::json!("on"));
        m.options.insert("parallel".into(), serde_json::json!(2));
        let none = StoreResolver::new(
            store.clone(),
            EngineConfig::default(),
            EngineOverrides::default(),
        );
        let c = none.engine_config(&m).unwrap();
        assert_eq!(
            (c.flash_attention, c.parallel),
            (FlashAttnSetting::On, 2),
            "stored options beat defaults"
        );
        assert_eq!(c.ctx_size, EngineConfig::default().ctx_size);
        let flag = EngineOverrides {
            flash_attention: Some(FlashAttnSetting::Off),
            ..Default::default()
        };
        let c = StoreResolver::new(store, EngineConfig::default(), flag)
            .engine_config(&m)
            .unwrap();
        assert_eq!(
            c.flash_attention,
            FlashAttnSetting::Off,
            "the operator's setting wins"
        );
        assert_eq!(c.parallel, 2, "unset overrides leave the stored option");
    }

    #[test]
    fn a_server_resolves_store_models_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let file = dir.path().join("any.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let name = file.to_str().unwrap();
        let cli = StoreResolver::new(
            store.clone(),
            EngineConfig::default(),
            EngineOverrides::default(),
        );
        assert_eq!(cli.resolve(name).unwrap().path, file);
        let server = cli.clone().store_only([]);
        assert!(matches!(
            server.resolve(name),
            Err(EngineError::ModelNotFound(_))
        ));
        // A file the operator named (a declared backend, --preload) still resolves.
        let declared = cli.store_only([name.to_string()]);
        assert_eq!(declared.resolve(name).unwrap().path, file);
    }
}
