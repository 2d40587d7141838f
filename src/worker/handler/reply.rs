//! Publishing with a confirm, the reply first: where it goes, and what a reply that cannot be
//! published costs the request.

use super::{Handler, Step};
use crate::{
    amqp::{
        headers,
        publisher::{PublishError, Published},
    },
    message::{ErrorCode, Reply},
    processor::Verdict,
    worker::request::InboundRequest,
};
use backon::Retryable;
use lapin::BasicProperties;

impl Handler {
    /// A reply that could not be published (nacked by a full `reject-publish` queue, no
    /// confirm in time, a blocked connection) is a transient failure like any other, never a
    /// reason to requeue at once: every requeue counts toward the delivery limit, and at the
    /// limit a stored request would be dead-lettered by the broker. The request takes the next
    /// delayed-retry tier, where its next attempt finds it stored and re-sends the stored reply;
    /// when the budget is spent it is dead-lettered with no reply, as `PRS_REPLY_UNDELIVERED`
    /// (stored: a replay re-sends the stored reply) or with its rejection's code.
    pub(super) fn reply_failed(
        &self,
        request: &InboundRequest,
        verdict: &Verdict,
        err: &PublishError,
    ) -> Step {
        if request.publisher_gone() {
            return Step::LeaveUnacked;
        }
        let code = match verdict {
            Verdict::Rejected(code) => *code,
            Verdict::Stored | Verdict::Duplicate => ErrorCode::ReplyUndelivered,
        };
        let message = format!("reply not published: {err}").into();
        Step::RetryLater { code, message }
    }

    /// Publishes with a confirm, retrying a failed publish (timeout, nack) a few times in
    /// process while the channel is open.
    pub(super) async fn publish(
        &self,
        request: &InboundRequest,
        exchange: &str,
        routing_key: &str,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Result<Published, PublishError> {
        let attempt = || {
            request
                .publisher
                .publish(exchange, routing_key, body, properties.clone())
        };
        attempt
            .retry(self.policy.immediate())
            .when(|_| request.publisher.is_open())
            .notify(|err, delay| self.metrics.retrying_immediately(err, delay))
            .await
    }

    /// Publishes the reply to `reply_to` (when allowed) or the default reply queue. `Ok(false)`
    /// when it could not be delivered: `reply_to` not allowed, or no such queue.
    pub(super) async fn publish_reply(
        &self,
        request: &InboundRequest,
        reply: &Reply,
    ) -> Result<bool, PublishError> {
        let properties = &request.delivery.properties;
        let target = match properties.reply_to().as_ref().map(|r| r.as_str()) {
            Some(reply_to) if !self.reply_to.allows(reply_to) => {
                tracing::warn!(transaction_id = %request.identity.transaction_id, "reply_to not allowed; no reply sent");
                return Ok(false);
            }
            Some(reply_to) => reply_to,
            None => self.amqp.reply_queue.as_str(),
        };
        let reply_properties = headers::reply_properties(
            &request.identity,
            properties.correlation_id().as_ref(),
            reply.kind,
        );
        let published = self
            .publish(request, "", target, &reply_properties, &reply.body)
            .await?;
        if published == Published::Returned {
            tracing::warn!(transaction_id = %request.identity.transaction_id, "reply unroutable: no such reply queue");
            return Ok(false);
        }
        self.metrics.reply_published(reply.kind);
        Ok(true)
    }
}
