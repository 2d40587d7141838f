//! The request's copies, for when it cannot be answered now: a delayed-retry copy in the next
//! tier, or a dead-letter copy (with an error reply, see [`ErrorAnswer`]). Each is published
//! until the broker confirms it, holding the delivery meanwhile; only then does the step lead
//! to the ack.

use std::borrow::Cow;

use chrono::Utc;
use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;

use super::{Attempt, Handler, Step};
use crate::{
    amqp::{
        headers::{self, Failure},
        publisher::{PublishError, Published},
    },
    message::{ErrorCode, Reply},
    retry::retry_queue_name,
    storage::audit::AuditEvent,
    telemetry::MessageOutcome,
    worker::request::InboundRequest,
};

/// Whether a dead-lettering answers the registration processor with an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorAnswer {
    /// An error reply, unless the transaction turns out stored: then its stored reply.
    ReplyUnlessStored,
    /// No reply (the reply itself is what could not be delivered).
    NoReply,
}

impl Handler {
    /// A transient failure that outlived the immediate retries: park the request in the next
    /// delayed-retry queue (the consumer slot is freed at once), or dead-letter it when the
    /// budget is spent: with an error reply for a failed store (unless the transaction turns out
    /// stored), without one for an undelivered reply.
    pub(super) async fn retry_later(
        &self,
        request: &InboundRequest,
        code: ErrorCode,
        message: Cow<'static, str>,
        cancel: &CancellationToken,
    ) -> Step {
        let retries = request.header_integer(headers::RETRY_COUNT);
        let Some(delay) = u32::try_from(retries)
            .ok()
            .and_then(|r| self.policy.delay_for(r))
        else {
            let answer = match code {
                ErrorCode::StoreFailed => ErrorAnswer::ReplyUnlessStored,
                _ => ErrorAnswer::NoReply,
            };
            return Step::DeadLetter {
                code,
                message,
                answer,
            };
        };
        let failure = failure(request, code, &message, retries + 1);
        let properties = headers::failure_properties(&request.delivery.properties, &failure);
        let queue = retry_queue_name(&self.amqp.retry_queue_prefix, delay);
        if !self
            .publish_copy(request, "", &queue, &properties, cancel)
            .await
        {
            return Step::LeaveUnacked;
        }
        self.metrics
            .retry_scheduled(&request.identity.transaction_id, &queue);
        Step::Ack {
            outcome: MessageOutcome::Retried,
            code: Some(code),
        }
    }

    /// Audit and error reply (see [`ErrorAnswer`]); the dead-letter copy is the next step. A
    /// transaction found stored is concluded with its stored reply instead.
    pub(super) async fn dead_letter(
        &self,
        request: &InboundRequest,
        code: ErrorCode,
        message: Cow<'static, str>,
        answer: ErrorAnswer,
        cancel: &CancellationToken,
    ) -> Step {
        let mut error_reply = answer == ErrorAnswer::ReplyUnlessStored;
        if error_reply {
            // One transaction, one answer: a stored transaction is never answered with an
            // error, whatever went wrong with this delivery.
            let lookup = || {
                self.processor
                    .answer_if_stored(request.app_id(), &request.identity)
            };
            match self.with_database(lookup, cancel).await {
                Attempt::Cancelled => return Step::LeaveUnacked,
                Attempt::Done(Ok(Some(duplicate))) => return Step::Conclude(duplicate),
                Attempt::Done(Ok(None)) => {}
                Attempt::Done(Err(err)) => {
                    tracing::warn!(error = %err, "whether the transaction is stored is unknown; dead-lettered without an error reply");
                    error_reply = false;
                }
            }
        }
        if !self
            .audit(request, AuditEvent::DeadLettered, Some(code), cancel)
            .await
        {
            return Step::LeaveUnacked;
        }
        if error_reply
            && let Err(err) = self
                .publish_reply(request, &Reply::error(code, Utc::now()))
                .await
        {
            // The request goes to the dead-letter queue all the same, where it is seen.
            tracing::warn!(transaction_id = %request.identity.transaction_id, error = %err, "error reply not published");
        }
        Step::DeadLetterCopy {
            code,
            message,
            outcome: MessageOutcome::DeadLettered,
        }
    }

    /// Publishes the request with failure headers to the dead-letter exchange; the ack follows.
    pub(super) async fn dead_letter_copy(
        &self,
        request: &InboundRequest,
        code: ErrorCode,
        message: &str,
        outcome: MessageOutcome,
        cancel: &CancellationToken,
    ) -> Step {
        let retries = request.header_integer(headers::RETRY_COUNT);
        let failure = failure(request, code, message, retries);
        let properties = headers::failure_properties(&request.delivery.properties, &failure);
        let exchange = &self.amqp.dead_letter_exchange;
        let routing_key = request.delivery.routing_key.as_str();
        if !self
            .publish_copy(request, exchange, routing_key, &properties, cancel)
            .await
        {
            return Step::LeaveUnacked;
        }
        Step::Ack {
            outcome,
            code: Some(code),
        }
    }

    /// Publishes a copy of the request (retry tier, dead-letter copy) until the broker confirms
    /// it, with back-off, holding the delivery meanwhile: the copy is the request's only
    /// future once the original is acked, and requeueing at once would only count toward the
    /// delivery limit. False when the session ends first (the broker then redelivers).
    async fn publish_copy(
        &self,
        request: &InboundRequest,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties,
        cancel: &CancellationToken,
    ) -> bool {
        let mut backoff = self.policy.holding();
        let body = &request.delivery.data;
        loop {
            let err = match self
                .publish(request, exchange, routing_key, properties, body)
                .await
            {
                Ok(Published::Confirmed) => return true,
                Ok(Published::Returned) => PublishError::Unroutable,
                Err(err) => err,
            };
            if request.publisher_gone() {
                return false;
            }
            let delay = backoff.next().unwrap_or(self.amqp.reconnect_max_delay);
            tracing::warn!(transaction_id = %request.identity.transaction_id, exchange, routing_key, error = %err, retry_in = ?delay, "copy of a request not confirmed; holding the request");
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// The failure headers a copy carries.
fn failure<'a>(
    request: &'a InboundRequest,
    code: ErrorCode,
    message: &'a str,
    retry_count: i64,
) -> Failure<'a> {
    Failure {
        error_code: code.code(),
        message,
        original_exchange: request.delivery.exchange.as_str(),
        original_routing_key: request.delivery.routing_key.as_str(),
        retry_count,
        transaction_id: request.identity.transaction_id.as_str(),
        now: Utc::now(),
    }
}
