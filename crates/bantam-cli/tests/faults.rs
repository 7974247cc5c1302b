//! Faults in the middle of making a model (issue 13): a full disk under
//! `bantam quantize` and `bantam tune lora`, and `kill -9` in the middle of a
//! quantization. Each leaves a clear error and the store as it was: no model
//! half there, no staging file kept, and the next run works.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A store in `dir` holding copies of `models` from the test store.
fn store_with(dir: &Path, models: &[&str]) {
    let src = bantam_store::Store::open(common::model_home()).unwrap();
    let dst = bantam_store::Store::open(dir).unwrap();
    for name in models {
        let m = src.get(name).unwrap();
        let blob = dst.blob_path(&m);
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::copy(src.blob_path(&m), &blob).unwrap();
        dst.write_manifest(&m).unwrap();
    }
}

fn bantam_in(home: &Path) -> Command {
    let mut c = common::bantam();
    c.env("BANTAM_HOME", home);
    c
}

fn run_in(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = bantam_in(home).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `bantam quantize all-minilm:l6-v2 --to TO --out OUT` in `home`.
fn quantize_encoder(home: &Path, to: &str, out: &str) -> (bool, String, String) {
    run_in(
        home,
        &["quantize", "all-minilm:l6-v2", "--to", to, "--out", out],
    )
}

fn names(home: &Path) -> Vec<String> {
    let mut n: Vec<String> = bantam_store::Store::open(home)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    n.sort();
    n
}

/// Files in `home/tmp` (staging files, partial downloads).
fn leftovers(home: &Path) -> Vec<String> {
    std::fs::read_dir(home.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, megabytes: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Leave about `keep` bytes free on the disk holding `dir`.
fn fill(dir: &Path, keep: u64) -> PathBuf {
    let free = bantam_store::Store::open(dir)
        .unwrap()
        .free_bytes()
        .unwrap();
    let filler = dir.join("filler");
    let f = std::fs::File::create(&filler).unwrap();
    // tmpfs allocates on write, so write the bytes rather than set a length.
    let mut w = std::io::BufWriter::new(f);
    let chunk = vec![0u8; 1 << 20];
    let mut left = free.saturating_sub(keep);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut w).unwrap();
    filler
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), 256) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs (needs root)");
        return;
    };
    let home = dir.path().join("home");
    store_with(&home, &[common::MODEL, "all-minilm:l6-v2"]);
    let before = names(&home);
    let filler = fill(dir.path(), 2 << 20);

    // Quantizing the encoder needs ~25 MB.
    let (ok, _, err) = quantize_encoder(&home, "q8_0", "enc:q8");
    assert!(!ok, "quantize succeeded on a full disk");
    assert!(err.contains("is full"), "{err}");
    assert_eq!(names(&home), before);
    assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));

    // A LoRA run: its checkpoint or its adapter does not fit.
    let pirate = common::fixture("lora_pirate.jsonl");
    let tune = [
        "tune",
        "lora",
        pirate.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        "pirate:full",
        "--epochs",
        "1",
        "--batch-tokens",
        "256",
    ];
    let (ok, _, err) = run_in(&home, &tune);
    assert!(!ok, "tune lora succeeded on a full disk");
    assert!(
        err.contains("No space left on device") || err.contains("is full"),
        "{err}"
    );
    assert_eq!(names(&home), before);
    assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));

    // With room again, the same commands work.
    std::fs::remove_file(filler).unwrap();
    let (ok, out, err) = quantize_encoder(&home, "q8_0", "enc:q8");
    assert!(ok, "{out}\n{err}");
    assert!(names(&home).contains(&"enc:q8".to_string()));
}

#[test]
fn a_quantization_killed_midway_leaves_no_model_and_the_next_one_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    store_with(&home, &["all-minilm:l6-v2"]);
    let before = names(&home);
    let mut child = bantam_in(&home)
        .args([
            "quantize",
            "all-minilm:l6-v2",
            "--to",
            "f16",
            "--out",
            "enc:f16",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once llama.cpp has started writing the staging file.
    let started = Instant::now();
    loop {
        let writing = std::fs::read_dir(home.join("tmp")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
        });
        if writing {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "quantize ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(names(&home), before, "a killed quantization left a model");
    assert!(!leftovers(&home).is_empty(), "nothing was being written");
    // The next run succeeds and removes what the killed one left.
    let (ok, out, err) = quantize_encoder(&home, "f16", "enc:f16");
    assert!(ok, "{out}\n{err}");
    assert!(names(&home).contains(&"enc:f16".to_string()));
    assert!(leftovers(&home).is_empty(), "{:?}", leftovers(&home));
}
