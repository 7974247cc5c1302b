//! `POST /v1/chat/completions`.

use bantam_engine::{EngineError, EventStream, ModelPool};
use bantam_router::{BackendError, Reply};
use bantam_structured::tools::{self, StreamEvent, ToolStream};
use bantam_structured::StructuredError;
use bantam_types::generate::{
    FinishReason, GenerateEvent, GenerateRequest, LogprobEntry, OutputConstraint, Usage,
};
use bantam_types::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChatLogprobs, ChatTokenLogprob, FunctionCall, FunctionCallDelta, ResponseMessage,
    ToolCall, ToolCallDelta, TopLogprob,
};
use futures::Stream;

use super::usage_body;
use crate::error::ApiError;
use crate::state::{fingerprint, unix_now};
use crate::validate;

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

/// Answer a chat request with a local model (the local backend's chat call).
/// `backend` names the backend in stream errors.
pub(crate) async fn local_chat(
    pool: &ModelPool,
    retries: u32,
    backend: &str,
    req: ChatCompletionRequest,
) -> Result<Reply, ApiError> {
    let engine = pool.get(&req.model).await?;
    let v = validate::chat(&req, engine.info().n_vocab)?;
    let prompt = engine.render_chat(&v.messages, &v.tools)?;
    let mut gen = v.gen;
    gen.prompt = prompt;
    let tool_mode = matches!(gen.constraint, Some(OutputConstraint::ToolCalls { .. }));
    let want_logprobs = gen.logprobs.is_some();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if v.stream {
        let events = engine.generate(gen)?;
        let s = chat_stream(
            events,
            id,
            req.model.clone(),
            backend.to_string(),
            v.include_usage,
            want_logprobs,
            tool_mode,
        );
        return Ok(Reply::Stream(Box::pin(s)));
    }
    let (text, lps, finish_reason, usage) = collect_with_retries(&engine, gen, retries).await?;
    let mut message = ResponseMessage {
        role: "assistant".into(),
        content: Some(text),
        tool_calls: None,
    };
    let mut finish = finish_reason.as_str();
    if tool_mode {
        let parsed = tools::parse(message.content.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::from(EngineError::from(StructuredError::Violated(e))))?;
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
    let body = ChatCompletion {
        id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: req.model.clone(),
        system_fingerprint: fingerprint(),
        choices: vec![ChatChoice {
            index: 0,
            message,
            logprobs: want_logprobs.then(|| chat_logprobs(&lps)),
            finish_reason: finish.into(),
        }],
        usage: usage_body(&usage),
    };
    Ok(Reply::Full(to_value(&body)))
}

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Run a request to the end. A structured output cut short by `max_tokens` (small
/// models loop inside strings) or failing validation (a value the grammar admitted
/// but the validator rejects, such as an unusual e-mail address) is tried again up to
/// `retries` times with a growing repetition penalty; other errors are returned as
/// they are.
pub(crate) async fn collect_with_retries(
    engine: &bantam_engine::Engine,
    mut gen: GenerateRequest,
    retries: u32,
) -> Result<(String, Vec<LogprobEntry>, FinishReason, Usage), EngineError> {
    let mut attempt = 0;
    loop {
        match collect(engine.generate(gen.clone())?).await {
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

fn chat_stream(
    mut events: EventStream,
    id: String,
    model: String,
    backend: String,
    include_usage: bool,
    want_logprobs: bool,
    tool_mode: bool,
) -> impl Stream<Item = Result<serde_json::Value, BackendError>> {
    async_stream(move |tx| async move {
        let created = unix_now();
        let chunk = |choices: Vec<ChatChunkChoice>, usage| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            system_fingerprint: fingerprint(),
            choices,
            usage,
        };
        let mut tool_stream = tool_mode.then(ToolStream::default);
        let first = chunk(
            vec![ChatChunkChoice {
                index: 0,
                delta: ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: None,
            }],
            None,
        );
        if !send_json(&tx, &first).await {
            return;
        }
        while let Some(ev) = events.next().await {
            match ev {
                Ok(GenerateEvent::Delta { text, logprobs }) => {
                    let mut lp = want_logprobs.then(|| chat_logprobs(&logprobs));
                    let ds = deltas(tool_stream.as_mut(), text, false);
                    if ds.is_empty() && lp.as_ref().is_some_and(|l| !l.content.is_empty()) {
                        // Keep logprobs flowing even while text is held back.
                        let c = chunk(
                            vec![ChatChunkChoice {
                                index: 0,
                                delta: ChatDelta::default(),
                                logprobs: lp.take(),
                                finish_reason: None,
                            }],
                            None,
                        );
                        if !send_json(&tx, &c).await {
                            return;
                        }
                    }
                    for delta in ds {
                        let c = chunk(
                            vec![ChatChunkChoice {
                                index: 0,
                                delta,
                                logprobs: lp.take(),
                                finish_reason: None,
                            }],
                            None,
                        );
                        if !send_json(&tx, &c).await {
                            return;
                        }
                    }
                }
                Ok(GenerateEvent::Done {
                    finish_reason,
                    usage,
                    ..
                }) => {
                    for delta in deltas(tool_stream.as_mut(), String::new(), true) {
                        let c = chunk(
                            vec![ChatChunkChoice {
                                index: 0,
                                delta,
                                logprobs: None,
                                finish_reason: None,
                            }],
                            None,
                        );
                        if !send_json(&tx, &c).await {
                            return;
                        }
                    }
                    let finish = match &tool_stream {
                        Some(ts) if ts.calls() > 0 => "tool_calls",
                        _ => finish_reason.as_str(),
                    };
                    let last = chunk(
                        vec![ChatChunkChoice {
                            index: 0,
                            delta: ChatDelta::default(),
                            logprobs: None,
                            finish_reason: Some(finish.into()),
                        }],
                        None,
                    );
                    if !send_json(&tx, &last).await {
                        return;
                    }
                    if include_usage
                        && !send_json(&tx, &chunk(Vec::new(), Some(usage_body(&usage)))).await
                    {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(ApiError::from(e).for_backend(&backend))).await;
                    break;
                }
            }
        }
    })
}

/// Items of a local stream: chunks, or the error that ended it.
pub(crate) type Item = Result<serde_json::Value, BackendError>;

/// Serialize and send one chunk; false when the client is gone.
pub(crate) async fn send_json<T: serde::Serialize>(
    tx: &tokio::sync::mpsc::Sender<Item>,
    v: &T,
) -> bool {
    tx.send(Ok(to_value(v))).await.is_ok()
}

/// A stream fed by a producer task. When the client disconnects, the receiver is
/// dropped, the producer's next send fails, and the producer returns — dropping the
/// engine's event stream, which frees the request's slot.
pub(crate) fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Item> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Item>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(64);
    let task = tokio::spawn(producer(tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    AbortOnDrop {
        inner: stream,
        task,
    }
}

/// Aborts the producer when the response stream is dropped (client gone), so the
/// engine learns about the disconnect immediately rather than at the next send.
struct AbortOnDrop<S> {
    inner: S,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Stream<Item = Item> + Unpin> Stream for AbortOnDrop<S> {
    type Item = Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
