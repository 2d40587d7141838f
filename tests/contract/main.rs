//! The contract checked from outside, with a different AMQP client (amqprs) and rabbitmqctl:
//! names, property values, header keys and types, JSON field spelling and error codes must
//! match docs/contract.md exactly. Nothing from prereg-sync's own AMQP layer is used to read.

use std::time::{Duration, Instant};

use amqprs::{
    BasicProperties, FieldName, FieldValue,
    channel::{BasicGetArguments, BasicPublishArguments, Channel, QueueDeclareArguments},
    connection::{Connection, OpenConnectionArguments},
};
use support::{TestEnv, check_reply_body, prids, rabbitmq_addr, rabbitmqctl};

async fn open(vhost: &str) -> (Connection, Channel) {
    let broker = rabbitmq_addr();
    let args =
        OpenConnectionArguments::new(&broker.ip().to_string(), broker.port(), "guest", "guest")
            .virtual_host(vhost)
            .finish();
    let connection = Connection::open(&args).await.expect("amqprs connects");
    let channel = connection.open_channel(None).await.unwrap();
    (connection, channel)
}

async fn get(channel: &Channel, queue: &str) -> (BasicProperties, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let args = BasicGetArguments::new(queue).no_ack(true).finish();
        if let Some((_, properties, body)) = channel.basic_get(args).await.unwrap() {
            // A reply read by another client validates against its JSON Schema too.
            check_reply_body(
                properties.message_type().map(String::as_str),
                &body,
                "a reply read with amqprs",
            );
            return (properties, body);
        }
        assert!(Instant::now() < deadline, "nothing arrived on {queue}");
        // The pacing of the polls: `basic_get` answers at once, empty or not.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header<'a>(properties: &'a BasicProperties, key: &str) -> &'a FieldValue {
    let name: FieldName = key.try_into().unwrap();
    properties
        .headers()
        .and_then(|h| h.get(&name))
        .unwrap_or_else(|| panic!("header {key}"))
}

fn string_header(properties: &BasicProperties, key: &str) -> String {
    match header(properties, key) {
        FieldValue::S(value) => value.to_string(),
        other => panic!("{key} is not a long string: {other:?}"),
    }
}

fn publish_properties(message_id: &str, reply_to: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(message_id)
        .with_correlation_id(&format!("c-{message_id}"))
        .with_reply_to(reply_to)
        .with_content_type("application/json")
        .with_app_id("rp-contract")
        .with_delivery_mode(2)
        .finish()
}

