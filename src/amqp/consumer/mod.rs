//! The consumer: a supervisor that keeps one broker session alive (reconnecting with back-off),
//! and per delivery a task that runs the processor under the retry policy, publishes the reply
//! (and a dead-letter copy or delayed retry when due), and acks only after every publish is
//! confirmed: the request is never acked before its outcome is durable.

mod delivery;
mod job;
mod suspects;

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::{
    Connection,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use self::{
    job::{Job, ReplyToPolicy},
    suspects::Suspects,
};
use super::{headers, nodes::Nodes, publisher::Publisher, topology};
use crate::{
    config::{AmqpSettings, RetrySettings, WorkerSettings},
    health::Health,
    processor::Processor,
    retry::RetryPolicy,
    telemetry::Metrics,
};

/// How long a graceful stop waits, after the last ack, before closing the channel (see where
/// it is used).
const SETTLE_FLUSH: Duration = Duration::from_millis(500);

/// Everything a delivery task needs; shared by all tasks of all sessions.
pub struct Consumer {
    amqp: AmqpSettings,
    /// The node in use; the next one after a loss.
    nodes: Nodes,
    concurrency: usize,
    shutdown_grace: Duration,
    processor: Processor,
    policy: RetryPolicy,
    reply_to: ReplyToPolicy,
    health: Health,
    metrics: Metrics,
}

/// Why a broker session ended.
enum SessionEnd {
    /// Shutdown requested: in-flight work finished (or the grace period ran out).
    Shutdown,
    /// Connection, channel or consumer lost: reconnect.
    Lost(anyhow::Error),
}

impl Consumer {
    pub fn new(
        amqp: AmqpSettings,
        worker: &WorkerSettings,
        retry: &RetrySettings,
        processor: Processor,
        health: Health,
        metrics: Metrics,
    ) -> anyhow::Result<Consumer> {
        let nodes = Nodes::parse(&amqp.url)?;
        metrics.broker_node(None, nodes.count());
        Ok(Consumer {
            nodes,
            policy: RetryPolicy::new(retry),
            reply_to: ReplyToPolicy::new(&amqp),
            concurrency: worker.concurrency,
            shutdown_grace: worker.shutdown_grace,
            amqp,
            processor,
            health,
            metrics,
        })
    }

    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// Consumes until `shutdown`; reconnects on any broker failure. Returns an error only for
    /// what retrying cannot fix (an incompatible existing queue).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let reconnect = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(250))
            .with_max_delay(self.amqp.reconnect_max_delay)
            .without_max_times()
            .with_jitter();
        let mut backoff = reconnect.build();
        loop {
            let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
            match self.clone().session(&shutdown, connected.clone()).await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Lost(err)) => {
                    if connected.load(std::sync::atomic::Ordering::Relaxed) {
                        backoff = reconnect.build();
                    }
                    if self.nodes.advance() {
                        self.metrics.broker_failover();
                    }
                    let delay = backoff.next().unwrap_or(self.amqp.reconnect_max_delay);
                    self.metrics.broker_reconnecting(&format!("{err:#}"), delay);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(fatal) => return Err(fatal),
            }
        }
    }

    /// One connection's life: declare, subscribe, dispatch deliveries to tasks.
    async fn session(
        self: Arc<Self>,
        shutdown: &CancellationToken,
        connected: Arc<std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<SessionEnd> {
        let connection = match super::connect_to(&self.amqp, &self.nodes).await {
            Ok(connection) => connection,
            Err(err) => return Ok(SessionEnd::Lost(err)),
        };
        if let Err(err) = topology::declare(&connection, &self.amqp, self.policy.delays()).await {
            if err.is_fatal() {
                return Err(err.into());
            }
            return Ok(SessionEnd::Lost(err.into()));
        }
        let subscribed = self.subscribe(&connection).await;
        let (publisher, channel, mut consumer) = match subscribed {
            Ok(parts) => parts,
            Err(err) => return Ok(SessionEnd::Lost(err.into())),
        };
        connected.store(true, std::sync::atomic::Ordering::Relaxed);
        self.health.set_consuming(true);
        let node = self.nodes.current().0;
        self.metrics.broker_node(Some(node), self.nodes.count());
        tracing::info!(queue = %self.amqp.request_queue, node = node + 1, "consuming");
        let session = shutdown.child_token();
        tokio::spawn(watch_blocked(
            connection.events_listener(),
            self.health.clone(),
            session.clone(),
        ));

        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut suspects = Suspects::default();
        let lost = CancellationToken::new();
        let mut suspect = JoinSet::new();
        let end = loop {
            while tasks.try_join_next().is_some() {}
            // While the database is down no new delivery is taken: those in flight are held.
            let next = async {
                self.health.wait_for_database().await;
                let permit = permits.clone().acquire_owned().await;
                (
                    permit.expect("the semaphore is never closed"),
                    consumer.next().await,
                )
            };
            let step = tokio::select! {
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = lost.cancelled() => {
                    break SessionEnd::Lost(anyhow::anyhow!("the publishing channel closed"));
                }
                _ = suspects.next_due(suspect.is_empty()) => None,
                Some(_) = suspect.join_next() => continue,
                taken = next => Some(taken),
            };
            let Some((permit, next)) = step else {
                let batch = std::mem::take(&mut suspects.waiting);
                suspect.spawn(self.clone().run_suspects(batch, session.clone()));
                continue;
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => break SessionEnd::Lost(err.into()),
                None => {
                    break SessionEnd::Lost(anyhow::anyhow!("the broker cancelled the consumer"));
                }
            };
            let job = Job::new(delivery, publisher.clone(), lost.clone());
            if job.header_integer(headers::DELIVERY_COUNT) > 0 {
                suspects.push(job, permit);
            } else {
                tasks.spawn(self.clone().run_job(job, permit, session.clone()));
            }
        };
        // Buffered suspects go back to the queue with the channel.
        suspects.waiting.clear();
        self.health.set_consuming(false);
        self.metrics.broker_node(None, self.nodes.count());
        match &end {
            SessionEnd::Shutdown => {
                let _ = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
                // The settle wait below comes out of the grace period, so the whole stop stays
                // within it (orchestrators kill the process at their own deadline).
                let drain = self.shutdown_grace.saturating_sub(SETTLE_FLUSH);
                let drained = tokio::time::timeout(drain, async {
                    while tasks.join_next().await.is_some() {}
                    while suspect.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::warn!(
                        left = tasks.len(),
                        "shutdown grace period over; unfinished deliveries go back to the queue"
                    );
                    tasks.abort_all();
                    suspect.abort_all();
                }
                // Let the broker apply the last acks before the channel closes: RabbitMQ's
                // quorum-queue client (in the channel process) keeps at most 32 settlements
                // unapplied and stashes the rest until earlier ones are applied; closing the
                // channel drops the stash, and those requests come back to be answered again
                // as duplicates (seen with 64 deliveries finishing in one group commit just
                // after SIGTERM, RabbitMQ 3.10). Applying takes milliseconds.
                tokio::time::sleep(SETTLE_FLUSH).await;
                session.cancel();
                publisher.close().await;
                let _ = channel.close(200, "shutdown".into()).await;
                let _ = connection.close(200, "shutdown".into()).await;
            }
            SessionEnd::Lost(_) => {
                // Tasks still running cannot ack on this connection any more; the broker
                // redelivers their messages and idempotency absorbs any that were stored.
                session.cancel();
                tasks.abort_all();
                suspect.abort_all();
                let _ = connection.close(320, "reconnecting".into()).await;
            }
        }
        Ok(end)
    }

    /// Handles one job, holding its concurrency permit until done.
    async fn run_job(
        self: Arc<Self>,
        job: Job,
        permit: OwnedSemaphorePermit,
        cancel: CancellationToken,
    ) {
        let _counted = self.metrics.in_flight();
        self.handle(job, &cancel).await;
        drop(permit);
    }

    async fn subscribe(
        &self,
        connection: &Connection,
    ) -> Result<(Publisher, lapin::Channel, lapin::Consumer), lapin::Error> {
        let publisher = Publisher::open(connection, self.amqp.publish_timeout).await?;
        let channel = connection.create_channel().await?;
        // QoS before consuming, on every (re)connection: the prefetch window bounds memory.
        channel
            .basic_qos(self.amqp.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.amqp.request_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((publisher, channel, consumer))
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
