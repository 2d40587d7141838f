//! RabbitMQ: connection, topology, publishing with confirms, and the consumer that drives the
//! processor. Consuming, publishing and declaring use separate channels, so a channel-level
//! error on one (a refused declaration, say) cannot take the others down.

pub mod consumer;
pub mod headers;
pub mod publisher;
pub mod topology;

use anyhow::Context;
use lapin::{Connection, ConnectionProperties, uri::AMQPUri};
use secrecy::ExposeSecret;

use crate::config::AmqpSettings;

/// Opens a connection with the configured heartbeat and a connection name operators can find
/// in the management UI. Errors never contain the URL (it holds the password).
pub async fn connect(settings: &AmqpSettings) -> anyhow::Result<Connection> {
    let mut uri: AMQPUri = settings
        .url
        .expose_secret()
        .parse()
        .map_err(|_| anyhow::anyhow!("amqp.url is not a valid AMQP URL"))?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(u16::try_from(settings.heartbeat.as_secs()).unwrap_or(u16::MAX));
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.clone().into());
    // The TLS settings apply to amqps:// only; lapin ignores them for amqp://.
    let tls = crate::tls::amqp_config(&settings.tls)?;
    let runtime = lapin::runtime::default_runtime().context("starting lapin's runtime")?;
    Connection::connect_uri_with_config(uri, properties, tls, runtime)
        .await
        .context("connecting to RabbitMQ")
}
