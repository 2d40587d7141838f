//! One inbound request (a delivery and what every step of its handling needs to know about it),
//! and the `reply_to` rule.

use std::time::Instant;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use regex::Regex;
use tokio_util::sync::CancellationToken;

use super::{acks::AckCoalescer, session::Session};
use crate::{
    amqp::{headers, publisher::Publisher},
    config::AmqpSettings,
    message::{Identity, registration_processor_id},
    processor::{Incoming, Trial},
};

/// Which queues a request may name as `reply_to`.
pub(super) struct ReplyToPolicy {
    allow: Option<Regex>,
    default_queue: String,
    own_prefix: String,
}

impl ReplyToPolicy {
    pub(super) fn new(amqp: &AmqpSettings) -> ReplyToPolicy {
        ReplyToPolicy {
            allow: amqp.reply_to_allow.clone(),
            default_queue: amqp.reply_queue.clone(),
            own_prefix: format!("{}.", amqp.exchange),
        }
    }

    /// Unset `reply_to_allow`: anything outside prereg-sync's own namespace, plus the default
    /// reply queue, so a publisher cannot make the worker write into its request, retry or
    /// dead-letter queues.
    pub(super) fn allows(&self, reply_to: &str) -> bool {
        match &self.allow {
            Some(allow) => allow.is_match(reply_to),
            None => reply_to == self.default_queue || !reply_to.starts_with(&self.own_prefix),
        }
    }
}

/// A delivery plus what every step of its handling needs to know about it.
pub(super) struct InboundRequest {
    pub(super) delivery: Delivery,
    pub(super) identity: Identity,
    /// The publishing channel of the session the delivery came on.
    pub(super) publisher: Publisher,
    pub(super) started: Instant,
    /// When the delivery arrived: the moment a first attempt judges the request's age against.
    received_at: DateTime<Utc>,
    /// The session's `publisher_lost`, raised by [`InboundRequest::publisher_gone`].
    publisher_lost: CancellationToken,
    /// The session's acks: this delivery is in flight there from its creation to its ack.
    acks: AckCoalescer,
    /// The registration processor's ID, made storable (see [`registration_processor_id`]).
    app_id: String,
}

impl InboundRequest {
    /// Made by the dispatcher, in delivery order, for a delivery of `session`.
    pub(super) fn new(delivery: Delivery, session: &Session) -> InboundRequest {
        session.acks.delivered(delivery.delivery_tag);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str());
        let app_id =
            registration_processor_id(delivery.properties.app_id().as_ref().map(|a| a.as_str()));
        InboundRequest {
            app_id,
            identity: Identity::of(message_id, &delivery.data),
            delivery,
            publisher: session.publisher.clone(),
            started: Instant::now(),
            received_at: Utc::now(),
            publisher_lost: session.publisher_lost.clone(),
            acks: session.acks.clone(),
        }
    }

    /// Acks the delivery (coalesced with others finishing at the same moment); false when the
    /// channel is gone and the broker will redeliver.
    pub(super) async fn ack(&self) -> bool {
        let delivery = &self.delivery;
        self.acks
            .ack(delivery.delivery_tag, delivery.acker.clone())
            .await
    }

    /// Whether the session's publishing channel has closed. If so, the dispatcher is told to
    /// end the session and reconnect; this delivery goes back to the broker with the channel.
    pub(super) fn publisher_gone(&self) -> bool {
        let gone = !self.publisher.is_open();
        if gone {
            self.publisher_lost.cancel();
        }
        gone
    }

    pub(super) fn app_id(&self) -> &str {
        &self.app_id
    }

    pub(super) fn header_integer(&self, key: &str) -> i64 {
        headers::integer(self.delivery.properties.headers().as_ref(), key).unwrap_or(0)
    }

    /// The request as the processor needs it. A request that comes back (redelivered, from a
    /// retry tier) was judged at its first attempt; a replay's copy carries no retry count.
    pub(super) fn incoming(&self) -> Incoming<'_> {
        let untried = !self.delivery.redelivered
            && self.header_integer(headers::DELIVERY_COUNT) == 0
            && self.header_integer(headers::RETRY_COUNT) == 0;
        let trial = match (untried, self.header_integer(headers::REPLAY_COUNT)) {
            (true, 0) => Trial::First {
                arrived: self.received_at,
            },
            (true, _) => Trial::Replayed,
            (false, _) => Trial::Again,
        };
        Incoming {
            body: &self.delivery.data,
            content_type: self
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str()),
            app_id: self.app_id(),
            trial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: Option<&str>) -> ReplyToPolicy {
        ReplyToPolicy {
            allow: allow.map(|a| Regex::new(a).unwrap()),
            default_queue: "prereg.reverse-sync.replies".into(),
            own_prefix: "prereg.reverse-sync.".into(),
        }
    }

    #[test]
    fn default_reply_to_rule_protects_own_queues() {
        let default = policy(None);
        assert!(default.allows("rp.replies"));
        assert!(default.allows("amq.gen-abc"));
        assert!(default.allows("prereg.reverse-sync.replies"));
        assert!(!default.allows("prereg.reverse-sync.requests"));
        assert!(!default.allows("prereg.reverse-sync.dlq"));
        assert!(!default.allows("prereg.reverse-sync.retry.10s"));
    }

    #[test]
    fn configured_reply_to_regex_wins() {
        assert!(policy(Some("^rp\\.")).allows("rp.x"));
        assert!(!policy(Some("^rp\\.")).allows("prereg.reverse-sync.replies"));
    }
}
