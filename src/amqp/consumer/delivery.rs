//! What happens to one delivery: process under the retry policy, then reply, dead-letter or
//! park for a delayed retry, and ack only once every publish is confirmed.

use backon::Retryable;
use chrono::Utc;
use lapin::{BasicProperties, options::BasicAckOptions};
use tokio_util::sync::CancellationToken;

use super::{Consumer, Job};
use crate::{
    amqp::{
        headers::{self, Failure},
        publisher::{PublishError, Published},
    },
    message::{ErrorCode, Reply},
    processor::{Decision, Incoming, Verdict},
    retry::{FailureClass, retry_queue_name},
    storage::{StorageError, audit::AuditEvent},
    telemetry::MessageOutcome,
};

impl Consumer {
    /// One delivery, start to ack.
    pub(super) async fn handle(&self, job: Job, cancel: &CancellationToken) {
        let delivery_count = job.header_integer(headers::DELIVERY_COUNT);
        tracing::debug!(
            transaction_id = %job.identity.transaction_id,
            delivery_tag = job.delivery.delivery_tag,
            redelivered = job.delivery.redelivered,
            delivery_count,
            bytes = job.delivery.data.len(),
            "delivery received"
        );
        if delivery_count >= i64::from(self.amqp.delivery_limit) - 1 {
            // Crash-loop protection: this delivery has come back so often that processing it
            // again risks another crash. Dead-letter it without looking inside (but for the
            // transaction lookup: a stored one is answered as a duplicate).
            let message = ErrorCode::DeliveryLimit.message();
            let answer = ErrorAnswer::ReplyUnlessStored;
            self.dead_letter(&job, ErrorCode::DeliveryLimit, message, answer, cancel)
                .await;
            return;
        }
        let replays = job.header_integer(headers::REPLAY_COUNT);
        if replays > 0 {
            self.metrics
                .replayed_received(job.identity.transaction_id.as_str(), replays);
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::maybe_crash(job.identity.transaction_id.as_str());
        // Judged once: a request that comes back (redelivered, from a retry tier, replayed)
        // was judged at its first attempt.
        let first_attempt = !job.delivery.redelivered
            && delivery_count == 0
            && replays == 0
            && job.header_integer(headers::RETRY_COUNT) == 0;
        let incoming = Incoming {
            body: &job.delivery.data,
            content_type: job
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str()),
            app_id: job.app_id(),
            age_judged_at: first_attempt.then_some(job.received_at),
        };
        let attempt = || self.processor.process(&incoming, &job.identity);
        let Some(result) = self.with_database(attempt, cancel).await else {
            return; // shutting down or session lost: left unacked, the broker redelivers
        };
        match result {
            Ok(decision) => self.settle(&job, decision, cancel).await,
            Err(err) if err.class() == FailureClass::Transient => {
                let message = err.to_string();
                self.retry_later(&job, ErrorCode::StoreFailed, &message, cancel)
                    .await
            }
            Err(err) => {
                // Permanent: a statement the database can never accept for this request.
                let message = err.to_string();
                let answer = ErrorAnswer::ReplyUnlessStored;
                self.dead_letter(&job, ErrorCode::StoreFailed, &message, answer, cancel)
                    .await
            }
        }
    }

