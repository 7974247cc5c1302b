//! [`Engine`]: one loaded model and the thread that serves it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bantam_llama::{Context, ContextParams, LoraAdapter, Model, ModelParams};
use bantam_structured::Constrainer;
use bantam_types::generate::{GenerateEvent, GenerateRequest, Prompt, ToolSpec};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::{physical_cores, EngineConfig};
use crate::pool::ResolvedModel;
use crate::scheduler::{Command, Job, SchedConfig, Scheduler};
use crate::score::{ScoreJob, ScoreMode, ScoreOutput};
use crate::template::{family_template, ChatTemplate, TemplateMessage, TemplateSource};
use crate::EngineError;

/// Facts about a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Name it is served under.
    pub name: String,
    /// GGUF file.
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// llama.cpp's description (`llama 135M Q4_1`).
    pub description: String,
    /// Parameters.
    pub n_params: u64,
    /// Weight bytes.
    pub size_bytes: u64,
    /// Training context.
    pub n_ctx_train: u32,
    /// Context per request as served.
    pub ctx_size: u32,
    /// Concurrent sequences.
    pub parallel: u32,
    /// Threads.
    pub threads: u32,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Where the chat template came from, if there is one.
    pub template: Option<TemplateSource>,
    /// Seconds to load weights and create the context.
    pub load_secs: f64,
    /// Served with a LoRA adapter over the weights (`path` is the base's file).
    pub adapter: bool,
}

/// A stream of events for one request. Dropping it cancels the request.
#[derive(Debug)]
pub struct EventStream {
    rx: UnboundedReceiver<Result<GenerateEvent, EngineError>>,
}

impl EventStream {
    /// Next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<GenerateEvent, EngineError>> {
        self.rx.recv().await
    }

    /// Blocking variant for non-async callers (the CLI).
    pub fn blocking_next(&mut self) -> Option<Result<GenerateEvent, EngineError>> {
        self.rx.blocking_recv()
    }
}

/// One loaded model, served by its own thread.
pub struct Engine {
    model: Arc<Model>,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    cfg: EngineConfig,
    ctx_per_seq: usize,
    tx: Mutex<Sender<Command>>,
    inflight: Arc<AtomicUsize>,
    /// Score requests queued or running (bounded like generation's queue).
    scoring: AtomicUsize,
    last_used: Mutex<Instant>,
    thread: Option<JoinHandle<()>>,
    constrainer: OnceLock<Result<Arc<Constrainer>, String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

impl Engine {
    /// Load `path` and start serving it as `name`. `stored_template` is a chat
    /// template kept with the model in the store; it wins over the GGUF's.
    pub fn load(
        name: &str,
        path: &Path,
        cfg: &EngineConfig,
        stored_template: Option<&str>,
    ) -> Result<Self, EngineError> {
        let started = Instant::now();
        let model = Arc::new(Self::load_weights(name, path, cfg)?);
        Self::start(
            name,
            model,
            path,
            cfg,
            stored_template,
            (None, None),
            started,
        )
    }

    /// Load a resolved model: its weights (or `shared`, the same file already
    /// loaded for another engine) and, for an adapter, the adapter on top.
    ///
    /// Engines given the same `turn` lock decode one at a time (a base and its
    /// adapters share one: see `ContextParams::turn`).
    pub fn load_resolved(
        r: &ResolvedModel,
        shared: Option<Arc<Model>>,
        turn: Option<Arc<Mutex<()>>>,
    ) -> Result<Self, EngineError> {
        let started = Instant::now();
        let model = match shared {
            Some(m) => m,
            None => Arc::new(Self::load_weights(&r.name, &r.path, &r.config)?),
        };
        let adapter = match &r.adapter {
            Some(p) => Some(Arc::new(LoraAdapter::load(&model, p).map_err(|e| {
                EngineError::Load {
                    model: r.name.clone(),
                    reason: format!(
                        "llama.cpp rejected the LoRA adapter ({e}): it does not fit its base model"
                    ),
                }
            })?)),
            None => None,
        };
        Self::start(
            &r.name,
            model,
            &r.path,
            &r.config,
            r.template.as_deref(),
            (adapter, turn),
            started,
        )
    }

