//! The copies the worker publishes (retry tiers, dead-letter queue): persistent, never
//! expiring, and their header table bounded whatever headers the request carried.

use std::{collections::HashSet, time::Duration};

use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldTable, LongString},
};

use support::*;

/// An AMQP long string header value.
pub(crate) fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_persistent_and_never_carry_the_expiration() {
    let mut env = TestEnv::with_vars(&[
        ("PREREG_SYNC__DATABASE__STATEMENT_TIMEOUT", "1s"),
        ("PREREG_SYNC__RETRY__DELAYS", "1s"),
    ]);
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let transient = |id: &str| {
        properties(id, Some(&replies))
            .with_delivery_mode(1)
            .with_expiration("600000".into())
    };
    // Rejected at once (invalid id): the dead-letter copy straight away.
    broker
        .publish(br#"{"id":"x"}"#, transient("tx-invalid"))
        .await;
    // A store that keeps failing: a retry-tier copy, then the dead-letter copy.
    let lock = env.lock_processed_table().await;
    broker
        .publish(&request_body(&ids), transient("tx-failing"))
        .await;
    let copies = broker.get_n(DLQ, 2, Duration::from_secs(30)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    let mut codes = HashSet::new();
    for copy in &copies {
        let props = &copy.properties;
        assert_eq!(props.delivery_mode(), &Some(2), "persistent copy");
        assert_eq!(props.expiration(), &None, "no expiration on a copy");
        assert_eq!(
            header_str(copy, "x-original-expiration").as_deref(),
            Some("600000")
        );
        codes.insert(error_code_header(copy));
    }
    assert_eq!(
        codes,
        HashSet::from([
            "PRG_PAM_CORE_001".to_owned(),
            "PRG_DATA_SYNC_012".to_owned()
        ])
    );
    assert!(
        env.metric("prereg_sync_retries_total{kind=\"delayed\"}")
            .await
            >= 1.0
    );
    env.stop_app().await;
}

/// The `x-error-code` of a dead-letter copy or an error reply.
pub(crate) fn error_code_header(delivery: &Delivery) -> String {
    header_str(delivery, "x-error-code").expect("x-error-code header")
}

/// Encoded size of a header table (AMQP 0-9-1), measured the way the broker frames it.
fn table_bytes(table: &FieldTable) -> usize {
    fn value(v: &AMQPValue) -> usize {
        1 + match v {
            AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
            AMQPValue::ShortString(s) => 1 + s.as_str().len(),
            AMQPValue::FieldTable(t) => 4 + table_bytes(t),
            AMQPValue::FieldArray(a) => 4 + a.as_slice().iter().map(value).sum::<usize>(),
            AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
            _ => 8,
        }
    }
    table
        .into_iter()
        .map(|(k, v)| 1 + k.as_str().len() + value(v))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_never_make_a_copy_over_16_kib() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let mut huge = FieldTable::default();
    huge.insert("x-first-failure-time".into(), long(&"9".repeat(100 * 1024)));
    let mut many = FieldTable::default();
    for i in 0..5_000 {
        many.insert(format!("h{i}").into(), AMQPValue::LongLongInt(i));
    }
    let mut deep = long("leaf");
    for level in 0..3_000 {
        deep = if level % 2 == 0 {
            AMQPValue::FieldArray(vec![deep, long("x")].into())
        } else {
            let mut table = FieldTable::default();
            table.insert("n".into(), deep);
            AMQPValue::FieldTable(table)
        };
    }
    let mut nested = FieldTable::default();
    nested.insert("deep".into(), deep);
    nested.insert("wide".into(), long(&"w".repeat(15 * 1024)));
    let hostile = [("tx-huge", huge), ("tx-many", many), ("tx-deep", nested)];
    for (id, headers) in &hostile {
        // Invalid on purpose (wrong id): each is dead-lettered with a copy of its headers.
        broker
            .publish(
                br#"{"id":"x"}"#,
                properties(id, Some(&replies)).with_headers(headers.clone()),
            )
            .await;
    }
    let copies = broker
        .get_n(DLQ, hostile.len(), Duration::from_secs(30))
        .await;
    for copy in &copies {
        let headers = copy.properties.headers().as_ref().unwrap();
        assert!(
            table_bytes(headers) <= 16 * 1024,
            "{} bytes",
            table_bytes(headers)
        );
        let first = header_str(copy, "x-first-failure-time").unwrap();
        assert_eq!(
            first.len(),
            24,
            "a contract timestamp, not the hostile value"
        );
    }
    // Still consuming: a valid request is stored and answered.
    let ids = prids(1);
    env.seed_applications(&ids).await;
    broker
        .publish(&request_body(&ids), properties("tx-after", Some(&replies)))
        .await;
    let answers = broker
        .get_n(&replies, hostile.len() + 1, Duration::from_secs(30))
        .await;
    assert!(
        answers
            .iter()
            .any(|a| json(a)["response"]["transactionId"] == "tx-after")
    );
    assert_eq!(env.rows("processed_prereg_list").await, 1);
    env.stop_app().await;
}
