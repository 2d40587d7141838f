//! The worker: consumes the request queue and answers every request, durably.
//!
//! How a delivery flows:
//! 1. The supervisor (`supervisor.rs`, `session.rs`) keeps one broker session: it connects
//!    (walking the configured nodes), declares the topology, subscribes with the prefetch
//!    window, and takes a delivery only when a concurrency permit is free and the database is
//!    up.
//! 2. A first delivery becomes an `InboundRequest` (`request.rs`) handled by a task of its own;
//!    a redelivered one (`x-delivery-count` > 0) waits with the other suspects (`suspects.rs`)
//!    to be tried alone, in case it is what crashed the worker.
//! 3. The handler (`handler/`) runs [`crate::processor::Processor::process`] (one database
//!    transaction) under the retry policy, holding the delivery while the database is down.
//! 4. It publishes the reply with a confirm, and when due a delayed-retry or dead-letter copy of
//!    the request, each held until the broker confirms it.
//! 5. Only then is the request acked: never before its outcome is durable. A session that ends
//!    first leaves it unacked, and the broker redelivers it; idempotency answers it again.

mod acks;
mod handler;
mod request;
mod session;
mod supervisor;
mod suspects;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use self::{handler::Handler, supervisor::Supervisor};
use deadpool_postgres::Pool;

use crate::{
    config::{AmqpSettings, RetrySettings, WorkerSettings},
    health::Health,
    processor::Processor,
    retry::RetryPolicy,
    telemetry::Metrics,
};

/// The worker as [`crate::startup`] assembles and runs it.
pub(crate) struct Worker {
    supervisor: Supervisor,
}

impl Worker {
    pub(crate) fn new(
        amqp: AmqpSettings,
        worker: &WorkerSettings,
        retry: &RetrySettings,
        processor: Processor,
        pool: Pool,
        health: Health,
        metrics: Metrics,
    ) -> Worker {
        warn_if_the_window_can_outgrow(&amqp, worker);
        let amqp = Arc::new(amqp);
        let policy = RetryPolicy::new(retry);
        let retry_delays = policy.delays().to_vec();
        let handler = Arc::new(Handler::new(
            amqp.clone(),
            policy,
            processor,
            pool,
            health.clone(),
            metrics.clone(),
        ));
        let supervisor = Supervisor::new(amqp, worker, retry_delays, handler, health, metrics);
        Worker { supervisor }
    }

    /// Consumes until `shutdown`; reconnects on any broker failure. Returns an error only for
    /// what retrying cannot fix (an incompatible existing queue).
    pub(crate) async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.supervisor.run(&shutdown).await
    }
}

/// The prefetch window bounds messages, not bytes: the AMQP client holds each delivery whole
/// before the worker can refuse an oversized body. Only the broker's `max_message_size` bounds
/// a delivery, so the window's worst case is `prefetch` × that; warned about when it exceeds
/// the worker's memory budget (a pod over its limit is killed, and so is every replica the
/// same window reaches next).
fn warn_if_the_window_can_outgrow(amqp: &AmqpSettings, worker: &WorkerSettings) {
    let worst = u64::from(amqp.prefetch).saturating_mul(amqp.max_message_size);
    if worst > worker.memory_budget {
        tracing::warn!(
            prefetch = amqp.prefetch,
            max_message_size = amqp.max_message_size,
            memory_budget = worker.memory_budget,
            "a prefetch window of the largest messages the broker accepts can exceed the memory budget: lower the broker's max_message_size (and amqp.max_message_size with it) or amqp.prefetch (docs/operations.md)"
        );
    }
}
