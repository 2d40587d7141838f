//! The supervisor keeps one broker session alive: connect, declare, subscribe, dispatch each
//! delivery to a handler task under the concurrency limit, then drain the tasks (shutdown) or
//! abandon them (session lost) and reconnect with back-off, to the next node.

use std::{sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::options::BasicCancelOptions;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    handler::Handler,
    request::InboundRequest,
    session::{Session, SessionEnd},
    suspects::Suspects,
};
use crate::{
    amqp::{self, headers, nodes::Nodes},
    config::{AmqpSettings, WorkerSettings},
    health::Health,
    telemetry::Metrics,
};

/// How long a graceful stop waits, after the last ack, before closing the channel (see where
/// it is used).
const ACK_FLUSH: Duration = Duration::from_millis(500);

pub(super) struct Supervisor {
    amqp: Arc<AmqpSettings>,
    /// The node in use; the next one after a loss.
    nodes: Nodes,
    /// The delayed-retry tiers, one queue each in the topology.
    retry_delays: Vec<Duration>,
    concurrency: usize,
    shutdown_grace: Duration,
    handler: Arc<Handler>,
    health: Health,
    metrics: Metrics,
}

/// The deliveries a session has taken and not finished.
#[derive(Default)]
struct Outstanding {
    tasks: JoinSet<()>,
    suspects: Suspects,
}

impl Outstanding {
    fn abort(&mut self) {
        self.tasks.abort_all();
        self.suspects.abort();
    }
}

impl Supervisor {
    pub(super) fn new(
        amqp: Arc<AmqpSettings>,
        worker: &WorkerSettings,
        retry_delays: Vec<Duration>,
        handler: Arc<Handler>,
        health: Health,
        metrics: Metrics,
    ) -> Supervisor {
        let nodes = Nodes::new(amqp.nodes.clone());
        metrics.broker_node(None, nodes.count());
        Supervisor {
            amqp,
            nodes,
            retry_delays,
            concurrency: worker.concurrency,
            shutdown_grace: worker.shutdown_grace,
            handler,
            health,
            metrics,
        }
    }

    /// Consumes until `shutdown`; reconnects on any broker failure. Returns an error only for
    /// what retrying cannot fix.
    pub(super) async fn run(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let reconnect = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(self.amqp.reconnect_max_delay)
            .without_max_times()
            .with_jitter();
        let mut backoff = reconnect.build();
        loop {
            let err = match self.session(shutdown).await {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::Fatal(fatal) => return Err(fatal),
                SessionEnd::Unopened(err) => err,
                SessionEnd::Lost(err) => {
                    // It was consuming: the back-off starts over.
                    backoff = reconnect.build();
                    err
                }
            };
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
    }

    /// One connection's life: open, consume until shutdown or loss, then drain or abandon.
    async fn session(&self, shutdown: &CancellationToken) -> SessionEnd {
        // A node that stops answering mid-way (after the handshake) must not hold a shutdown.
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            opened = Session::open(&self.amqp, &self.nodes, &self.retry_delays, shutdown) => opened,
        };
        let mut session = match opened {
            Ok(session) => session,
            Err(end) => return end,
        };
        self.health.set_consuming(true);
        let node = self.nodes.current().0;
        self.metrics.broker_node(Some(node), self.nodes.count());
        tracing::info!(queue = %self.amqp.request_queue, node = node + 1, "consuming");
        session.watch_blocked(self.health.clone());
        let mut outstanding = Outstanding::default();
        let end = self
            .dispatch(&mut session, &mut outstanding, shutdown)
            .await;
        outstanding.suspects.release();
        self.health.set_consuming(false);
        self.metrics.broker_node(None, self.nodes.count());
        if matches!(end, SessionEnd::Shutdown) {
            self.drain(session, outstanding).await;
        } else {
            abandon(session, outstanding).await;
        }
        end
    }

