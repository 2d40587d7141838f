//! The consumer: a supervisor that keeps one broker session alive (reconnecting with back-off),
//! and per delivery a task that runs the processor under the retry policy, publishes the reply
//! (and a dead-letter copy or delayed retry when due), and acks only after every publish is
//! confirmed: the request is never acked before its outcome is durable.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::Utc;
use futures_util::StreamExt;
use lapin::{
    Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
};
use regex::Regex;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::{
    headers::{self, Failure},
    publisher::{PublishError, Published, Publisher},
    topology,
};
use crate::{
    config::{AmqpSettings, RetrySettings, WorkerSettings},
    health::Health,
    message::{ErrorCode, Reply},
    processor::{Decision, Identity, Incoming, Processor, Verdict},
    retry::{FailureClass, RetryPolicy, retry_queue_name},
    storage::{StorageError, audit::AuditEvent, suspects},
    telemetry::{MessageOutcome, Metrics},
};

/// Everything a delivery task needs; shared by all tasks of all sessions.
pub struct Consumer {
    amqp: AmqpSettings,
    concurrency: usize,
    shutdown_grace: std::time::Duration,
    processor: Processor,
    policy: RetryPolicy,
    reply_to: ReplyToPolicy,
    health: Health,
    metrics: Metrics,
}

/// Which queues a request may name as `reply_to`.
struct ReplyToPolicy {
    allow: Option<Regex>,
    default_queue: String,
    own_prefix: String,
}

impl ReplyToPolicy {
    fn new(amqp: &AmqpSettings) -> ReplyToPolicy {
        ReplyToPolicy {
            allow: amqp.reply_to_allow.clone(),
            default_queue: amqp.reply_queue.clone(),
            own_prefix: format!("{}.", amqp.exchange),
        }
    }

    /// Unset `reply_to_allow`: anything outside prereg-sync's own namespace, plus the default
    /// reply queue, so a publisher cannot make the worker write into its request, retry or
    /// dead-letter queues.
    fn allows(&self, reply_to: &str) -> bool {
        match &self.allow {
            Some(allow) => allow.is_match(reply_to),
            None => reply_to == self.default_queue || !reply_to.starts_with(&self.own_prefix),
        }
    }
}

/// Why a broker session ended.
enum SessionEnd {
    /// Shutdown requested: in-flight work finished (or the grace period ran out).
    Shutdown,
    /// Connection, channel or consumer lost: reconnect.
    Lost(anyhow::Error),
}

/// A delivery plus what every step of its handling needs to know about it.
struct Job {
    delivery: Delivery,
    identity: Identity,
    publisher: Publisher,
    started: Instant,
}

impl Job {
    fn new(delivery: Delivery, publisher: Publisher) -> Job {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str());
        Job {
            identity: Identity::of(message_id, &delivery.data),
            delivery,
            publisher,
            started: Instant::now(),
        }
    }

    fn app_id(&self) -> &str {
        self.delivery
            .properties
            .app_id()
            .as_ref()
            .map_or("unknown", |s| s.as_str())
    }

    fn header_integer(&self, key: &str) -> i64 {
        headers::integer(self.delivery.properties.headers().as_ref(), key).unwrap_or(0)
    }
}

