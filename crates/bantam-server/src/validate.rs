//! Turning OpenAI requests into validated engine requests.
//!
//! Every range check happens here and produces a 400 naming the parameter; what
//! leaves this module is a [`GenerateRequest`] the engine can run as is.

use bantam_engine::template::TemplateMessage;
use bantam_types::generate::{GenerateRequest, Prompt, SamplingParams, ToolSpec};
use bantam_types::openai::{
    ChatCompletionRequest, CompletionRequest, MessageContent, PromptSpec, SamplingOptions, StopSpec,
};

use crate::error::ApiError;
use crate::format;

fn range(param: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(ApiError::invalid(
            Some(param),
            format!("{param} must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn sampling(
    f: &SamplingOptions,
    n_vocab: usize,
) -> Result<(SamplingParams, Vec<String>), ApiError> {
    range("temperature", f.temperature, 0.0, 2.0)?;
    range("top_p", f.top_p, 0.0, 1.0)?;
    if f.top_p == Some(0.0) {
        return Err(ApiError::invalid(
            Some("top_p"),
            "top_p must be greater than 0",
        ));
    }
    range("min_p", f.min_p, 0.0, 1.0)?;
    range("frequency_penalty", f.frequency_penalty, -2.0, 2.0)?;
    range("presence_penalty", f.presence_penalty, -2.0, 2.0)?;
    range("repetition_penalty", f.repetition_penalty, 0.01, 10.0)?;
    if let Some(n) = f.n {
        if n != 1 {
            return Err(ApiError::invalid(
                Some("n"),
                format!("n must be 1 (got {n}); send separate requests for several choices"),
            ));
        }
    }
    let mut logit_bias = Vec::new();
    if let Some(map) = &f.logit_bias {
        for (k, &v) in map {
            let id: i32 = k.parse().map_err(|_| {
                ApiError::invalid(
                    Some("logit_bias"),
                    format!("logit_bias keys must be token ids, got {k:?}"),
                )
            })?;
            if id < 0 || id as usize >= n_vocab {
                return Err(ApiError::invalid(
                    Some("logit_bias"),
                    format!("token id {id} is outside the vocabulary (0..{n_vocab})"),
                ));
            }
            range("logit_bias", Some(v), -100.0, 100.0)?;
            logit_bias.push((id, v));
        }
        logit_bias.sort_by_key(|&(id, _)| id);
    }
    let stop = f.stop.clone().map(StopSpec::into_vec).unwrap_or_default();
    if stop.len() > 16 {
        return Err(ApiError::invalid(
            Some("stop"),
            "at most 16 stop sequences are allowed",
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("stop"),
            "stop sequences must not be empty",
        ));
    }
    let d = SamplingParams::default();
    let seed = match f.seed {
        Some(s) => s as u64,
        None => rand::random(),
    };
    Ok((
        SamplingParams {
            temperature: f.temperature.unwrap_or(d.temperature),
            top_p: f.top_p.unwrap_or(d.top_p),
            top_k: f.top_k.unwrap_or(d.top_k),
            min_p: f.min_p.unwrap_or(d.min_p),
            repetition_penalty: f.repetition_penalty.unwrap_or(d.repetition_penalty),
            frequency_penalty: f.frequency_penalty.unwrap_or(0.0),
            presence_penalty: f.presence_penalty.unwrap_or(0.0),
            penalty_last_n: d.penalty_last_n,
            seed,
            logit_bias,
        },
        stop,
    ))
}

fn max_tokens(param: &str, v: Option<u32>) -> Result<Option<u32>, ApiError> {
    match v {
        Some(0) => Err(ApiError::invalid(
            Some(param),
            format!("{param} must be at least 1"),
        )),
        other => Ok(other),
    }
}

/// A validated chat request.
pub(crate) struct ValidChat {
    pub messages: Vec<TemplateMessage>,
    /// Tools to show the model (empty with `tool_choice` `none`).
    pub tools: Vec<ToolSpec>,
    pub gen: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
}

/// Check a chat request (the prompt is rendered later, with the model's template).
pub(crate) fn chat(req: &ChatCompletionRequest, n_vocab: usize) -> Result<ValidChat, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must contain at least one message",
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            r @ ("system" | "user" | "assistant" | "tool") => r,
            other => {
                return Err(ApiError::invalid(
                    Some(&format!("messages[{i}].role")),
                    format!(
                        "unknown role {other:?}; use system, developer, user, assistant or tool"
                    ),
                ))
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut s = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => s.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                Some(&format!("messages[{i}].content[{j}]")),
                                format!("content parts of type {kind:?} are not supported by text models; send text parts only"),
                            ))
                        }
                    }
                }
                s
            }
        };
        if m.content.is_none() && m.tool_calls.is_none() {
            return Err(ApiError::invalid(
                Some(&format!("messages[{i}].content")),
                "message content is required",
            ));
        }
        messages.push(TemplateMessage {
            role: role.to_string(),
            content,
            tool_calls: m.tool_calls.clone(),
            tool_call_id: m.tool_call_id.clone(),
            name: m.name.clone(),
        });
    }
    let format = match &req.response_format {
        Some(rf) => format::response_format(rf)?,
        None => None,
    };
    let tools = match &req.tools {
        Some(t) => format::tools(t)?,
        None => Vec::new(),
    };
    let choice = format::tool_choice(req.tool_choice.as_ref())?;
    let tool_constraint =
        format::tool_constraint(&tools, &choice, req.parallel_tool_calls.unwrap_or(true))?;
    let constraint = match (format, tool_constraint) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                Some("response_format"),
                "response_format cannot be combined with tools the model may call; set tool_choice to \"none\" or drop response_format",
            ))
        }
        (f, t) => f.or(t),
    };
    // With tool_choice "none" the model is not told about the tools at all.
    let tools = if choice == format::ToolChoice::None {
        Vec::new()
    } else {
        tools
    };
    let top_logprobs = req.top_logprobs;
    if let Some(n) = top_logprobs {
        if n > 20 {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                "top_logprobs must be between 0 and 20",
            ));
        }
        if req.logprobs != Some(true) {
            return Err(ApiError::invalid(
                Some("top_logprobs"),
                "top_logprobs requires logprobs to be true",
            ));
        }
    }
    let (sampling, stop) = sampling(&req.sampling, n_vocab)?;
    let max = max_tokens("max_completion_tokens", req.max_completion_tokens)?
        .or(max_tokens("max_tokens", req.max_tokens)?);
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            Some("stream_options"),
            "stream_options is only allowed when stream is true",
        ));
    }
    Ok(ValidChat {
        messages,
        tools,
        gen: GenerateRequest {
            prompt: Prompt::Tokens(Vec::new()),
            max_tokens: max,
            sampling,
            stop,
            logprobs: (req.logprobs == Some(true)).then_some(top_logprobs.unwrap_or(0)),
            ignore_eos: req.sampling.ignore_eos.unwrap_or(false),
            constraint,
        },
        stream,
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// A validated completion request: one engine request per prompt.
pub(crate) struct ValidCompletion {
    pub prompts: Vec<Prompt>,
    pub gen: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
    pub echo: bool,
}

pub(crate) fn completion(
    req: &CompletionRequest,
    n_vocab: usize,
) -> Result<ValidCompletion, ApiError> {
    let text = |t: &String| Prompt::Text {
        text: t.clone(),
        special: false,
        add_bos: true,
    };
    let prompts: Vec<Prompt> = match &req.prompt {
        PromptSpec::Text(t) => vec![text(t)],
        PromptSpec::Texts(ts) => ts.iter().map(text).collect(),
        PromptSpec::Tokens(t) => vec![Prompt::Tokens(t.clone())],
        PromptSpec::TokenLists(ls) => ls.iter().map(|t| Prompt::Tokens(t.clone())).collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid(
            Some("prompt"),
            "prompt must not be an empty list",
        ));
    }
    if prompts.len() > 64 {
        return Err(ApiError::invalid(
            Some("prompt"),
            "at most 64 prompts per request",
        ));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid(
            Some("suffix"),
            "suffix (fill-in-the-middle) is not supported",
        ));
    }
    if req.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid(Some("best_of"), "best_of must be 1"));
    }
    if req.logprobs.is_some_and(|n| n > 20) {
        return Err(ApiError::invalid(
            Some("logprobs"),
            "logprobs must be between 0 and 20",
        ));
    }
    let (sampling, stop) = sampling(&req.sampling, n_vocab)?;
    let stream = req.stream.unwrap_or(false);
    if req.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            Some("stream_options"),
            "stream_options is only allowed when stream is true",
        ));
    }
    Ok(ValidCompletion {
        prompts,
        gen: GenerateRequest {
            prompt: Prompt::Tokens(Vec::new()),
            // OpenAI's default for completions.
            max_tokens: Some(max_tokens("max_tokens", req.max_tokens)?.unwrap_or(16)),
            sampling,
            stop,
            logprobs: req.logprobs,
            ignore_eos: req.sampling.ignore_eos.unwrap_or(false),
            constraint: None,
        },
        stream,
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        echo: req.echo.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_req(extra: serde_json::Value) -> ChatCompletionRequest {
        let mut v =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rejects_out_of_range_parameters_naming_them() {
        for (extra, param) in [
            (serde_json::json!({"temperature": 3.0}), "temperature"),
            (serde_json::json!({"top_p": 0.0}), "top_p"),
            (serde_json::json!({"n": 2}), "n"),
            (serde_json::json!({"max_tokens": 0}), "max_tokens"),
            (
                serde_json::json!({"presence_penalty": 5}),
                "presence_penalty",
            ),
            (
                serde_json::json!({"logit_bias": {"999999": 1}}),
                "logit_bias",
            ),
            (serde_json::json!({"top_logprobs": 3}), "top_logprobs"),
            (serde_json::json!({"stop": [""]}), "stop"),
            (
                serde_json::json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
        ] {
            let err = chat(&chat_req(extra.clone()), 1000)
                .err()
                .unwrap_or_else(|| panic!("{extra} accepted"));
            assert_eq!(err.body.param.as_deref(), Some(param), "{extra}");
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn accepts_typical_client_request() {
        let v = chat(&chat_req(serde_json::json!({"temperature": 0, "seed": 42, "max_tokens": 5, "stop": "\n", "logprobs": true, "top_logprobs": 2})), 1000).unwrap();
        assert_eq!(v.gen.sampling.temperature, 0.0);
        assert_eq!(v.gen.sampling.seed, 42);
        assert_eq!(v.gen.max_tokens, Some(5));
        assert_eq!(v.gen.stop, vec!["\n".to_string()]);
        assert_eq!(v.gen.logprobs, Some(2));
    }

    #[test]
    fn unknown_roles_and_image_parts_are_rejected() {
        let r: ChatCompletionRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        )
        .unwrap();
        assert!(chat(&r, 10).is_err());
        let r: ChatCompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})).unwrap();
        assert_eq!(
            chat(&r, 10).err().unwrap().body.param.as_deref(),
            Some("messages[0].content[0]")
        );
    }
}
