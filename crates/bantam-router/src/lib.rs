//! Hybrid routing for Bantam.
//!
//! * [`backend`]: the one interface of local models and OpenAI-compatible
//!   [`upstream`]s (JSON in, a JSON body or a stream of chunks out);
//! * [`config`]: `[[backends]]`, `[[routes]]` and `[usage]` of the TOML file;
//! * [`policy`]: request features and the `rules` policy;
//! * [`learned`] and [`hashed`]: the learned policy's classifier and its model-free
//!   featuriser;
//! * [`router`]: decision, fallback order, retries with back-off, circuit
//!   [`breaker`]s, cost per request;
//! * [`tasks`]: the task endpoints (classify, extract, summarize) as chat
//!   completions, for upstreams without them;
//! * [`ledger`]: the durable SQLite record of every request and the usage reports.

mod accounting;
pub mod backend;
pub mod breaker;
pub mod cascade;
pub mod config;
mod error;
pub mod hashed;
pub mod learned;
pub mod ledger;
pub mod policy;
pub mod router;
pub mod sse;
pub mod tasks;
pub mod upstream;

pub use backend::{Backend, Call, ChunkStream, Endpoint, LocalFactory, Reply, Tokens};
pub use config::{
    BackendConfig, BackendKind, Price, RouteConfig, RoutingConfig, TaskApi, UsageConfig,
};
pub use error::{BackendError, ConfigError, RouterError};
pub use ledger::{Dim, Ledger, LedgerError, UsageQuery, UsageReport, UsageRow};
pub use router::{CatalogEntry, Routed, Router};