    /// Runs a database operation with the immediate retries for transient failures, holding
    /// (not charging the message) while the database is down. `None` if `cancel` fired first.
    pub(super) async fn with_database<T, F, Fut>(
        &self,
        operation: F,
        cancel: &CancellationToken,
    ) -> Option<Result<T, StorageError>>
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
            match result {
                Err(err) if err.class() == FailureClass::InfrastructureDown => {
                    tracing::debug!(error = %err, "database unavailable; holding delivery");
                    self.health.report_database_down();
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = self.health.wait_for_database() => {}
                    }
                }
                other => return Some(other),
            }
        }
    }

    /// Replies (stored, duplicate) or replies and dead-letters (rejected), then acks. The ack
    /// waits for every publish to be confirmed; a reply that cannot be delivered (no such queue,
    /// `reply_to` not allowed) does not hold the request back, and one that cannot be published
    /// takes the retry tiers (see [`Consumer::reply_failed`]).
    async fn settle(&self, job: &Job, decision: Decision, cancel: &CancellationToken) {
        let delivered = match self.publish_reply(job, &decision.reply).await {
            Ok(delivered) => delivered,
            Err(err) => {
                return self
                    .reply_failed(job, &decision.verdict, &err, cancel)
                    .await;
            }
        };
        let outcome = match decision.verdict {
            Verdict::Rejected(code) => {
                return self
                    .dead_letter_copy(job, code, code.message(), MessageOutcome::Rejected, cancel)
                    .await;
            }
            Verdict::Stored => MessageOutcome::Stored,
            Verdict::Duplicate => MessageOutcome::Duplicate,
        };
        if !delivered {
            self.audit(job, AuditEvent::ReplyUnroutable, None, cancel)
                .await;
        }
        self.ack(job, outcome, None).await;
    }

    /// A reply that could not be published (nacked by a full `reject-publish` queue, no
    /// confirm in time, a blocked connection) is a transient failure like any other, never a
    /// reason to requeue at once: every requeue counts toward the delivery limit, and at the
    /// limit a stored request would be dead-lettered by the broker. The request takes the next
    /// delayed-retry tier, where its next attempt finds it stored and re-sends the stored reply;
    /// when the budget is spent it is dead-lettered with no reply, as `PRS_REPLY_UNDELIVERED`
    /// (stored: a replay re-sends the stored reply) or with its rejection's code.
    async fn reply_failed(
        &self,
        job: &Job,
        verdict: &Verdict,
        err: &PublishError,
        cancel: &CancellationToken,
    ) {
        if !job.publisher.is_open() {
            // The channel is gone with the session: the broker redelivers the request.
            job.lost.cancel();
            return;
        }
        let code = match verdict {
            Verdict::Rejected(code) => *code,
            Verdict::Stored | Verdict::Duplicate => ErrorCode::ReplyUndelivered,
        };
        let message = format!("reply not published: {err}");
        self.retry_later(job, code, &message, cancel).await;
    }

    /// Publishes with a confirm, retrying a failed publish (timeout, nack) a few times in
    /// process while the channel is open.
    async fn publish(
        &self,
        job: &Job,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<Published, PublishError> {
        let attempt = || {
            job.publisher
                .publish(exchange, routing_key, body, properties.clone())
        };
        attempt
            .retry(self.policy.immediate())
            .when(|_| job.publisher.is_open())
            .notify(|err, delay| self.metrics.retrying_immediately(err, delay))
            .await
    }

    /// Publishes the reply to `reply_to` (when allowed) or the default reply queue. `Ok(false)`
    /// when it could not be delivered: `reply_to` not allowed, or no such queue.
    async fn publish_reply(&self, job: &Job, reply: &Reply) -> Result<bool, PublishError> {
        let properties = &job.delivery.properties;
        let target = match properties.reply_to().as_ref().map(|r| r.as_str()) {
            Some(reply_to) if !self.reply_to.allows(reply_to) => {
                tracing::warn!(transaction_id = %job.identity.transaction_id, "reply_to not allowed; no reply sent");
                return Ok(false);
            }
            Some(reply_to) => reply_to,
            None => self.amqp.reply_queue.as_str(),
        };
        let reply_properties = headers::reply_properties(
            &job.identity.transaction_id,
            properties.correlation_id().as_ref(),
            reply.kind,
        );
        let published = self
            .publish(job, "", target, &reply_properties, &reply.body)
            .await?;
        if published == Published::Returned {
            tracing::warn!(transaction_id = %job.identity.transaction_id, "reply unroutable: no such reply queue");
            return Ok(false);
        }
        self.metrics.reply_published(reply.kind.as_str());
        Ok(true)
    }

    /// A transient failure that outlived the immediate retries: park the request in the next
    /// delayed-retry queue (the consumer slot is freed at once), or dead-letter it when the
    /// budget is spent: with an error reply for a failed store (unless the transaction turns out
    /// stored), without one for an undelivered reply.
    async fn retry_later(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        cancel: &CancellationToken,
    ) {
        let retries = job.header_integer(headers::RETRY_COUNT);
        let Some(delay) = u32::try_from(retries)
            .ok()
            .and_then(|r| self.policy.delay_for(r))
        else {
            let answer = match code {
                ErrorCode::StoreFailed => ErrorAnswer::ReplyUnlessStored,
                _ => ErrorAnswer::NoReply,
            };
            return self.dead_letter(job, code, message, answer, cancel).await;
        };
        let failure = self.failure(job, code, message, retries + 1);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let queue = retry_queue_name(&self.amqp.retry_queue_prefix, delay);
        if self
            .publish_copy(job, "", &queue, &properties, cancel)
            .await
        {
            self.metrics
                .retry_scheduled(job.identity.transaction_id.as_str(), &queue);
            self.ack(job, MessageOutcome::Retried, Some(code.code()))
                .await
        }
    }

    /// Audit, error reply (see [`ErrorAnswer`]), dead-letter copy, ack.
    async fn dead_letter(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        answer: ErrorAnswer,
        cancel: &CancellationToken,
    ) {
        let mut error_reply = answer == ErrorAnswer::ReplyUnlessStored;
        if error_reply {
            // One transaction, one answer: a stored transaction is never answered with an
            // error, whatever went wrong with this delivery.
            let lookup = || self.processor.answer_if_stored(job.app_id(), &job.identity);
            match self.with_database(lookup, cancel).await {
                None => return,
                Some(Ok(Some(duplicate))) => {
                    // Boxed: settling can come back here through the retry tiers' budget.
                    return Box::pin(self.settle(job, duplicate, cancel)).await;
                }
                Some(Ok(None)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "whether the transaction is stored is unknown; dead-lettered without an error reply");
                    error_reply = false;
                }
            }
        }
        if !self
            .audit(job, AuditEvent::DeadLettered, Some(code), cancel)
            .await
        {
            return;
        }
        if error_reply
            && let Err(err) = self
                .publish_reply(job, &Reply::error(code, Utc::now()))
                .await
        {
            // The request goes to the dead-letter queue all the same, where it is seen.
            tracing::warn!(transaction_id = %job.identity.transaction_id, error = %err, "error reply not published");
        }
        self.dead_letter_copy(job, code, message, MessageOutcome::DeadLettered, cancel)
            .await;
    }

    /// Publishes the request with failure headers to the dead-letter exchange, then acks it.
    async fn dead_letter_copy(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        outcome: MessageOutcome,
        cancel: &CancellationToken,
    ) {
        let retries = job.header_integer(headers::RETRY_COUNT);
        let failure = self.failure(job, code, message, retries);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let exchange = &self.amqp.dead_letter_exchange;
        let routing_key = job.delivery.routing_key.as_str();
        if self
            .publish_copy(job, exchange, routing_key, &properties, cancel)
            .await
        {
            self.ack(job, outcome, Some(code.code())).await
        }
    }

    /// Publishes a copy of the request (retry tier, dead-letter copy) until the broker confirms
    /// it, with back-off, holding the delivery meanwhile: the copy is the request's only
    /// future once the original is acked, and requeueing at once would only count toward the
    /// delivery limit. False when the session ends first (the broker then redelivers).
    async fn publish_copy(
        &self,
        job: &Job,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties,
        cancel: &CancellationToken,
    ) -> bool {
        let mut backoff = self.policy.holding();
        loop {
            let err = match self
                .publish(job, exchange, routing_key, properties, &job.delivery.data)
                .await
            {
                Ok(Published::Confirmed) => return true,
                Ok(Published::Returned) => PublishError::Unroutable,
                Err(err) => err,
            };
            if !job.publisher.is_open() {
                job.lost.cancel();
                return false;
            }
            let delay = backoff.next().unwrap_or(self.amqp.reconnect_max_delay);
            tracing::warn!(transaction_id = %job.identity.transaction_id, exchange, routing_key, error = %err, retry_in = ?delay, "copy of a request not confirmed; holding the request");
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// An audit row for an outcome decided here (dead-lettering, an unroutable reply). False
    /// when the session ended first; a failed write is logged and counted, never blocks.
    async fn audit(
        &self,
        job: &Job,
        event: AuditEvent,
        code: Option<ErrorCode>,
        cancel: &CancellationToken,
    ) -> bool {
        let write = || {
            self.processor
                .record(job.app_id(), &job.identity, event, code)
        };
        match self.with_database(write, cancel).await {
            None => false,
            Some(Err(err)) => {
                self.metrics.audit_write_failed(event.as_str(), &err);
                true
            }
            Some(Ok(())) => true,
        }
    }

    fn failure<'a>(
        &'a self,
        job: &'a Job,
        code: ErrorCode,
        message: &'a str,
        retry_count: i64,
    ) -> Failure<'a> {
        Failure {
            error_code: code.code(),
            message,
            original_exchange: job.delivery.exchange.as_str(),
            original_routing_key: job.delivery.routing_key.as_str(),
            retry_count,
            transaction_id: job.identity.transaction_id.as_str(),
            now: Utc::now(),
        }
    }

    async fn ack(&self, job: &Job, outcome: MessageOutcome, code: Option<&str>) {
        match job.delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => {
                let elapsed = job.started.elapsed();
                self.metrics.message_finished(
                    outcome,
                    job.identity.transaction_id.as_str(),
                    code,
                    elapsed,
                );
            }
            // The channel is gone: the broker redelivers, and idempotency answers it again.
            Ok(false) | Err(_) => {
                tracing::debug!(transaction_id = %job.identity.transaction_id, "ack not delivered; broker will redeliver")
            }
        }
    }
}

/// Whether a dead-lettering answers the registration processor with an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorAnswer {
    /// An error reply, unless the transaction turns out stored: then its stored reply.
    ReplyUnlessStored,
    /// No reply (the reply itself is what could not be delivered).
    NoReply,
}
