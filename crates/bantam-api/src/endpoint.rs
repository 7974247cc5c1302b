//! Which API a request is for.

/// OpenAI's chat, completions and embeddings, or one of Bantam's task endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/classify`.
    Classify,
    /// `/v1/extract`.
    Extract,
    /// `/v1/summarize`.
    Summarize,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Chat,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Classify,
        Endpoint::Extract,
        Endpoint::Summarize,
    ];

    /// `chat`, `completions`, `embeddings`, `classify`, `extract` or `summarize` (as
    /// in rules and the ledger).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Classify => "classify",
            Endpoint::Extract => "extract",
            Endpoint::Summarize => "summarize",
        }
    }

    /// The endpoint named `s` (see [`Endpoint::as_str`]).
    pub fn parse(s: &str) -> Option<Endpoint> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The path below the base URL (`/chat/completions`, …).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Classify => "/classify",
            Endpoint::Extract => "/extract",
            Endpoint::Summarize => "/summarize",
        }
    }

    /// One of Bantam's task endpoints (never streamed; an OpenAI-compatible upstream
    /// answers them through chat completions).
    pub fn is_task(self) -> bool {
        matches!(
            self,
            Endpoint::Classify | Endpoint::Extract | Endpoint::Summarize
        )
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
