//! The broker objects of the contract, declared idempotently at every (re)connection.

use std::time::Duration;

use lapin::{
    Channel, Connection, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, LongString},
};

use crate::{
    config::{AmqpSettings, QueueType},
    retry::retry_queue_name,
};

/// A declaration the broker refused; `PRECONDITION_FAILED` (an existing object with other
/// arguments) cannot heal by retrying, so the worker exits with this message.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "`{object}` exists with different arguments ({detail}); see docs/operations.md, \
         \"Changing queue arguments\", to migrate it"
    )]
    Incompatible { object: String, detail: String },
    #[error("declaring `{object}`: {source}")]
    Broker {
        object: String,
        source: lapin::Error,
    },
}

impl TopologyError {
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, TopologyError::Incompatible { .. })
    }
}

/// Declares every exchange, queue and binding, on a channel of its own that is closed after.
pub async fn declare(
    connection: &Connection,
    settings: &AmqpSettings,
    retry_delays: &[Duration],
) -> Result<(), TopologyError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|source| TopologyError::Broker {
            object: "channel".into(),
            source,
        })?;
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    declare_exchange(
        &channel,
        &settings.exchange,
        ExchangeKind::Direct,
        durable_exchange,
    )
    .await?;
    declare_exchange(
        &channel,
        &settings.dead_letter_exchange,
        ExchangeKind::Fanout,
        durable_exchange,
    )
    .await?;

    for queue in queues(settings, retry_delays) {
        declare_queue(&channel, &queue.name, queue.arguments).await?;
        if let Some((exchange, routing_key)) = queue.binding {
            bind(&channel, &queue.name, exchange, routing_key).await?;
        }
    }
    // Best effort: the channel is only for declarations.
    super::close_within(channel.close(200, "topology declared".into())).await;
    Ok(())
}

/// One queue of the topology: its name, arguments and (for the request and dead-letter
/// queues) the binding that feeds it.
pub(crate) struct QueueSpec<'a> {
    pub(crate) name: String,
    pub(crate) arguments: FieldTable,
    binding: Option<(&'a str, &'a str)>,
}

/// Every queue the worker declares, request queue first.
///
/// Quorum by default (`amqp.queue_type`), so a cluster loses none of them with a node:
/// - the request queue: the broker enforces the delivery limit with at-least-once
///   dead-lettering as the last line of defence against a crash loop;
/// - the delayed-retry tiers: a message waits out its TTL there and is dead-lettered back to
///   the request exchange. A classic queue dead-letters without confirms (at-most-once): if
///   the request queue had no leader at that instant the message would be gone, long after the
///   original was acked. Quorum with at-least-once dead-lettering makes that hop safe;
/// - the dead-letter and default reply queues, plain quorum queues.
pub(crate) fn queues<'a>(
    settings: &'a AmqpSettings,
    retry_delays: &[Duration],
) -> Vec<QueueSpec<'a>> {
    let quorum = settings.queue_type == QueueType::Quorum;
    let mut request = Arguments::default().dead_letter_to(&settings.dead_letter_exchange, None);
    if quorum {
        request = request
            .insert("x-delivery-limit", i64::from(settings.delivery_limit))
            .at_least_once();
    }
    let mut all = vec![
        QueueSpec {
            name: settings.request_queue.clone(),
            arguments: request.quorum(quorum),
            binding: Some((&settings.exchange, &settings.routing_key)),
        },
        QueueSpec {
            name: settings.dead_letter_queue.clone(),
            arguments: plain_arguments(settings),
            binding: Some((&settings.dead_letter_exchange, "")),
        },
        QueueSpec {
            name: settings.reply_queue.clone(),
            arguments: plain_arguments(settings),
            binding: None,
        },
    ];
    for delay in retry_delays {
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let mut tier = Arguments::default()
            .insert("x-message-ttl", ttl_ms)
            .dead_letter_to(&settings.exchange, Some(&settings.routing_key));
        if quorum {
            tier = tier.at_least_once();
        }
        all.push(QueueSpec {
            name: retry_queue_name(&settings.retry_queue_prefix, *delay),
            arguments: tier.quorum(quorum),
            binding: None,
        });
    }
    all
}

/// A queue of the configured type with no other arguments.
pub(crate) fn plain_arguments(settings: &AmqpSettings) -> FieldTable {
    Arguments::default().quorum(settings.queue_type == QueueType::Quorum)
}

/// Queue arguments, built by what they mean.
#[derive(Default)]
struct Arguments(FieldTable);

impl Arguments {
    fn insert(mut self, key: &str, value: i64) -> Arguments {
        self.0.insert(key.into(), AMQPValue::LongLongInt(value));
        self
    }

    fn text(mut self, key: &str, value: &str) -> Arguments {
        self.0.insert(key.into(), long_string(value));
        self
    }

    fn dead_letter_to(self, exchange: &str, routing_key: Option<&str>) -> Arguments {
        let with_exchange = self.text("x-dead-letter-exchange", exchange);
        match routing_key {
            Some(key) => with_exchange.text("x-dead-letter-routing-key", key),
            None => with_exchange,
        }
    }

    /// Dead-lettering with publisher confirms inside the broker; it requires `reject-publish`
    /// overflow.
    fn at_least_once(self) -> Arguments {
        self.text("x-dead-letter-strategy", "at-least-once")
            .text("x-overflow", "reject-publish")
    }

    fn quorum(self, quorum: bool) -> FieldTable {
        if quorum {
            self.text("x-queue-type", "quorum").0
        } else {
            self.0
        }
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> Result<(), TopologyError> {
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(|source| refused(name, source))
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), TopologyError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map(|_| ())
        .map_err(|source| refused(name, source))
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), TopologyError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| refused(queue, source))
}

/// The broker's PRECONDITION_FAILED text already names the argument and both values
/// ("inequivalent arg 'x-queue-type' … received 'quorum' but current is 'classic'").
fn refused(object: &str, source: lapin::Error) -> TopologyError {
    if is_soft(&source, AMQPSoftError::PRECONDITIONFAILED)
        && let lapin::ErrorKind::ProtocolError(amqp) = source.kind()
    {
        return TopologyError::Incompatible {
            object: object.to_owned(),
            detail: amqp.get_message().to_string(),
        };
    }
    TopologyError::Broker {
        object: object.to_owned(),
        source,
    }
}

/// Whether the broker refused with this channel-level error.
pub(crate) fn is_soft(err: &lapin::Error, kind: AMQPSoftError) -> bool {
    matches!(err.kind(), lapin::ErrorKind::ProtocolError(amqp) if *amqp.kind() == AMQPErrorKind::Soft(kind))
}
