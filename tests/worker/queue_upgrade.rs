//! The quorum topology as the broker reports it, and `upgrade-queues` moving an earlier
//! version's classic queues to it without losing or repeating a message.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

use support::*;

use crate::copies::long;

/// The queues' types and arguments, as the broker reports them.
fn queue_table(vhost: &str) -> HashMap<String, (String, serde_json::Value)> {
    let out = rabbitmqctl(&[
        "list_queues",
        "-q",
        "-p",
        vhost,
        "--formatter",
        "json",
        "name",
        "type",
        "arguments",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("rabbitmqctl json");
    rows.into_iter()
        .map(|row| {
            let name = row["name"].as_str().unwrap().to_owned();
            let kind = row["type"].as_str().unwrap().to_owned();
            (name, (kind, row["arguments"].clone()))
        })
        .collect()
}

/// `rabbitmqctl` prints arguments as a list of [name, type?, value] or an object, by version.
fn argument(arguments: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    if let Some(value) = arguments.get(key) {
        return Some(value.clone());
    }
    arguments.as_array()?.iter().find_map(|entry| {
        let entry = entry.as_array()?;
        (entry.first()?.as_str()? == key).then(|| entry.last().cloned())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_tiers_dlq_and_reply_queue_are_quorum() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let queues = queue_table(&env.vhost);
    for name in [
        REQUEST_QUEUE,
        DLQ,
        REPLY_QUEUE,
        "prereg.reverse-sync.retry.1s",
        "prereg.reverse-sync.retry.2s",
    ] {
        let (kind, _) = queues
            .get(name)
            .unwrap_or_else(|| panic!("{name} declared"));
        assert_eq!(kind, "quorum", "{name}");
    }
    let (_, tier) = &queues["prereg.reverse-sync.retry.2s"];
    assert_eq!(
        argument(tier, "x-message-ttl"),
        Some(serde_json::json!(2000))
    );
    assert_eq!(
        argument(tier, "x-dead-letter-exchange"),
        Some(serde_json::json!(EXCHANGE))
    );
    assert_eq!(
        argument(tier, "x-dead-letter-routing-key"),
        Some(serde_json::json!(ROUTING_KEY))
    );
    assert_eq!(
        argument(tier, "x-dead-letter-strategy"),
        Some(serde_json::json!("at-least-once"))
    );
    assert_eq!(
        argument(tier, "x-overflow"),
        Some(serde_json::json!("reject-publish"))
    );
    env.stop_app().await;
}

/// A vhost laid out as an earlier version left it (classic retry tiers, dead-letter and reply
/// queues, each holding messages) is upgraded by one command: every message still there, none
/// twice, and the worker starts on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_queues_moves_classic_queues_to_quorum_losing_nothing() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__RETRY__DELAYS", "10m,20m")]);
    env.migrate().await;
    let broker = env.broker().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut old = vec![
        (DLQ.to_owned(), FieldTable::default()),
        (REPLY_QUEUE.to_owned(), FieldTable::default()),
    ];
    for (delay, ms) in [("10m", 600_000), ("20m", 1_200_000)] {
        let mut tier = FieldTable::default();
        tier.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        tier.insert("x-dead-letter-exchange".into(), long(EXCHANGE));
        tier.insert("x-dead-letter-routing-key".into(), long(ROUTING_KEY));
        old.push((format!("prereg.reverse-sync.retry.{delay}"), tier));
    }
    let per_queue = 25;
    for (queue, arguments) in &old {
        broker
            .channel
            .queue_declare(queue.as_str().into(), durable, arguments.clone())
            .await
            .unwrap();
        for i in 0..per_queue {
            broker
                .channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("{queue} {i}").as_bytes(),
                    BasicProperties::default()
                        .with_message_id(format!("m-{i}").into())
                        .with_delivery_mode(2),
                )
                .await
                .unwrap();
        }
    }
    broker.confirm_all().await;
    // Today's worker refuses the old layout, naming the queue.
    let refused = env.cli(&["run"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists with different arguments"));

    let printed = env.cli_ok(&["upgrade-queues"]);
    assert!(printed.contains("upgraded"), "{printed}");
    let queues = queue_table(&env.vhost);
    for (queue, _) in &old {
        assert_eq!(queues[queue].0, "quorum", "{queue}");
        let bodies: Vec<String> = broker
            .get_n(queue, per_queue, Duration::from_secs(10))
            .await
            .iter()
            .map(|m| String::from_utf8(m.data.clone()).unwrap())
            .collect();
        let distinct: HashSet<&String> = bodies.iter().collect();
        assert_eq!(distinct.len(), per_queue, "{queue}: each message once");
        assert_eq!(broker.depth(queue).await, 0, "{queue}: nothing twice");
    }
    assert!(!queues.keys().any(|name| name.ends_with(".upgrading")));
    // Running it again changes nothing.
    assert!(env.cli_ok(&["upgrade-queues"]).contains("up to date"));
    env.spawn_app().await;
    env.stop_app().await;
}
