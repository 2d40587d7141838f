//! What happens to one delivery: process under the retry policy, then reply ([`reply`]),
//! dead-letter or park for a delayed retry ([`copies`]), and ack only once every publish is
//! confirmed.

mod copies;
mod reply;

use std::sync::Arc;

use backon::Retryable;
use deadpool_postgres::Pool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use self::copies::ErrorAnswer;
use super::request::{InboundRequest, ReplyToPolicy};
use crate::{
    amqp::headers,
    config::AmqpSettings,
    health::{self, Health},
    message::ErrorCode,
    processor::{Decision, Processor, Verdict},
    retry::{FailureClass, RetryPolicy},
    storage::{StorageError, audit::AuditEvent},
    telemetry::{MessageOutcome, Metrics},
};

/// What every delivery task needs; shared by all tasks of all sessions.
pub(super) struct Handler {
    amqp: Arc<AmqpSettings>,
    processor: Processor,
    /// For what the worker asks the database outside a request's processing: whether it can
    /// write, and the redelivered suspects' attempts.
    pool: Pool,
    policy: RetryPolicy,
    reply_to: ReplyToPolicy,
    health: Health,
    metrics: Metrics,
}

/// How a database operation run by [`Handler::with_database`] ended.
pub(super) enum Attempt<T> {
    /// It ran to an answer, after the immediate retries of transient failures.
    Done(Result<T, StorageError>),
    /// The session ended (shutdown or loss) while the database was down: the delivery is left
    /// unacked, and the broker redelivers it.
    Cancelled,
}

