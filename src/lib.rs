//! prereg-sync: MOSIP reverse data sync as a durable message flow.
//!
//! The registration processor publishes batches of consumed pre-registration IDs (PRIDs) to
//! RabbitMQ; prereg-sync validates them, stores them idempotently by transaction ID in the
//! pre-registration PostgreSQL database, and answers on a reply queue. The external contract
//! (topology, formats, error codes, tables) is `docs/contract.md`, summarised in the README.
//!
//! # Layout
//! The linked modules are public: the binary, the integration tests and the benchmark use them;
//! the others are crate-private.
//! - [`config`]: layered settings (files, `AMQP_URL`/`DATABASE_URL`, `PREREG_SYNC__*`), secrets
//!   redacted.
//! - [`startup`]: [`startup::Application`], assembled the same way by the binary and the tests.
//! - `worker`: the consuming worker: session supervision and reconnection, dispatch under the
//!   concurrency limit, per-delivery handling (process, reply, retry or dead-letter, ack).
//! - [`amqp`]: the broker's plumbing: connection, [`amqp::topology`], `amqp::publisher`
//!   (confirms), [`amqp::headers`].
//! - [`message`]: the request and reply formats: validation in contract order, PRID rules,
//!   error codes, transaction IDs. Pure and unit-tested.
//! - `processor`: the processing rules (duplicate, conflict, validate, known-application
//!   check, store), independent of AMQP.
//! - [`storage`]: pool, migrations, the hot-path statements and their batching (group commit),
//!   the audit trail.
//! - `retry`: failure classes and the retry budget.
//! - `health`, `http`, [`telemetry`]: readiness, `/metrics` `/healthz` `/readyz`, logs and
//!   metrics.
//! - `dlq`: the dead-letter tools (list, show, replay, delete, export), loss-free by design.
//! - `jobs`: the consumed-status job (scheduled or run once) and retention purges.
//! - `tls`: TLS to RabbitMQ and PostgreSQL (rustls).
//! - [`error_text`]: an error and its causes on one line, each cause once.
//! - [`loadgen`]: the registration processor's stand-in for demos and benchmarks.
//! - [`cli`]: the command line.
//!
//! A message flows: `worker` → `processor::Processor::process` (one database transaction) →
//! reply published with a confirm → dead-letter copy or delayed retry when due → ack.

pub mod amqp;
pub mod cli;
pub mod config;
pub(crate) mod dlq;
mod error_text;
pub use error_text::error_text;
#[cfg(feature = "fault-injection")]
pub(crate) mod fault;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod ingress;
pub(crate) mod jobs;
pub mod loadgen;
pub mod message;
pub(crate) mod processor;
pub(crate) mod progress;
pub(crate) mod retry;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub(crate) mod tls;
pub(crate) mod worker;
