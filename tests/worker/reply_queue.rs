//! A reply queue that refuses replies: no error reply for a stored request, the copy
//! dead-lettered as `PRS_REPLY_UNDELIVERED`, and a replay that delivers the stored reply.

use std::time::Duration;

use lapin::{
    BasicProperties,
    message::Delivery,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};

use support::*;

use crate::copies::{error_code_header, long};

/// A reply queue that refuses every reply (`x-max-length` reached, `reject-publish`) while
/// requests arrive: the requests are stored, no error reply is ever published for them, they
/// are dead-lettered as `PRS_REPLY_UNDELIVERED`, and a replay once the queue has room
/// delivers each stored reply, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_reply_queue_gets_no_error_reply_and_a_replay_delivers_the_stored_ones() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__RETRY__DELAYS", "500ms,1s")]);
    env.spawn_app().await;
    let ids = prids(20);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    full_reply_queue(&broker, "rp.full", ids.len()).await;
    broker.publish_stream(&ids, 1, "rp.full").await;
    let dead = broker.get_n(DLQ, ids.len(), Duration::from_secs(60)).await;
    for copy in &dead {
        assert_eq!(error_code_header(copy), "PRS_REPLY_UNDELIVERED");
    }
    assert_eq!(env.rows("sync_transaction").await, ids.len() as i64);
    assert_eq!(env.rows("processed_prereg_list").await, ids.len() as i64);
    // Only the fillers are in the reply queue: no error reply was ever accepted for these.
    let held = broker
        .get_n("rp.full", ids.len(), Duration::from_secs(5))
        .await;
    assert!(
        held.iter()
            .all(|m| m.properties.kind().as_ref().unwrap().as_str() == "filler")
    );
    assert_eq!(
        env.metric("prereg_sync_replies_published_total{kind=\"error\"}")
            .await,
        0.0
    );

    // Put the copies back and replay them, now that the reply queue has room.
    put_back_and_replay(&env, &broker, &dead).await;
    let mut replies = Vec::new();
    while replies.len() < ids.len() {
        let reply = broker
            .get("rp.full", Duration::from_secs(30))
            .await
            .expect("a replayed reply");
        replies.push(reply);
    }
    assert_stored_replies(&env, &replies).await;
    assert_eq!(env.rows("processed_prereg_list").await, ids.len() as i64);
    assert_eq!(broker.depth(DLQ).await, 0);
    env.stop_app().await;
}

/// Declares `queue` full: `n` fillers in it and room for no more (`x-max-length`,
/// `reject-publish`), so once the fillers are taken there is room for exactly `n` replies.
pub(crate) async fn full_reply_queue(broker: &Broker, queue: &str, n: usize) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(n as i64));
    arguments.insert("x-overflow".into(), long("reject-publish"));
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    broker
        .channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .unwrap();
    for filler in 0..n {
        let body = format!("filler {filler}");
        broker
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_type("filler".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// Puts dead-letter copies the test took back into the DLQ and replays them with
/// `dlq replay`.
async fn put_back_and_replay(env: &TestEnv, broker: &Broker, copies: &[Delivery]) {
    for copy in copies {
        broker
            .channel
            .basic_publish(
                "".into(),
                DLQ.into(),
                BasicPublishOptions::default(),
                &copy.data,
                copy.properties.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    env.cli_ok(&["dlq", "replay", "--error-code", "PRS_REPLY_UNDELIVERED"]);
}

/// Every reply is a success reply, byte for byte the one stored for its transaction.
async fn assert_stored_replies(env: &TestEnv, replies: &[Delivery]) {
    let db = env.db().await;
    for reply in replies {
        assert_eq!(reply.properties.kind().as_ref().unwrap().as_str(), "ack");
        let tx = header_str(reply, "x-transaction-id").unwrap();
        let stored: Vec<u8> = db
            .query_one(
                "SELECT reply_body FROM prereg.sync_transaction WHERE transaction_id = $1",
                &[&tx],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(reply.data, stored, "the stored reply, byte for byte");
    }
}
