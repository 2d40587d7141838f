//! What happens to one delivery: process under the retry policy, then reply, dead-letter or
//! park for a delayed retry, and ack only once every publish is confirmed.

use backon::Retryable;
use chrono::Utc;
use lapin::options::{BasicAckOptions, BasicNackOptions};
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
            // again risks another crash. Dead-letter it without looking inside.
            let message = ErrorCode::DeliveryLimit.message();
            self.dead_letter(&job, ErrorCode::DeliveryLimit, message, cancel)
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
        let incoming = Incoming {
            body: &job.delivery.data,
            content_type: job
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str()),
            app_id: job.app_id(),
        };
        let attempt = || self.processor.process(&incoming, &job.identity);
        let Some(result) = self.with_database(attempt, cancel).await else {
            return; // shutting down or session lost: left unacked, the broker redelivers
        };
        match result {
            Ok(decision) => self.settle(&job, decision, cancel).await,
            Err(err) if err.class() == FailureClass::Transient => {
                self.retry_later(&job, &err, cancel).await
            }
            Err(err) => {
                // Permanent: a statement the database can never accept for this request.
                let message = err.to_string();
                self.dead_letter(&job, ErrorCode::StoreFailed, &message, cancel)
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
    /// `reply_to` not allowed) does not hold the request back.
    async fn settle(&self, job: &Job, decision: Decision, cancel: &CancellationToken) {
        let delivered = match self.publish_reply(job, &decision.reply).await {
            Ok(delivered) => delivered,
            Err(err) => return self.requeue(job, &err).await,
        };
        let outcome = match decision.verdict {
            Verdict::Rejected(code) => {
                return self
                    .dead_letter_copy(job, code, code.message(), MessageOutcome::Rejected)
                    .await;
            }
            Verdict::Stored => MessageOutcome::Stored,
            Verdict::Duplicate => MessageOutcome::Duplicate,
        };
        if !delivered {
            let event = AuditEvent::ReplyUnroutable;
            let write = || {
                self.processor
                    .record(job.app_id(), &job.identity, event, None)
            };
            match self.with_database(write, cancel).await {
                None => return,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "REPLY_UNROUTABLE audit row not written")
                }
                Some(Ok(())) => {}
            }
        }
        self.ack(job, outcome, None).await;
    }

    /// Publishes with a confirm, retrying a failed publish (timeout, nack) a few times in
    /// process while the channel is open.
    async fn publish(
        &self,
        job: &Job,
        exchange: &str,
        routing_key: &str,
        properties: &lapin::BasicProperties,
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
    /// budget is spent.
    async fn retry_later(&self, job: &Job, err: &StorageError, cancel: &CancellationToken) {
        let message = err.to_string();
        let retries = job.header_integer(headers::RETRY_COUNT);
        let Some(delay) = u32::try_from(retries)
            .ok()
            .and_then(|r| self.policy.delay_for(r))
        else {
            return self
                .dead_letter(job, ErrorCode::StoreFailed, &message, cancel)
                .await;
        };
        let failure = self.failure(job, ErrorCode::StoreFailed, &message, retries + 1);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let queue = retry_queue_name(&self.amqp.retry_queue_prefix, delay);
        match self
            .publish(job, "", &queue, &properties, &job.delivery.data)
            .await
        {
            Ok(Published::Confirmed) => {
                self.metrics
                    .retry_scheduled(job.identity.transaction_id.as_str(), &queue);
                let code = Some(ErrorCode::StoreFailed.code());
                self.ack(job, MessageOutcome::Retried, code).await
            }
            Ok(Published::Returned) => self.requeue(job, &PublishError::Unroutable).await,
            Err(err) => self.requeue(job, &err).await,
        }
    }

    /// Audit, error reply, dead-letter copy, ack: for the delivery limit and spent retries.
    async fn dead_letter(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        cancel: &CancellationToken,
    ) {
        let event = AuditEvent::DeadLettered;
        let write = || {
            self.processor
                .record(job.app_id(), &job.identity, event, Some(code))
        };
        match self.with_database(write, cancel).await {
            None => return,
            Some(Err(err)) => {
                tracing::error!(error = %err, "audit row for a dead-lettering not written")
            }
            Some(Ok(())) => {}
        }
        if let Err(err) = self
            .publish_reply(job, &Reply::error(code, Utc::now()))
            .await
        {
            return self.requeue(job, &err).await;
        }
        self.dead_letter_copy(job, code, message, MessageOutcome::DeadLettered)
            .await;
    }

    /// Publishes the request with failure headers to the dead-letter exchange, then acks it.
    async fn dead_letter_copy(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        outcome: MessageOutcome,
    ) {
        let retries = job.header_integer(headers::RETRY_COUNT);
        let failure = self.failure(job, code, message, retries);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let exchange = &self.amqp.dead_letter_exchange;
        let routing_key = job.delivery.routing_key.as_str();
        match self
            .publish(job, exchange, routing_key, &properties, &job.delivery.data)
            .await
        {
            Ok(Published::Confirmed) => self.ack(job, outcome, Some(code.code())).await,
            Ok(Published::Returned) => {
                tracing::error!(transaction_id = %job.identity.transaction_id, "dead-letter exchange has no queue bound; message kept");
                self.requeue(job, &PublishError::Unroutable).await
            }
            Err(err) => self.requeue(job, &err).await,
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

    /// A publish failed: hand the request back to the broker for another try. When the channel
    /// itself is gone the nack fails too, and the broker requeues it anyway.
    async fn requeue(&self, job: &Job, err: &PublishError) {
        tracing::warn!(transaction_id = %job.identity.transaction_id, error = %err, "publish failed; request requeued");
        if !job.publisher.is_open() {
            job.lost.cancel();
        }
        let options = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        let _ = job.delivery.acker.nack(options).await;
    }
}
