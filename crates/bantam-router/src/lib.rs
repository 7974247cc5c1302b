//! Hybrid routing for Bantam.
//!
//! * [`config`]: `[[backends]]`, `[[routes]]` and `[usage]` of the TOML file;
//! * [`policy`]: request features and the `rules` policy;
//! * [`learned`]: the learned policy's classifier (over a featuriser from
//!   `bantam-api`'s [`Embed`](bantam_api::Embed));
//! * [`cascade`]: a local answer's confidence, kept or escalated;
//! * [`router`]: decision, fallback order, retries with back-off, circuit
//!   [`breaker`]s, cost per request;
//! * [`ledger`]: the durable SQLite record of every request and the usage reports.
//!
//! Backends come through `bantam-api`'s [`Backend`](bantam_api::Backend) trait:
//! OpenAI-compatible upstreams from `bantam-upstream`, local models from the
//! [`LocalFactory`](bantam_api::LocalFactory) the caller passes in (`bantam-local`).
//! The router receives validated requests and decides on typed errors; it knows
//! nothing about HTTP statuses or the engine.

mod accounting;
pub mod breaker;
pub mod cascade;
pub mod config;
mod error;
pub mod learned;
pub mod ledger;
pub mod policy;
pub mod router;

pub use config::{
    BackendConfig, BackendKind, Price, RouteConfig, RoutingConfig, TaskApi, UsageConfig,
};
pub use error::{ConfigError, RouterError};
pub use ledger::{Dim, Ledger, LedgerError, UsageQuery, UsageReport, UsageRow};
pub use router::{CatalogEntry, Routed, Router};
