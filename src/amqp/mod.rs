//! RabbitMQ plumbing: connection (to one of several nodes), topology, publishing with confirms,
//! headers, queue upgrades. The consuming worker that drives them is `crate::worker`.

pub mod headers;
pub(crate) mod nodes;
pub(crate) mod publisher;
pub mod topology;
pub(crate) mod upgrade;

use std::time::Duration;

use anyhow::Context;
use lapin::{Connection, ConnectionProperties, uri::AMQPUri};

use self::nodes::Nodes;
use crate::config::AmqpSettings;

/// How long closing a channel or a connection may take. A close is a courtesy to the broker
/// (unacked deliveries go back at once rather than at the TCP timeout): never worth hanging a
/// shutdown or a failover for, when the broker has stopped answering.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a channel's or connection's `close`, giving up after [`CLOSE_TIMEOUT`]. Its outcome
/// does not matter: the broker closes what it has left when the TCP connection goes.
pub(crate) async fn close_within(close: impl Future<Output = lapin::Result<()>>) {
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "closing on the broker failed; dropped"),
        Err(_) => tracing::debug!("the broker did not answer a close in time; dropped"),
    }
}

/// Stack reserved for lapin's I/O thread, which parses incoming frames.
const FRAME_PARSING_STACK: &str = "268435456";

/// Gives lapin's I/O thread a stack deep enough for any header table a frame can hold.
///
/// Why: lapin parses a field table recursively, one set of stack frames per nesting level, on
/// a thread it spawns with the standard library's default stack (2 MiB, or `RUST_MIN_STACK`).
/// A hostile publisher can nest tables and arrays thousands deep within one 128 KiB frame; on
/// the default stack that overflows and aborts the whole process at every redelivery. 256 MiB
/// covers the deepest nesting a frame can carry; it is address space, committed only as far as
/// a parse really goes. Tokio's worker threads set their own stack size and are not affected.
/// An operator's own `RUST_MIN_STACK` wins.
///
/// Call it first thing in `main`, before any thread is spawned (the variable is read once, and
/// setting it while other threads run is unsound).
pub fn reserve_frame_parsing_stack() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: called at the top of `main`, while the process has a single thread.
        unsafe { std::env::set_var("RUST_MIN_STACK", FRAME_PARSING_STACK) };
    }
}

/// Connects to one of the configured nodes, trying each once from a random starting point:
/// for the one-shot commands (`dlq`, `loadgen`). The worker walks the nodes itself
/// (`Nodes`), with back-off between attempts.
pub async fn connect(settings: &AmqpSettings) -> anyhow::Result<Connection> {
    let nodes = Nodes::new(settings.nodes.clone());
    let mut attempt = 1;
    loop {
        match connect_to(settings, &nodes).await {
            Err(err) if attempt < nodes.count() => {
                tracing::warn!(error = %format!("{err:#}"), "broker node unreachable; trying the next");
                nodes.advance();
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Opens a connection to the current node of `nodes` with the configured heartbeat and a
/// connection name operators can find in the management UI. Errors name the node by its
/// position in `amqp.url`, never by its URL (it holds the password).
pub(crate) async fn connect_to(
    settings: &AmqpSettings,
    nodes: &Nodes,
) -> anyhow::Result<Connection> {
    let (index, uri) = nodes.current();
    open(settings, uri).await.with_context(|| {
        format!(
            "connecting to RabbitMQ (node {} of {} in amqp.url)",
            index + 1,
            nodes.count()
        )
    })
}

async fn open(settings: &AmqpSettings, mut uri: AMQPUri) -> anyhow::Result<Connection> {
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(u16::try_from(settings.heartbeat.as_secs()).unwrap_or(u16::MAX));
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.clone().into());
    // The TLS settings apply to amqps:// only; lapin ignores them for amqp://.
    let tls = crate::tls::amqp_config(&settings.tls)?;
    let runtime = lapin::runtime::default_runtime().context("starting lapin's runtime")?;
    let connect = Connection::connect_uri_with_config(uri, properties, tls, runtime);
    // lapin has no deadline of its own: a node that accepts TCP but never speaks AMQP (a hung
    // VM, a load balancer with no backend) would hold start-up and failover forever.
    match tokio::time::timeout(settings.connect_timeout, connect).await {
        // lapin's message already holds its source's text: one line, each cause once.
        Ok(connection) => connection.map_err(|err| anyhow::Error::msg(crate::error_text(&err))),
        Err(_) => anyhow::bail!(
            "no AMQP handshake within amqp.connect_timeout ({}): not a broker, or hung",
            humantime::format_duration(settings.connect_timeout)
        ),
    }
}

/// Declares a server-named, exclusive, auto-delete queue on `channel` and consumes it without
/// acks: the private reply queue of a client that publishes requests (the HTTP ingress,
/// `loadgen`). It lives as long as the connection; a reply lost with the client is stored, and
/// a retry of its request gets it. Returns the queue's name (the requests' `reply_to`).
pub(crate) async fn private_reply_queue(
    channel: &lapin::Channel,
) -> Result<(lapin::types::ShortString, lapin::Consumer), lapin::Error> {
    use lapin::{options::QueueDeclareOptions, types::FieldTable};
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let replies = consume_without_acks(channel, queue.name().clone()).await?;
    Ok((queue.name().clone(), replies))
}

/// Consumes `queue` with automatic acknowledgement: for replies, which a client reads once and
/// never hands back.
pub async fn consume_without_acks(
    channel: &lapin::Channel,
    queue: lapin::types::ShortString,
) -> Result<lapin::Consumer, lapin::Error> {
    use lapin::{options::BasicConsumeOptions, types::FieldTable};
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    channel
        .basic_consume(queue, "".into(), options, FieldTable::default())
        .await
}