impl Handler {
    pub(super) fn new(
        amqp: Arc<AmqpSettings>,
        policy: RetryPolicy,
        processor: Processor,
        pool: Pool,
        health: Health,
        metrics: Metrics,
    ) -> Handler {
        Handler {
            reply_to: ReplyToPolicy::new(&amqp),
            amqp,
            processor,
            pool,
            policy,
            health,
            metrics,
        }
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Handles one request, holding its concurrency permit until done.
    pub(super) async fn run(
        self: Arc<Self>,
        request: InboundRequest,
        permit: OwnedSemaphorePermit,
        cancel: CancellationToken,
    ) {
        let _counted = self.metrics.in_flight();
        self.handle(request, &cancel).await;
        drop(permit);
    }

    /// One delivery, start to ack.
    async fn handle(&self, request: InboundRequest, cancel: &CancellationToken) {
        let delivery_count = request.header_integer(headers::DELIVERY_COUNT);
        tracing::debug!(
            transaction_id = %request.identity.transaction_id,
            delivery_tag = request.delivery.delivery_tag,
            redelivered = request.delivery.redelivered,
            delivery_count,
            bytes = request.delivery.data.len(),
            "delivery received"
        );
        if delivery_count >= i64::from(self.amqp.delivery_limit) - 1 {
            // Crash-loop protection: this delivery has come back so often that processing it
            // again risks another crash. Dead-letter it without looking inside (but for the
            // transaction lookup: a stored one is answered as a duplicate).
            let message = ErrorCode::DeliveryLimit.message();
            let answer = ErrorAnswer::ReplyUnlessStored;
            self.dead_letter(&request, ErrorCode::DeliveryLimit, message, answer, cancel)
                .await;
            return;
        }
        let replays = request.header_integer(headers::REPLAY_COUNT);
        if replays > 0 {
            self.metrics
                .replayed_received(request.identity.transaction_id.as_str(), replays);
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::maybe_crash(request.identity.transaction_id.as_str());
        let incoming = request.incoming();
        let attempt = || self.processor.process(&incoming, &request.identity);
        let result = match self.with_database(attempt, cancel).await {
            Attempt::Done(result) => result,
            // Shutting down or session lost: left unacked, the broker redelivers.
            Attempt::Cancelled => return,
        };
        match result {
            Ok(decision) => self.conclude(&request, decision, cancel).await,
            Err(err) if err.class() == FailureClass::Transient => {
                let message = err.to_string();
                self.retry_later(&request, ErrorCode::StoreFailed, &message, cancel)
                    .await
            }
            Err(err) => {
                // Permanent: a statement the database can never accept for this request.
                if err.class() == FailureClass::Refused {
                    self.metrics
                        .database_refused(&request.identity.transaction_id, &err);
                }
                let message = err.to_string();
                let answer = ErrorAnswer::ReplyUnlessStored;
                self.dead_letter(&request, ErrorCode::StoreFailed, &message, answer, cancel)
                    .await
            }
        }
    }

    /// Runs a database operation with the immediate retries for transient failures, holding
    /// (not charging the message) while the database is down, until `cancel` fires.
    pub(super) async fn with_database<T, F, Fut>(
        &self,
        operation: F,
        cancel: &CancellationToken,
    ) -> Attempt<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let mut operation = operation;
        loop {
            let result = (&mut operation)
                .retry(self.policy.immediate())
                .when(|err: &StorageError| err.class() == FailureClass::Transient)
                .notify(|err, delay| self.metrics.retrying_immediately(err, delay))
                .await;
            let outage = match &result {
                Err(err) if err.class() == FailureClass::Refused => {
                    // A lost grant is an outage; a row-level security policy refusing this
                    // request's rows is the request's own (see `retry`).
                    !health::can_write(&self.pool).await
                }
                Err(err) => err.class() == FailureClass::InfrastructureDown,
                Ok(_) => false,
            };
            match result {
                Err(err) if outage => {
                    tracing::debug!(error = %err, "database unavailable; holding delivery");
                    self.health.report_database_down();
                    tokio::select! {
                        _ = cancel.cancelled() => return Attempt::Cancelled,
                        _ = self.health.wait_for_database() => {}
                    }
                }
                other => return Attempt::Done(other),
            }
        }
    }

    /// Carries out the processor's decision: replies (stored, duplicate) or replies and
    /// dead-letters (rejected), then acks. The ack waits for every publish to be confirmed; a
    /// reply that cannot be delivered (no such queue, `reply_to` not allowed) does not hold the
    /// request back, and one that cannot be published takes the retry tiers (see
    /// [`Handler::reply_failed`]).
    async fn conclude(
        &self,
        request: &InboundRequest,
        decision: Decision,
        cancel: &CancellationToken,
    ) {
        let delivered = match self.publish_reply(request, &decision.reply).await {
            Ok(delivered) => delivered,
            Err(err) => {
                return self
                    .reply_failed(request, &decision.verdict, &err, cancel)
                    .await;
            }
        };
        let outcome = match decision.verdict {
            Verdict::Rejected(code) => {
                let outcome = MessageOutcome::Rejected;
                return self
                    .dead_letter_copy(request, code, code.message(), outcome, cancel)
                    .await;
            }
            Verdict::Stored => MessageOutcome::Stored,
            Verdict::Duplicate => MessageOutcome::Duplicate,
        };
        if !delivered {
            self.audit(request, AuditEvent::ReplyUnroutable, None, cancel)
                .await;
        }
        self.ack(request, outcome, None).await;
    }

    /// An audit row for an outcome decided here (dead-lettering, an unroutable reply). False
    /// when the session ended first; a failed write is logged and counted, never blocks.
    async fn audit(
        &self,
        request: &InboundRequest,
        event: AuditEvent,
        code: Option<ErrorCode>,
        cancel: &CancellationToken,
    ) -> bool {
        let write = || {
            self.processor
                .record(request.app_id(), &request.identity, event, code)
        };
        match self.with_database(write, cancel).await {
            Attempt::Cancelled => false,
            Attempt::Done(Err(err)) => {
                self.metrics.audit_write_failed(event.as_str(), &err);
                true
            }
            Attempt::Done(Ok(())) => true,
        }
    }

    async fn ack(&self, request: &InboundRequest, outcome: MessageOutcome, code: Option<&str>) {
        if request.ack().await {
            let elapsed = request.started.elapsed();
            self.metrics.message_finished(
                outcome,
                request.identity.transaction_id.as_str(),
                code,
                elapsed,
            );
        } else {
            // The channel is gone: the broker redelivers, and idempotency answers it again.
            tracing::debug!(transaction_id = %request.identity.transaction_id, "ack not delivered; broker will redeliver")
        }
    }
}
