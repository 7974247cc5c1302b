//! `bantam run`: one answer, or an interactive chat.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use bantam_api::{ChatRequest, CompletionRequest};
use bantam_engine::Engine;
use bantam_types::generate::{GenerateEvent, GenerateRequest, Prompt};
use bantam_types::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest as WireCompletion, MessageContent,
    PromptSpec, SamplingOptions,
};
use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model name (pulled first if it is a catalog name that is not installed) or a .gguf path.
    pub model: String,
    /// The prompt ("-" reads stdin). Without one, start an interactive chat.
    pub prompt: Option<String>,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Sampling temperature (0 = greedy, deterministic).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Top-k sampling (0 = off).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the prompt as plain text instead of chatting (no chat template).
    #[arg(long)]
    pub raw: bool,
    /// Context size per request.
    #[arg(long)]
    pub ctx_size: Option<u32>,
    /// Threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Print timing statistics to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Print the rendered prompt (after the chat template) to stderr.
    #[arg(long)]
    pub show_prompt: bool,
}

fn message(role: &str, text: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: Some(MessageContent::Text(text.into())),
        name: None,
        tool_calls: None,
        tool_call_id: None,
        extra: Default::default(),
    }
}

impl RunArgs {
    /// The sampling flags as a request's (range-checked when it is validated).
    fn sampling(&self) -> SamplingOptions {
        SamplingOptions {
            temperature: self.temperature.map(f64::from),
            top_p: self.top_p.map(f64::from),
            top_k: self.top_k,
            seed: Some(self.seed as i64),
            ..SamplingOptions::default()
        }
    }

    /// The engine request for a conversation, validated as the server validates a
    /// chat request.
    fn chat(&self, engine: &Engine, history: &[ChatMessage]) -> Result<GenerateRequest> {
        let wire = ChatCompletionRequest {
            model: self.model.clone(),
            messages: history.to_vec(),
            max_tokens: Some(self.max_tokens),
            sampling: self.sampling(),
            ..ChatCompletionRequest::default()
        };
        let req = ChatRequest::new(wire).map_err(super::flag_error)?;
        Ok(bantam_local::chat_generate(engine, &req)?)
    }

    /// The engine request for raw text, validated as a text completion.
    fn raw(&self, text: String) -> Result<GenerateRequest> {
        let wire = WireCompletion {
            model: self.model.clone(),
            prompt: PromptSpec::Text(text),
            max_tokens: Some(self.max_tokens),
            stream: None,
            stream_options: None,
            logprobs: None,
            echo: None,
            suffix: None,
            best_of: None,
            user: None,
            sampling: self.sampling(),
            extra: Default::default(),
        };
        let req = CompletionRequest::new(wire).map_err(super::flag_error)?;
        Ok(req.generate(0, 0))
    }
}

pub fn run(home: &Path, a: RunArgs) -> Result<()> {
    let engine = super::load_engine(home, &a.model, 1, a.ctx_size, a.threads)?;
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &a.system {
        history.push(message("system", s));
    }

    if let Some(p) = &a.prompt {
        let text = if p == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            s
        } else {
            p.clone()
        };
        let gen = if a.raw {
            a.raw(text)?
        } else {
            history.push(message("user", &text));
            a.chat(&engine, &history)?
        };
        answer(&engine, gen, &a)?;
        return Ok(());
    }

    if a.raw {
        bail!("--raw needs a prompt");
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "chatting with {} — /bye to quit, /clear to forget the conversation",
            engine.info().name
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            eprint!(">>> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        match line {
            "" => continue,
            "/bye" | "/exit" | "/quit" => break,
            "/clear" => {
                history.retain(|m| m.role == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(message("user", line));
        let gen = a.chat(&engine, &history)?;
        let reply = answer(&engine, gen, &a)?;
        history.push(message("assistant", &reply));
    }
    Ok(())
}

/// Stream one answer to stdout; returns its text.
fn answer(engine: &Engine, gen: GenerateRequest, a: &RunArgs) -> Result<String> {
    if a.show_prompt {
        if let Prompt::Text { text, .. } = &gen.prompt {
            let toks = engine.tokenize(&gen.prompt)?;
            eprintln!(
                "--- prompt ({} tokens) ---\n{text}\n--- end of prompt ---\ntokens: {toks:?}",
                toks.len()
            );
        }
    }
    let mut events = engine.generate(gen)?;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    while let Some(ev) = events.blocking_next() {
        match ev? {
            GenerateEvent::Delta { text: t, .. } => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
                text.push_str(&t);
            }
            GenerateEvent::Done {
                usage,
                timings,
                finish_reason,
            } => {
                writeln!(out)?;
                if a.stats {
                    let pre = usage.prompt_tokens.saturating_sub(usage.cached_tokens);
                    eprintln!(
                        "prompt: {} tokens ({} cached) in {:.0} ms ({:.1} tok/s) | output: {} tokens in {:.0} ms ({:.1} tok/s) | finish: {}",
                        usage.prompt_tokens,
                        usage.cached_tokens,
                        timings.prefill_ms,
                        pre as f64 / (timings.prefill_ms / 1000.0).max(1e-9),
                        usage.completion_tokens,
                        timings.decode_ms,
                        usage.completion_tokens.saturating_sub(1) as f64 / (timings.decode_ms / 1000.0).max(1e-9),
                        finish_reason.as_str()
                    );
                }
                break;
            }
        }
    }
    Ok(text)
}
