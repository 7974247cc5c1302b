//! all-MiniLM-L6-v2 through llama.cpp (converted by `bantam pull all-minilm:l6-v2`)
//! compared with an independent reference: Hugging Face `tokenizers` for the token
//! ids and a float64 numpy forward pass of the original safetensors for the vectors
//! (tests/python/minilm_reference.py).
//!
//! Needs the model in the store at `BANTAM_TEST_HOME` (else `~/.bantam`), plus
//! python3 with numpy, safetensors and tokenizers (scripts/setup.sh installs them).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use bantam_engine::{Embedder, StaticEmbedder};
use serde_json::Value;

const MODEL: &str = "all-minilm:l6-v2";

/// The model's blob, found through its manifest.
fn model_path() -> PathBuf {
    blob_of(MODEL)
}

/// A store model's blob (`name:tag`), found through its manifest.
fn blob_of(name: &str) -> PathBuf {
    let (model, tag) = name.split_once(':').expect("name:tag");
    let home = std::env::var_os("BANTAM_TEST_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".bantam")))
        .expect("BANTAM_TEST_HOME or HOME is set");
    let manifest = home.join(format!("manifests/{model}/{tag}.json"));
    let Ok(bytes) = std::fs::read(&manifest) else {
        panic!(
            "these tests need {name} in the model store at {}: run `bantam pull {name}` first (or set BANTAM_TEST_HOME)",
            home.display()
        );
    };
    let m: Value = serde_json::from_slice(&bytes).expect("manifest is JSON");
    let digest = m["digest"].as_str().expect("digest");
    let blob = home.join("blobs").join(digest.replace(':', "-"));
    assert!(blob.is_file(), "{} is missing", blob.display());
    blob
}

fn embedder() -> Arc<Embedder> {
    static E: OnceLock<Arc<Embedder>> = OnceLock::new();
    E.get_or_init(|| Arc::new(Embedder::load(&model_path(), 0).expect("load the embedder")))
        .clone()
}

struct Reference {
    tokens: Vec<Vec<i32>>,
    embeddings: Vec<Vec<f64>>,
}

fn reference(texts: &[&str]) -> Reference {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/minilm_reference.py"
    );
    let mut child =
        Command::new(std::env::var("BANTAM_PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed (needs numpy, safetensors and tokenizers: run scripts/setup.sh)"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Reference {
        tokens: serde_json::from_value(v["tokens"].clone()).unwrap(),
        embeddings: serde_json::from_value(v["embeddings"].clone()).unwrap(),
    }
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const TEXTS: &[&str] = &[
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "Bantam serves small language models on a CPU.",
    "Hello, world!",
    "I can't believe it's already December...",
    "Café au lait costs €3.50 in Paris.",
    "naïve résumé façade",
    "THE STOCK MARKET FELL 3% ON TUESDAY",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "print(\"hello\") # a line of Python",
    "email me at someone@example.com or call +1-555-0100",
    "東京は日本の首都です。",
    "Ein Hund läuft durch den Park.",
    "unbelievably overcomplicated antidisestablishmentarianism",
    "The year 2024 had 366 days; 2023 had 365.",
    "What's the weather like tomorrow in New York?",
    "I love this movie 😀 so much!!!",
    "x",
    "",
    "Transfer $500 from checking to savings, please.",
];

#[test]
fn tokens_and_vectors_match_the_reference() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.max_tokens(), 512);
    let r = reference(TEXTS);
    for (i, t) in TEXTS.iter().enumerate() {
        assert_eq!(e.tokenize(t), r.tokens[i], "tokens of {t:?}");
    }
    // All texts in one call (short ones share batches, one sequence each), and each
    // alone.
    let batched = e.embed(TEXTS).unwrap();
    assert_eq!(batched.len(), TEXTS.len());
    let mut worst = f64::INFINITY;
    for (i, t) in TEXTS.iter().enumerate() {
        let v = &batched[i];
        assert_eq!(v.len(), 384);
        let norm: f32 = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{t:?}: norm {norm}");
        let c = cosine(v, &r.embeddings[i]);
        assert!(c >= 0.9999, "{t:?}: cosine with the reference {c:.6}");
        worst = worst.min(c);
        let alone = &e.embed(&[t]).unwrap()[0];
        let same = dot(v, alone);
        assert!(same > 0.99999, "{t:?}: batched vs alone {same:.7}");
    }
    println!(
        "{} texts: lowest cosine with the reference {worst:.7}",
        TEXTS.len()
    );
}

#[test]
fn paraphrases_are_closer_than_unrelated_texts() {
    let e = embedder();
    let v = e
        .embed(&[
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The recipe needs two cups of flour and an egg.",
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
        ])
        .unwrap();
    let para = dot(&v[0], &v[1]);
    let unrelated = dot(&v[0], &v[2]);
    assert!(
        para > unrelated + 0.3,
        "paraphrase {para:.3}, unrelated {unrelated:.3}"
    );
    assert!(dot(&v[3], &v[4]) > dot(&v[3], &v[2]) + 0.3);
    assert!(dot(&v[3], &v[4]) > dot(&v[3], &v[0]));
}

#[test]
fn long_inputs_are_truncated_and_large_batches_split() {
    let e = embedder();
    let long = "word ".repeat(700);
    let toks = e.tokenize(&long);
    assert_eq!(toks.len(), 512);
    assert_eq!(toks[0], 101);
    assert_eq!(toks[511], 102);
    let r = reference(&[long.as_str()]);
    assert_eq!(toks, r.tokens[0]);
    let v = e.embed_with_usage(&[long.as_str(), "short"]).unwrap();
    assert_eq!(v.prompt_tokens, 512 + 3);
    assert!(cosine(&v.vectors[0], &r.embeddings[0]) >= 0.9999);
    // Many texts, packed into many batches: the same vectors as alone.
    let many: Vec<String> = (0..150)
        .map(|i| format!("sentence number {i} about topic {}", i % 7))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let all = e.embed(&refs).unwrap();
    assert_eq!(all.len(), 150);
    for i in [0, 63, 64, 65, 127, 149] {
        let alone = &e.embed(&[refs[i]]).unwrap()[0];
        assert!(dot(&all[i], alone) > 0.99999, "text {i}");
    }
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn usable_from_spawn_blocking_on_several_threads() {
    let e = embedder();
    let want = e.embed(&["concurrent call"]).unwrap().remove(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let got: Vec<Vec<f32>> = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let e = e.clone();
                tokio::task::spawn_blocking(move || {
                    e.embed(&["concurrent call"]).unwrap().remove(0)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for v in got {
        assert!(dot(&v, &want) > 0.99999);
    }
}

/// Latency and throughput (run with `--ignored --nocapture`).
#[test]
#[ignore = "benchmark"]
fn bench_embeddings() {
    let path = model_path();
    let sentence = "The quarterly report shows revenue grew by twelve percent year over year.";
    for threads in [2, 1] {
        let e = Embedder::load(&path, threads).unwrap();
        let n_tok = e.tokenize(sentence).len();
        for _ in 0..10 {
            e.embed(&[sentence]).unwrap();
        }
        let mut lat: Vec<f64> = (0..200)
            .map(|_| {
                let t = std::time::Instant::now();
                e.embed(&[sentence]).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let long: Vec<String> = (0..32)
            .map(|i| format!("{sentence} Item {i} of the batch."))
            .collect();
        let short: Vec<String> = (0..32).map(|i| format!("reset password {i}")).collect();
        let mut line = format!(
            "threads {threads}: one {n_tok}-token sentence p50 {:.2} ms p99 {:.2} ms",
            lat[100], lat[197]
        );
        for batch in [&long, &short] {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let tokens = e.embed_with_usage(&refs).unwrap().prompt_tokens;
            let reps = 10;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                e.embed(&refs).unwrap();
            }
            let per_batch = t.elapsed().as_secs_f64() / reps as f64;
            line += &format!(
                "; 32 texts of {:.0} tokens: {:.0} ms ({:.0} texts/s)",
                tokens as f64 / 32.0,
                per_batch * 1e3,
                32.0 / per_batch
            );
        }
        println!("{line}");
    }
}

#[test]
fn the_generation_engine_refuses_an_encoder() {
    let cfg = bantam_engine::EngineConfig::default();
    match bantam_engine::Engine::load(MODEL, &model_path(), &cfg, None) {
        Ok(_) => panic!("an encoder-only model loaded as a text generator"),
        Err(e) => assert!(
            matches!(e, bantam_engine::EngineError::NotGenerative(_))
                && e.to_string().contains("embedding model"),
            "{e}"
        ),
    }
}

/// The static table distilled from the model, once for all tests.
fn distilled() -> Arc<StaticEmbedder> {
    static S: OnceLock<Arc<StaticEmbedder>> = OnceLock::new();
    S.get_or_init(|| {
        let e = embedder();
        let t = std::time::Instant::now();
        let mut calls = 0;
        let s = StaticEmbedder::distill(&e, "test-source", &mut |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .expect("distil");
        println!(
            "distilled {} tokens in {:.1} s ({calls} progress calls)",
            e.model().n_vocab(),
            t.elapsed().as_secs_f64()
        );
        assert!(calls > 10);
        Arc::new(s)
    })
    .clone()
}

#[test]
fn static_embeddings_are_the_encoders_token_vectors_averaged() {
    let e = embedder();
    let s = distilled();
    assert_eq!(s.dim(), 384);
    // A token's vector is the encoder's embedding of that token alone ([CLS] t [SEP]).
    for word in ["password", "card", "the", "paris", "contract", "?"] {
        let toks = e.model().tokenize(word, false, false);
        assert_eq!(toks.len(), 1, "{word:?} is one token");
        let tv = s.token_vector(toks[0]).unwrap();
        let enc = &e.embed(&[word]).unwrap()[0];
        assert!(dot(tv, enc) > 0.99999, "{word}: {}", dot(tv, enc));
        assert!(dot(&s.embed(word), enc) > 0.99999, "{word}");
    }
    // Control tokens carry nothing.
    assert!(s.token_vector(101).unwrap().iter().all(|x| *x == 0.0));
    assert!(s.token_vector(-1).is_none());
    assert!(s.token_vector(1 << 20).is_none());
    // A text: the normalised mean of its tokens' vectors.
    let text = "How do I reset my password?";
    let toks = e.model().tokenize(text, false, false);
    assert!(toks.len() > 5);
    let mut mean = vec![0f32; 384];
    for t in &toks {
        for (m, x) in mean.iter_mut().zip(s.token_vector(*t).unwrap()) {
            *m += x;
        }
    }
    let n = dot(&mean, &mean).sqrt();
    let mean: Vec<f32> = mean.iter().map(|x| x / n).collect();
    let v = s.embed(text);
    assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
    assert!(dot(&v, &mean) > 0.99999);
    assert!(s.embed("").iter().all(|x| *x == 0.0));
    // Meaning survives: each question's nearest neighbour among the others is its
    // paraphrase. (The vectors are not the encoder's: averages of single-token
    // vectors share a large common direction, so their cosines with the encoder's
    // sentence vectors are only 0.25-0.8; a classifier on top does not mind.)
    let pairs = [
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
        ),
        (
            "The recipe needs two cups of flour and an egg.",
            "Bake the cake with flour, sugar and eggs.",
        ),
        (
            "A cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
        ),
        (
            "Is this non-compete clause enforceable?",
            "Can my employer enforce the restrictive covenant in my contract?",
        ),
        (
            "Transfer $500 from checking to savings.",
            "Move money between my bank accounts.",
        ),
    ];
    let v: Vec<(Vec<f32>, Vec<f32>)> = pairs
        .iter()
        .map(|(a, b)| (s.embed(a), s.embed(b)))
        .collect();
    for (i, (q, _)) in v.iter().enumerate() {
        let best = (0..v.len())
            .max_by(|&x, &y| dot(q, &v[x].1).total_cmp(&dot(q, &v[y].1)))
            .unwrap();
        assert_eq!(best, i, "{:?}: nearest is {:?}", pairs[i].0, pairs[best].1);
    }
}

#[test]
fn static_table_round_trips_and_refuses_a_damaged_file() {
    let s = distilled();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("derived/table.static-v1");
    s.save(&p).unwrap();
    let back = StaticEmbedder::load(&p, &model_path(), "test-source").unwrap();
    for t in TEXTS {
        assert_eq!(back.embed(t), s.embed(t), "{t:?}");
    }
    assert_eq!(
        std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let e = StaticEmbedder::load(&p, &model_path(), "another model").unwrap_err();
    assert!(e.to_string().contains("distilled from"), "{e}");
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let e = StaticEmbedder::load(&p, &model_path(), "test-source").unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    bytes[mid] ^= 1;
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    assert!(StaticEmbedder::load(&p, &model_path(), "test-source").is_err());
}

#[test]
fn a_decoders_hidden_states_pool_into_features_independent_of_the_batch() {
    let smol = blob_of("smollm2:135m");
    // As a sentence embedder a generative model is refused (it declares no pooling)…
    assert!(Embedder::load(&smol, 1).is_err());
    // …as a feature extractor its hidden states are pooled on request.
    let mean = Embedder::load_pooled(&smol, 1, bantam_engine::Pooling::Mean).unwrap();
    let last = Embedder::load_pooled(&smol, 1, bantam_engine::Pooling::Last).unwrap();
    assert_eq!(mean.dim(), 576);
    let texts = [
        "my card was declined at the supermarket",
        "the shop refused my card payment",
        "what is the weather like in Paris tomorrow",
    ];
    let all = mean.embed(&texts).unwrap();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for v in &all {
        assert!((cos(v, v) - 1.0).abs() < 1e-4);
    }
    assert!(
        cos(&all[0], &all[1]) > cos(&all[0], &all[2]),
        "paraphrases closer"
    );
    // A text's features do not depend on what else is in the batch (causal masks
    // per sequence, no attention across sequences).
    let alone = mean.embed(&texts[2..]).unwrap();
    assert!(
        cos(&alone[0], &all[2]) > 0.9999,
        "{}",
        cos(&alone[0], &all[2])
    );
    let l = last.embed(&texts[..1]).unwrap();
    assert!(
        cos(&l[0], &all[0]) < 0.9999,
        "last-token pooling differs from the mean"
    );
}
