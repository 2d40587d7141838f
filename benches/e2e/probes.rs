//! The two limit probes: what the broker and the database can do on this machine at this
//! moment, with no worker in the way. Every scenario is read as a ratio to one of them.

use std::time::Instant;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::FieldTable,
};
use prereg_sync::{
    loadgen::generate_prids,
    storage::{Database, migrate},
};

use crate::{
    env::{Env, Placement, checkpoint},
    measure::CpuSplit,
    traffic::{channel, declare_reply_queue, publish},
};

/// Probe A's result: its rate, and the CPU it cost per 1,000 requests (RabbitMQ's and its own
/// consumer's, the "bench client"), which S1's CPU split is read against.
pub struct BrokerProbe {
    pub requests_per_s: f64,
    pub cpu: CpuSplit,
}

/// Limit probe A: the broker round trip with no work. A minimal consumer with the worker's
/// prefetch that, per request, publishes a confirmed persistent reply and acks it, confirms
/// pipelined across the prefetch window and acks batched (`multiple`).
pub async fn probe_broker(requests: usize) -> anyhow::Result<BrokerProbe> {
    probe_broker_at(requests, Placement::Leader).await
}

/// Probe A with its consumer connected at `placement` (on the cluster; the queues are led by
/// the node the benchmark's own connection uses).
pub async fn probe_broker_at(requests: usize, placement: Placement) -> anyhow::Result<BrokerProbe> {
    let env = Env::new("probe_a");
    let settings = env.settings();
    let (declaring, channel) = channel(&env).await?;
    // The worker's own topology (quorum request queue), so the probe's requests take the same
    // broker path as the scenario's: the limit is the broker's, not a cheaper queue type's.
    prereg_sync::amqp::topology::declare(&declaring, &settings.amqp, &settings.retry.delays)
        .await?;
    declare_reply_queue(&channel).await?;
    let prids = vec!["75124301328620".to_owned(); requests];
    publish(&channel, &settings, &prids, 1, None).await?;
    let connection = prereg_sync::amqp::connect(&env.settings_at(placement).amqp).await?;
    let consume_channel = connection.create_channel().await?;
    consume_channel
        .basic_qos(settings.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let reply_channel = connection.create_channel().await?;
    reply_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume_channel
        .basic_consume(
            settings.amqp.request_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let window = usize::from(settings.amqp.prefetch / 2).max(1);
    let cpu_before = CpuSplit::sample(&[]);
    let start = Instant::now();
    let mut pending = 0;
    for done in 1..=requests {
        let delivery = consumer.next().await.context("probe consumer ended")??;
        let confirm = reply_channel
            .basic_publish(
                "".into(),
                "bench.replies".into(),
                BasicPublishOptions::default(),
                &delivery.data,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        drop(confirm);
        pending += 1;
        if pending == window || done == requests {
            reply_channel.wait_for_confirms().await?;
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
            pending = 0;
        }
    }
    let requests_per_s = requests as f64 / start.elapsed().as_secs_f64();
    let cpu = CpuSplit::sample(&[]).per_thousand(&cpu_before, requests);
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the figures are taken; how the connection closes does not change them"
    )]
    let _ = connection.close(200, "".into()).await;
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the figures are taken; how the connection closes does not change them"
    )]
    let _ = declaring.close(200, "".into()).await;
    Ok(BrokerProbe {
        requests_per_s,
        cpu,
    })
}

/// Limit probe B: PostgreSQL COPY of the same PRID rows into tables created LIKE the two PRID
/// tables INCLUDING ALL (indexes kept, logged), in one transaction.
pub async fn probe_database(prids: usize) -> anyhow::Result<f64> {
    let env = Env::new("probe_b");
    let settings = env.settings();
    let database = Database::new(&settings.database)?;
    migrate::prepare_database(&database, true).await?;
    let ids = generate_prids(&settings, prids);
    let (mut client, _driver) = database.connect(None).await?;
    client
        .batch_execute(
            "CREATE TABLE probe_processed (LIKE prereg.processed_prereg_list INCLUDING ALL); \
             CREATE TABLE probe_intf (LIKE prereg.intf_processed_prereg_list INCLUDING ALL)",
        )
        .await?;
    let processed: String = ids
        .iter()
        .map(|id| format!("{id}\t2026-11-22 07:05:08.85\tConsumed\tProcessed by registration processor\tbench\teng\tprereg-sync\t2026-11-22 07:05:09\n"))
        .collect();
    let intf: String = ids
        .iter()
        .map(|id| format!("{id}\t2026-11-22 07:05:08.85\teng\tprereg-sync\t2026-11-22 07:05:09\n"))
        .collect();
    checkpoint();
    let start = Instant::now();
    let tx = client.transaction().await?;
    for (sql, data) in [
        (
            "COPY probe_processed (prereg_id, first_received_dtimes, status_code, status_comments, prereg_trn_id, lang_code, cr_by, cr_dtimes) FROM STDIN",
            processed,
        ),
        (
            "COPY probe_intf (prereg_id, received_dtimes, lang_code, cr_by, cr_dtimes) FROM STDIN",
            intf,
        ),
    ] {
        let sink = tx.copy_in(sql).await?;
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(&mut sink, bytes::Bytes::from(data)).await?;
        sink.finish().await?;
    }
    tx.commit().await?;
    Ok(prids as f64 / start.elapsed().as_secs_f64())
}