    /// Takes deliveries until shutdown or loss: a first delivery goes to a task of its own, a
    /// redelivered one to the suspects, tried in isolation.
    async fn dispatch(
        &self,
        session: &mut Session,
        outstanding: &mut Outstanding,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            while outstanding.tasks.try_join_next().is_some() {}
            let deliveries = &mut session.deliveries;
            // While the database is down no new delivery is taken: those in flight are held.
            let next = async {
                self.health.wait_for_database().await;
                let permit = permits.clone().acquire_owned().await;
                (
                    permit.expect("the semaphore is never closed"),
                    deliveries.next().await,
                )
            };
            let (permit, next) = tokio::select! {
                _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = session.publisher_lost.cancelled() => {
                    return SessionEnd::Lost(anyhow::anyhow!("the publishing channel closed"));
                }
                () = outstanding.suspects.step(&self.handler, &session.ended) => continue,
                taken = next => taken,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => return SessionEnd::Lost(err.into()),
                None => {
                    return SessionEnd::Lost(anyhow::anyhow!("the broker cancelled the consumer"));
                }
            };
            let request = InboundRequest::new(delivery, session);
            if request.header_integer(headers::DELIVERY_COUNT) > 0 {
                outstanding.suspects.push(request, permit);
            } else {
                let task = self
                    .handler
                    .clone()
                    .run(request, permit, session.ended.clone());
                outstanding.tasks.spawn(task);
            }
        }
    }

    /// A graceful stop: no new deliveries, the outstanding ones finished within the grace
    /// period (the rest go back to the queue), then the channels and the connection closed.
    async fn drain(&self, session: Session, mut outstanding: Outstanding) {
        let consumer_tag = session.deliveries.tag();
        let options = BasicCancelOptions::default();
        #[allow(
            clippy::let_underscore_must_use,
            reason = "a cancel fails only on a closed channel, which delivers nothing more either"
        )]
        let _ = session
            .consume_channel
            .basic_cancel(consumer_tag, options)
            .await;
        // The flush wait and the closes below come out of the grace period, so the whole stop
        // stays within it whatever the broker does (orchestrators kill the process at their
        // own deadline).
        let within = self
            .shutdown_grace
            .saturating_sub(ACK_FLUSH + amqp::CLOSE_TIMEOUT);
        let finished = async {
            while outstanding.tasks.join_next().await.is_some() {}
            outstanding.suspects.finish().await;
        };
        if tokio::time::timeout(within, finished).await.is_err() {
            tracing::warn!(
                left = outstanding.tasks.len(),
                "shutdown grace period over; unfinished deliveries go back to the queue"
            );
            outstanding.abort();
        }
        // Let the broker apply the last acks before the channel closes: RabbitMQ's quorum-queue
        // client (in the channel process) keeps at most 32 settlements unapplied and stashes
        // the rest until earlier ones are applied; closing the channel drops the stash, and
        // those requests come back to be answered again as duplicates (seen with 64 deliveries
        // finishing in one group commit just after SIGTERM, RabbitMQ 3.10). Applying takes
        // milliseconds.
        tokio::time::sleep(ACK_FLUSH).await;
        session.ended.cancel();
        let closes = async {
            session.publisher.close().await;
            amqp::close_within(session.consume_channel.close(200, "shutdown".into())).await;
            amqp::close_within(session.connection.close(200, "shutdown".into())).await;
        };
        if tokio::time::timeout(amqp::CLOSE_TIMEOUT, closes)
            .await
            .is_err()
        {
            tracing::debug!("the broker did not answer the closes in time; dropped");
        }
    }
}

/// The session was lost: tasks still running cannot ack on this connection any more; the
/// broker redelivers their messages and idempotency absorbs any that were stored.
async fn abandon(session: Session, mut outstanding: Outstanding) {
    session.ended.cancel();
    outstanding.abort();
    amqp::close_within(session.connection.close(320, "reconnecting".into())).await;
}
