//! The contract's names and a test-side AMQP client ([`Broker`]) that publishes requests and
//! takes what the worker sent, checking every reply against its schema.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm, Queue,
    message::Delivery,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};

use crate::{
    TestEnv, amqp_url, properties, rabbitmqctl,
    reply::{check_reply, error_code, header_str},
    request_body, wait_until,
};

pub const EXCHANGE: &str = "prereg.reverse-sync";
pub const ROUTING_KEY: &str = "consumed-prereg-ids";
pub const REQUEST_QUEUE: &str = "prereg.reverse-sync.requests";
pub const REPLY_QUEUE: &str = "prereg.reverse-sync.replies";
pub const DLQ: &str = "prereg.reverse-sync.dlq";

impl TestEnv {
    /// A test-side client on the test's vhost.
    pub async fn broker(&self) -> Broker {
        Broker::connect(&self.vhost).await
    }

    /// Declares the worker's topology without a worker, so requests can be published before it
    /// starts (the same idempotent declaration the worker performs).
    pub async fn declare_topology(&self) {
        let settings = self.settings();
        let connection = prereg_sync::amqp::connect(&settings.amqp).await.unwrap();
        prereg_sync::amqp::topology::declare(&connection, &settings.amqp, &settings.retry.delays)
            .await
            .unwrap();
        let _ = connection.close(200, "".into()).await;
    }

    /// Waits until every message of `queue` is acked: none ready, none delivered and unacked.
    /// Panics after `limit`.
    pub async fn wait_for_all_acked(&self, queue: &str, limit: Duration) {
        let failure = format!("messages of {queue} left unacked for {limit:?}");
        wait_until(limit, Duration::from_millis(200), &failure, async || {
            self.messages(queue) == 0
        })
        .await;
    }

    /// Messages in `queue` of the test's vhost, ready or delivered and not yet acked, as
    /// `rabbitmqctl list_queues` counts them (an AMQP client sees only the ready ones).
    fn messages(&self, queue: &str) -> u64 {
        let listing = rabbitmqctl(&[
            "-q",
            "list_queues",
            "-p",
            &self.vhost,
            "--no-table-headers",
            "name",
            "messages",
        ]);
        listing
            .lines()
            .find_map(|line| {
                let (name, count) = line.split_once('\t')?;
                (name == queue).then(|| count.trim().parse().expect("a message count"))
            })
            .unwrap_or_else(|| panic!("queue {queue} not listed:\n{listing}"))
    }
}

/// A test-side AMQP client, its channel in confirm mode.
pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
}

impl Broker {
    /// A client on `vhost` of the tests' broker.
    pub async fn connect(vhost: &str) -> Broker {
        Self::connect_url(&amqp_url("guest:guest", vhost)).await
    }

    /// A test-side client on any broker (a node of the test cluster).
    pub async fn connect_url(url: &str) -> Broker {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("test broker connection");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Broker {
            connection,
            channel,
        }
    }

    /// Declares a reply queue owned by the test (durable so it survives worker restarts).
    pub async fn reply_queue(&self, name: &str) -> String {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        name.to_owned()
    }

    /// Publishes a request to the request exchange and waits for the broker's confirm.
    pub async fn publish(&self, body: &[u8], properties: BasicProperties) {
        let confirm = self.send(body, properties).await.await.unwrap();
        assert!(confirm.is_ack(), "request publish confirmed");
    }

    /// Publishes without waiting for each confirm; call [`Broker::confirm_all`] after.
    pub async fn publish_pipelined(&self, body: &[u8], properties: BasicProperties) {
        // The confirm is collected by `wait_for_confirms`, not awaited one by one.
        drop(self.send(body, properties).await);
    }

    async fn send(&self, body: &[u8], properties: BasicProperties) -> PublisherConfirm {
        self.channel
            .basic_publish(
                EXCHANGE.into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
    }

    /// A rejected request's two traces: the error reply on `replies` with `code`, and its
    /// dead-letter copy carrying the same code.
    pub async fn expect_rejected(&self, replies: &str, code: &str) {
        let reply = self.get(replies, Duration::from_secs(20)).await;
        assert_eq!(error_code(&reply.expect("error reply")), code);
        let dead = self.get(DLQ, Duration::from_secs(10)).await;
        let dead = dead.expect("dead-lettered");
        assert_eq!(header_str(&dead, "x-error-code").as_deref(), Some(code));
    }

    pub async fn confirm_all(&self) {
        self.channel.wait_for_confirms().await.unwrap();
    }

    /// Publishes one request per chunk of `per_request` PRIDs, transaction IDs `tx-0`, `tx-1`…,
    /// confirms pipelined and all awaited at the end.
    pub async fn publish_stream(&self, ids: &[String], per_request: usize, reply_to: &str) {
        for (i, chunk) in ids.chunks(per_request).enumerate() {
            self.publish_pipelined(
                &request_body(chunk),
                properties(&format!("tx-{i}"), Some(reply_to)),
            )
            .await;
        }
        self.confirm_all().await;
    }

    /// Takes one message from `queue`, waiting up to `limit`; a reply must match its schema.
    pub async fn get(&self, queue: &str, limit: Duration) -> Option<Delivery> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(message) = self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .unwrap()
            {
                message
                    .delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
                check_reply(&message.delivery);
                return Some(message.delivery);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // The pacing of the polls: `basic_get` answers at once, empty or not.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes `n` messages from `queue` within `limit`, panicking if fewer arrive; replies must
    /// match their schemas.
    pub async fn get_n(&self, queue: &str, n: usize, limit: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::with_capacity(n);
        let mut consumer = self
            .channel
            .basic_consume(
                queue.into(),
                "".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        while out.len() < n {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .unwrap();
                    check_reply(&delivery);
                    out.push(delivery);
                }
                _ => panic!(
                    "only {} of {n} messages arrived on {queue} within {limit:?}",
                    out.len()
                ),
            }
        }
        self.channel
            .basic_cancel(consumer.tag(), Default::default())
            .await
            .unwrap();
        out
    }

    /// Message count of a queue (passive declare): the ready messages, not those delivered
    /// and unacked.
    pub async fn depth(&self, queue: &str) -> u32 {
        self.declared(queue)
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"))
            .message_count()
    }

    /// Waits until `queue` holds at least `at_least` ready messages; panics after `limit`.
    pub async fn wait_for_depth(&self, queue: &str, at_least: u32, limit: Duration) {
        let failure = format!("{queue} held fewer than {at_least} messages for {limit:?}");
        wait_until(limit, Duration::from_millis(50), &failure, async || {
            self.depth(queue).await >= at_least
        })
        .await;
    }

    /// Waits until `queue` holds no ready message (all taken); panics after `limit`.
    pub async fn wait_for_empty(&self, queue: &str, limit: Duration) {
        let failure = format!("messages left in {queue} for {limit:?}");
        wait_until(limit, Duration::from_millis(50), &failure, async || {
            self.depth(queue).await == 0
        })
        .await;
    }

    /// Consumers of a queue (passive declare); 0 while the queue is not declared yet.
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.declared(queue).await.map_or(0, |q| q.consumer_count())
    }

    /// What a passive declare of `queue` says, on a channel of its own (a missing queue closes
    /// it).
    async fn declared(&self, queue: &str) -> Result<Queue, lapin::Error> {
        let channel = self.connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if declared.is_ok() {
            let _ = channel.close(200, "".into()).await;
        }
        declared
    }
}
