//! A copy the worker publishes goes where the worker sends it, under the worker's own broker
//! user: it never carries the request's `user_id` (the broker refuses a publish whose `user_id`
//! is not the connection's user, closing the channel) nor its `CC`/`BCC` headers (the broker
//! would also deliver it to every queue they name). Tested with a publisher that has its own
//! broker user, as docs/security.md recommends.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldArray, FieldTable};
use support::*;

use crate::reply_queue::full_reply_queue;

/// 3 invalid requests published with the publisher's `user_id` among 20 valid ones: the 3 are
/// dead-lettered (the copy keeps the user as a header) and every valid one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_user_id_never_stops_a_copy() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    // The registration processor's own broker user.
    let publisher = BrokerUser::add(
        &env,
        &format!("prs-rp-{}", env.id),
        "rp-password",
        ALL_PERMISSIONS,
    );
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let ids = prids(20);
    env.seed_applications(&ids).await;
    let rp = Broker::connect_url(&publisher.url()).await;
    let invalid = String::from_utf8(request_body(&prids(1)))
        .unwrap()
        .replace("\"1.0\"", "\"9.9\"");
    for (i, id) in ids.iter().enumerate() {
        let props = |tx: String| {
            properties(&tx, Some(&replies)).with_user_id(publisher.name.as_str().into())
        };
        rp.publish(
            &request_body(std::slice::from_ref(id)),
            props(format!("tx-ok-{i}")),
        )
        .await;
        if i % 7 == 3 {
            rp.publish(invalid.as_bytes(), props(format!("tx-bad-{i}")))
                .await;
        }
    }
    let answers = broker.get_n(&replies, 23, Duration::from_secs(40)).await;
    let acks = answers
        .iter()
        .filter(|reply| error_code(reply).is_empty())
        .count();
    assert_eq!(acks, 20, "every valid request answered");
    let dead = broker.get_n(DLQ, 3, Duration::from_secs(20)).await;
    for copy in &dead {
        assert_eq!(copy.properties.user_id(), &None);
        assert_eq!(
            header_str(copy, "x-original-user-id").as_deref(),
            Some(publisher.name.as_str())
        );
    }
    env.stop_app().await;
}

/// Requests naming another queue in `CC` and `BCC`, whose replies cannot be delivered, so they
/// go through the retry tiers and then the dead-letter queue (and `dlq list` moves them within
/// it): no copy ever reaches the named queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_never_carry_sender_selected_routing() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__RETRY__DELAYS", "300ms,600ms")]);
    env.spawn_app().await;
    let broker = env.broker().await;
    let victim = broker.reply_queue("rp.victim").await;
    full_reply_queue(&broker, "rp.refusing", 0).await;
    let ids = prids(3);
    env.seed_applications(&ids).await;
    let named: FieldArray = vec![AMQPValue::LongString(victim.as_str().into())].into();
    for (i, id) in ids.iter().enumerate() {
        let mut headers = FieldTable::default();
        headers.insert("CC".into(), AMQPValue::FieldArray(named.clone()));
        headers.insert("BCC".into(), AMQPValue::FieldArray(named.clone()));
        let props = properties(&format!("tx-cc-{i}"), Some("rp.refusing")).with_headers(headers);
        broker
            .publish(&request_body(std::slice::from_ref(id)), props)
            .await;
    }
    broker.wait_for_depth(DLQ, 3, Duration::from_secs(30)).await;
    env.cli_ok(&["dlq", "list"]);
    assert_eq!(broker.depth(DLQ).await, 3);
    assert_eq!(
        broker.depth(&victim).await,
        0,
        "no copy reached the named queue"
    );
    env.stop_app().await;
}
