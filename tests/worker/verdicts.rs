//! The first verdict on a request stands for every later attempt of it: a request rejected for
//! its age is never stored later, whether it comes back from a retry tier (its error reply could
//! not be published) or is redelivered. Only an operator's replay judges it again.

use std::time::Duration;

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
};
use support::*;

use crate::reply_queue::full_reply_queue;

/// The fixtures' request time is days old: a one-hour age limit rejects it at once.
fn too_old_env() -> TestEnv {
    TestEnv::with_vars(&[
        ("PREREG_SYNC__VALIDATION__MAX_REQUEST_AGE", "1h"),
        ("PREREG_SYNC__RETRY__DELAYS", "300ms,600ms"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_stands_when_its_error_reply_takes_the_retry_tiers() {
    let mut env = too_old_env();
    env.spawn_app().await;
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    full_reply_queue(&broker, "rp.refusing", 0).await;
    broker
        .publish(
            &request_body(&ids),
            properties("tx-old", Some("rp.refusing")),
        )
        .await;
    let dead = broker.get_n(DLQ, 1, Duration::from_secs(30)).await;
    assert_eq!(
        header_str(&dead[0], "x-error-code").as_deref(),
        Some("PRG_CORE_REQ_013"),
        "dead-lettered with its verdict"
    );
    assert_eq!(env.rows("sync_transaction").await, 0, "never stored");
    assert_eq!(env.rows("processed_prereg_list").await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'REJECTED'")
            .await,
        1,
        "judged once"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'STORED'")
            .await,
        0
    );
    env.stop_app().await;
}

/// A redelivery (as the broker marks one on a quorum queue: `x-delivery-count`) of a rejected
/// request is answered with the same rejection, not judged anew without its age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_stands_for_a_redelivery() {
    let mut env = too_old_env();
    env.spawn_app().await;
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let body = request_body(&ids);
    broker
        .publish(&body, properties("tx-again", Some(&replies)))
        .await;
    broker.expect_rejected(&replies, "PRG_CORE_REQ_013").await;

    let mut redelivered = FieldTable::default();
    redelivered.insert("x-delivery-count".into(), AMQPValue::LongLongInt(1));
    let props = properties("tx-again", Some(&replies)).with_headers(redelivered);
    broker
        .channel
        .basic_publish(
            EXCHANGE.into(),
            ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    broker.expect_rejected(&replies, "PRG_CORE_REQ_013").await;
    assert_eq!(env.rows("sync_transaction").await, 0, "never stored");
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'REJECTED'")
            .await,
        1,
        "the verdict was given once"
    );
    env.stop_app().await;
}
