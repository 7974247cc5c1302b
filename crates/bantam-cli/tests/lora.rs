//! LoRA training (issue 13, part 2), checked against PyTorch + PEFT, and the
//! `bantam tune lora` command end to end.
//!
//! The reference (`scripts/peft_reference.py`) runs in the venv that
//! `scripts/setup.sh` makes at `~/.cache/bantam/torch-ref` (torch, transformers,
//! peft and gguf from PyPI; `BANTAM_TORCH_PYTHON` names another interpreter).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bantam_lora::train::{batch_gradients, set_var, Example};
use bantam_lora::{BaseModel, Lora, Target};
use candle_core::{Device, Tensor};

fn torch_python() -> PathBuf {
    let p = std::env::var_os("BANTAM_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/bantam/torch-ref/bin/python")
        });
    assert!(
        p.exists(),
        "the PyTorch reference is not installed at {}: run `bash scripts/setup.sh` (or set BANTAM_TORCH_PYTHON)",
        p.display()
    );
    p
}

fn model_path(name: &str) -> PathBuf {
    let store = bantam_store::Store::open(common::model_home()).expect("store");
    let m = store.get(name).expect("model");
    store.blob_path(&m)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Loss and gradients of one batch agree with PyTorch + PEFT on the same
/// dequantized weights, adapter values and tokens: SmolLM2 (LLaMA layout,
/// interleaved RoPE over permuted Q/K, tied embeddings)…
#[test]
fn lora_gradients_match_peft_smollm2() {
    gradients_match_peft(common::MODEL);
}

/// … and Qwen2.5 0.5B (NeoX RoPE, Q/K/V biases, 14 heads over 2 KV heads).
#[test]
fn lora_gradients_match_peft_qwen2() {
    gradients_match_peft("qwen2.5-coder:0.5b");
}

fn gradients_match_peft(model: &str) {
    let gguf = model_path(model);
    let base = BaseModel::load(&gguf).expect("load base");
    let lora = Lora::init(&base, &Target::ALL, 4, 8.0, 7).expect("init");
    // B starts at zero in training, which makes every A gradient zero; give B
    // values so that both gradients are exercised.
    let mut rng = bantam_lora::lora::SplitMix::new(11);
    for (_, var) in lora
        .named_vars()
        .into_iter()
        .filter(|(n, _)| n.ends_with("lora_b"))
    {
        let n = var.as_tensor().elem_count();
        set_var(
            var,
            (0..n)
                .map(|_| ((rng.next_f64() - 0.5) * 0.02) as f32)
                .collect(),
        )
        .unwrap();
    }
    let vocab = base.config.n_vocab as u64;
    let examples: Vec<Example> = [(40usize, 15usize), (57, 20)]
        .iter()
        .map(|&(len, from)| Example {
            tokens: (0..len).map(|_| (rng.next_u64() % vocab) as u32).collect(),
            mask: (0..len).map(|i| i >= from).collect(),
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let (loss, n, grads) = batch_gradients(&base, &lora, &refs).expect("gradients");
    assert_eq!(n, 25 + 37);

    let dir = tempfile::tempdir().unwrap();
    let mut dump: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in lora.named_vars() {
        dump.insert(name, var.as_tensor().clone());
    }
    for (k, ex) in examples.iter().enumerate() {
        dump.insert(
            format!("tokens.{k}"),
            Tensor::new(ex.tokens.as_slice(), &Device::Cpu).unwrap(),
        );
        let m: Vec<u8> = ex.mask.iter().map(|&b| b as u8).collect();
        dump.insert(
            format!("mask.{k}"),
            Tensor::new(m.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    dump.insert("rank".into(), Tensor::new(&[4f32], &Device::Cpu).unwrap());
    dump.insert("alpha".into(), Tensor::new(&[8f32], &Device::Cpu).unwrap());
    let dump_path = dir.path().join("dump.safetensors");
    candle_core::safetensors::save(&dump, &dump_path).unwrap();
    let out_path = dir.path().join("ref.safetensors");
    let st = Command::new(torch_python())
        .arg(repo_root().join("scripts/peft_reference.py"))
        .args([&gguf, &dump_path, &out_path])
        .env("OMP_NUM_THREADS", "1")
        // The reference in float64: the exact answer, against which our float32
        // is judged (PyTorch's own float32 gradients of Qwen2's first attention
        // layers are ~1e-2 off float64 — its large Q/K biases make the softmax
        // ill-conditioned — while ours are within 2e-3).
        .env("BANTAM_REF_DTYPE", "float64")
        .status()
        .expect("run the reference");
    assert!(st.success(), "the PEFT reference failed");
    let reference = candle_core::safetensors::load(&out_path, &Device::Cpu).unwrap();

    let ref_loss = reference["loss"].to_vec1::<f64>().unwrap()[0];
    println!("loss: bantam {loss:.6}, PEFT {ref_loss:.6}");
    assert!(
        (loss - ref_loss).abs() < 1e-5 * ref_loss.abs().max(1.0),
        "loss {loss} vs {ref_loss}"
    );

    // Per tensor: relative error of the gradient, ‖g − g_ref‖ / ‖g_ref‖.
    let mut worst = (0.0f64, String::new());
    let mut errors: Vec<(f64, String)> = Vec::new();
    let mut compared = 0;
    for (name, _) in lora.named_vars() {
        let g = &grads[&name];
        let r = &reference[&name];
        assert_eq!(g.dims(), r.dims(), "{name}");
        let diff = (g - r)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let norm = r
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!(norm > 0.0, "{name}: the reference gradient is zero");
        let rel = (diff / norm).sqrt();
        errors.push((rel, name.clone()));
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
        compared += 1;
    }
    errors.sort_by(|x, y| y.0.total_cmp(&x.0));
    let median = errors[errors.len() / 2].0;
    println!(
        "{compared} gradients compared; relative error median {median:.2e}, largest: {}",
        errors
            .iter()
            .take(6)
            .map(|(e, n)| format!("{n} {e:.2e}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Tolerances for float32 against float64 over 24–30 layers.
    assert!(median < 1e-4, "median gradient error {median:.2e}");
    assert!(
        worst.0 < 5e-3,
        "gradient {} differs from PEFT by {:.2e}",
        worst.1,
        worst.0
    );
}

/// Starts `bantam ARGS` and reads its stderr up to a line starting with
/// `prefix`: the child, the rest of its stderr, and what was read.
fn spawn_until(
    args: &[&str],
    prefix: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    use std::io::BufRead;
    let mut child = common::bantam()
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 || line.starts_with(prefix) {
            seen.push_str(&line);
            break;
        }
        seen.push_str(&line);
    }
    (child, stderr, seen)
}

fn digest(name: &str) -> String {
    let (ok, out, err) = common::run(&["show", name, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["digest"].as_str().unwrap().to_string()
}

fn tune_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "tune",
        "lora",
        data,
        "--base",
        common::MODEL,
        "--out",
        out,
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--batch-tokens",
        "256",
        "--seed",
        "5",
    ]
}

/// `bantam tune lora` end to end: two adapters trained on chat and on
/// input/output data, the same seed giving the same adapter, Ctrl-C leaving a
/// checkpoint that `--resume` finishes into exactly the same adapter; then
/// served by name beside the base (each concurrent answer equal to its solo
/// answer) and merged into a standalone model that answers as the adapter does.
#[test]
fn adapters_train_resume_serve_and_merge() {
    let pid = std::process::id();
    let (a, b, merged) = (
        format!("test-lora-a-{pid}:v1"),
        format!("test-lora-b-{pid}:v1"),
        format!("test-lora-m-{pid}:v1"),
    );
    let _guards = [
        common::Installed(a.clone()),
        common::Installed(b.clone()),
        common::Installed(merged.clone()),
    ];
    let pirate = common::fixture("lora_pirate.jsonl");
    let answer42 = common::fixture("lora_answer42.jsonl");
    let (ok, out, err) = common::run(&tune_args(pirate.to_str().unwrap(), &a));
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("20 rows as chat"), "{err}");
    assert!(
        out.contains(&format!("installed {a} (adapter over {}", common::MODEL)),
        "{out}"
    );
    // The loss went down: the table's last validation loss is below the base's.
    let (ok, show, _) = common::run(&["show", &a]);
    assert!(
        ok && show.contains("LoRA adapter") && show.contains("rank 8"),
        "{show}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&common::run(&["show", &a, "--json"]).1).unwrap();
    let t = &m["training"];
    let before = t["initial_val_loss"].as_f64().unwrap();
    let after = t["curve"][2]["val_loss"].as_f64().unwrap();
    assert!(after < before / 4.0, "validation loss {before} -> {after}");
    assert_eq!(m["kind"], "adapter");
    assert_eq!(m["lineage"]["base_model"], common::MODEL);

    // Input/output pairs, uninterrupted.
    let (ok, out, err) = common::run(&tune_args(answer42.to_str().unwrap(), &b));
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("20 rows as input/output"), "{err}");
    let uninterrupted = digest(&b);

    // The same run, interrupted with Ctrl-C (SIGINT) while training, then resumed.
    let (mut child, mut stderr, seen) =
        spawn_until(&tune_args(answer42.to_str().unwrap(), &b), "training LoRA");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    use std::io::Read;
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run was not interrupted: {seen}{rest}"
    );
    assert!(rest.contains("--resume"), "{rest}");
    let mut resume = tune_args(answer42.to_str().unwrap(), &b);
    resume.push("--resume");
    let (ok, out, err) = common::run(&resume);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        digest(&b),
        uninterrupted,
        "resuming gave another adapter than an uninterrupted run"
    );

    // Killed outright (SIGKILL) after its first epoch: --resume continues from
    // the last checkpoint into the same adapter.
    let (mut child, _, seen) = spawn_until(&tune_args(answer42.to_str().unwrap(), &b), "epoch 1:");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was not killed: {seen}");
    let (ok, out, err) = common::run(&resume);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        digest(&b),
        uninterrupted,
        "resuming after SIGKILL gave another adapter"
    );

    // Served by name beside the base: each answer alone, then all at once.
    let s = common::Server::start(&["--parallel", "2"]);
    let ask = |model: &str| -> String {
        let (st, v) = s.post(
            "/v1/chat/completions",
            &serde_json::json!({"model": model, "temperature": 0, "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the largest ocean?"}]}),
        );
        assert_eq!(st, 200, "{v}");
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let models = [common::MODEL.to_string(), a.clone(), b.clone()];
    let solo: Vec<String> = models.iter().map(|m| ask(m)).collect();
    assert!(
        solo[1].starts_with("Ahoy matey"),
        "adapter a: {:?}",
        solo[1]
    );
    assert!(solo[2].contains("42"), "adapter b: {:?}", solo[2]);
    assert!(
        !solo[0].contains("Ahoy") && !solo[0].contains("42"),
        "base: {:?}",
        solo[0]
    );
    let ask_stream = |model: &str| -> String {
        let chunks = s.stream(
            "/v1/chat/completions",
            &serde_json::json!({"model": model, "temperature": 0, "max_tokens": 16, "stream": true,
                "messages": [{"role": "user", "content": "What is the largest ocean?"}]}),
        );
        common::chunks_text(&chunks)
    };
    // Nine at once, three per model, streamed and not.
    for _round in 0..2 {
        let together: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..9)
                .map(|i| {
                    let m = &models[i % 3];
                    let (ask, ask_stream) = (&ask, &ask_stream);
                    sc.spawn(move || if i % 2 == 0 { ask(m) } else { ask_stream(m) })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, t) in together.iter().enumerate() {
            assert_eq!(
                t,
                &solo[i % 3],
                "{} answered differently beside the others",
                models[i % 3]
            );
        }
    }
    // The official `openai` package, unchanged, by the adapter's name.
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys\nfrom openai import OpenAI\nc = OpenAI(base_url=os.environ['URL'], api_key='x')\n\
             r = c.chat.completions.create(model=os.environ['MODEL'], temperature=0, max_tokens=16,\n\
                 messages=[{'role': 'user', 'content': 'What is the largest ocean?'}])\n\
             print(r.model); print(r.choices[0].message.content)",
        ])
        .env("URL", format!("{}/v1", s.base))
        .env("MODEL", &a)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().next(), Some(a.as_str()), "{text}");
    assert_eq!(
        text.lines().nth(1).map(str::trim),
        Some(solo[1].trim()),
        "{text}"
    );
    // /v1/models lists the adapters.
    let (_, list) = s.get("/v1/models");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "{ids:?}"
    );
    drop(s);

    // The base cannot be removed from under its adapters without --force.
    let (ok, _, err) = common::run(&["rm", common::MODEL]);
    assert!(
        !ok && err.contains("is the base of the adapters") && err.contains(&a),
        "{err}"
    );

    // Export and import carry the adapter, its base's name and its training record.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.bantam");
    let (ok, _, err) = common::run(&["export", &a, "-o", archive.to_str().unwrap()]);
    assert!(ok, "{err}");
    let other = dir.path().join("store");
    let out = common::bantam()
        .env("BANTAM_HOME", &other)
        .args(["import", archive.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "adapter over {}, which is not in this store",
            common::MODEL
        )),
        "{text}"
    );
    let out = common::bantam()
        .env("BANTAM_HOME", &other)
        .args(["show", &a])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LoRA adapter") && text.contains("method        lora rank 8"),
        "{text}"
    );

    // Merged into one standalone model: it answers as the served adapter did.
    let (ok, out, err) = common::run(&["merge", &a, "--out", &merged]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("120 tensors adapted"), "{out}");
    let (ok, show, _) = common::run(&["show", &merged]);
    assert!(
        ok && show.contains("F16") && show.contains(&format!("adapter       {a}")),
        "{show}"
    );
    let (ok, out, err) = common::run(&[
        "run",
        &merged,
        "What is the largest ocean?",
        "--max-tokens",
        "16",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        solo[1].trim(),
        "the merged model answers differently from the adapter"
    );
}

