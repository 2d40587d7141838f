//! The benchmark's own client: a confirm-mode channel, the reply queue, publishing requests
//! (optionally paced) and collecting replies, each checked answered exactly once.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::FieldTable,
};
use prereg_sync::{config::Settings, loadgen::request_body};

use crate::env::Env;

pub async fn channel(env: &Env) -> anyhow::Result<(Connection, Channel)> {
    let settings = env.settings();
    let connection = prereg_sync::amqp::connect(&settings.amqp).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

pub async fn declare_reply_queue(channel: &Channel) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("bench.replies".into(), durable, FieldTable::default())
        .await?;
    Ok(())
}

/// Publishes `requests` requests of `batch` PRIDs each (confirms pipelined), optionally paced.
pub async fn publish(
    channel: &Channel,
    settings: &Settings,
    prids: &[String],
    batch: usize,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Instant>> {
    let mut sent = Vec::with_capacity(prids.len() / batch);
    let start = Instant::now();
    for (i, chunk) in prids.chunks(batch).enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let properties = BasicProperties::default()
            .with_message_id(format!("b-{i}").into())
            .with_correlation_id(i.to_string().into())
            .with_reply_to("bench.replies".into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        sent.push(Instant::now());
        let confirm = channel
            .basic_publish(
                settings.amqp.exchange.as_str().into(),
                settings.amqp.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &request_body(chunk),
                properties,
            )
            .await?;
        drop(confirm);
        if i % 1000 == 999 {
            channel.wait_for_confirms().await?;
        }
    }
    channel.wait_for_confirms().await?;
    Ok(sent)
}

/// Reads `n` replies, each request answered exactly once with an ack; returns each request's
/// reply arrival time, by request index.
pub async fn collect(channel: &Channel, n: usize) -> anyhow::Result<Vec<Instant>> {
    let mut consumer =
        prereg_sync::amqp::consume_without_acks(channel, "bench.replies".into()).await?;
    let mut arrived: Vec<Option<Instant>> = vec![None; n];
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(120), consumer.next())
            .await
            .context("replies stopped arriving")?
            .context("reply consumer ended")??;
        let now = Instant::now();
        ensure!(
            delivery.properties.kind().as_ref().map(|k| k.as_str()) == Some("ack"),
            "an error reply"
        );
        let index: usize = delivery
            .properties
            .correlation_id()
            .as_ref()
            .context("correlation")?
            .as_str()
            .parse()?;
        ensure!(
            arrived.get(index).is_some_and(Option::is_none),
            "request {index} answered twice"
        );
        arrived[index] = Some(now);
    }
    channel
        .basic_cancel(consumer.tag(), Default::default())
        .await?;
    Ok(arrived.into_iter().flatten().collect())
}
