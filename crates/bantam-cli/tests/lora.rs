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
    let store = bantam_store::Store::open(&common::model_home()).expect("store");
    let m = store.get(name).expect("model");
    store.blob_path(&m)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Loss and gradients of one batch agree with PyTorch + PEFT on the same
/// dequantized weights, adapter values and tokens.
#[test]
fn lora_gradients_match_peft() {
    let gguf = model_path(common::MODEL);
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
        .status()
        .expect("run the reference");
    assert!(st.success(), "the PEFT reference failed");
    let reference = candle_core::safetensors::load(&out_path, &Device::Cpu).unwrap();

    let ref_loss = reference["loss"].to_vec1::<f64>().unwrap()[0];
    println!("loss: bantam {loss:.6}, PEFT {ref_loss:.6}");
    assert!(
        (loss - ref_loss).abs() < 1e-4 * ref_loss.abs().max(1.0),
        "loss {loss} vs {ref_loss}"
    );

    // Per tensor: relative error of the gradient, ‖g − g_ref‖ / ‖g_ref‖.
    let mut worst = (0.0f64, String::new());
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
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
        compared += 1;
    }
    println!(
        "{compared} gradients compared; worst relative error {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 1e-3,
        "gradient {} differs from PEFT by {:.2e}",
        worst.1,
        worst.0
    );
}
