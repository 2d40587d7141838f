//! Safe access to the dead-letter queue for the `dlq` commands.
//!
//! RabbitMQ has no "peek": a message is read by taking it (`basic.get` on a plain channel, acks
//! on that channel too; every copy goes through a separate confirm-mode [`Publisher`]).
//!
//! A message taken is never handed back (`basic.nack` with requeue, or a channel closed with
//! it unacked): on a quorum queue each hand-back spends one delivery, and RabbitMQ 4 drops or
//! dead-letters a message past its delivery limit (20 by default, or a policy's), so reading
//! would empty the queue. Instead every message of the snapshot (the messages present when
//! the command started) is settled by [`DeadLetterQueue::carry_out`]: forwarded somewhere
//! (replay), dropped (delete), or kept, which re-publishes it unchanged at the tail as a fresh
//! message. Reading keeps every message, so the snapshot goes round the queue once and comes
//! out in its order, with no delivery spent. Every publish is confirmed before the original is
//! acked, so a crash at any point loses nothing (at worst a message exists twice). Being bounded
//! by the snapshot, a walk never takes a message twice.

use anyhow::Context;
use lapin::{
    BasicProperties, Channel, Connection,
    message::Delivery,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
};

use crate::amqp::{
    self,
    headers::{self, integer},
    publisher::{Published, Publisher},
};
use crate::config::AmqpSettings;

/// Where a message is published, and with which properties (a replay's copy).
pub(super) struct Forward {
    pub(super) exchange: String,
    pub(super) routing_key: String,
    pub(super) properties: BasicProperties,
}

/// What [`DeadLetterQueue::carry_out`] does with one message.
pub(super) enum Action {
    /// Publish the body as `Forward` says, then ack.
    Forward(Box<Forward>),
    /// Ack: the message is gone.
    Drop,
    /// Re-publish unchanged (but for broker-owned headers) at the tail of the queue, then ack:
    /// the message stays, with no delivery spent.
    Keep,
}

/// A walk through the snapshot (see [`DeadLetterQueue::walk`]).
pub(super) struct Walk<'a> {
    queue: &'a DeadLetterQueue,
    remaining: u32,
    position: u64,
}

impl Walk<'_> {
    /// The queue walked.
    pub(super) fn queue(&self) -> &DeadLetterQueue {
        self.queue
    }

    /// Messages of the snapshot not taken yet.
    pub(super) fn remaining(&self) -> u32 {
        self.remaining
    }

    /// The next message of the snapshot with its position, or `None` at its end.
    pub(super) async fn take_next(&mut self) -> anyhow::Result<Option<(u64, Delivery)>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.position += 1;
        Ok(self
            .queue
            .take()
            .await?
            .map(|delivery| (self.position, delivery)))
    }
}

pub(super) struct DeadLetterQueue {
    connection: Connection,
    channel: Channel,
    publisher: Publisher,
    queue: String,
}

impl DeadLetterQueue {
    pub(super) async fn open(settings: &AmqpSettings) -> anyhow::Result<DeadLetterQueue> {
        let connection = amqp::connect(settings).await?;
        // For `basic.get` and acks only; copies are published through `Publisher`.
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        let publisher = Publisher::open(&connection, settings.publish_timeout)
            .await
            .context("opening the publishing channel")?;
        Ok(DeadLetterQueue {
            connection,
            channel,
            publisher,
            queue: settings.dead_letter_queue.clone(),
        })
    }

    /// Messages ready in the queue now: the snapshot a command works through.
    pub(super) async fn snapshot(&self) -> anyhow::Result<u32> {
        let queue = self
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("the dead-letter queue `{}` does not exist", self.queue))?;
        Ok(queue.message_count())
    }

    async fn take(&self) -> anyhow::Result<Option<Delivery>> {
        let message = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
            .context("reading the dead-letter queue")?;
        Ok(message.map(|m| m.delivery))
    }

    /// Shows the messages of the snapshot to `visit` (its position from 1 and the message), and
    /// keeps every one: the queue ends as it began. `visit` returns false to see no more; the
    /// rest of the snapshot still goes round, so that its order is kept.
    pub(super) async fn inspect(
        &self,
        mut visit: impl FnMut(u64, &Delivery) -> bool,
    ) -> anyhow::Result<()> {
        let mut walk = self.walk().await?;
        let mut visiting = true;
        while let Some((position, delivery)) = walk.take_next().await? {
            visiting = visiting && visit(position, &delivery);
            self.carry_out(&delivery, Action::Keep).await?;
        }
        Ok(())
    }

    /// Starts a walk through the snapshot: take each message with [`Walk::take_next`], then
    /// carry out an action for it with [`DeadLetterQueue::carry_out`] before taking the next.
    pub(super) async fn walk(&self) -> anyhow::Result<Walk<'_>> {
        let remaining = self.snapshot().await?;
        Ok(Walk {
            queue: self,
            remaining,
            position: 0,
        })
    }

    /// Carries out `action` for a message taken by a walk: its publish is confirmed before the
    /// message is acked.
    pub(super) async fn carry_out(
        &self,
        delivery: &Delivery,
        action: Action,
    ) -> anyhow::Result<()> {
        match action {
            Action::Forward(to) => self.forward(*to, &delivery.data).await?,
            Action::Drop => {}
            Action::Keep => {
                let properties = headers::moved_properties(&delivery.properties);
                self.publish("", &self.queue, &delivery.data, properties)
                    .await?;
            }
        }
        let acked = delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking")?;
        anyhow::ensure!(
            acked,
            "the broker channel closed mid-way; nothing was lost, run again"
        );
        Ok(())
    }

    /// Publishes `body` as `to` says, with a confirm (nothing is acked).
    pub(super) async fn forward(&self, to: Forward, body: &[u8]) -> anyhow::Result<()> {
        self.publish(&to.exchange, &to.routing_key, body, to.properties)
            .await
    }

    /// Publishes with a confirm; an unroutable message is an error (nothing was delivered).
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> anyhow::Result<()> {
        match self
            .publisher
            .publish(exchange, routing_key, body, properties)
            .await?
        {
            Published::Confirmed => Ok(()),
            Published::Returned => anyhow::bail!(
                "no queue is bound for exchange `{exchange}` routing key `{routing_key}`; message kept"
            ),
        }
    }

    pub(super) async fn close(self) {
        self.publisher.close().await;
        amqp::close_within(self.channel.close(200, "done".into())).await;
        amqp::close_within(self.connection.close(200, "done".into())).await;
    }
}

/// How often the broker itself dead-lettered this message (the `x-death` counts), or the
/// count carried in `x-death-count` after a `Keep` move dropped `x-death`.
pub(super) fn death_count(properties: &BasicProperties) -> i64 {
    let headers = properties.headers().as_ref();
    if let Some(carried) = integer(headers, headers::DEATH_COUNT) {
        return carried;
    }
    headers::x_death_total(headers)
}
