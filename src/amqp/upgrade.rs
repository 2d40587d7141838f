//! `prereg-sync upgrade-queues`: brings queues declared by an earlier version (classic retry
//! tiers, dead-letter and reply queues) to the arguments this version declares, without losing
//! a message.
//!
//! RabbitMQ cannot change a queue's type or arguments in place, so each queue that differs is
//! moved: its messages into a holding queue (`<name>.upgrading`, of the new type), the old
//! queue deleted and declared anew, and the messages moved back. Every move publishes with a
//! confirm before it acks the original, so a crash at any point loses nothing; running the
//! command again resumes where it stopped (a holding queue that still exists is emptied into
//! its queue). At worst a message confirmed but not yet acked when the process died exists
//! twice, and idempotency by transaction ID absorbs it. The request queue is never moved: the
//! registration processor publishes to it all along, and it has been quorum from the start.
//!
//! Run it with the workers stopped (an old worker cannot start against the new topology, nor a
//! new one against the old): it refuses to start while the request queue has consumers, and
//! refuses to delete a queue that has any (a reply-queue consumer would lose the replies it has
//! not acked yet). See docs/operations.md.

use anyhow::Context;
use lapin::{
    Channel, Connection,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions},
    protocol::AMQPSoftError,
    types::FieldTable,
};

use super::{
    headers,
    publisher::{Published, Publisher},
    topology::{self, QueueSpec},
};
use crate::config::AmqpSettings;

/// What happened to one queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct QueueUpgrade {
    pub(crate) queue: String,
    /// False when the queue already had the right arguments (or did not exist yet).
    pub(crate) moved: bool,
    /// Messages carried across (into the holding queue and back).
    pub(crate) messages: u64,
}

/// Upgrades every queue but the request queue; see the module documentation.
pub(crate) async fn upgrade_queues(
    connection: &Connection,
    settings: &AmqpSettings,
    retry_delays: &[std::time::Duration],
) -> anyhow::Result<Vec<QueueUpgrade>> {
    if let Some(workers) = consumers(connection, &settings.request_queue).await? {
        anyhow::ensure!(
            workers == 0,
            "{workers} consumer(s) on `{}`: stop every worker first (docs/operations.md); nothing was changed",
            settings.request_queue
        );
    }
    let publisher = Publisher::open(connection, settings.publish_timeout)
        .await
        .context("opening a confirm channel")?;
    let holding_arguments = topology::plain_arguments(settings);
    let mut reports = Vec::new();
    for queue in topology::queues(settings, retry_delays)
        .into_iter()
        .filter(|queue| queue.name != settings.request_queue)
    {
        let report = upgrade_one(connection, &publisher, &queue, &holding_arguments)
            .await
            .with_context(|| format!("upgrading `{}`", queue.name))?;
        reports.push(report);
    }
    publisher.close().await;
    Ok(reports)
}

async fn upgrade_one(
    connection: &Connection,
    publisher: &Publisher,
    queue: &QueueSpec<'_>,
    holding_arguments: &FieldTable,
) -> anyhow::Result<QueueUpgrade> {
    let holding = format!("{}.upgrading", queue.name);
    let mut messages = 0;
    let needs_move = !declares(connection, &queue.name, &queue.arguments).await?;
    if needs_move {
        declare(connection, &holding, holding_arguments.clone()).await?;
        messages += drain_and_delete(connection, publisher, &queue.name, &holding).await?;
        declare(connection, &queue.name, queue.arguments.clone()).await?;
    }
    // Also after an interrupted earlier run: a holding queue left behind is emptied back.
    if needs_move || exists(connection, &holding).await? {
        messages += drain_and_delete(connection, publisher, &holding, &queue.name).await?;
    }
    Ok(QueueUpgrade {
        queue: queue.name.clone(),
        moved: needs_move,
        messages,
    })
}