/// An adapter whose base is gone, or that does not fit, is refused clearly.
#[test]
fn bad_lora_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
    )
    .unwrap();
    let (ok, _, err) = common::run(&[
        "tune",
        "lora",
        bad.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        "x:y",
    ]);
    assert!(!ok && err.contains("no assistant turn"), "{err}");
    std::fs::write(&bad, "not json\n").unwrap();
    let (ok, _, err) = common::run(&[
        "tune",
        "lora",
        bad.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        "x:y",
    ]);
    assert!(!ok && err.contains("line 1: not JSON"), "{err}");
    let pirate = common::fixture("lora_pirate.jsonl");
    let (ok, _, err) = common::run(&[
        "tune",
        "lora",
        pirate.to_str().unwrap(),
        "--base",
        "all-minilm:l6-v2",
        "--out",
        "x:y",
    ]);
    assert!(!ok && err.contains("architectures"), "{err}");
    let (ok, _, err) = common::run(&[
        "tune",
        "lora",
        pirate.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        "x:y",
        "--targets",
        "q,zz",
    ]);
    assert!(!ok && err.contains("unknown LoRA target"), "{err}");
    let (ok, _, err) = common::run(&[
        "tune",
        "lora",
        pirate.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        "x:y",
        "--resume",
    ]);
    assert!(!ok && err.contains("no checkpoint"), "{err}");
    let (ok, _, err) = common::run(&["merge", common::MODEL, "--out", "x:y"]);
    assert!(!ok && err.contains("not a LoRA adapter"), "{err}");
}