impl Consumer {
    pub fn new(
        amqp: AmqpSettings,
        worker: &WorkerSettings,
        retry: &RetrySettings,
        processor: Processor,
        health: Health,
        metrics: Metrics,
    ) -> Consumer {
        Consumer {
            policy: RetryPolicy::new(retry),
            reply_to: ReplyToPolicy::new(&amqp),
            concurrency: worker.concurrency,
            shutdown_grace: worker.shutdown_grace,
            amqp,
            processor,
            health,
            metrics,
        }
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
        let connection = match super::connect(&self.amqp).await {
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
        tracing::info!(queue = %self.amqp.request_queue, "consuming");
        let session = shutdown.child_token();
        tokio::spawn(watch_blocked(
            connection.events_listener(),
            self.health.clone(),
            session.clone(),
        ));

        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut suspects = Suspects::default();
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
            let job = Job::new(delivery, publisher.clone());
            if job.header_integer(headers::DELIVERY_COUNT) > 0 {
                suspects.push(job, permit);
            } else {
                tasks.spawn(self.clone().run_job(job, permit, session.clone()));
            }
        };
        // Buffered suspects go back to the queue with the channel.
        suspects.waiting.clear();
        self.health.set_consuming(false);
        match &end {
            SessionEnd::Shutdown => {
                let _ = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
                let drained = tokio::time::timeout(self.shutdown_grace, async {
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

    /// Tries redelivered deliveries one at a time, the never-tried-alone first (in arrival
    /// order), each attempt recorded durably before it starts.
    ///
    /// Why: a crash returns the whole prefetch window to the queue and the broker counts a
    /// delivery for each message in it, so innocent neighbours of a crashing message would reach
    /// the delivery limit with it. Tried alone, only the culprit is in flight when the worker
    /// dies, and its recorded attempt puts it last next time: the neighbours are answered and
    /// acked first, and only the culprit keeps coming back until the delivery limit.
    async fn run_suspects(
        self: Arc<Self>,
        mut batch: Vec<(Job, OwnedSemaphorePermit)>,
        cancel: CancellationToken,
    ) {
        let pool = self.processor.pool();
        let ids: Vec<&str> = batch
            .iter()
            .map(|(job, _)| job.identity.transaction_id.as_str())
            .collect();
        let lookup = || async { suspects::attempts(&pool.get().await?, &ids).await };
        let attempts = match self.with_database(lookup, &cancel).await {
            None => return, // session over: the deliveries go back with the channel
            Some(Ok(attempts)) => attempts,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "suspect attempts unknown; trying in arrival order");
                HashMap::new()
            }
        };
        drop(ids);
        // Stable: equal attempts keep arrival order.
        batch.sort_by_key(|(job, _)| {
            attempts
                .get(job.identity.transaction_id.as_str())
                .copied()
                .unwrap_or(0)
        });
        for (job, permit) in batch {
            let id = job.identity.transaction_id.to_string();
            let mark = || async { suspects::mark_attempt(&pool.get().await?, &id).await };
            match self.with_database(mark, &cancel).await {
                None => return,
                Some(Err(err)) => tracing::warn!(error = %err, "suspect attempt not recorded"),
                Some(Ok(())) => {}
            }
            tracing::info!(transaction_id = %id, "redelivered request tried in isolation");
            self.clone().run_job(job, permit, cancel.clone()).await;
            let clear = || async { suspects::clear(&pool.get().await?, &id).await };
            if let Some(Err(err)) = self.with_database(clear, &cancel).await {
                tracing::warn!(error = %err, "suspect record not cleared");
            }
        }
    }

    /// Handles one job, holding its concurrency permit until done.
    async fn run_job(
        self: Arc<Self>,
        job: Job,
        permit: OwnedSemaphorePermit,
        cancel: CancellationToken,
    ) {
        self.metrics.in_flight().inc();
        self.handle(job, &cancel).await;
        self.metrics.in_flight().dec();
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

    /// One delivery, start to ack.
    async fn handle(&self, job: Job, cancel: &CancellationToken) {
        let delivery_count = job.header_integer(headers::DELIVERY_COUNT);
        tracing::debug!(
            transaction_id = %job.identity.transaction_id,
            delivery_tag = job.delivery.delivery_tag,
            redelivered = job.delivery.redelivered,
            delivery_count,
            bytes = job.delivery.data.len(),
            "delivery received"
        );
        if delivery_count >= i64::from(self.amqp.delivery_limit) - 1 {
            // Crash-loop protection: this delivery has come back so often that processing it
            // again risks another crash. Dead-letter it without looking inside.
            let message = ErrorCode::DeliveryLimit.message();
            self.dead_letter(&job, ErrorCode::DeliveryLimit, message, cancel)
                .await;
            return;
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::maybe_crash(job.identity.transaction_id.as_str());
        let incoming = Incoming {
            body: &job.delivery.data,
            content_type: job
                .delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str()),
            app_id: job.app_id(),
        };
        let attempt = || self.processor.process(&incoming, &job.identity);
        let Some(result) = self.with_database(attempt, cancel).await else {
            return; // shutting down or session lost: left unacked, the broker redelivers
        };
        match result {
            Ok(decision) => self.settle(&job, decision, cancel).await,
            Err(err) if err.class() == FailureClass::Transient => {
                self.retry_later(&job, &err, cancel).await
            }
            Err(err) => {
                // Permanent: a statement the database can never accept for this request.
                let message = err.to_string();
                self.dead_letter(&job, ErrorCode::StoreFailed, &message, cancel)
                    .await
            }
        }
    }

    /// Runs a database operation with the immediate retries for transient failures, holding
    /// (not charging the message) while the database is down. `None` if `cancel` fired first.
    async fn with_database<T, F, Fut>(
        &self,
        operation: F,
        cancel: &CancellationToken,
    ) -> Option<Result<T, StorageError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let mut operation = operation;
        loop {
            let result = (&mut operation)
                .retry(self.policy.immediate())
                .when(|err: &StorageError| err.class() == FailureClass::Transient)
                .notify(|err, delay| self.metrics.retrying_immediately(err, delay))
                .await;
            match result {
                Err(err) if err.class() == FailureClass::InfrastructureDown => {
                    tracing::debug!(error = %err, "database unavailable; holding delivery");
                    self.health.report_database_down();
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = self.health.wait_for_database() => {}
                    }
                }
                other => return Some(other),
            }
        }
    }

    /// Replies (stored, duplicate) or replies and dead-letters (rejected), then acks.
    async fn settle(&self, job: &Job, decision: Decision, cancel: &CancellationToken) {
        match decision.verdict {
            Verdict::Rejected(code) => {
                self.publish_reply(job, &decision.reply).await.ok();
                self.dead_letter_copy(job, code, code.message(), MessageOutcome::Rejected)
                    .await;
            }
            verdict => {
                let delivered = match self.publish_reply(job, &decision.reply).await {
                    Ok(delivered) => delivered,
                    Err(err) => return self.requeue(job, &err).await,
                };
                if !delivered {
                    let event = AuditEvent::ReplyUnroutable;
                    let write = || {
                        self.processor
                            .record(job.app_id(), &job.identity, event, None)
                    };
                    if self.with_database(write, cancel).await.is_none() {
                        return;
                    }
                }
                let outcome = if verdict == Verdict::Stored {
                    MessageOutcome::Stored
                } else {
                    MessageOutcome::Duplicate
                };
                self.ack(job, outcome, None).await;
            }
        }
    }

    /// Publishes the reply to `reply_to` (when allowed) or the default reply queue. `Ok(false)`
    /// when it could not be delivered: `reply_to` not allowed, or no such queue.
    async fn publish_reply(&self, job: &Job, reply: &Reply) -> Result<bool, PublishError> {
        let properties = &job.delivery.properties;
        let target = match properties.reply_to().as_ref().map(|r| r.as_str()) {
            Some(reply_to) if !self.reply_to.allows(reply_to) => {
                tracing::warn!(transaction_id = %job.identity.transaction_id, "reply_to not allowed; no reply sent");
                return Ok(false);
            }
            Some(reply_to) => reply_to,
            None => self.amqp.reply_queue.as_str(),
        };
        let reply_properties = headers::reply_properties(
            &job.identity.transaction_id,
            properties.correlation_id().as_ref(),
            reply.kind,
        );
        let published = job
            .publisher
            .publish("", target, &reply.body, reply_properties)
            .await?;
        self.metrics.reply_published(reply.kind.as_str());
        if published == Published::Returned {
            tracing::warn!(transaction_id = %job.identity.transaction_id, "reply unroutable: no such reply queue");
        }
        Ok(published == Published::Confirmed)
    }

    /// A transient failure that outlived the immediate retries: park the request in the next
    /// delayed-retry queue (the consumer slot is freed at once), or dead-letter it when the
    /// budget is spent.
    async fn retry_later(&self, job: &Job, err: &StorageError, cancel: &CancellationToken) {
        let retries = job.header_integer(headers::RETRY_COUNT);
        let Some(delay) = u32::try_from(retries)
            .ok()
            .and_then(|r| self.policy.delay_for(r))
        else {
            let message = err.to_string();
            return self
                .dead_letter(job, ErrorCode::StoreFailed, &message, cancel)
                .await;
        };
        let message = err.to_string();
        let failure = self.failure(job, ErrorCode::StoreFailed, &message, retries + 1);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let queue = retry_queue_name(&self.amqp.retry_queue_prefix, delay);
        match job
            .publisher
            .publish("", &queue, &job.delivery.data, properties)
            .await
        {
            Ok(Published::Confirmed) => {
                self.metrics
                    .retry_scheduled(job.identity.transaction_id.as_str(), &queue);
                self.ack(
                    job,
                    MessageOutcome::Retried,
                    Some(ErrorCode::StoreFailed.code()),
                )
                .await
            }
            Ok(Published::Returned) => {
                let err = PublishError::Broker(lapin::Error::from(std::io::Error::other(
                    "retry queue missing",
                )));
                self.requeue(job, &err).await
            }
            Err(err) => self.requeue(job, &err).await,
        }
    }

    /// Error reply, audit, dead-letter copy, ack: for the delivery limit and spent retries.
    async fn dead_letter(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        cancel: &CancellationToken,
    ) {
        let event = AuditEvent::DeadLettered;
        let write = || {
            self.processor
                .record(job.app_id(), &job.identity, event, Some(code))
        };
        match self.with_database(write, cancel).await {
            None => return,
            Some(Err(err)) => {
                tracing::error!(error = %err, "audit row for a dead-lettering not written")
            }
            Some(Ok(())) => {}
        }
        self.publish_reply(job, &Reply::error(code, Utc::now()))
            .await
            .ok();
        self.dead_letter_copy(job, code, message, MessageOutcome::DeadLettered)
            .await;
    }

    /// Publishes the request with failure headers to the dead-letter exchange, then acks it.
    async fn dead_letter_copy(
        &self,
        job: &Job,
        code: ErrorCode,
        message: &str,
        outcome: MessageOutcome,
    ) {
        let retries = job.header_integer(headers::RETRY_COUNT);
        let failure = self.failure(job, code, message, retries);
        let properties = headers::failure_properties(&job.delivery.properties, &failure);
        let exchange = &self.amqp.dead_letter_exchange;
        let routing_key = job.delivery.routing_key.as_str();
        match job
            .publisher
            .publish(exchange, routing_key, &job.delivery.data, properties)
            .await
        {
            Ok(Published::Confirmed) => self.ack(job, outcome, Some(code.code())).await,
            Ok(Published::Returned) => {
                tracing::error!(transaction_id = %job.identity.transaction_id, "dead-letter exchange has no queue bound; message kept");
                let err = PublishError::Broker(lapin::Error::from(std::io::Error::other(
                    "dead-letter queue missing",
                )));
                self.requeue(job, &err).await
            }
            Err(err) => self.requeue(job, &err).await,
        }
    }

    fn failure<'a>(
        &'a self,
        job: &'a Job,
        code: ErrorCode,
        message: &'a str,
        retry_count: i64,
    ) -> Failure<'a> {
        Failure {
            error_code: code.code(),
            message,
            original_exchange: job.delivery.exchange.as_str(),
            original_routing_key: job.delivery.routing_key.as_str(),
            retry_count,
            transaction_id: job.identity.transaction_id.as_str(),
            now: Utc::now(),
        }
    }

