//! The broker objects of the contract, declared idempotently at every (re)connection.

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
    pub fn is_fatal(&self) -> bool {
        matches!(self, TopologyError::Incompatible { .. })
    }
}

/// Declares every exchange, queue and binding, on a channel of its own that is closed after.
pub async fn declare(
    connection: &Connection,
    settings: &AmqpSettings,
    retry_delays: &[std::time::Duration],
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

    declare_queue(
        &channel,
        &settings.request_queue,
        request_queue_arguments(settings),
    )
    .await?;
    bind(
        &channel,
        &settings.request_queue,
        &settings.exchange,
        &settings.routing_key,
    )
    .await?;
    declare_queue(&channel, &settings.dead_letter_queue, FieldTable::default()).await?;
    bind(
        &channel,
        &settings.dead_letter_queue,
        &settings.dead_letter_exchange,
        "",
    )
    .await?;
    declare_queue(&channel, &settings.reply_queue, FieldTable::default()).await?;
    for delay in retry_delays {
        let mut arguments = FieldTable::default();
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(&settings.exchange),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&settings.routing_key),
        );
        declare_queue(
            &channel,
            &retry_queue_name(&settings.retry_queue_prefix, *delay),
            arguments,
        )
        .await?;
    }
    // Best effort: the channel is only for declarations.
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// Quorum by default: replicated, and the broker enforces the delivery limit with
/// at-least-once dead-lettering as the last line of defence against a crash loop.
fn request_queue_arguments(settings: &AmqpSettings) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        long_string(&settings.dead_letter_exchange),
    );
    if settings.queue_type == QueueType::Quorum {
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(settings.delivery_limit)),
        );
        arguments.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        // at-least-once dead-lettering requires reject-publish overflow.
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
    }
    arguments
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
    if let lapin::ErrorKind::ProtocolError(amqp) = source.kind()
        && *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
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