    /// The weights of a GGUF file, as an engine loads them.
    pub fn load_weights(name: &str, path: &Path, cfg: &EngineConfig) -> Result<Model, EngineError> {
        Model::load(
            bantam_llama::runtime(),
            path,
            &ModelParams {
                use_mmap: cfg.mmap,
                ..ModelParams::default()
            },
        )
        .map_err(|e| match e {
            // The file itself: not something this server can ever load.
            bantam_llama::LoadError::Rejected(_) | bantam_llama::LoadError::BadPath(_) => {
                EngineError::BadModelFile(name.to_string())
            }
            other => EngineError::Load {
                model: name.to_string(),
                reason: other.to_string(),
            },
        })
    }

    fn start(
        name: &str,
        model: Arc<Model>,
        path: &Path,
        cfg: &EngineConfig,
        stored_template: Option<&str>,
        (adapter, turn): (Option<Arc<LoraAdapter>>, Option<Arc<Mutex<()>>>),
        started: Instant,
    ) -> Result<Self, EngineError> {
        let load_err = |reason: String| EngineError::Load {
            model: name.to_string(),
            reason,
        };
        let template = resolve_template(&model, stored_template)?;
        let n_ctx_train = model.n_ctx_train().max(1);
        let ctx_per_seq = if cfg.ctx_size > 0 {
            cfg.ctx_size
        } else {
            n_ctx_train.min(4096)
        };
        let parallel = cfg.parallel.max(1);
        let threads = if cfg.threads > 0 {
            cfg.threads
        } else {
            physical_cores()
        };
        let batch_size = cfg.batch_size.max(parallel).max(32);
        let params = ContextParams {
            n_ctx: ctx_per_seq * parallel,
            n_batch: batch_size,
            n_ubatch: batch_size,
            n_seq_max: parallel,
            n_threads: threads as i32,
            n_threads_batch: threads as i32,
            flash_attention: cfg.flash_attention.into(),
            kv_unified: cfg.kv_unified,
            embeddings: false,
            pooling: bantam_llama::Pooling::None,
            adapter: adapter.clone(),
            turn,
        };
        let inflight = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), EngineError>>();
        let thread_name = name.to_string();
        let score_params = ContextParams {
            n_ctx: ctx_per_seq.max(4096),
            ..params.clone()
        };
        let sched_cfg = SchedConfig {
            score_params,
            ctx_per_seq: ctx_per_seq as usize,
            batch_size: batch_size as usize,
            prefix_cache: cfg.prefix_cache,
            kv_unified: cfg.kv_unified,
        };
        let thread_model = model.clone();
        let thread_inflight = inflight.clone();
        let thread = std::thread::Builder::new()
            .name(format!("engine:{name}"))
            .spawn(move || {
                // The context is created on the thread that drives it.
                let ctx = match Context::new(thread_model, &params) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(EngineError::Load {
                            model: thread_name,
                            reason: e.to_string(),
                        }));
                        return;
                    }
                };
                if !ctx.has_memory() {
                    // An encoder without a KV cache: it embeds, it cannot generate.
                    let _ = ready_tx.send(Err(EngineError::NotGenerative(thread_name)));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                Scheduler::new(ctx, parallel as usize, sched_cfg, thread_inflight).run(rx);
            })
            .map_err(|e| load_err(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(load_err("engine thread exited during start-up".into())),
        }
        let info = ModelInfo {
            name: name.to_string(),
            path: path.to_path_buf(),
            architecture: model.meta("general.architecture").unwrap_or_default(),
            description: model.description(),
            n_params: model.n_params(),
            size_bytes: model.size_bytes(),
            n_ctx_train,
            ctx_size: ctx_per_seq,
            parallel,
            threads,
            n_vocab: model.n_vocab(),
            template: template.as_ref().map(ChatTemplate::origin),
            load_secs: started.elapsed().as_secs_f64(),
            adapter: adapter.is_some(),
        };
        tracing::info!(
            model = name,
            secs = info.load_secs,
            ctx = ctx_per_seq,
            parallel,
            threads,
            "model loaded"
        );
        Ok(Self {
            model,
            info,
            template,
            cfg: cfg.clone(),
            ctx_per_seq: ctx_per_seq as usize,
            tx: Mutex::new(tx),
            inflight,
            scoring: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            thread: Some(thread),
            constrainer: OnceLock::new(),
        })
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The engine configuration it was loaded with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The shared model (tokenizer and metadata).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Requests queued or running.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Time since the last request was submitted.
    pub fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// The chat template, if the model has one.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Render a conversation with the model's chat template (ending with the
    /// assistant's turn opened).
    ///
    /// Tools go through the template when it renders them; otherwise they are
    /// described in the system message with Bantam's tool-call format.
    pub fn render_chat(
        &self,
        messages: &[TemplateMessage],
        tools: &[ToolSpec],
    ) -> Result<Prompt, EngineError> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::Template(format!(
                "model {} has no chat template and its family ({}) has no standard one; \
                 use /v1/completions, or store a template with `bantam import --template FILE`",
                self.info.name, self.info.architecture
            ))
        })?;
        let text = if tools.is_empty() {
            t.render(messages, true, None)?
        } else if t.supports_tools() {
            let list: Vec<serde_json::Value> = tools
                .iter()
                .map(|t| {
                    serde_json::json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            t.render(messages, true, Some(&serde_json::Value::Array(list)))?
        } else {
            let guide = bantam_structured::tools::system_prompt(tools);
            let mut msgs = messages.to_vec();
            match msgs.first_mut() {
                Some(m) if m.role == "system" => {
                    m.content = format!("{}\n\n{guide}", m.content);
                }
                _ => msgs.insert(0, TemplateMessage::new("system", &guide)),
            }
            t.render(&msgs, true, None)?
        };
        Ok(Prompt::Text {
            text,
            special: true,
            add_bos: true,
        })
    }

    /// Tokenise a prompt as the engine will.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<i32>, EngineError> {
        match prompt {
            Prompt::Text {
                text,
                special,
                add_bos,
            } => {
                // A token is rarely more than a few bytes: text this much longer
                // than the context cannot fit, and is not handed to the tokeniser
                // (llama.cpp can throw on huge inputs, which would abort the process).
                if text.len() > self.ctx_per_seq.saturating_mul(64).max(1 << 16) {
                    return Err(EngineError::ContextOverflow {
                        prompt_tokens: text.len() / 4,
                        ctx_size: self.ctx_per_seq,
                    });
                }
                let mut toks = self.model.tokenize(text, false, *special);
                if *add_bos && self.model.adds_bos() {
                    if let Some(bos) = self.model.bos() {
                        if toks.first() != Some(&bos) {
                            toks.insert(0, bos);
                        }
                    }
                }
                Ok(toks)
            }
            Prompt::Tokens(t) => {
                let n = self.model.n_vocab() as i32;
                if let Some(bad) = t.iter().find(|&&x| x < 0 || x >= n) {
                    return Err(EngineError::BadToken(*bad));
                }
                Ok(t.clone())
            }
        }
    }

    /// The structured-output compiler for this model's vocabulary (built on first use).
    pub fn constrainer(&self) -> Result<Arc<Constrainer>, EngineError> {
        self.constrainer
            .get_or_init(|| {
                let started = Instant::now();
                let c = build_constrainer(&self.model).map(Arc::new);
                tracing::debug!(model = %self.info.name, ms = started.elapsed().as_millis() as u64, "constraint tables built");
                c
            })
            .clone()
            .map_err(|e| EngineError::Constraint(bantam_structured::StructuredError::Engine(e)))
    }

    /// Score candidate continuations of several prompts by log-likelihood (see
    /// [`crate::score`]): `scores[prompt][candidate]`. `terminator` is the token that
    /// ends an answer (end of turn), scored after each candidate.
    /// The first `shared` tokens are common to all prompts and stay cached for the
    /// next request with the same prefix.
    pub async fn score(
        &self,
        prompts: Vec<Vec<i32>>,
        shared: usize,
        candidates: Arc<Vec<Vec<i32>>>,
        terminator: Option<i32>,
        mode: ScoreMode,
    ) -> Result<ScoreOutput, EngineError> {
        let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
        let mut shared = shared.min(shortest.saturating_sub(1));
        if let Some(first) = prompts.first() {
            for p in &prompts[1..] {
                shared = shared.min(first.iter().zip(p).take_while(|(a, b)| a == b).count());
            }
        }
        // As many score requests may wait as generation requests (`max_queue`);
        // beyond that, 429 rather than an ever longer wait.
        let waiting = self.scoring.fetch_add(1, Ordering::SeqCst);
        let _slot = Release(&self.scoring);
        if waiting >= self.cfg.max_queue.max(1) as usize {
            return Err(EngineError::QueueFull {
                model: self.info.name.clone(),
                waiting,
            });
        }
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = ScoreJob {
            prompts,
            shared,
            candidates,
            terminator,
            mode,
            tx,
            enqueued: Instant::now(),
        };
        let sent = self
            .tx
            .lock()
            .map(|s| s.send(Command::Score(job)).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(EngineError::Stopped);
        }
        rx.await.unwrap_or(Err(EngineError::Stopped))
    }

    /// The token that ends an assistant turn in this model's chat format (found by
    /// rendering a turn), if there is one.
    pub fn end_of_turn(&self) -> Option<i32> {
        let t = self.template.as_ref()?;
        let marker = "Xq7Zk";
        let msgs = [
            TemplateMessage::new("user", "hi"),
            TemplateMessage::new("assistant", marker),
        ];
        let text = t.render(&msgs, false, None).ok()?;
        let after = &text[text.find(marker)? + marker.len()..];
        let toks = self.model.tokenize(after, false, true);
        toks.first()
            .copied()
            .filter(|&t| self.model.is_eog(t) || self.model.is_control(t))
            .or_else(|| self.model.eos())
    }

    /// Queue a request. Fails at once if the prompt does not fit, the constraint does
    /// not compile or the queue is full; otherwise events arrive on the returned stream.
    pub fn generate(&self, req: GenerateRequest) -> Result<EventStream, EngineError> {
        let guide = match &req.constraint {
            Some(c) => Some(Box::new(self.constrainer()?.start(c)?)),
            None => None,
        };
        let tokens = self.tokenize(&req.prompt)?;
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if tokens.len() >= self.ctx_per_seq {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: tokens.len(),
                ctx_size: self.ctx_per_seq,
            });
        }
        let limit = self.info.parallel as usize + self.cfg.max_queue as usize;
        let prev = self.inflight.fetch_add(1, Ordering::SeqCst);
        if prev >= limit {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::QueueFull {
                model: self.info.name.clone(),
                waiting: prev.saturating_sub(self.info.parallel as usize),
            });
        }
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            tokens,
            req,
            guide,
            tx,
            enqueued: Instant::now(),
        };
        let sent = self
            .tx
            .lock()
            .map(|s| s.send(Command::Generate(Box::new(job))).is_ok())
            .unwrap_or(false);
        if !sent {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Stopped);
        }
        Ok(EventStream { rx })
    }
}

