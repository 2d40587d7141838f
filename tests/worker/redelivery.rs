//! A request that comes round again (a retry tier, the delivery limit) is judged as it was
//! the first time: its age once, a stored transaction as a duplicate.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};

use support::*;

/// `validation.max_request_age` is judged at the first attempt only: time spent in the retry
/// tiers does not make a valid request too old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_age_is_judged_once() {
    let mut env = TestEnv::with_vars(&[
        ("PREREG_SYNC__VALIDATION__MAX_REQUEST_AGE", "3s"),
        ("PREREG_SYNC__DATABASE__STATEMENT_TIMEOUT", "1s"),
        ("PREREG_SYNC__RETRY__DELAYS", "1s,4s"),
    ]);
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let now = prereg_sync::message::format_timestamp(chrono::Utc::now());
    let body = String::from_utf8(request_body(&ids))
        .unwrap()
        .replace(REQUEST_TIME, &now);
    env.publish_failing_until_delayed_retries(
        &broker,
        body.as_bytes(),
        properties("tx-aging", Some(&replies)),
        2.0,
    )
    .await;
    // The last attempt comes from the 4 s tier, past the 3 s age limit.
    let reply = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(
        reply.properties.kind().as_ref().unwrap().as_str(),
        "ack",
        "{}",
        json(&reply)
    );
    assert_eq!(env.rows("processed_prereg_list").await, 1);
    env.stop_app().await;
}

/// At the delivery limit a stored transaction is answered as a duplicate, with its stored
/// reply: never `PRS_DELIVERY_LIMIT` for a transaction that is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_answers_a_stored_transaction_as_a_duplicate() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let body = request_body(&ids);
    broker
        .publish(&body, properties("tx-stored", Some(&replies)))
        .await;
    let first = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("first reply");
    // The same request again, as if redelivered to the limit (a publisher may set the header).
    let mut at_limit = FieldTable::default();
    at_limit.insert("x-delivery-count".into(), AMQPValue::LongLongInt(19));
    broker
        .publish(
            &body,
            properties("tx-stored", Some(&replies)).with_headers(at_limit),
        )
        .await;
    let again = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("a reply at the limit");
    assert_eq!(again.properties.kind().as_ref().unwrap().as_str(), "ack");
    assert_eq!(again.data, first.data, "the stored reply, byte for byte");
    assert_eq!(
        broker.depth(DLQ).await,
        0,
        "a stored transaction is not dead-lettered"
    );
    assert_eq!(
        env.metric("prereg_sync_messages_total{outcome=\"duplicate\"}")
            .await,
        1.0
    );
    env.stop_app().await;
}
