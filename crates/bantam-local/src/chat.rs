//! Chat completions on a local model: the request's messages through the model's
//! chat template, `n` choices generated together (choice i seeded seed + i), tool
//! calls parsed out of the text, structured outputs retried, and the answer as a
//! `chat.completion` or a stream of `chat.completion.chunk`s.

use bantam_api::{BackendError, ChatRequest, Reply};
use std::sync::Arc;

use bantam_engine::{Engine, EngineError, EventStream};
use bantam_structured::tools::{self, StreamEvent, ToolStream};
use bantam_structured::{StructuredError, Validator};
use bantam_types::generate::{
    FinishReason, GenerateEvent, GenerateRequest, LogprobEntry, Prompt, Usage,
};
use bantam_types::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta, ChatLogprobs,
    ChatTokenLogprob, FunctionCall, FunctionCallDelta, ResponseMessage, ToolCall, ToolCallDelta,
    TopLogprob,
};
use futures::{Stream, StreamExt};

use crate::error;
use crate::stream::{async_stream, send_json, to_value, Item};

pub(crate) fn chat_logprobs(entries: &[LogprobEntry]) -> ChatLogprobs {
    ChatLogprobs {
        content: entries
            .iter()
            .map(|e| ChatTokenLogprob {
                token: e.token.text.clone(),
                logprob: e.token.logprob,
                bytes: e.token.bytes.clone(),
                top_logprobs: e
                    .top
                    .iter()
                    .map(|t| TopLogprob {
                        token: t.text.clone(),
                        logprob: t.logprob,
                        bytes: t.bytes.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The engine request of a validated chat request's first choice on `engine`: its
/// messages rendered with the model's chat template, `logit_bias` checked against
/// the vocabulary (for `bantam run` and other callers that drive the engine
/// themselves).
pub fn chat_generate(engine: &Engine, req: &ChatRequest) -> Result<GenerateRequest, BackendError> {
    let name = engine.info().name.clone();
    check_vocab(engine, req.settings()).map_err(|e| error::engine(&name, e))?;
    let prompt = engine
        .render_chat(req.messages(), req.tools())
        .map_err(|e| error::engine(&name, e))?;
    Ok(req.generate(prompt, 0))
}

/// Token ids of `logit_bias` must be in the model's vocabulary.
pub(crate) fn check_vocab(engine: &Engine, g: &GenerateRequest) -> Result<(), EngineError> {
    let n = engine.info().n_vocab;
    match g
        .sampling
        .logit_bias
        .iter()
        .find(|(id, _)| *id as usize >= n)
    {
        Some((id, _)) => Err(EngineError::BadToken(*id)),
        None => Ok(()),
    }
}

fn bad_bias(backend: &str, e: EngineError) -> BackendError {
    match e {
        EngineError::BadToken(id) => BackendError::invalid(
            backend,
            Some("logit_bias"),
            format!("token id {id} is outside the model's vocabulary"),
        ),
        other => error::engine(backend, other),
    }
}

/// Characters of text a context of `ctx` tokens can possibly hold: a generous bound
/// (tokens are rarely shorter than one character on average, never shorter than a
/// quarter), so a prompt over it is refused before it is rendered or tokenised.
pub(crate) fn fits_chars(chars: usize, ctx: usize) -> bool {
    chars <= ctx.saturating_mul(8).max(4096)
}

/// Render `req`'s messages with the model's template and queue its `n` choices, on a
/// blocking thread: template rendering, tokenisation and compiling an output
/// constraint grow with the request and must not hold up the async workers (other
/// requests, `/health`).
pub(crate) async fn submit_chat(
    engine: &Arc<Engine>,
    req: &ChatRequest,
) -> Result<(Prompt, Vec<EventStream>), EngineError> {
    let chars: usize = req.messages().iter().map(|m| m.content.len()).sum();
    let ctx = engine.info().ctx_size as usize;
    // Every message costs template tokens too: more messages than the context has
    // tokens can never fit.
    if !fits_chars(chars, ctx) || req.messages().len() > ctx {
        return Err(EngineError::ContextOverflow {
            prompt_tokens: chars / 4,
            ctx_size: ctx,
        });
    }
    let (engine, req) = (engine.clone(), req.clone());
    blocking(move || {
        let prompt = engine.render_chat(req.messages(), req.tools())?;
        let streams = (0..req.n())
            .map(|i| engine.generate(req.generate(prompt.clone(), i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((prompt, streams))
    })
    .await
}

/// Run `f` on a blocking thread; a panic there is an engine error, not a crash.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(EngineError::Decode(format!("a worker failed: {e}"))))
}

/// Answer a chat request with a local model. `backend` names the backend in errors.
pub(crate) async fn chat(
    engine: &Arc<Engine>,
    backend: &str,
    retries: u32,
    req: &ChatRequest,
) -> Result<Reply, BackendError> {
    let err = |e| error::engine(backend, e);
    check_vocab(engine, req.settings()).map_err(|e| bad_bias(backend, e))?;
    let (prompt, streams) = submit_chat(engine, req).await.map_err(err)?;
    // The tools' validator: calls the model wrote without tags are recognised when
    // they validate.
    let validator = if req.tool_mode() {
        Some(Validator::tools(req.tools()).map_err(|e| err(EngineError::from(e)))?)
    } else {
        None
    };
    let want_logprobs = req.logprobs();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if req.stream() {
        let s = chat_stream(
            streams,
            id,
            req.model().to_string(),
            backend.to_string(),
            req.include_usage(),
            want_logprobs,
            validator,
        );
        return Ok(Reply::Stream(Box::pin(s)));
    }
    // Every choice was submitted before any is awaited: they decode together.
    let runs = streams.into_iter().enumerate().map(|(i, first)| {
        collect_with_retries(
            engine,
            req.generate(prompt.clone(), i as u32),
            Some(first),
            retries,
        )
    });
    let results = futures::future::join_all(runs).await;
    let mut choices = Vec::with_capacity(results.len());
    let mut usage = Usage::default();
    for (i, r) in results.into_iter().enumerate() {
        let (text, lps, finish_reason, u) = r.map_err(err)?;
        if i == 0 {
            // OpenAI counts the prompt once, however many choices.
            usage.prompt_tokens = u.prompt_tokens;
            usage.cached_tokens = u.cached_tokens;
        }
        usage.completion_tokens += u.completion_tokens;
        usage.compute_us += u.compute_us;
        let mut message = ResponseMessage {
            role: "assistant".into(),
            content: Some(text),
            tool_calls: None,
        };
        let mut finish = finish_reason.as_str();
        if let Some(v) = &validator {
            let text = message.content.as_deref().unwrap_or("");
            let mut parsed = tools::parse(text)
                .map_err(|e| err(EngineError::from(StructuredError::Violated(e))))?;
            if parsed.calls.is_empty() {
                // A call written as a fenced or bare JSON object instead of the tags.
                if let Some(p) = tools::recognise(text, v) {
                    parsed = p;
                }
            }
            if !parsed.calls.is_empty() {
                finish = "tool_calls";
                message.content = parsed.content;
                message.tool_calls = Some(
                    parsed
                        .calls
                        .into_iter()
                        .map(|c| ToolCall {
                            id: call_id(),
                            kind: "function".into(),
                            function: FunctionCall {
                                name: c.name,
                                arguments: c.arguments,
                            },
                        })
                        .collect(),
                );
            }
        }
        choices.push(ChatChoice {
            index: i as u32,
            message,
            logprobs: want_logprobs.then(|| chat_logprobs(&lps)),
            finish_reason: finish.into(),
        });
    }
    let body = ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: req.model().to_string(),
        system_fingerprint: fingerprint(),
        choices,
        usage: crate::usage_body(&usage),
    };
    Ok(Reply::Full(to_value(&body)))
}

/// Run a request to the end. A structured output cut short by `max_tokens` (small
/// models loop inside strings) or failing validation (a value the grammar admitted
/// but the validator rejects, such as an unusual e-mail address) is tried again up to
/// `retries` times with a growing repetition penalty; other errors are returned as
/// they are.
/// `first` is the first attempt's stream when it was already submitted.
pub async fn collect_with_retries(
    engine: &Arc<Engine>,
    mut gen: GenerateRequest,
    mut first: Option<EventStream>,
    retries: u32,
) -> Result<(String, Vec<LogprobEntry>, FinishReason, Usage), EngineError> {
    let mut attempt = 0;
    loop {
        let events = match first.take() {
            Some(s) => s,
            None => {
                let (e, g) = (engine.clone(), gen.clone());
                blocking(move || e.generate(g)).await?
            }
        };
        match collect(events).await {
            Err(EngineError::Constraint(
                why @ (StructuredError::Incomplete(_) | StructuredError::Violated(_)),
            )) if attempt < retries && gen.constraint.is_some() => {
                attempt += 1;
                gen.sampling.repetition_penalty = gen.sampling.repetition_penalty.max(1.0) + 0.15;
                tracing::info!(attempt, %why, penalty = gen.sampling.repetition_penalty, "structured output incomplete; retrying");
            }
            other => return other,
        }
    }
}

async fn collect(
    mut events: EventStream,
) -> Result<(String, Vec<LogprobEntry>, FinishReason, Usage), EngineError> {
    let mut text = String::new();
    let mut lps: Vec<LogprobEntry> = Vec::new();
    while let Some(ev) = events.next().await {
        match ev? {
            GenerateEvent::Delta { text: t, logprobs } => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            GenerateEvent::Done {
                finish_reason,
                usage,
                ..
            } => return Ok((text, lps, finish_reason, usage)),
        }
    }
    Err(EngineError::Stopped)
}

fn call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Chat deltas for a piece of generated text: plain content, or tool-call pieces when
/// the request has tools.
fn deltas(tools: Option<&mut ToolStream>, text: String, end: bool) -> Vec<ChatDelta> {
    let Some(ts) = tools else {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![ChatDelta {
                content: Some(text),
                ..ChatDelta::default()
            }]
        };
    };
    let mut events = ts.push(&text);
    if end {
        events.extend(ts.finish());
    }
    events
        .into_iter()
        .map(|e| match e {
            StreamEvent::Content(t) => ChatDelta {
                content: Some(t),
                ..ChatDelta::default()
            },
            StreamEvent::CallStart { index, name } => ChatDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: index as u32,
                    id: Some(call_id()),
                    kind: Some("function".into()),
                    function: FunctionCallDelta {
                        name: Some(name),
                        arguments: Some(String::new()),
                    },
                }]),
                ..ChatDelta::default()
            },
            StreamEvent::Arguments { index, fragment } => ChatDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: index as u32,
                    id: None,
                    kind: None,
                    function: FunctionCallDelta {
                        name: None,
                        arguments: Some(fragment),
                    },
                }]),
                ..ChatDelta::default()
            },
        })
        .collect()
}

