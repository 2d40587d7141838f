//! One broker session: the connection and what is opened on it, and why it ended.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    Channel, Connection,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use super::acks::AckCoalescer;
use crate::{
    amqp::{self, nodes::Nodes, publisher::Publisher, topology},
    config::AmqpSettings,
    health::Health,
};

/// Why a broker session ended.
pub(super) enum SessionEnd {
    /// Shutdown requested: in-flight work finished (or the grace period ran out).
    Shutdown,
    /// Connecting, declaring or subscribing failed: try again.
    Unopened(anyhow::Error),
    /// Connection, channel or consumer lost while consuming: reconnect.
    Lost(anyhow::Error),
    /// What reconnecting cannot fix (an incompatible existing queue).
    Fatal(anyhow::Error),
}

/// One connection and what was opened on it. Consuming, publishing and declaring use separate
/// channels (the declaring one is `topology::declare`'s own), so a channel-level error on one
/// (a refused declaration, say) cannot take the others down.
///
/// Two tokens, signalling in opposite directions: `publisher_lost` is raised by a delivery task
/// and tells the dispatcher to end the session; `ended` is raised by the supervisor once the
/// session is over and tells the tasks (and the resource-alarm watch) to stop.
pub(super) struct Session {
    pub(super) connection: Connection,
    pub(super) publisher: Publisher,
    /// The channel the request queue is consumed (and acked) on.
    pub(super) consume_channel: Channel,
    pub(super) deliveries: lapin::Consumer,
    /// Cancelled by the supervisor when the session ends (shutdown or loss): its tasks stop
    /// waiting (and leave their deliveries unacked), the resource-alarm watch stops.
    pub(super) ended: CancellationToken,
    /// Cancelled by a delivery task that finds the publishing channel closed: the dispatcher
    /// then ends the session and reconnects (each request's `lost` is a clone of it).
    pub(super) publisher_lost: CancellationToken,
    /// The consuming channel's acks, coalesced.
    pub(super) acks: AckCoalescer,
}

impl Session {
    /// Connects to the current node of `nodes`, declares the topology, opens the publishing
    /// channel and subscribes to the request queue. Fails with [`SessionEnd::Unopened`], or
    /// [`SessionEnd::Fatal`] for what reconnecting cannot fix.
    pub(super) async fn open(
        settings: &AmqpSettings,
        nodes: &Nodes,
        retry_delays: &[Duration],
        shutdown: &CancellationToken,
    ) -> Result<Session, SessionEnd> {
        let connection = amqp::connect_to(settings, nodes)
            .await
            .map_err(SessionEnd::Unopened)?;
        if let Err(err) = topology::declare(&connection, settings, retry_delays).await {
            let fatal = err.is_fatal();
            let err = anyhow::Error::from(err);
            return Err(if fatal {
                SessionEnd::Fatal(err)
            } else {
                SessionEnd::Unopened(err)
            });
        }
        let unopened = |err: lapin::Error| SessionEnd::Unopened(err.into());
        let publisher = Publisher::open(&connection, settings.publish_timeout)
            .await
            .map_err(unopened)?;
        let consume_channel = connection.create_channel().await.map_err(unopened)?;
        // QoS before consuming, on every (re)connection: the prefetch window bounds the deliveries
        // held (in count; in bytes only with the broker's max_message_size, see `worker`).
        consume_channel
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(unopened)?;
        let deliveries = consume_channel
            .basic_consume(
                settings.request_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unopened)?;
        Ok(Session {
            connection,
            publisher,
            consume_channel,
            deliveries,
            ended: shutdown.child_token(),
            publisher_lost: CancellationToken::new(),
            acks: AckCoalescer::default(),
        })
    }

    /// Reports the broker's resource alarms to `health` until the session ends.
    pub(super) fn watch_blocked(&self, health: Health) {
        let events = self.connection.events_listener();
        tokio::spawn(watch_blocked(events, health, self.ended.clone()));
    }
}

/// Resource alarms: the broker blocks publishing connections when memory or disk runs low.
async fn watch_blocked(
    events: impl futures_util::Stream<Item = lapin::Event>,
    health: Health,
    session: CancellationToken,
) {
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            _ = session.cancelled() => break,
            event = events.next() => event,
        };
        match event {
            Some(lapin::Event::ConnectionBlocked(reason)) => {
                tracing::warn!(%reason, "broker blocked the connection (resource alarm)");
                health.set_broker_blocked(true);
            }
            Some(lapin::Event::ConnectionUnblocked) => {
                tracing::info!("broker unblocked the connection");
                health.set_broker_blocked(false);
            }
            Some(_) => {}
            None => break,
        }
    }
    health.set_broker_blocked(false);
}