    async fn ack(&self, job: &Job, outcome: MessageOutcome, code: Option<&str>) {
        match job.delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => {
                let elapsed = job.started.elapsed();
                self.metrics.message_finished(
                    outcome,
                    job.identity.transaction_id.as_str(),
                    code,
                    elapsed,
                );
            }
            // The channel is gone: the broker redelivers, and idempotency answers it again.
            Ok(false) | Err(_) => {
                tracing::debug!(transaction_id = %job.identity.transaction_id, "ack not delivered; broker will redeliver")
            }
        }
    }

    /// A publish failed: hand the request back to the broker for another try. When the channel
    /// itself is gone the nack fails too, and the broker requeues it anyway.
    async fn requeue(&self, job: &Job, err: &PublishError) {
        tracing::warn!(transaction_id = %job.identity.transaction_id, error = %err, "publish failed; request requeued");
        let options = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        let _ = job.delivery.acker.nack(options).await;
    }
}

/// How long the dispatcher waits after the last delivery before starting a suspect, so the
/// whole redelivered prefetch window is buffered first.
const SUSPECT_SETTLE: Duration = Duration::from_millis(200);

/// Redelivered deliveries (`x-delivery-count` > 0) waiting to be tried in isolation: one of
/// them may have crashed the worker (see [`Consumer::run_suspects`]).
#[derive(Default)]
struct Suspects {
    waiting: Vec<(Job, OwnedSemaphorePermit)>,
    last_arrival: Option<tokio::time::Instant>,
}

impl Suspects {
    fn push(&mut self, job: Job, permit: OwnedSemaphorePermit) {
        self.waiting.push((job, permit));
        self.last_arrival = Some(tokio::time::Instant::now());
    }

    /// Resolves when a waiting suspect may start: `idle` (none running), and the window has
    /// settled.
    async fn next_due(&self, idle: bool) {
        match (idle, self.waiting.is_empty(), self.last_arrival) {
            (true, false, Some(last)) => tokio::time::sleep_until(last + SUSPECT_SETTLE).await,
            _ => std::future::pending().await,
        }
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
