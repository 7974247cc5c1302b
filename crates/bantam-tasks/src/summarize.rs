//! Summarisation, hierarchical when the input does not fit the context: the text is
//! cut at sentence boundaries into chunks that fit, each chunk is summarised (as many
//! at once as the engine has slots), the summaries are joined and the process
//! repeats until one final summary in the requested style can be written. Nothing is
//! truncated silently: the response says how many chunks and levels it took.

use bantam_api::SummarizeTask;
use bantam_engine::template::TemplateMessage;
use bantam_engine::Engine;
use bantam_types::generate::OutputConstraint;
use bantam_types::tasks::{SummarizeResponse, TaskUsage};

use crate::generate::{complete, complete_timed};
use crate::TaskError;

/// Greedy decoding of free text loops on small models; Ollama's default penalty.
const REPETITION_PENALTY: f32 = 1.1;
/// Most levels of summaries of summaries.
const MAX_LEVELS: u32 = 6;

/// Run CPU-heavy work (tokenising a long input) without holding up the other tasks
/// of a multi-threaded runtime (the server's): they move to other workers meanwhile.
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Split `text` into pieces of at most `budget` tokens, at sentence or line ends.
pub fn chunk(engine: &Engine, text: &str, budget: usize) -> Vec<String> {
    let model = engine.model();
    let count = |s: &str| model.tokenize(s, false, false).len();
    // Sentences (keeping their terminators) and line breaks.
    let mut units: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if matches!(ch, '.' | '!' | '?' | '\n') {
            units.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        units.push(cur);
    }
    let mut out: Vec<String> = Vec::new();
    let mut piece = String::new();
    let mut piece_tokens = 0;
    for u in units {
        let n = count(&u);
        if n > budget {
            // One enormous sentence: cut by tokens.
            if !piece.is_empty() {
                out.push(std::mem::take(&mut piece));
                piece_tokens = 0;
            }
            let toks = model.tokenize(&u, false, false);
            for w in toks.chunks(budget.max(1)) {
                out.push(model.detokenize(w, false));
            }
            continue;
        }
        if piece_tokens + n > budget && !piece.is_empty() {
            out.push(std::mem::take(&mut piece));
            piece_tokens = 0;
        }
        piece.push_str(&u);
        piece_tokens += n;
    }
    if !piece.trim().is_empty() {
        out.push(piece);
    }
    out
}

/// Run a summarisation. The response's `timings` are the final summary's generation
/// (its decode time tells when the summary's first token came).
pub async fn summarize(
    engine: &Engine,
    req: &SummarizeTask,
) -> Result<SummarizeResponse, TaskError> {
    let style = req.style();
    let n = req.length();
    let max_tokens = req.max_tokens();
    let ctx = engine.info().ctx_size as usize;
    // Room for the instructions, the chat template and the answer.
    let budget = ctx.saturating_sub(max_tokens as usize + 160);
    if budget < 128 {
        return Err(TaskError::invalid(
            "max_tokens",
            format!("max_tokens {max_tokens} leaves no room for input in a {ctx}-token context"),
        ));
    }
    let model = engine.model();
    let mut usage = TaskUsage::default();
    let mut text = req.input.clone();
    let mut levels = 0;
    let mut leaf_chunks = 1;
    let tokens = |t: &str| cpu(|| model.tokenize(t, false, false).len());
    while tokens(&text) > budget {
        if levels >= MAX_LEVELS {
            return Err(TaskError::invalid(
                "input",
                "the input is too long to summarise within the level limit; split it first",
            ));
        }
        let pieces = cpu(|| chunk(engine, &text, budget));
        if levels == 0 {
            leaf_chunks = pieces.len() as u32;
        }
        let part_tokens = (max_tokens / 2).max(64);
        let mut summaries = Vec::with_capacity(pieces.len());
        let wave = engine.info().parallel.max(1) as usize;
        for group in pieces.chunks(wave) {
            let futs = group.iter().map(|p| {
                let msgs = [
                    TemplateMessage::new(
                        "system",
                        "Summarize this part of a longer document in a few sentences, keeping names, numbers and decisions.",
                    ),
                    TemplateMessage::new("user", p),
                ];
                async move {
                    let prompt = engine.render_chat(&msgs, &[])?;
                    complete(engine, prompt, part_tokens, None, REPETITION_PENALTY).await
                }
            });
            for r in futures::future::join_all(futs).await {
                let (s, u) = r?;
                add(&mut usage, &u);
                summaries.push(s.trim().to_string());
            }
        }
        let joined = summaries.join("\n\n");
        if tokens(&joined) >= tokens(&text) {
            return Err(TaskError::invalid(
                "input",
                "the partial summaries are not shorter than the text; lower max_tokens",
            ));
        }
        text = joined;
        levels += 1;
    }
    let prompt = engine.render_chat(&req.messages(&text), &[])?;
    let constraint = (style == "bullets" && !req.has_template())
        .then(|| OutputConstraint::Regex(format!("(?:- [^\\n]{{1,400}}\\n){{1,{n}}}")));
    let (summary, u, timings) =
        complete_timed(engine, prompt, max_tokens, constraint, REPETITION_PENALTY).await?;
    add(&mut usage, &u);
    let resp = SummarizeResponse {
        object: "summary".into(),
        model: req.model.clone(),
        summary: summary.trim().to_string(),
        chunks: leaf_chunks,
        levels,
        usage,
        timings: Some(timings),
    };
    Ok(resp)
}

fn add(t: &mut TaskUsage, u: &bantam_types::generate::Usage) {
    t.prompt_tokens += u.prompt_tokens - u.cached_tokens;
    t.cached_tokens += u.cached_tokens;
    t.completion_tokens += u.completion_tokens;
    t.total_tokens += u.prompt_tokens + u.completion_tokens;
    t.compute_ms = Some(t.compute_ms.unwrap_or(0.0) + u.compute_us as f64 / 1e3);
}
