//! `bantam export` / `bantam import` archives: one model in one tar file, for moving
//! models onto air-gapped machines.
//!
//! Layout: `bantam-manifest.json` first, then `blob/sha256-<hex>`. Import streams the
//! blob into a staging file, checks its sha256 against the manifest, and only then
//! installs it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::IoContext;
use crate::{Manifest, Progress, Store, StoreError};

const MANIFEST_ENTRY: &str = "bantam-manifest.json";

/// Whether a file looks like a tar archive (ustar magic at offset 257).
pub fn is_archive(path: &Path) -> bool {
    let mut buf = [0u8; 262];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && &buf[257..262] == b"ustar"
}

struct ProgressReader<'a, R> {
    inner: R,
    done: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.progress.position(self.done);
        Ok(n)
    }
}

impl Store {
    /// Write model `name` to a tar archive at `out` (atomically).
    pub fn export(
        &self,
        name: &str,
        out: &Path,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let m = self.get(name)?;
        let blob = self.blob_path(&m);
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).ctx("creating a temporary file in", dir)?;
        {
            let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));
            let body = serde_json::to_vec_pretty(&m).map_err(|e| StoreError::Corrupt {
                what: "manifest".into(),
                reason: e.to_string(),
            })?;
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, MANIFEST_ENTRY, &body[..])
                .ctx("writing", out)?;
            let f = File::open(&blob).ctx("opening", &blob)?;
            let len = f.metadata().ctx("reading metadata of", &blob)?.len();
            progress.phase(&format!("exporting {}", m.name), Some(len));
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o444);
            h.set_cksum();
            let reader = ProgressReader {
                inner: BufReader::new(f),
                done: 0,
                progress,
            };
            tar.append_data(&mut h, format!("blob/sha256-{}", m.hex()), reader)
                .ctx("writing", out)?;
            let mut w = tar.into_inner().ctx("finishing", out)?;
            w.flush().ctx("writing", out)?;
            progress.done();
        }
        tmp.as_file().sync_all().ctx("syncing", out)?;
        tmp.persist(out).map_err(|e| StoreError::Io {
            action: "renaming into",
            path: out.to_path_buf(),
            source: e.error,
        })?;
        Ok(m)
    }

    /// Install the model in a `bantam export` archive, optionally under another name.
    pub fn import_archive(
        &self,
        path: &Path,
        name: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Manifest, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            what: format!("archive {}", path.display()),
            reason: reason.to_string(),
        };
        let f = File::open(path).ctx("opening", path)?;
        let mut ar = tar::Archive::new(BufReader::new(f));
        let mut manifest: Option<Manifest> = None;
        let staging = self.new_staging()?;
        let mut got_blob = false;
        for entry in ar.entries().ctx("reading", path)? {
            let mut entry = entry.ctx("reading", path)?;
            let entry_path = entry
                .path()
                .ctx("reading", path)?
                .to_string_lossy()
                .into_owned();
            if entry_path == MANIFEST_ENTRY {
                let mut body = Vec::new();
                entry.read_to_end(&mut body).ctx("reading", path)?;
                manifest =
                    Some(serde_json::from_slice(&body).map_err(|e| corrupt(&e.to_string()))?);
            } else if entry_path.starts_with("blob/sha256-") {
                let m = manifest
                    .as_ref()
                    .ok_or_else(|| corrupt("the blob comes before the manifest"))?;
                if entry_path != format!("blob/sha256-{}", m.hex()) {
                    return Err(corrupt("blob name does not match the manifest digest"));
                }
                progress.phase(&format!("importing {}", m.name), Some(entry.size()));
                let mut out =
                    BufWriter::new(File::create(staging.path()).ctx("creating", staging.path())?);
                let mut reader = ProgressReader {
                    inner: &mut entry,
                    done: 0,
                    progress,
                };
                std::io::copy(&mut reader, &mut out).ctx("writing", staging.path())?;
                out.flush().ctx("writing", staging.path())?;
                progress.done();
                got_blob = true;
            }
        }
        let manifest = manifest.ok_or_else(|| corrupt("no manifest"))?;
        if !got_blob {
            return Err(corrupt("no model file"));
        }
        self.install_from_archive(staging.path(), manifest, name, progress)
    }
}