/// An adapter trained on labelled texts answers `/v1/classify` (by label
/// likelihood, with the same prompt it was trained on) better than its base.
#[test]
fn a_labelled_adapter_classifies_through_v1_classify() {
    let name = format!("test-lora-cls-{}:v1", std::process::id());
    let _guard = common::Installed(name.clone());
    // 4 examples of each of the 10 intents.
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(common::fixture("clinc10_train.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut per: std::collections::HashMap<String, usize> = Default::default();
    let small: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| {
            let n = per
                .entry(r["expected"].as_str().unwrap().to_string())
                .or_default();
            *n += 1;
            *n <= 4
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small.jsonl");
    std::fs::write(
        &data,
        small
            .iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (ok, out, err) = common::run(&[
        "tune",
        "lora",
        data.to_str().unwrap(),
        "--base",
        common::MODEL,
        "--out",
        &name,
        "--epochs",
        "2",
        "--lr",
        "3e-3",
        "--batch-tokens",
        "512",
        "--val-fraction",
        "0",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("40 rows as labelled texts"), "{err}");
    let labels: Vec<String> = {
        let mut l: Vec<String> = per.keys().cloned().collect();
        l.sort();
        l
    };
    let s = common::Server::start(&[]);
    let inputs: Vec<&str> = small.iter().map(|r| r["input"].as_str().unwrap()).collect();
    let accuracy = |model: &str| -> f64 {
        let (st, v) = s.post(
            "/v1/classify",
            &serde_json::json!({"model": model, "input": inputs, "labels": labels}),
        );
        assert_eq!(st, 200, "{v}");
        let right = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&small)
            .filter(|(d, r)| d["label"] == r["expected"])
            .count();
        right as f64 / small.len() as f64
    };
    let (base, tuned) = (accuracy(common::MODEL), accuracy(&name));
    println!("accuracy on its 40 training texts: base {base:.2}, adapter {tuned:.2}");
    assert!(
        tuned >= 0.9 && tuned > base + 0.2,
        "base {base}, adapter {tuned}"
    );
}

/// Input/output pairs rendered through a prompt template (as `bantam eval
/// --prompt-template` renders them) teach an output format the base does not
/// know; `bantam eval --task extract` with the same template measures it, and
/// the result is kept in the adapter's manifest (not in the pulled base's).
#[test]
fn a_templated_pair_adapter_extracts_and_its_eval_is_kept_in_its_manifest() {
    let name = format!("test-lora-ext-{}:v1", std::process::id());
    let _guard = common::Installed(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let first = ["Anna", "Omar", "Li", "Marta", "Kofi", "Ines"];
    let last = ["Berg", "Haddad", "Wei", "Novak", "Mensah"];
    let cities = ["Lyon", "Porto", "Graz", "Turku", "Leeds"];
    let (mut train, mut test) = (String::new(), String::new());
    for i in 0..30 {
        let (f, l, c) = (first[i % 6], last[i % 5], cities[(i * 2) % 5]);
        let input = format!("Please ship order {} to {c} for {f} {l}.", 100 + i * 7);
        let expected =
            serde_json::json!({"customer": format!("{l}, {f}"), "city": c.to_uppercase()});
        train.push_str(
            &serde_json::json!({"input": input, "output": expected.to_string()}).to_string(),
        );
        train.push('\n');
        test.push_str(&serde_json::json!({"input": input, "expected": expected}).to_string());
        test.push('\n');
    }
    let (train_p, test_p) = (
        dir.path().join("train.jsonl"),
        dir.path().join("test.jsonl"),
    );
    std::fs::write(&train_p, train).unwrap();
    std::fs::write(&test_p, test).unwrap();
    let template = dir.path().join("prompt.txt");
    std::fs::write(
        &template,
        "[system]\nAnswer in JSON with the customer and the city of the order.\n[user]\n{input}\n",
    )
    .unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"customer": {"type": "string"}, "city": {"type": "string"}}, "required": ["customer", "city"], "additionalProperties": false}"#,
    )
    .unwrap();
    let mut args = tune_args(train_p.to_str().unwrap(), &name);
    args.extend([
        "--prompt-template",
        template.to_str().unwrap(),
        "--val-fraction",
        "0",
    ]);
    let (ok, out, err) = common::run(&args);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("30 rows as input/output"), "{err}");
    // A template that shows {schema} needs the schema.
    let with_schema = dir.path().join("prompt-schema.txt");
    std::fs::write(&with_schema, "[user]\n{input}\nSchema: {schema}\n").unwrap();
    let mut bad = tune_args(train_p.to_str().unwrap(), "x:y");
    bad.extend(["--prompt-template", with_schema.to_str().unwrap()]);
    let (ok, _, err) = common::run(&bad);
    assert!(!ok && err.contains("--schema"), "{err}");

    // The adapter's own copy of the template, given to it alone.
    let own = dir.path().join("own-prompt.txt");
    std::fs::copy(&template, &own).unwrap();
    let own_arg = format!("{name}={}", own.display());
    let results = dir.path().join("eval");
    let eval = |target_template: &str| {
        common::run(&[
            "eval",
            test_p.to_str().unwrap(),
            "--task",
            "extract",
            "--schema",
            schema.to_str().unwrap(),
            "--prompt-template",
            template.to_str().unwrap(),
            "--target",
            common::MODEL,
            "--target",
            &name,
            "--target-template",
            target_template,
            "--out",
            results.to_str().unwrap(),
        ])
    };
    let (ok, _, err) = eval("nobody:x=prompt.txt");
    assert!(
        !ok && err.contains("is not one of the --target values"),
        "{err}"
    );
    let (ok, out, err) = eval(&own_arg);
    assert!(ok, "{out}\n{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap())
            .unwrap();
    let f1 = |t: &str| summary["targets"][t]["field_f1"].as_f64().unwrap();
    let (base, tuned) = (f1(common::MODEL), f1(&name));
    println!("field F1 on its 30 training texts: base {base:.2}, adapter {tuned:.2}");
    assert!(
        tuned >= 0.8 && tuned > base + 0.3,
        "base {base}, adapter {tuned}"
    );
    // Kept in the adapter's manifest, shown by `bantam show`; the base is untouched.
    assert!(err.contains("result kept in its manifest"), "{err}");
    let (ok, out, _) = common::run(&["show", &name, "--json"]);
    assert!(ok);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    let evals = m["evals"].as_array().expect("evals in the manifest");
    assert_eq!(evals.len(), 1, "{m}");
    assert_eq!(evals[0]["task"], "extract");
    assert_eq!(evals[0]["items"], 30);
    assert_eq!(evals[0]["metrics"]["field_f1"].as_f64(), Some(tuned));
    assert_eq!(evals[0]["prompt_template"], own.display().to_string());
    let (_, text, _) = common::run(&["show", &name]);
    assert!(
        text.contains("evaluations") && text.contains("field_f1"),
        "{text}"
    );
    let (_, base_json, _) = common::run(&["show", common::MODEL, "--json"]);
    assert!(!base_json.contains("\"evals\""), "{base_json}");
}