/// Gives a counted place back when dropped (the request ended, failed or was
/// abandoned).
struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::info!(model = %self.info.name, "model unloaded");
    }
}

/// The vocabulary as llguidance wants it: plain bytes, special tokens marked with a
/// leading 0xFF; end-of-generation tokens with the primary one first.
fn build_constrainer(model: &Model) -> Result<Constrainer, String> {
    let n = model.n_vocab();
    let mut words = Vec::with_capacity(n);
    let mut eog = Vec::new();
    for id in 0..n as i32 {
        let bytes = model.token_bytes(id, false);
        if bytes.is_empty() {
            let special = model.token_bytes(id, true);
            if special.is_empty() {
                words.push(Vec::new());
            } else {
                let mut w = Vec::with_capacity(special.len() + 1);
                w.push(0xFF);
                w.extend_from_slice(&special);
                words.push(w);
            }
        } else {
            words.push(bytes);
        }
        if model.is_eog(id) {
            eog.push(id as u32);
        }
    }
    if let Some(eos) = model.eos() {
        if let Some(pos) = eog.iter().position(|&t| t == eos as u32) {
            eog.swap(0, pos);
        }
    }
    Constrainer::new(&words, &eog).map_err(|e| e.to_string())
}

pub(crate) fn resolve_template(
    model: &Model,
    stored: Option<&str>,
) -> Result<Option<ChatTemplate>, EngineError> {
    let bos = model.bos().map(|t| model.token_text(t)).unwrap_or_default();
    let eos = model.eos().map(|t| model.token_text(t)).unwrap_or_default();
    if let Some(src) = stored {
        return ChatTemplate::new(src.to_string(), TemplateSource::Stored, bos, eos).map(Some);
    }
    if let Some(src) = model.chat_template() {
        return ChatTemplate::new(src, TemplateSource::Gguf, bos, eos).map(Some);
    }
    let arch = model.meta("general.architecture").unwrap_or_default();
    let has_token = |text: &str| {
        let toks = model.tokenize(text, false, true);
        toks.len() == 1 && model.is_control(toks[0])
    };
    match family_template(&arch, has_token) {
        Some(src) => ChatTemplate::new(src.to_string(), TemplateSource::Family, bos, eos).map(Some),
        None => Ok(None),
    }
}
