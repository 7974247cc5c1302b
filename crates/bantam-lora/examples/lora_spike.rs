//! Forward+backward throughput of a LoRA step on a GGUF base (BENCHMARKS.md,
//! "LoRA training engine"): one batch of `n` examples of `seq` tokens (rank 8 on
//! q, k, v, o), and the forward pass alone.
//!
//! `cargo run --release -p bantam-lora --example lora_spike -- MODEL.gguf [seq] [n] [steps]`
use bantam_lora::train::{batch_gradients, Example};
use bantam_lora::{BaseModel, Lora, Target};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let seq: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3);
    let t0 = Instant::now();
    let base = BaseModel::load(path).expect("load");
    println!(
        "loaded {} ({} layers) in {:.1}s",
        base.config.arch,
        base.config.n_layer,
        t0.elapsed().as_secs_f64()
    );
    let lora = Lora::init(
        &base,
        &[Target::Q, Target::K, Target::V, Target::O],
        8,
        16.0,
        0,
    )
    .unwrap();
    let examples: Vec<Example> = (0..n)
        .map(|k| Example {
            tokens: (0..seq as u32)
                .map(|i| (i * 7919 + k as u32 * 31) % 1000 + 100)
                .collect(),
            mask: (0..seq).map(|i| i >= seq / 4).collect(),
        })
        .collect();
    let tokens = (seq * n) as f64;
    let mut best = (f64::MAX, f64::MAX);
    let refs: Vec<&Example> = examples.iter().collect();
    for _ in 0..steps {
        let t = Instant::now();
        let _ = batch_gradients(&base, &lora, &refs).unwrap();
        best.0 = best.0.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for ex in &examples {
            let _ = base.loss_sum(&ex.tokens, &ex.mask, Some(&lora)).unwrap();
        }
        best.1 = best.1.min(t.elapsed().as_secs_f64());
    }
    println!(
        "| {} | {seq} × {n} | {:.0} | {:.0} |",
        base.config.arch,
        tokens / best.0,
        tokens / best.1
    );
}