/// Lines of `rabbitmqctl list_* -p <vhost> <columns>` for the object named `name`.
fn listed(kind: &str, vhost: &str, columns: &[&str], name: &str) -> String {
    let mut args = vec![kind, "-q", "--no-table-headers", "-p", vhost];
    args.extend_from_slice(columns);
    rabbitmqctl(&args)
        .lines()
        .find(|line| line.split('\t').next() == Some(name))
        .unwrap_or_else(|| panic!("{kind}: no {name}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_from_outside() {
    let mut env = TestEnv::new();
    env.vars.remove("PREREG_SYNC__RETRY__DELAYS"); // the contract's default tiers
    env.spawn_app().await;
    let vhost = env.vhost.clone();
    assert_exchanges_and_queues(&vhost);
    assert_retry_tiers_and_bindings(&vhost);

    let ids = prids(2);
    env.seed_applications(&ids[..1]).await;
    let (connection, channel) = open(&vhost).await;
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named("rp.contract"))
        .await
        .unwrap();
    let publish = BasicPublishArguments::new("prereg.reverse-sync", "consumed-prereg-ids");
    assert_success_reply(&channel, &publish, &ids).await;
    assert_error_reply_and_dead_letter(&channel, publish).await;
    channel.close().await.unwrap();
    connection.close().await.unwrap();
    env.stop_app().await;
}

/// Topology: names, kinds, durability, arguments of the exchanges and queues.
fn assert_exchanges_and_queues(vhost: &str) {
    assert!(
        listed(
            "list_exchanges",
            vhost,
            &["name", "type", "durable"],
            "prereg.reverse-sync"
        )
        .ends_with("direct\ttrue")
    );
    assert!(
        listed(
            "list_exchanges",
            vhost,
            &["name", "type", "durable"],
            "prereg.reverse-sync.dlx"
        )
        .ends_with("fanout\ttrue")
    );
    let requests = listed(
        "list_queues",
        vhost,
        &["name", "type", "durable", "arguments"],
        "prereg.reverse-sync.requests",
    );
    for expected in [
        "quorum\ttrue",
        "{\"x-delivery-limit\",20}",
        "{\"x-dead-letter-exchange\",\"prereg.reverse-sync.dlx\"}",
        "{\"x-dead-letter-strategy\",\"at-least-once\"}",
        "{\"x-overflow\",\"reject-publish\"}",
    ] {
        assert!(
            requests.contains(expected),
            "request queue lacks {expected}: {requests}"
        );
    }
    for queue in ["prereg.reverse-sync.dlq", "prereg.reverse-sync.replies"] {
        let line = listed("list_queues", vhost, &["name", "type", "durable"], queue);
        assert!(line.ends_with("quorum\ttrue"), "{line}");
    }
}

/// The retry tiers' arguments, and the request queue's and the DLQ's bindings.
fn assert_retry_tiers_and_bindings(vhost: &str) {
    for (queue, ttl) in [("10s", 10_000), ("1m", 60_000), ("5m", 300_000)] {
        let line = listed(
            "list_queues",
            vhost,
            &["name", "type", "arguments"],
            &format!("prereg.reverse-sync.retry.{queue}"),
        );
        assert!(line.contains("quorum"), "{line}");
        assert!(
            line.contains(&format!("{{\"x-message-ttl\",{ttl}}}")),
            "{line}"
        );
        for expected in [
            "{\"x-dead-letter-strategy\",\"at-least-once\"}",
            "{\"x-overflow\",\"reject-publish\"}",
        ] {
            assert!(line.contains(expected), "{line}");
        }
        assert!(
            line.contains("{\"x-dead-letter-exchange\",\"prereg.reverse-sync\"}"),
            "{line}"
        );
        assert!(
            line.contains("{\"x-dead-letter-routing-key\",\"consumed-prereg-ids\"}"),
            "{line}"
        );
    }
    let bindings = rabbitmqctl(&[
        "list_bindings",
        "-q",
        "--no-table-headers",
        "-p",
        vhost,
        "source_name",
        "destination_name",
        "routing_key",
    ]);
    assert!(
        bindings
            .lines()
            .any(|l| l == "prereg.reverse-sync\tprereg.reverse-sync.requests\tconsumed-prereg-ids"),
        "{bindings}"
    );
    assert!(
        bindings
            .lines()
            .any(|l| l.starts_with("prereg.reverse-sync.dlx\tprereg.reverse-sync.dlq")),
        "{bindings}"
    );
}

/// A request with a known and an unknown PRID (`ids`) gets its success reply, property by
/// property and byte for byte.
async fn assert_success_reply(channel: &Channel, publish: &BasicPublishArguments, ids: &[String]) {
    let body = format!(
        r#"{{"id":"mosip.pre-registration.datasync.store","version":"1.0","requesttime":"2026-11-22T07:05:08.850Z","request":{{"preRegistrationIds":["{}","{}"]}}}}"#,
        ids[0], ids[1]
    );
    channel
        .basic_publish(
            publish_properties("tx-c1", "rp.contract"),
            body.into_bytes(),
            publish.clone(),
        )
        .await
        .unwrap();
    let (properties, reply) = get(channel, "rp.contract").await;
    assert_eq!(
        properties.correlation_id().map(String::as_str),
        Some("c-tx-c1")
    );
    assert_eq!(
        properties.message_id().map(String::as_str),
        Some("tx-c1.ack")
    );
    assert_eq!(properties.message_type().map(String::as_str), Some("ack"));
    assert_eq!(
        properties.content_type().map(String::as_str),
        Some("application/json")
    );
    assert_eq!(properties.delivery_mode(), Some(2));
    assert_eq!(string_header(&properties, "x-transaction-id"), "tx-c1");
    let reply = String::from_utf8(reply).unwrap();
    let responsetime = &reply[reply.find("\"responsetime\":\"").unwrap() + 16..][..24];
    assert_eq!(
        reply,
        format!(
            r#"{{"id":"mosip.pre-registration.datasync.store","version":"1.0","responsetime":"{responsetime}","response":{{"transactionId":"tx-c1","countOfStoredPreRegIds":"1","preRegistrationIds":["{}"],"rejectedPreRegistrationIds":["{}"]}},"errors":null}}"#,
            ids[0], ids[1]
        )
    );
}

/// An invalid request gets its error reply, and its dead-letter copy the contract's headers.
async fn assert_error_reply_and_dead_letter(channel: &Channel, publish: BasicPublishArguments) {
    let bad = r#"{"id":"mosip.pre-registration.datasync.store","version":"2.0","requesttime":"2026-11-22T07:05:08.850Z","request":{}}"#;
    channel
        .basic_publish(
            publish_properties("tx-c2", "rp.contract"),
            bad.as_bytes().to_vec(),
            publish,
        )
        .await
        .unwrap();
    let (properties, reply) = get(channel, "rp.contract").await;
    assert_eq!(
        properties.message_id().map(String::as_str),
        Some("tx-c2.error")
    );
    assert_eq!(properties.message_type().map(String::as_str), Some("error"));
    let reply = String::from_utf8(reply).unwrap();
    let responsetime = &reply[reply.find("\"responsetime\":\"").unwrap() + 16..][..24];
    assert_eq!(
        reply,
        format!(
            r#"{{"id":"mosip.pre-registration.datasync.store","version":"1.0","responsetime":"{responsetime}","response":null,"errors":[{{"errorCode":"PRG_PAM_CORE_002","message":"Request version is invalid"}}]}}"#
        )
    );
    let (dead, dead_body) = get(channel, "prereg.reverse-sync.dlq").await;
    assert_eq!(dead_body, bad.as_bytes());
    assert_eq!(dead.message_id().map(String::as_str), Some("tx-c2"));
    assert_eq!(string_header(&dead, "x-error-code"), "PRG_PAM_CORE_002");
    assert_eq!(
        string_header(&dead, "x-exception-message"),
        "Request version is invalid"
    );
    assert_eq!(
        string_header(&dead, "x-original-exchange"),
        "prereg.reverse-sync"
    );
    assert_eq!(
        string_header(&dead, "x-original-routingKey"),
        "consumed-prereg-ids"
    );
    assert_eq!(string_header(&dead, "x-transaction-id"), "tx-c2");
    assert!(
        matches!(header(&dead, "retry-count"), FieldValue::l(0)),
        "retry-count is a long"
    );
    let first = string_header(&dead, "x-first-failure-time");
    assert!(
        prereg_sync::message::envelope::parse_request_time(&first).is_some(),
        "{first}"
    );
}
