//! Unit tests on a tiny random LLaMA-shaped model written as a GGUF here:
//! analytic gradients against finite differences, a no-op start, learning,
//! checkpoints, batching and the adapter file's layout.

use std::collections::HashSet;
use std::path::Path;

use bantam_store::gguf_write::{GgufWriter, Tensor as GTensor, Value, GGML_TYPE_F32};

use crate::lora::{Lora, SplitMix, Target};
use crate::model::BaseModel;
use crate::train::{
    self, batch_gradients, epoch_batches, set_var, Adam, Example, TrainOptions, TrainState,
};

const D: usize = 16;
const FF: usize = 24;
const VOCAB: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;

fn tiny_model(dir: &Path, arch: &str) -> std::path::PathBuf {
    let mut rng = SplitMix::new(3);
    let mut rand = |n: usize, scale: f64| -> Vec<u8> {
        (0..n)
            .flat_map(|_| (((rng.next_f64() - 0.5) * 2.0 * scale) as f32).to_le_bytes())
            .collect()
    };
    let ones = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| 1f32.to_le_bytes()).collect() };
    let kv = D / HEADS * KV_HEADS;
    // (name, ggml dims [in, out], data)
    let mut tensors: Vec<(String, Vec<u64>, Vec<u8>)> = vec![
        (
            "token_embd.weight".into(),
            vec![D as u64, VOCAB as u64],
            rand(D * VOCAB, 1.0),
        ),
        ("output_norm.weight".into(), vec![D as u64], ones(D)),
        (
            "output.weight".into(),
            vec![D as u64, VOCAB as u64],
            rand(D * VOCAB, 0.5),
        ),
    ];
    for i in 0..2 {
        let p = format!("blk.{i}.");
        let s = 1.0 / (D as f64).sqrt();
        tensors.push((format!("{p}attn_norm.weight"), vec![D as u64], ones(D)));
        tensors.push((
            format!("{p}attn_q.weight"),
            vec![D as u64, D as u64],
            rand(D * D, s),
        ));
        tensors.push((
            format!("{p}attn_k.weight"),
            vec![D as u64, kv as u64],
            rand(D * kv, s),
        ));
        tensors.push((
            format!("{p}attn_v.weight"),
            vec![D as u64, kv as u64],
            rand(D * kv, s),
        ));
        tensors.push((
            format!("{p}attn_output.weight"),
            vec![D as u64, D as u64],
            rand(D * D, s),
        ));
        if arch == "qwen2" {
            tensors.push((format!("{p}attn_q.bias"), vec![D as u64], rand(D, 0.5)));
            tensors.push((format!("{p}attn_k.bias"), vec![kv as u64], rand(kv, 0.5)));
            tensors.push((format!("{p}attn_v.bias"), vec![kv as u64], rand(kv, 0.5)));
        }
        tensors.push((format!("{p}ffn_norm.weight"), vec![D as u64], ones(D)));
        tensors.push((
            format!("{p}ffn_gate.weight"),
            vec![D as u64, FF as u64],
            rand(D * FF, s),
        ));
        tensors.push((
            format!("{p}ffn_up.weight"),
            vec![D as u64, FF as u64],
            rand(D * FF, s),
        ));
        let s2 = 1.0 / (FF as f64).sqrt();
        tensors.push((
            format!("{p}ffn_down.weight"),
            vec![FF as u64, D as u64],
            rand(D * FF, s2),
        ));
    }
    let mut g = GgufWriter::new();
    g.kv("general.architecture", Value::Str(arch.into()))
        .kv(format!("{arch}.embedding_length"), Value::U32(D as u32))
        .kv(format!("{arch}.block_count"), Value::U32(2))
        .kv(format!("{arch}.feed_forward_length"), Value::U32(FF as u32))
        .kv(
            format!("{arch}.attention.head_count"),
            Value::U32(HEADS as u32),
        )
        .kv(
            format!("{arch}.attention.head_count_kv"),
            Value::U32(KV_HEADS as u32),
        )
        .kv(
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        )
        .kv(format!("{arch}.rope.freq_base"), Value::F32(10000.0))
        .kv(format!("{arch}.context_length"), Value::U32(64));
    for (n, dims, data) in &tensors {
        g.tensor(GTensor {
            name: n.clone(),
            dims: dims.clone(),
            ggml_type: GGML_TYPE_F32,
            data,
        });
    }
    let path = dir.join(format!("{arch}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    g.write_to(&mut f).unwrap();
    path
}

fn example(seed: u64, len: usize, from: usize) -> Example {
    let mut rng = SplitMix::new(seed);
    Example {
        tokens: (0..len)
            .map(|_| (rng.next_u64() % VOCAB as u64) as u32)
            .collect(),
        mask: (0..len).map(|i| i >= from).collect(),
    }
}

fn loss_of(base: &BaseModel, lora: &Lora, batch: &[&Example]) -> f64 {
    batch_gradients(base, lora, batch).unwrap().0
}

#[test]
fn gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let base = BaseModel::load(&tiny_model(dir.path(), arch)).unwrap();
        let lora = Lora::init(&base, &Target::ALL, 2, 4.0, 1).unwrap();
        let mut rng = SplitMix::new(9);
        for (n, var) in lora.named_vars() {
            if n.ends_with("lora_b") {
                let k = var.as_tensor().elem_count();
                set_var(
                    var,
                    (0..k)
                        .map(|_| ((rng.next_f64() - 0.5) * 0.4) as f32)
                        .collect(),
                )
                .unwrap();
            }
        }
        let (e1, e2) = (example(1, 12, 4), example(2, 9, 3));
        let batch = [&e1, &e2];
        let (_, _, grads) = batch_gradients(&base, &lora, &batch).unwrap();
        let mut checked = 0;
        for (n, var) in lora.named_vars() {
            let g: Vec<f32> = grads[&n].flatten_all().unwrap().to_vec1().unwrap();
            let orig: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            // The entry with the largest gradient: finite differences in f32
            // resolve it well.
            let (j, &gj) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            let eps = 1e-2f32;
            let mut plus = orig.clone();
            plus[j] += eps;
            set_var(var, plus).unwrap();
            let lp = loss_of(&base, &lora, &batch);
            let mut minus = orig.clone();
            minus[j] -= eps;
            set_var(var, minus).unwrap();
            let lm = loss_of(&base, &lora, &batch);
            set_var(var, orig).unwrap();
            let fd = (lp - lm) / (2.0 * eps as f64);
            let err = (fd - gj as f64).abs() / (gj.abs() as f64).max(1e-3);
            assert!(
                err < 3e-2,
                "{arch} {n}[{j}]: analytic {gj}, finite difference {fd}"
            );
            checked += 1;
        }
        assert_eq!(checked, 2 * 7 * 2);
    }
}

