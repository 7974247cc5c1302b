//! Text completions on a local model: every prompt × `n` choices submitted at once
//! (they decode together; choice i of a prompt is seeded seed + i), as a
//! `text_completion` or a stream of them.

use std::sync::Arc;

use bantam_api::{BackendError, CompletionRequest, Reply};
use bantam_engine::{Engine, EngineError};
use bantam_types::generate::{FinishReason, GenerateEvent, LogprobEntry, Prompt, Usage};
use bantam_types::openai::{Completion, CompletionChoice, CompletionLogprobs, UsageBody};
use futures::StreamExt;

use crate::chat::{blocking, check_vocab, fingerprint, fits_chars, unix_now};
use crate::error;
use crate::stream::{async_stream, send_json, to_value};
use crate::usage_body;

/// Append logprob entries to the legacy format, tracking character offsets.
fn push_logprobs(lp: &mut CompletionLogprobs, entries: &[LogprobEntry], offset: &mut u32) {
    for e in entries {
        lp.tokens.push(e.token.text.clone());
        lp.token_logprobs.push(e.token.logprob);
        let mut top = serde_json::Map::new();
        for t in &e.top {
            top.insert(t.text.clone(), serde_json::json!(t.logprob));
        }
        lp.top_logprobs.push(top);
        lp.text_offset.push(*offset);
        *offset += e.token.text.chars().count() as u32;
    }
}

/// Answer a text-completion request with a local model. `backend` names the
/// backend in errors.
pub(crate) async fn completions(
    engine: &Arc<Engine>,
    backend: &str,
    req: &CompletionRequest,
) -> Result<Reply, BackendError> {
    let err = |e| error::engine(backend, e);
    let n = req.n();
    check_vocab(engine, &req.generate(0, 0)).map_err(|e| match e {
        EngineError::BadToken(id) => BackendError::invalid(
            backend,
            Some("logit_bias"),
            format!("token id {id} is outside the model's vocabulary"),
        ),
        other => err(other),
    })?;
    let ctx = engine.info().ctx_size as usize;
    if let Some(t) = req
        .prompt_texts()
        .iter()
        .find(|t| !fits_chars(t.len(), ctx))
    {
        return Err(err(EngineError::ContextOverflow {
            prompt_tokens: t.len() / 4,
            ctx_size: ctx,
        }));
    }
    // Submit every prompt's choices before waiting: they decode together. Choice
    // `p * n + i` is prompt p's i-th. Tokenising happens on a blocking thread.
    let (e, r) = (engine.clone(), req.clone());
    let (streams, echoes) = blocking(move || {
        let mut streams = Vec::with_capacity(r.prompts().len() * n as usize);
        let mut echoes = Vec::with_capacity(streams.capacity());
        for (p, prompt) in r.prompts().iter().enumerate() {
            for i in 0..n {
                echoes.push(match prompt {
                    Prompt::Text { text, .. } if r.echo() => text.clone(),
                    Prompt::Tokens(t) if r.echo() => e.model().detokenize(t, false),
                    _ => String::new(),
                });
                streams.push(e.generate(r.generate(p, i))?);
            }
        }
        Ok((streams, echoes))
    })
    .await
    .map_err(err)?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let want_lp = req.logprobs();
    let per_prompt = n as usize;
    let model = req.model().to_string();
    let make = move |choices: Vec<CompletionChoice>, usage: Option<UsageBody>| Completion {
        id: id.clone(),
        object: "text_completion".into(),
        created: unix_now(),
        model: model.clone(),
        system_fingerprint: fingerprint(),
        choices,
        usage,
    };

    if req.stream() {
        let include_usage = req.include_usage();
        let backend = backend.to_string();
        let n = streams.len();
        let s = async_stream(move |tx| async move {
            let mut merged =
                futures::stream::select_all(streams.into_iter().enumerate().map(|(i, s)| {
                    futures::stream::unfold(
                        s,
                        |mut s| async move { s.next().await.map(|ev| (ev, s)) },
                    )
                    .map(move |ev| (i, ev))
                    .boxed()
                }));
            for (i, echo) in echoes.iter().enumerate() {
                if !echo.is_empty() {
                    let c = make(vec![choice(i, echo.clone(), None, None)], None);
                    if !send_json(&tx, &c).await {
                        return;
                    }
                }
            }
            let mut total = Usage::default();
            let mut done = 0;
            let mut offsets = vec![0u32; n];
            while let Some((i, ev)) = merged.next().await {
                match ev {
                    Ok(GenerateEvent::Delta { text, logprobs }) => {
                        let lp = want_lp.then(|| {
                            let mut lp = CompletionLogprobs::default();
                            push_logprobs(&mut lp, &logprobs, &mut offsets[i]);
                            lp
                        });
                        if !send_json(&tx, &make(vec![choice(i, text, lp, None)], None)).await {
                            return;
                        }
                    }
                    Ok(GenerateEvent::Done {
                        finish_reason,
                        usage,
                        ..
                    }) => {
                        add_usage(&mut total, &usage, i % per_prompt == 0);
                        if !send_json(
                            &tx,
                            &make(
                                vec![choice(i, String::new(), None, Some(finish_reason))],
                                None,
                            ),
                        )
                        .await
                        {
                            return;
                        }
                        done += 1;
                        if done == n {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(error::engine(&backend, e))).await;
                        break;
                    }
                }
            }
            if include_usage && done == n {
                let _ = send_json(&tx, &make(Vec::new(), Some(usage_body(&total)))).await;
            }
        });
        return Ok(Reply::Stream(Box::pin(s)));
    }

    let mut choices = Vec::with_capacity(streams.len());
    let mut total = Usage::default();
    for (i, mut s) in streams.into_iter().enumerate() {
        let mut text = echoes[i].clone();
        let mut lp = CompletionLogprobs::default();
        let mut offset = text.chars().count() as u32;
        let mut finish = None;
        while let Some(ev) = s.next().await {
            match ev.map_err(err)? {
                GenerateEvent::Delta { text: t, logprobs } => {
                    push_logprobs(&mut lp, &logprobs, &mut offset);
                    text.push_str(&t);
                }
                GenerateEvent::Done {
                    finish_reason,
                    usage,
                    ..
                } => {
                    add_usage(&mut total, &usage, i % per_prompt == 0);
                    finish = Some(finish_reason);
                }
            }
        }
        let finish = finish.ok_or_else(|| err(EngineError::Stopped))?;
        choices.push(choice(i, text, want_lp.then_some(lp), Some(finish)));
    }
    Ok(Reply::Full(to_value(&make(
        choices,
        Some(usage_body(&total)),
    ))))
}

fn choice(
    i: usize,
    text: String,
    logprobs: Option<CompletionLogprobs>,
    finish: Option<FinishReason>,
) -> CompletionChoice {
    CompletionChoice {
        text,
        index: i as u32,
        logprobs,
        finish_reason: finish.map(|f| f.as_str().to_string()),
    }
}

/// Add a choice's usage; a prompt's tokens count once however many choices it has
/// (`first`: this is the prompt's first choice).
fn add_usage(total: &mut Usage, u: &Usage, first: bool) {
    if first {
        total.prompt_tokens += u.prompt_tokens;
        total.cached_tokens += u.cached_tokens;
    }
    total.completion_tokens += u.completion_tokens;
    total.compute_us += u.compute_us;
}
