//! Storing a request: stored PRIDs, column values, replies.

use std::time::Duration;

use chrono::NaiveDateTime;
use lapin::message::Delivery;
use support::*;
use tokio_postgres::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_batch_is_stored_and_answered_on_reply_to() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(3);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let reply_queue = broker.reply_queue("rp.replies").await;
    let before = now_utc();
    broker
        .publish(
            &request_body(&ids),
            properties("tx-store-1", Some(&reply_queue)),
        )
        .await;

    let reply = broker
        .get(&reply_queue, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_success_reply(&reply, &ids);
    let db = env.db().await;
    assert_rows_stored(&db, &ids, before).await;
    assert_transaction_and_audit(&db, &reply).await;
    env.stop_app().await;
}

/// `tx-store-1`'s reply: the contract's properties and headers, and a body that stores `ids`,
/// byte for byte.
fn assert_success_reply(reply: &Delivery, ids: &[String]) {
    let props = &reply.properties;
    assert_eq!(
        props.correlation_id().as_ref().unwrap().as_str(),
        "corr-tx-store-1"
    );
    assert_eq!(
        props.message_id().as_ref().unwrap().as_str(),
        "tx-store-1.ack"
    );
    assert_eq!(props.kind().as_ref().unwrap().as_str(), "ack");
    assert_eq!(
        props.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(
        header_str(reply, "x-transaction-id").as_deref(),
        Some("tx-store-1")
    );
    let body = json(reply);
    let responsetime = body["responsetime"].as_str().unwrap();
    let expected = format!(
        r#"{{"id":"mosip.pre-registration.datasync.store","version":"1.0","responsetime":"{responsetime}","response":{{"transactionId":"tx-store-1","countOfStoredPreRegIds":"3","preRegistrationIds":{},"rejectedPreRegistrationIds":[]}},"errors":null}}"#,
        serde_json::to_string(&ids).unwrap()
    );
    assert_eq!(
        String::from_utf8(reply.data.clone()).unwrap(),
        expected,
        "body byte for byte"
    );
    assert_eq!(body["id"], "mosip.pre-registration.datasync.store");
    assert_eq!(body["version"], "1.0");
    assert!(body["errors"].is_null());
    assert_eq!(body["response"]["transactionId"], "tx-store-1");
    assert_eq!(body["response"]["countOfStoredPreRegIds"], "3");
    assert_eq!(
        body["response"]["preRegistrationIds"],
        serde_json::json!(ids)
    );
    assert_eq!(
        body["response"]["rejectedPreRegistrationIds"],
        serde_json::json!([])
    );
    assert!(prereg_sync::message::envelope::parse_request_time(responsetime).is_some());
}

/// `ids` in the processed and interface tables with the values of `tx-store-1`, created after
/// `before`.
async fn assert_rows_stored(db: &Client, ids: &[String], before: NaiveDateTime) {
    let rows = db
        .query(
            "SELECT prereg_id, first_received_dtimes, status_code, status_comments, prereg_trn_id, lang_code, cr_by, cr_dtimes \
             FROM prereg.processed_prereg_list ORDER BY prereg_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let request_time = prereg_sync::message::envelope::parse_request_time(REQUEST_TIME).unwrap();
    for row in &rows {
        assert!(ids.contains(&row.get::<_, String>(0)));
        assert_eq!(row.get::<_, chrono::NaiveDateTime>(1), request_time);
        assert_eq!(row.get::<_, String>(2), "Consumed");
        assert_eq!(
            row.get::<_, String>(3),
            "Processed by registration processor"
        );
        assert_eq!(row.get::<_, String>(4), "tx-store-1");
        assert_eq!(row.get::<_, String>(5), "eng");
        assert_eq!(row.get::<_, String>(6), "prereg-sync");
        let created: chrono::NaiveDateTime = row.get(7);
        assert!(
            created >= before - chrono::Duration::seconds(1) && created <= now_utc(),
            "cr_dtimes is now, UTC"
        );
    }
    let interface = db
        .query(
            "SELECT received_dtimes, lang_code, cr_by FROM prereg.intf_processed_prereg_list",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(interface.len(), 3);
    assert!(
        interface
            .iter()
            .all(|r| r.get::<_, chrono::NaiveDateTime>(0) == request_time)
    );
}

/// `tx-store-1`'s transaction record holds the reply sent, and one audit row says it was stored.
async fn assert_transaction_and_audit(db: &Client, reply: &Delivery) {
    let tx = db
        .query_one("SELECT app_id, stored_count, reply_body FROM prereg.sync_transaction WHERE transaction_id = 'tx-store-1'", &[])
        .await
        .unwrap();
    assert_eq!(tx.get::<_, String>(0), "rp-test");
    assert_eq!(tx.get::<_, i32>(1), 3);
    assert_eq!(
        tx.get::<_, Vec<u8>>(2),
        reply.data,
        "the stored reply is the one sent"
    );
    let audit = db
        .query(
            "SELECT app_id, transaction_id, event, outcome, error_code FROM prereg.sync_audit",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].get::<_, String>(0), "rp-test");
    assert_eq!(audit[0].get::<_, String>(1), "tx-store-1");
    assert_eq!(audit[0].get::<_, String>(2), "STORED");
    assert_eq!(audit[0].get::<_, String>(3), "SUCCESS");
    assert_eq!(audit[0].get::<_, Option<String>>(4), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reply_to_the_reply_goes_to_the_default_queue() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let body = request_body(&ids);
    // No message_id, no correlation_id: the transaction ID is derived from the body.
    let props = lapin::BasicProperties::default().with_content_type("application/json".into());
    broker.publish(&body, props).await;
    let reply = broker
        .get(REPLY_QUEUE, Duration::from_secs(20))
        .await
        .expect("a reply");
    let derived = derived_transaction_id(&body);
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        derived.as_str()
    );
    assert_eq!(
        reply.properties.message_id().as_ref().unwrap().as_str(),
        format!("{derived}.ack")
    );
    assert_eq!(json(&reply)["response"]["transactionId"], derived.as_str());
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction WHERE app_id = 'unknown'")
            .await,
        1
    );
    env.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_prids_keep_their_first_time_and_bad_ones_are_rejected() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(3);
    let (known, unknown) = (ids[..2].to_vec(), ids[2].clone());
    env.seed_applications(&known).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;

    // First sighting of known[0], at an earlier request time.
    let early = String::from_utf8(request_body(&known[..1]))
        .unwrap()
        .replace(REQUEST_TIME, "2026-01-01T00:00:00.000Z");
    broker
        .publish(early.as_bytes(), properties("tx-early", Some(&replies)))
        .await;
    broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("first reply");

    let malformed = "75124301326313".to_owned();
    let mixed = vec![
        known[0].clone(),
        malformed.clone(),
        known[1].clone(),
        unknown.clone(),
    ];
    broker
        .publish(
            &request_body(&mixed),
            properties("tx-mixed", Some(&replies)),
        )
        .await;
    let reply = json(
        &broker
            .get(&replies, Duration::from_secs(20))
            .await
            .expect("second reply"),
    );
    assert_eq!(reply["response"]["countOfStoredPreRegIds"], "2");
    assert_eq!(
        reply["response"]["preRegistrationIds"],
        serde_json::json!([known[0], known[1]])
    );
    assert_eq!(
        reply["response"]["rejectedPreRegistrationIds"],
        serde_json::json!([malformed, unknown])
    );

    assert_first_sighting_kept(&env, &known[0], vec![malformed, unknown]).await;

    // None survives: PRG_DATA_SYNC_011, dead-lettered.
    let bad_only = vec!["75124301326313".to_owned(), prids(1).remove(0)];
    broker
        .publish(
            &request_body(&bad_only),
            properties("tx-none", Some(&replies)),
        )
        .await;
    broker.expect_rejected(&replies, "PRG_DATA_SYNC_011").await;
    env.stop_app().await;
}

/// `prid`'s row is the first sighting's (`tx-early`, its earlier request time), each receipt
/// has its interface row, and the `rejected` PRIDs are stored nowhere.
async fn assert_first_sighting_kept(env: &TestEnv, prid: &str, rejected: Vec<String>) {
    let db = env.db().await;
    let first: chrono::NaiveDateTime = db
        .query_one(
            "SELECT first_received_dtimes FROM prereg.processed_prereg_list WHERE prereg_id = $1",
            &[&prid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first.to_string(), "2026-01-01 00:00:00");
    let trn: String = db
        .query_one(
            "SELECT prereg_trn_id FROM prereg.processed_prereg_list WHERE prereg_id = $1",
            &[&prid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(trn, "tx-early", "the first transaction keeps the row");
    assert_eq!(
        env.rows("intf_processed_prereg_list").await,
        3,
        "one interface row per receipt"
    );
    let stored_bad = db
        .query(
            "SELECT 1 FROM prereg.processed_prereg_list WHERE prereg_id = ANY($1)",
            &[&rejected],
        )
        .await
        .unwrap();
    assert!(stored_bad.is_empty(), "rejected PRIDs are not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_publishes_waits_for_every_reply_and_reports() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let out = env.cli_ok(&[
        "loadgen",
        "--requests",
        "40",
        "--batch",
        "3",
        "--seed-fake-applications",
    ]);
    for field in [
        "requests=40",
        "prids=120",
        "acks=40",
        "errors=0",
        "messages/s=",
        "prids/s=",
        "latency_p50=",
        "latency_p99=",
    ] {
        assert!(out.contains(field), "{field} missing from: {out}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction WHERE app_id = 'loadgen'")
            .await,
        40
    );
    assert_eq!(env.rows("processed_prereg_list").await, 120);
    env.stop_app().await;
}
