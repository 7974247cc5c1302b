//! `POST /v1/chat/completions`, validated.

use bantam_types::generate::{
    GenerateRequest, OutputConstraint, Prompt, TemplateMessage, ToolSpec,
};
use bantam_types::openai::{ChatCompletionRequest, MessageContent, StreamOptions};
use serde_json::Value;

use super::format::{self, ToolChoice};
use super::sampling::{self, max_tokens};
use super::Invalid;

/// Most messages in one request (rendering a conversation grows faster than its
/// length; no context of a small model holds more turns than this).
pub const MAX_MESSAGES: usize = bantam_types::limits::MAX_MESSAGES;

/// A chat request that passed validation.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    wire: ChatCompletionRequest,
    messages: Vec<TemplateMessage>,
    tools: Vec<ToolSpec>,
    gen: GenerateRequest,
    n: u32,
    stream: bool,
    include_usage: bool,
    response_format: bool,
}

impl ChatRequest {
    /// Validate a chat request.
    pub fn new(wire: ChatCompletionRequest) -> Result<Self, Invalid> {
        super::check_model(&wire.model)?;
        if wire.messages.is_empty() {
            return Err(Invalid::param(
                "messages",
                "messages must contain at least one message",
            ));
        }
        if wire.messages.len() > MAX_MESSAGES {
            return Err(Invalid::param(
                "messages",
                format!(
                    "at most {MAX_MESSAGES} messages per request, got {}; summarise or drop older turns",
                    wire.messages.len()
                ),
            ));
        }
        let mut messages = Vec::with_capacity(wire.messages.len());
        for (i, m) in wire.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant" | "tool") => r,
                other => {
                    return Err(Invalid::param(
                        &format!("messages[{i}].role"),
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
                                return Err(Invalid::param(
                                    &format!("messages[{i}].content[{j}]"),
                                    format!("content parts of type {kind:?} are not supported by text models; send text parts only"),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            if m.content.is_none() && m.tool_calls.is_none() {
                return Err(Invalid::param(
                    &format!("messages[{i}].content"),
                    "message content is required",
                ));
            }
            let tool_calls = match &m.tool_calls {
                Some(calls) => Some(template_tool_calls(calls, i)?),
                None => None,
            };
            messages.push(TemplateMessage {
                role: role.to_string(),
                content,
                tool_calls,
                tool_call_id: m.tool_call_id.clone(),
                name: m.name.clone(),
            });
        }
        let rf = match &wire.response_format {
            Some(rf) => format::response_format(rf)?,
            None => None,
        };
        let tools = match &wire.tools {
            Some(t) => format::tools(t)?,
            None => Vec::new(),
        };
        let choice = format::tool_choice(wire.tool_choice.as_ref())?;
        let tool_constraint =
            format::tool_constraint(&tools, &choice, wire.parallel_tool_calls.unwrap_or(true))?;
        let response_format = rf.is_some();
        let constraint = match (rf, tool_constraint) {
            (Some(_), Some(_)) => {
                return Err(Invalid::param(
                    "response_format",
                    "response_format cannot be combined with tools the model may call; set tool_choice to \"none\" or drop response_format",
                ))
            }
            (f, t) => f.or(t),
        };
        // With tool_choice "none" the model is not told about the tools at all.
        let tools = if choice == ToolChoice::None {
            Vec::new()
        } else {
            tools
        };
        let top_logprobs = wire.top_logprobs;
        if let Some(n) = top_logprobs {
            if n > bantam_types::limits::MAX_TOP_LOGPROBS {
                return Err(Invalid::param(
                    "top_logprobs",
                    "top_logprobs must be between 0 and 20",
                ));
            }
            if wire.logprobs != Some(true) {
                return Err(Invalid::param(
                    "top_logprobs",
                    "top_logprobs requires logprobs to be true",
                ));
            }
        }
        let (sampling, stop) = sampling::sampling(&wire.sampling)?;
        let n = sampling::choices(wire.sampling.n)?;
        let max = max_tokens("max_completion_tokens", wire.max_completion_tokens)?
            .or(max_tokens("max_tokens", wire.max_tokens)?);
        let stream = wire.stream.unwrap_or(false);
        if wire.stream_options.is_some() && !stream {
            return Err(Invalid::param(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        let include_usage = wire
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        let gen = GenerateRequest {
            prompt: Prompt::Tokens(Vec::new()),
            max_tokens: max,
            sampling,
            stop,
            logprobs: (wire.logprobs == Some(true)).then_some(top_logprobs.unwrap_or(0)),
            ignore_eos: wire.sampling.ignore_eos.unwrap_or(false),
            constraint,
        };
        Ok(Self {
            wire,
            messages,
            tools,
            gen,
            n,
            stream,
            include_usage,
            response_format,
        })
    }

    /// The request as the client sent it (model possibly replaced).
    pub fn wire(&self) -> &ChatCompletionRequest {
        &self.wire
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.wire.model
    }

    pub(crate) fn set_model(&mut self, model: &str) {
        self.wire.model = model.to_string();
    }

    /// The conversation, ready for a chat template (roles normalised, content parts
    /// joined, tool-call arguments as objects).
    pub fn messages(&self) -> &[TemplateMessage] {
        &self.messages
    }

    /// Tools to show the model (none with `tool_choice` `none`).
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// The output must be (or may become) tool calls.
    pub fn tool_mode(&self) -> bool {
        matches!(
            self.gen.constraint,
            Some(OutputConstraint::ToolCalls { .. })
        )
    }

    /// `response_format` asks for a structure (not plain text).
    pub fn response_format_constraint(&self) -> bool {
        self.response_format
    }

    /// Choices wanted (`n`).
    pub fn n(&self) -> u32 {
        self.n
    }

    /// Streamed.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The usage chunk ends the stream.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// Log-probabilities were asked for.
    pub fn logprobs(&self) -> bool {
        self.gen.logprobs.is_some()
    }

    /// The generation settings (everything but the prompt, which the backend renders
    /// with its model's template).
    pub fn settings(&self) -> &GenerateRequest {
        &self.gen
    }

    /// The engine request of choice `index` for a rendered prompt: the request's
    /// settings, seeded `seed + index` so that choices differ and each is
    /// reproducible.
    pub fn generate(&self, prompt: Prompt, index: u32) -> GenerateRequest {
        let mut g = self.gen.clone();
        g.prompt = prompt;
        g.sampling.seed = g.sampling.seed.wrapping_add(u64::from(index));
        g
    }

    pub(crate) fn force_usage(&mut self) {
        if self.stream {
            self.include_usage = true;
            let o = self
                .wire
                .stream_options
                .get_or_insert_with(StreamOptions::default);
            o.include_usage = true;
        }
    }

    pub(crate) fn for_cascade(&self) -> (Self, bool) {
        let mut r = self.clone();
        r.stream = false;
        r.include_usage = false;
        r.wire.stream = Some(false);
        r.wire.stream_options = None;
        let asked = r.gen.logprobs.is_some();
        if !asked {
            r.wire.logprobs = Some(true);
            r.gen.logprobs = Some(0);
        }
        (r, asked)
    }
}

/// An assistant message's `tool_calls` as chat templates expect them: OpenAI sends
/// `function.arguments` as a JSON *string*; templates (Qwen's, Llama's) serialise
/// the arguments themselves, so they get the parsed object (a string that is not
/// JSON stays a string).
fn template_tool_calls(calls: &Value, i: usize) -> Result<Value, Invalid> {
    let Value::Array(list) = calls else {
        return Err(Invalid::param(
            &format!("messages[{i}].tool_calls"),
            "tool_calls must be a list of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}",
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let mut c = c.clone();
        if let Some(args) = c.pointer_mut("/function/arguments") {
            if let Value::String(s) = args {
                if let Ok(v) = serde_json::from_str::<Value>(s) {
                    *args = v;
                }
            }
        }
        out.push(c);
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(extra: Value) -> Result<ChatRequest, Invalid> {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ChatRequest::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn rejects_out_of_range_parameters_naming_them() {
        for (extra, param) in [
            (json!({"temperature": 3.0}), "temperature"),
            (json!({"top_p": 0.0}), "top_p"),
            (json!({"n": 0}), "n"),
            (json!({"n": 99}), "n"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"presence_penalty": 5}), "presence_penalty"),
            (json!({"logit_bias": {"x": 1}}), "logit_bias"),
            (json!({"logit_bias": {"5": 101}}), "logit_bias"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
            (json!({"stop": [""]}), "stop"),
            (
                json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (json!({"model": ""}), "model"),
            (json!({"messages": []}), "messages"),
        ] {
            let err = req(extra.clone())
                .err()
                .unwrap_or_else(|| panic!("{extra} accepted"));
            assert_eq!(err.param.as_deref(), Some(param), "{extra}");
        }
    }

    #[test]
    fn accepts_typical_client_request() {
        let v = req(json!({"temperature": 0, "seed": 42, "max_tokens": 5, "stop": "\n", "logprobs": true, "top_logprobs": 2, "n": 3})).unwrap();
        let g = v.generate(Prompt::Tokens(vec![1]), 2);
        assert_eq!(g.sampling.temperature, 0.0);
        assert_eq!(g.sampling.seed, 44, "choice 2 uses seed + 2");
        assert_eq!(g.max_tokens, Some(5));
        assert_eq!(g.stop, vec!["\n".to_string()]);
        assert_eq!(g.logprobs, Some(2));
        assert_eq!(v.n(), 3);
    }

    #[test]
    fn unknown_roles_and_image_parts_are_rejected() {
        assert!(req(json!({"messages": [{"role": "wizard", "content": "x"}]})).is_err());
        let e = req(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn tool_call_arguments_reach_the_template_as_objects() {
        let history = |args: Value| {
            req(json!({"messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ]}))
            .unwrap()
        };
        let as_string = history(json!("{\"city\": \"Oslo\"}"));
        let as_object = history(json!({"city": "Oslo"}));
        assert_eq!(as_string.messages(), as_object.messages());
        assert_eq!(
            as_string.messages()[1].tool_calls.as_ref().unwrap()[0]["function"]["arguments"],
            json!({"city": "Oslo"})
        );
        // The wire request keeps what the client sent (upstreams expect the string).
        assert_eq!(
            as_string.to_wire_json()["messages"][1]["tool_calls"][0]["function"]["arguments"],
            json!("{\"city\": \"Oslo\"}")
        );
    }

    #[test]
    fn the_wire_request_round_trips_unknown_fields() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi", "x_note": 1}],
                          "temperature": 0.5, "some_vendor_field": {"a": [1, 2]}, "seed": 7});
        let mut r = ChatRequest::new(serde_json::from_value(body.clone()).unwrap()).unwrap();
        assert_eq!(r.to_wire_json(), body);
        r.set_model("other");
        assert_eq!(r.to_wire_json()["model"], "other");
    }

    impl ChatRequest {
        fn to_wire_json(&self) -> Value {
            serde_json::to_value(self.wire()).unwrap()
        }
    }
}
