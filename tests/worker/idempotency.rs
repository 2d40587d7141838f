//! The same transaction three times writes once and answers three times
//! identically; the same ID with another body is a conflict.

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_write_once_and_get_identical_replies() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(4);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let body = request_body(&ids[..3]);
    for sent in 1..=3 {
        broker
            .publish(&body, properties("tx-dup", Some(&replies)))
            .await;
        // Sequential, so the second and third are duplicates of a committed transaction: each
        // is sent once the one before it is answered (a reply follows the commit).
        broker
            .wait_for_depth(&replies, sent, Duration::from_secs(30))
            .await;
    }
    let got = broker.get_n(&replies, 3, Duration::from_secs(30)).await;
    assert!(
        got.iter().all(|r| r.data == got[0].data),
        "three byte-identical replies"
    );
    assert!(
        got.iter()
            .all(|r| r.properties.message_id() == got[0].properties.message_id())
    );
    assert_eq!(env.rows("sync_transaction").await, 1);
    assert_eq!(env.rows("processed_prereg_list").await, 3);
    assert_eq!(env.rows("intf_processed_prereg_list").await, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'DUPLICATE'")
            .await,
        2
    );

    // Same ID, different body: conflict, dead-lettered, nothing written.
    broker
        .publish(
            &request_body(&ids[3..]),
            properties("tx-dup", Some(&replies)),
        )
        .await;
    broker
        .expect_rejected(&replies, "PRS_TRANSACTION_CONFLICT")
        .await;
    assert_eq!(env.rows("processed_prereg_list").await, 3);
    assert_eq!(env.rows("sync_transaction").await, 1);
    env.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_race_to_one_record() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__WORKER__CONCURRENCY", "8")]);
    env.spawn_app().await;
    let ids = prids(20);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    // 10 transactions, each published 4 times back to back: deliveries of one ID overlap.
    for i in 0..10 {
        let body = request_body(&ids[i * 2..i * 2 + 2]);
        for _ in 0..4 {
            broker
                .publish_pipelined(&body, properties(&format!("tx-race-{i}"), Some(&replies)))
                .await;
        }
    }
    broker.confirm_all().await;
    let got = broker.get_n(&replies, 40, Duration::from_secs(30)).await;
    for i in 0..10 {
        let tx = format!("tx-race-{i}");
        let same: Vec<_> = got
            .iter()
            .filter(|r| header_str(r, "x-transaction-id").as_deref() == Some(&tx))
            .collect();
        assert_eq!(same.len(), 4);
        assert!(
            same.iter()
                .all(|r| r.data == same[0].data && error_code(r).is_empty()),
            "identical success replies for {tx}"
        );
    }
    assert_eq!(env.rows("sync_transaction").await, 10);
    assert_eq!(env.rows("processed_prereg_list").await, 20);
    assert_eq!(broker.depth(DLQ).await, 0);
    env.stop_app().await;
}
