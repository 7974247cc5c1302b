//! The llama.cpp side of the LoRA training-engine spike (BENCHMARKS.md):
//! throughput of `llama_opt_epoch` (forward + backward + AdamW) on a GGUF.
//!
//! `cargo run --release -p bantam-llama --example opt_spike -- MODEL.gguf [n_ctx] [ndata] [threads]`
//!
//! llama.cpp marks only F32 model tensors as trainable: on an F32 file this is
//! a full fine-tune (every weight's gradient); on a quantized file only the
//! norms train, yet the gradient still flows back through every layer — the
//! shape of a LoRA step's work on a frozen quantized base, without the adapters.
use std::ffi::CString;
use std::time::Instant;

use llama_cpp_sys_2 as s;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = CString::new(args[1].as_str()).unwrap();
    let n_ctx: u32 = args.get(2).and_then(|x| x.parse().ok()).unwrap_or(128);
    let ndata: i64 = args.get(3).and_then(|x| x.parse().ok()).unwrap_or(8);
    let threads: i32 = args.get(4).and_then(|x| x.parse().ok()).unwrap_or(2);
    let _ = bantam_llama::runtime();
    // SAFETY (whole block): a benchmark over llama.cpp's C API, used as its own
    // finetune example uses it; every pointer is checked before use and freed
    // once at the end.
    unsafe {
        let mut mp = s::llama_model_default_params();
        mp.load_mode = s::LLAMA_LOAD_MODE_NONE;
        let model = s::llama_model_load_from_file(path.as_ptr(), mp);
        assert!(!model.is_null(), "model did not load");
        let mut cp = s::llama_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_batch = n_ctx;
        cp.n_ubatch = n_ctx;
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        cp.type_k = s::GGML_TYPE_F32;
        cp.type_v = s::GGML_TYPE_F32;
        cp.flash_attn_type = s::LLAMA_FLASH_ATTN_TYPE_DISABLED;
        let ctx = s::llama_init_from_model(model, cp);
        assert!(!ctx.is_null(), "context did not start");
        let vocab = s::llama_model_get_vocab(model);
        let n_vocab = s::llama_vocab_n_tokens(vocab);
        let ds = s::ggml_opt_dataset_init(
            s::GGML_TYPE_I32,
            s::GGML_TYPE_I32,
            n_ctx as i64,
            n_ctx as i64,
            ndata,
            1,
        );
        let data = (*s::ggml_opt_dataset_data(ds)).data as *mut i32;
        let labels = (*s::ggml_opt_dataset_labels(ds)).data as *mut i32;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let total = (ndata as usize) * n_ctx as usize + 1;
        let tokens: Vec<i32> = (0..total)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                100 + (x % (n_vocab as u64 - 200)) as i32
            })
            .collect();
        for i in 0..ndata as usize {
            for j in 0..n_ctx as usize {
                *data.add(i * n_ctx as usize + j) = tokens[i * n_ctx as usize + j];
                *labels.add(i * n_ctx as usize + j) = tokens[i * n_ctx as usize + j + 1];
            }
        }
        let op = s::llama_opt_params {
            n_ctx_train: 0,
            param_filter: Some(s::llama_opt_param_filter_all),
            param_filter_ud: std::ptr::null_mut(),
            get_opt_pars: Some(s::ggml_opt_get_default_optimizer_params),
            get_opt_pars_ud: std::ptr::null_mut(),
            optimizer_type: s::GGML_OPT_OPTIMIZER_TYPE_ADAMW,
        };
        s::llama_opt_init(ctx, model, op);
        for epoch in 0..3 {
            let rt = s::ggml_opt_result_init();
            let re = s::ggml_opt_result_init();
            let t = Instant::now();
            s::llama_opt_epoch(ctx, ds, rt, re, ndata, None, None);
            let dt = t.elapsed().as_secs_f64();
            let (mut loss, mut unc) = (0f64, 0f64);
            s::ggml_opt_result_loss(rt, &mut loss, &mut unc);
            println!(
                "epoch {epoch}: {} tokens in {dt:.2}s = {:.1} tok/s forward+backward+AdamW, loss {loss:.4}",
                ndata * n_ctx as i64,
                (ndata * n_ctx as i64) as f64 / dt
            );
            s::ggml_opt_result_free(rt);
            s::ggml_opt_result_free(re);
        }
        s::ggml_opt_dataset_free(ds);
        s::llama_free(ctx);
        s::llama_model_free(model);
    }
}
