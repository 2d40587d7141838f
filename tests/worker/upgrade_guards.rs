//! `upgrade-queues` never deletes a message somebody holds: it refuses to start while workers
//! consume the request queue, and refuses to delete a queue that has consumers (a consumer of
//! the default reply queue holds replies unacked, outside the queue's ready count).

use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions},
    types::FieldTable,
};
use support::*;

/// The default reply queue as an earlier version declared it (classic), holding `n` replies.
async fn classic_reply_queue(broker: &Broker, n: usize) {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    broker
        .channel
        .queue_declare(REPLY_QUEUE.into(), durable, FieldTable::default())
        .await
        .unwrap();
    for i in 0..n {
        broker
            .channel
            .basic_publish(
                "".into(),
                REPLY_QUEUE.into(),
                BasicPublishOptions::default(),
                format!("reply {i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    broker.confirm_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_holding_replies_stops_the_upgrade_and_loses_nothing() {
    let env = TestEnv::new();
    env.migrate().await;
    let broker = env.broker().await;
    classic_reply_queue(&broker, 10).await;
    // The registration processor's reply consumer: it has taken all 10 and acked none yet.
    let reader = Broker::connect(&env.vhost).await;
    let mut consumer = reader
        .channel
        .basic_consume(
            REPLY_QUEUE.into(),
            "rp".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..10 {
        consumer.next().await.unwrap().unwrap();
    }

    let refused = env.cli(&["upgrade-queues"]);
    assert!(
        !refused.status.success(),
        "refused while a consumer holds replies"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("consumer"), "{stderr}");

    drop(consumer);
    reader.channel.close(200, "done".into()).await.unwrap();
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the held replies did not come back",
        async || broker.depth(REPLY_QUEUE).await == 10,
    )
    .await;
    assert!(env.cli_ok(&["upgrade-queues"]).contains("upgraded"));
    assert_eq!(broker.depth(REPLY_QUEUE).await, 10, "every reply kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_refuses_to_start_while_workers_run() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let refused = env.cli(&["upgrade-queues"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("stop every worker first"), "{stderr}");
    env.stop_app().await;
}
