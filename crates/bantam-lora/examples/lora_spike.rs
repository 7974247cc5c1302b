//! Measures forward+backward throughput of a LoRA step on a GGUF base.
//! `cargo run --release -p bantam-lora --example lora_spike -- MODEL.gguf [seq] [steps]`
use bantam_lora::train::{batch_gradients, Example};
use bantam_lora::{BaseModel, Lora, Target};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let seq: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let t0 = Instant::now();
    let base = BaseModel::load(path).expect("load");
    println!(
        "loaded {:?} in {:.1}s",
        base.config,
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
    println!("trainable parameters: {}", lora.parameter_count());
    let tokens: Vec<u32> = (0..seq as u32).map(|i| (i * 7919) % 1000 + 100).collect();
    let mask: Vec<bool> = (0..seq).map(|i| i >= seq / 4).collect();
    let ex = Example { tokens, mask };
    for s in 0..steps {
        let t = Instant::now();
        let (loss, n, _g) = batch_gradients(&base, &lora, &[&ex]).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "step {s}: loss {loss:.4} over {n} targets, {:.2}s, {:.1} tok/s fwd+bwd",
            dt,
            seq as f64 / dt
        );
        let t = Instant::now();
        let _ = base.loss_sum(&ex.tokens, &ex.mask, Some(&lora)).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "        forward only {:.2}s, {:.1} tok/s",
            dt,
            seq as f64 / dt
        );
    }
}
