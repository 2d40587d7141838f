//! What happens to one delivery, start to ack. Each step returns the [`Step`] that follows it,
//! and [`Handler::handle`] drives them in one loop: process, then reply ([`reply`]), park for a
//! delayed retry or dead-letter ([`copies`]), and ack only once every publish is confirmed.

mod copies;
mod database;
mod reply;

use std::{borrow::Cow, sync::Arc};

use deadpool_postgres::Pool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use self::copies::ErrorAnswer;
pub(super) use self::database::Attempt;
use super::request::{InboundRequest, ReplyToPolicy};
use crate::{
    amqp::headers,
    config::AmqpSettings,
    health::Health,
    message::ErrorCode,
    processor::{Decision, Processor, Verdict},
    retry::{FailureClass, RetryPolicy},
    storage::audit::AuditEvent,
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

/// A step of one delivery's handling. Each step is a method of [`Handler`] that returns the
/// next one; the last is always an ack, or the delivery left unacked for the broker to redeliver.
enum Step {
    /// Ask the processor (one database transaction) for a decision: store, duplicate, reject.
    Process,
    /// Reply as decided; a rejection then goes to the dead-letter queue, the rest are acked.
    Conclude(Decision),
    /// A transient failure outlived the immediate retries: park the request in the next
    /// delayed-retry tier, or dead-letter it once the budget is spent.
    RetryLater {
        code: ErrorCode,
        message: Cow<'static, str>,
    },
    /// Audit, error reply (see [`ErrorAnswer`]), then the dead-letter copy.
    DeadLetter {
        code: ErrorCode,
        message: Cow<'static, str>,
        answer: ErrorAnswer,
    },
    /// Publish the request with its failure headers to the dead-letter exchange.
    DeadLetterCopy {
        code: ErrorCode,
        message: Cow<'static, str>,
        outcome: MessageOutcome,
    },
    /// The outcome is durable (stored, replied, copied): ack, the last step.
    Ack {
        outcome: MessageOutcome,
        code: Option<ErrorCode>,
    },
    /// The session ended (shutdown, a lost channel) first: the delivery stays unacked and the
    /// broker redelivers it; idempotency answers it again.
    LeaveUnacked,
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
        self.handle(&request, &cancel).await;
        drop(permit);
    }

    /// One delivery, start to ack: every step it can take, in one loop.
    async fn handle(&self, request: &InboundRequest, cancel: &CancellationToken) {
        let mut step = self.receive(request);
        loop {
            step = match step {
                Step::Process => self.process(request, cancel).await,
                Step::Conclude(decision) => self.conclude(request, decision, cancel).await,
                Step::RetryLater { code, message } => {
                    self.retry_later(request, code, message, cancel).await
                }
                Step::DeadLetter {
                    code,
                    message,
                    answer,
                } => {
                    self.dead_letter(request, code, message, answer, cancel)
                        .await
                }
                Step::DeadLetterCopy {
                    code,
                    message,
                    outcome,
                } => {
                    self.dead_letter_copy(request, code, &message, outcome, cancel)
                        .await
                }
                Step::Ack { outcome, code } => return self.ack(request, outcome, code).await,
                Step::LeaveUnacked => return,
            };
        }
    }

    /// The first step: processing, unless the delivery has come back too often.
    fn receive(&self, request: &InboundRequest) -> Step {
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
            let code = ErrorCode::DeliveryLimit;
            return Step::DeadLetter {
                code,
                message: code.message().into(),
                answer: ErrorAnswer::ReplyUnlessStored,
            };
        }
        let replays = request.header_integer(headers::REPLAY_COUNT);
        if replays > 0 {
            self.metrics
                .replayed_received(&request.identity.transaction_id, replays);
        }
        Step::Process
    }

    /// The processor's decision, or what a failure to reach one leads to.
    async fn process(&self, request: &InboundRequest, cancel: &CancellationToken) -> Step {
        #[cfg(feature = "fault-injection")]
        crate::fault::maybe_crash(request.identity.transaction_id.as_str());
        let incoming = request.incoming();
        let attempt = || self.processor.process(&incoming, &request.identity);
        let err = match self.with_database(attempt, cancel).await {
            Attempt::Cancelled => return Step::LeaveUnacked,
            Attempt::Done(Ok(decision)) => return Step::Conclude(decision),
            Attempt::Done(Err(err)) => err,
        };
        let code = ErrorCode::StoreFailed;
        let message = err.to_string().into();
        match err.class() {
            FailureClass::Transient => Step::RetryLater { code, message },
            // Permanent: a statement the database can never accept for this request.
            class => {
                if class == FailureClass::Refused {
                    self.metrics
                        .database_refused(&request.identity.transaction_id, &err);
                }
                let answer = ErrorAnswer::ReplyUnlessStored;
                Step::DeadLetter {
                    code,
                    message,
                    answer,
                }
            }
        }
    }

    /// Carries out the processor's decision: replies (stored, duplicate) or replies and
    /// dead-letters (rejected). A reply that cannot be delivered (no such queue, `reply_to` not
    /// allowed) does not hold the request back; one that cannot be published takes the retry
    /// tiers (see [`Handler::reply_failed`]).
    async fn conclude(
        &self,
        request: &InboundRequest,
        decision: Decision,
        cancel: &CancellationToken,
    ) -> Step {
        let delivered = match self.publish_reply(request, &decision.reply).await {
            Ok(delivered) => delivered,
            Err(error) => return self.reply_failed(request, &decision.verdict, &error),
        };
        let outcome = match decision.verdict {
            Verdict::Rejected(code) => {
                return Step::DeadLetterCopy {
                    code,
                    message: code.message().into(),
                    outcome: MessageOutcome::Rejected,
                };
            }
            Verdict::Stored => MessageOutcome::Stored,
            Verdict::Duplicate => MessageOutcome::Duplicate,
        };
        if !delivered {
            self.audit(request, AuditEvent::ReplyUnroutable, None, cancel)
                .await;
        }
        Step::Ack {
            outcome,
            code: None,
        }
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
                self.metrics.audit_write_failed(event, &err);
                true
            }
            Attempt::Done(Ok(())) => true,
        }
    }

    async fn ack(
        &self,
        request: &InboundRequest,
        outcome: MessageOutcome,
        code: Option<ErrorCode>,
    ) {
        if request.ack().await {
            let elapsed = request.started.elapsed();
            let transaction_id = &request.identity.transaction_id;
            self.metrics
                .message_finished(outcome, transaction_id, code, elapsed);
        } else {
            // The channel is gone: the broker redelivers, and idempotency answers it again.
            tracing::debug!(transaction_id = %request.identity.transaction_id, "ack not delivered; broker will redeliver")
        }
    }
}