#[test]
fn a_fresh_adapter_changes_nothing_and_training_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let base = BaseModel::load(&tiny_model(dir.path(), "llama")).unwrap();
    let opts = TrainOptions {
        rank: 4,
        alpha: 8.0,
        lr: 1e-2,
        epochs: 30,
        batch_tokens: 16,
        ..TrainOptions::default()
    };
    let lora = Lora::init(
        &base,
        &opts.parsed_targets().unwrap(),
        opts.rank,
        opts.alpha,
        0,
    )
    .unwrap();
    let data = vec![example(5, 10, 5), example(6, 10, 5), example(7, 10, 5)];
    // B = 0: the adapted model is the base, exactly.
    let x = base.logits(&data[0].tokens, None).unwrap();
    let y = base.logits(&data[0].tokens, Some(&lora)).unwrap();
    let diff: f32 = (x - y)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
    let before = train::mean_loss(&base, Some(&lora), &data).unwrap();
    let mut adam = Adam::new(&lora).unwrap();
    let mut state = TrainState::default();
    struct Quiet;
    impl train::Observer for Quiet {}
    train::train(
        &base,
        &lora,
        &mut adam,
        &mut state,
        &data,
        &[],
        &opts,
        &mut Quiet,
    )
    .unwrap();
    let after = train::mean_loss(&base, Some(&lora), &data).unwrap();
    assert!(after < before * 0.5, "loss {before} -> {after}");
    assert_eq!(state.curve.len(), 30);
}