/// The chunks of `n` streamed choices (one engine stream each, interleaved as their
/// tokens come): a first chunk with the role per choice, content (or tool-call)
/// deltas, a finish chunk per choice, then the usage chunk when asked for.
fn chat_stream(
    streams: Vec<EventStream>,
    id: String,
    model: String,
    backend: String,
    include_usage: bool,
    want_logprobs: bool,
    tools: Option<Validator>,
) -> impl Stream<Item = Item> {
    async_stream(move |tx| async move {
        let created = unix_now();
        let n = streams.len();
        let chunk = |choices: Vec<ChatChunkChoice>, usage| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            system_fingerprint: fingerprint(),
            choices,
            usage,
        };
        let one = |index: usize, delta: ChatDelta, logprobs, finish_reason| ChatChunkChoice {
            index: index as u32,
            delta,
            logprobs,
            finish_reason,
        };
        let mut tool_streams: Vec<Option<ToolStream>> = (0..n)
            .map(|_| tools.clone().map(ToolStream::with_tools))
            .collect();
        for i in 0..n {
            let first = ChatDelta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                tool_calls: None,
            };
            if !send_json(&tx, &chunk(vec![one(i, first, None, None)], None)).await {
                return;
            }
        }
        let mut merged =
            futures::stream::select_all(streams.into_iter().enumerate().map(|(i, s)| {
                futures::stream::unfold(s, |mut s| async move { s.next().await.map(|ev| (ev, s)) })
                    .map(move |ev| (i, ev))
                    .boxed()
            }));
        let mut usage = Usage::default();
        let mut done = 0;
        while let Some((i, ev)) = merged.next().await {
            match ev {
                Ok(GenerateEvent::Delta { text, logprobs }) => {
                    let mut lp = want_logprobs.then(|| chat_logprobs(&logprobs));
                    let ds = deltas(tool_streams[i].as_mut(), text, false);
                    if ds.is_empty() && lp.as_ref().is_some_and(|l| !l.content.is_empty()) {
                        // Keep logprobs flowing even while text is held back.
                        let c = chunk(vec![one(i, ChatDelta::default(), lp.take(), None)], None);
                        if !send_json(&tx, &c).await {
                            return;
                        }
                    }
                    for delta in ds {
                        let c = chunk(vec![one(i, delta, lp.take(), None)], None);
                        if !send_json(&tx, &c).await {
                            return;
                        }
                    }
                }
                Ok(GenerateEvent::Done {
                    finish_reason,
                    usage: u,
                    ..
                }) => {
                    for delta in deltas(tool_streams[i].as_mut(), String::new(), true) {
                        if !send_json(&tx, &chunk(vec![one(i, delta, None, None)], None)).await {
                            return;
                        }
                    }
                    let finish = match &tool_streams[i] {
                        Some(ts) if ts.calls() > 0 => "tool_calls",
                        _ => finish_reason.as_str(),
                    };
                    let last = one(i, ChatDelta::default(), None, Some(finish.into()));
                    if !send_json(&tx, &chunk(vec![last], None)).await {
                        return;
                    }
                    if done == 0 {
                        usage.prompt_tokens = u.prompt_tokens;
                        usage.cached_tokens = u.cached_tokens;
                    }
                    usage.completion_tokens += u.completion_tokens;
                    usage.compute_us += u.compute_us;
                    done += 1;
                    if done == n {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(error::engine(&backend, e))).await;
                    return;
                }
            }
        }
        if include_usage && done == n {
            let _ = send_json(&tx, &chunk(Vec::new(), Some(crate::usage_body(&usage)))).await;
        }
    })
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `fp_bantam_<version>`.
pub(crate) fn fingerprint() -> String {
    format!("fp_bantam_{}", env!("CARGO_PKG_VERSION"))
}
