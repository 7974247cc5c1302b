//! Shared API and domain types for Bantam: serde only, no I/O.
//!
//! * [`openai`] — the OpenAI-compatible wire format (requests, responses, stream chunks,
//!   errors) as clients send and expect it.
//! * [`generate`] — the engine's validated view of a generation request and the events
//!   it streams back. The HTTP layer turns an [`openai`] request into a
//!   [`generate::GenerateRequest`]; the engine never sees unchecked input.
//! * [`tasks`] — Bantam's task endpoints (`/v1/classify`, `/v1/extract`, `/v1/summarize`).
//! * [`health`] — `GET /health`.
//! * [`limits`] — request-size bounds shared by validation and the OpenAPI document.
//!
//! Every wire type derives `schemars::JsonSchema`: the server's `/openapi.json` is
//! generated from these types.

pub mod generate;
pub mod health;
pub mod limits;
pub mod openai;
pub mod prompt;
pub mod spans;
pub mod tasks;