/// Moves every message from `from` to `to`, then deletes `from` once it is seen empty and with
/// no consumer; a message published to `from` in between is moved on the next round. (Quorum
/// queues refuse the `if-empty` and `if-unused` delete flags, so both are checked first: the
/// window between the check and the delete is why the workers are stopped while this runs.)
async fn drain_and_delete(
    connection: &Connection,
    publisher: &Publisher,
    from: &str,
    to: &str,
) -> anyhow::Result<u64> {
    let mut moved = 0;
    loop {
        moved += drain(connection, publisher, from, to).await?;
        if depth(connection, from).await? > 0 {
            continue;
        }
        // A consumer holds its unacked messages outside the ready count: deleting the queue
        // would lose them.
        let held = consumers(connection, from).await?.unwrap_or(0);
        anyhow::ensure!(
            held == 0,
            "`{from}` has {held} consumer(s), whose unacked messages its deletion would lose: \
             stop them and run again; nothing was lost"
        );
        channel(connection)
            .await?
            .queue_delete(from.into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting `{from}`"))?;
        return Ok(moved);
    }
}

/// Moves every message from `from` to `to` (through the default exchange), each confirmed
/// before the original is acked, with [`headers::moved_properties`]: the broker-owned headers
/// dropped (their count kept), and like every copy the worker publishes persistent, without
/// `expiration`, and with headers past the 16 KiB budget dropped (counted in
/// `x-dropped-headers`).
async fn drain(
    connection: &Connection,
    publisher: &Publisher,
    from: &str,
    to: &str,
) -> anyhow::Result<u64> {
    let channel = channel(connection).await?;
    let mut moved = 0;
    while let Some(message) = channel
        .basic_get(from.into(), BasicGetOptions { no_ack: false })
        .await
        .context("taking a message")?
    {
        let delivery = message.delivery;
        let properties = headers::moved_properties(&delivery.properties);
        match publisher
            .publish("", to, &delivery.data, properties)
            .await
            .context("moving a message")?
        {
            Published::Confirmed => {}
            Published::Returned => anyhow::bail!("`{to}` does not exist; nothing was lost"),
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking a moved message")?;
        moved += 1;
    }
    super::close_within(channel.close(200, "moved".into())).await;
    Ok(moved)
}

async fn channel(connection: &Connection) -> anyhow::Result<Channel> {
    connection
        .create_channel()
        .await
        .context("opening a channel")
}

async fn declare(connection: &Connection, name: &str, arguments: FieldTable) -> anyhow::Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel(connection)
        .await?
        .queue_declare(name.into(), options, arguments)
        .await
        .with_context(|| format!("declaring `{name}`"))?;
    Ok(())
}

/// Whether declaring `name` with `arguments` succeeds (creating it if absent); false when it
/// exists with other arguments (the broker closes that channel).
async fn declares(
    connection: &Connection,
    name: &str,
    arguments: &FieldTable,
) -> anyhow::Result<bool> {
    match declare(connection, name, arguments.clone()).await {
        Ok(()) => Ok(true),
        Err(err) if is_precondition_failed(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Messages ready in `name`.
async fn depth(connection: &Connection, name: &str) -> anyhow::Result<u32> {
    let queue = passive(connection, name)
        .await?
        .with_context(|| format!("counting `{name}`"))?;
    Ok(queue.message_count())
}

/// Consumers of `name`, `None` when it does not exist.
async fn consumers(connection: &Connection, name: &str) -> anyhow::Result<Option<u32>> {
    match passive(connection, name).await? {
        Ok(queue) => Ok(Some(queue.consumer_count())),
        Err(err) if topology::is_soft(&err, AMQPSoftError::NOTFOUND) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("looking at `{name}`")),
    }
}

async fn exists(connection: &Connection, name: &str) -> anyhow::Result<bool> {
    match passive(connection, name).await? {
        Ok(_) => Ok(true),
        Err(err) if topology::is_soft(&err, AMQPSoftError::NOTFOUND) => Ok(false),
        Err(err) => Err(err).with_context(|| format!("looking for `{name}`")),
    }
}

/// A passive declaration: the queue as it is, or the broker's refusal (`NOT_FOUND` when absent).
async fn passive(
    connection: &Connection,
    name: &str,
) -> anyhow::Result<Result<lapin::Queue, lapin::Error>> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(channel(connection)
        .await?
        .queue_declare(name.into(), options, FieldTable::default())
        .await)
}

fn is_precondition_failed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<lapin::Error>()
        .is_some_and(|err| topology::is_soft(err, AMQPSoftError::PRECONDITIONFAILED))
}
