//! The ingress's side of the broker: one connection at a time, a confirm-mode publisher, and a
//! reply queue of its own (server-named, exclusive, auto-delete) whose replies are handed to
//! the HTTP request waiting for them, matched by `correlation_id`.
//!
//! The reply queue lives as long as the connection. If the ingress dies (even by SIGKILL), the
//! broker deletes it; a request it had already published is durable in the request queue, the
//! worker stores it and finds its reply unroutable (`REPLY_UNROUTABLE`, stored all the same),
//! and the client's retry gets the stored reply.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::{BasicProperties, types::ShortString};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{
        self,
        nodes::Nodes,
        publisher::{Published, Publisher},
        topology,
    },
    config::AmqpSettings,
    health::Health,
};

/// The request could not be handed to the broker: nothing was queued.
#[derive(Debug)]
pub(crate) struct Unavailable;

/// What the ingress publishes for one HTTP request.
pub(crate) struct Submission<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) message_id: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) app_id: &'a str,
}

#[derive(Clone)]
pub(crate) struct Link(Arc<Inner>);

struct Inner {
    amqp: AmqpSettings,
    retry_delays: Vec<Duration>,
    nodes: Nodes,
    health: Health,
    max_waiters: usize,
    session: RwLock<Option<Session>>,
    /// Reply waiters by correlation ID.
    waiters: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
}

#[derive(Clone)]
struct Session {
    publisher: Publisher,
    reply_to: ShortString,
    /// Cancelled by a request that finds the publishing channel closed: the session is
    /// replaced.
    lost: CancellationToken,
}

/// A confirmed request; its reply, if the worker answers while this waits.
pub(crate) struct Pending {
    link: Link,
    correlation_id: String,
    reply: Option<oneshot::Receiver<Vec<u8>>>,
}

impl Pending {
    /// The worker's reply body, or `None` when none came within `timeout` (or the reply queue
    /// went away with the connection, or no waiter slot was free).
    pub(crate) async fn reply(mut self, timeout: Duration) -> Option<Vec<u8>> {
        let reply = self.reply.take()?;
        tokio::time::timeout(timeout, reply).await.ok()?.ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.link.waiters().remove(&self.correlation_id);
    }
}

impl Link {
    pub(crate) fn new(
        amqp: AmqpSettings,
        retry_delays: Vec<Duration>,
        health: Health,
        max_waiters: usize,
    ) -> Link {
        let nodes = Nodes::new(amqp.nodes.clone());
        Link(Arc::new(Inner {
            amqp,
            retry_delays,
            nodes,
            health,
            max_waiters,
            session: RwLock::new(None),
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Vec<u8>>>> {
        self.0.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Option<Session> {
        self.0
            .session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_current(&self, session: Option<Session>) {
        self.0.health.set_ingress_linked(session.is_some());
        *self.0.session.write().unwrap_or_else(|e| e.into_inner()) = session;
    }

    /// Publishes the request persistent and mandatory to the request exchange, and returns once
    /// the broker has confirmed it (it is then durable in the request queue).
    pub(crate) async fn submit(&self, request: Submission<'_>) -> Result<Pending, Unavailable> {
        let session = self.current().ok_or(Unavailable)?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let reply = {
            let mut waiters = self.waiters();
            (waiters.len() < self.0.max_waiters).then(|| {
                let (sender, receiver) = oneshot::channel();
                waiters.insert(correlation_id.clone(), sender);
                receiver
            })
        };
        // Registered before publishing, so a fast reply finds its waiter; removed by the drop
        // of `pending` if the publish fails.
        let pending = Pending {
            link: self.clone(),
            correlation_id,
            reply,
        };
        let mut properties = BasicProperties::default()
            .with_correlation_id(pending.correlation_id.as_str().into())
            .with_reply_to(session.reply_to.clone())
            .with_app_id(request.app_id.into())
            .with_delivery_mode(2);
        if let Some(message_id) = request.message_id {
            properties = properties.with_message_id(message_id.into());
        }
        if let Some(content_type) = request.content_type {
            properties = properties.with_content_type(content_type.into());
        }
        let published = session
            .publisher
            .publish(
                &self.0.amqp.exchange,
                &self.0.amqp.routing_key,
                request.body,
                properties,
            )
            .await;
        match published {
            Ok(Published::Confirmed) => Ok(pending),
            // Unroutable (no request queue bound): nothing was queued.
            Ok(Published::Returned) => Err(Unavailable),
            Err(err) => {
                tracing::warn!(error = %err, "ingress publish failed; answered 503");
                if !session.publisher.is_open() {
                    session.lost.cancel();
                }
                Err(Unavailable)
            }
        }
    }

    /// Keeps a session open until `stop`: connects (declaring the topology, so the request queue
    /// exists before the first publish), consumes the reply queue, and reconnects with back-off
    /// after a loss.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut backoff = self.backoff();
        loop {
            let opened = tokio::select! {
                _ = stop.cancelled() => return,
                opened = self.open() => opened,
            };
            match opened {
                Ok((connection, replies, lost)) => {
                    backoff = self.backoff();
                    tokio::select! {
                        _ = lost.cancelled() => {}
                        () = self.deliver_replies(replies, &stop) => {}
                    }
                    self.set_current(None);
                    // Waiters whose reply queue is gone answer 202 QUEUED at once.
                    self.waiters().clear();
                    if let Err(err) = connection.close(200, "ingress stopping".into()).await {
                        tracing::debug!(error = %err, "closing the ingress's broker connection");
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                    tracing::warn!("ingress lost its broker connection; reconnecting");
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "ingress cannot reach the broker; retrying");
                }
            }
            self.0.nodes.advance();
            let delay = backoff.next().unwrap_or(self.0.amqp.reconnect_max_delay);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(self.0.amqp.reconnect_max_delay)
            .without_max_times()
            .with_jitter()
            .build()
    }

    async fn open(
        &self,
    ) -> anyhow::Result<(lapin::Connection, lapin::Consumer, CancellationToken)> {
        let connection = amqp::connect_to(&self.0.amqp, &self.0.nodes).await?;
        topology::declare(&connection, &self.0.amqp, &self.0.retry_delays).await?;
        let publisher = Publisher::open(&connection, self.0.amqp.publish_timeout).await?;
        let channel = connection.create_channel().await?;
        let (reply_to, replies) = amqp::private_reply_queue(&channel).await?;
        let lost = CancellationToken::new();
        self.set_current(Some(Session {
            publisher,
            reply_to,
            lost: lost.clone(),
        }));
        tracing::info!("ingress connected to the broker");
        Ok((connection, replies, lost))
    }

    /// Hands each reply to its waiter until the consumer ends or `stop`.
    async fn deliver_replies(&self, mut replies: lapin::Consumer, stop: &CancellationToken) {
        loop {
            let delivery = tokio::select! {
                _ = stop.cancelled() => return,
                delivery = replies.next() => delivery,
            };
            let Some(Ok(delivery)) = delivery else { return };
            let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
                continue;
            };
            let waiter = self.waiters().remove(correlation_id.as_str());
            if let Some(waiter) = waiter {
                #[allow(
                    clippy::let_underscore_must_use,
                    reason = "a request that stopped waiting (202 QUEUED) gets its reply from the store"
                )]
                let _ = waiter.send(delivery.data);
            }
        }
    }
}
