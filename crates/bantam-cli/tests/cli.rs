//! The `bantam` command end to end: import, list, show, export/import, run, rm.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::MODEL;

fn model_blob() -> std::path::PathBuf {
    let out = common::bantam()
        .args(["show", MODEL, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = m["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    common::model_home()
        .join("blobs")
        .join(format!("sha256-{digest}"))
}

fn bantam_in(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bantam"));
    c.env("BANTAM_HOME", home);
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn store_commands_and_run() {
    let home = tempfile::tempdir().unwrap();
    let blob = model_blob();
    let gguf = home.path().join("smol.gguf");
    std::fs::copy(&blob, &gguf).unwrap();

    let out = ok(bantam_in(home.path()).args([
        "import",
        gguf.to_str().unwrap(),
        "--name",
        "smol:test",
        "--no-tune",
    ]));
    assert!(out.contains("imported smol:test"), "{out}");
    let list = ok(bantam_in(home.path()).arg("list"));
    assert!(
        list.contains("smol:test") && list.contains("Q4_1") && list.contains("llama"),
        "{list}"
    );
    let show = ok(bantam_in(home.path()).args(["show", "smol:test"]));
    assert!(
        show.contains("context length  8192") && show.contains("from the GGUF"),
        "{show}"
    );
    let tmpl = ok(bantam_in(home.path()).args(["show", "smol:test", "--template"]));
    assert!(tmpl.contains("<|im_start|>"), "{tmpl}");

    // Per-model options are validated before they are stored.
    let bad = bantam_in(home.path())
        .args(["config", "smol:test", "--set", "flash_attention=sideways"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("flash_attention")
            || String::from_utf8_lossy(&bad.stderr).contains("variant")
    );
    let cfg =
        ok(bantam_in(home.path()).args(["config", "smol:test", "--set", "flash_attention=off"]));
    assert!(cfg.contains("\"off\""), "{cfg}");

    // One answer, greedy: twice the same.
    let run = |prompt: &str| {
        ok(bantam_in(home.path()).args([
            "run",
            "smol:test",
            prompt,
            "--temperature",
            "0",
            "--max-tokens",
            "12",
        ]))
    };
    let a = run("Name a fruit.");
    assert!(!a.trim().is_empty());
    assert_eq!(a, run("Name a fruit."));

    // Interactive chat over stdin keeps the conversation until /bye.
    let mut child = bantam_in(home.path())
        .args([
            "run",
            "smol:test",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello!\nWhat did I just say?\n/bye\nnever read\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let replies = String::from_utf8(out.stdout).unwrap();
    assert!(
        replies.lines().filter(|l| !l.trim().is_empty()).count() >= 2,
        "{replies}"
    );

    // Export, remove, import the archive: same digest, still runs.
    let archive = home.path().join("smol.tar");
    ok(bantam_in(home.path()).args(["export", "smol:test", "-o", archive.to_str().unwrap()]));
    ok(bantam_in(home.path()).args(["rm", "smol:test"]));
    assert!(ok(bantam_in(home.path()).arg("list")).contains("no models installed"));
    let other = tempfile::tempdir().unwrap();
    let out = ok(bantam_in(other.path()).args(["import", archive.to_str().unwrap(), "--no-tune"]));
    assert!(out.contains("imported smol:test"), "{out}");
    assert_eq!(
        ok(bantam_in(other.path()).args([
            "run",
            "smol:test",
            "Name a fruit.",
            "--temperature",
            "0",
            "--max-tokens",
            "12"
        ])),
        a,
        "flash attention was stored as off and travels with the archive"
    );

    // Unknown models and bad names are clear errors.
    let out = bantam_in(other.path())
        .args(["show", "nope:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bantam pull"));
}