#[test]
fn a_checkpoint_restores_adapters_moments_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let base = BaseModel::load(&tiny_model(dir.path(), "llama")).unwrap();
    let opts = TrainOptions {
        epochs: 1,
        batch_tokens: 8,
        ..TrainOptions::default()
    };
    let targets = opts.parsed_targets().unwrap();
    let lora = Lora::init(&base, &targets, 8, 16.0, 0).unwrap();
    let data = vec![example(5, 10, 5), example(6, 10, 5)];
    let mut adam = Adam::new(&lora).unwrap();
    let mut state = TrainState::default();
    struct Quiet;
    impl train::Observer for Quiet {}
    train::train(
        &base,
        &lora,
        &mut adam,
        &mut state,
        &data,
        &[],
        &opts,
        &mut Quiet,
    )
    .unwrap();
    let ck = dir.path().join("ck");
    train::save_checkpoint(&ck, &lora, &adam, &state, &opts, "fp").unwrap();
    let fresh = Lora::init(&base, &targets, 8, 16.0, 99).unwrap();
    assert!(train::load_checkpoint(&ck, &fresh, "other").is_err());
    let (_, st2, opts2) = train::load_checkpoint(&ck, &fresh, "fp").unwrap();
    assert_eq!(st2, state);
    assert_eq!(opts2, opts);
    for ((n, a), (_, b)) in lora.named_vars().into_iter().zip(fresh.named_vars()) {
        let d: f32 = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{n}");
    }
    // A later save killed after its tensors were written but before its state:
    // the state still names the earlier tensors, which load whole.
    let later = TrainState {
        step: state.step + 20,
        ..state.clone()
    };
    let zeros = Lora::init(&base, &targets, 8, 16.0, 7).unwrap();
    let other = dir.path().join("other");
    train::save_checkpoint(&other, &zeros, &adam, &later, &opts, "fp").unwrap();
    let half = format!("tensors-{}.safetensors", later.step);
    std::fs::copy(other.join(&half), ck.join(&half)).unwrap();
    let again = Lora::init(&base, &targets, 8, 16.0, 98).unwrap();
    let (_, st3, _) = train::load_checkpoint(&ck, &again, "fp").unwrap();
    assert_eq!(st3, state);
    for ((n, a), (_, b)) in lora.named_vars().into_iter().zip(again.named_vars()) {
        let same = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            == 0.0;
        assert!(same, "{n}");
    }
    // The next complete save names its own tensors and removes the older files.
    train::save_checkpoint(&ck, &lora, &adam, &later, &opts, "fp").unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["state.json", half.as_str()]);
}

#[test]
fn batches_cover_every_example_once_and_follow_the_seed() {
    let data: Vec<Example> = (0..25)
        .map(|i| example(i, 3 + (i as usize % 7), 1))
        .collect();
    let b = epoch_batches(&data, 1, 0, 20);
    let flat: Vec<usize> = b.iter().flatten().copied().collect();
    assert_eq!(flat.len(), 25);
    assert_eq!(flat.iter().copied().collect::<HashSet<_>>().len(), 25);
    assert_eq!(b, epoch_batches(&data, 1, 0, 20));
    assert_ne!(b, epoch_batches(&data, 2, 0, 20));
    assert_ne!(b, epoch_batches(&data, 1, 1, 20));
    for batch in &b[..b.len() - 1] {
        let toks: usize = batch.iter().map(|&i| data[i].tokens.len()).sum();
        assert!(toks >= 20);
    }
}

#[test]
fn the_adapter_file_has_llama_cpp_names_shapes_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let base = BaseModel::load(&tiny_model(dir.path(), "llama")).unwrap();
    let lora = Lora::init(&base, &[Target::Q, Target::Down], 3, 6.0, 0).unwrap();
    let path = dir.path().join("a.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    lora.write_gguf("llama", "t", &[], &mut f).unwrap();
    drop(f);
    let info = bantam_store::gguf::GgufInfo::read(&path).unwrap();
    assert_eq!(info.get_str("general.type"), Some("adapter"));
    assert_eq!(info.get_str("adapter.type"), Some("lora"));
    let dims = |n: &str| {
        info.tensors
            .iter()
            .find(|t| t.name == n)
            .unwrap()
            .dims
            .clone()
    };
    // lora_a: ne = [in, r]; lora_b: ne = [r, out].
    assert_eq!(dims("blk.1.attn_q.weight.lora_a"), vec![D as u64, 3]);
    assert_eq!(dims("blk.1.attn_q.weight.lora_b"), vec![3, D as u64]);
    assert_eq!(dims("blk.0.ffn_down.weight.lora_a"), vec![FF as u64, 3]);
    assert_eq!(dims("blk.0.ffn_down.weight.lora_b"), vec![3, D as u64]);
    assert_eq!(info.tensors.len(), 2 * 2 * 2);
}

#[test]
fn targets_parse_by_any_name() {
    use crate::lora::parse_targets;
    assert_eq!(parse_targets("q,v").unwrap(), vec![Target::Q, Target::V]);
    assert_eq!(
        parse_targets("v_proj, q_proj,attn_q").unwrap(),
        vec![Target::Q, Target::V]
    );
    assert_eq!(parse_targets("all").unwrap().len(), 7);
    assert!(parse_targets("q,zz").is_err());
    assert!(parse_targets("").is_err());
}
