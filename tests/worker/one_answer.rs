//! "One transaction, one answer" under broker-side faults: the copies the worker publishes, a
//! reply queue that refuses replies, hostile headers, the quorum topology and its upgrade, a
//! panicking batch, a batch whose duplicate vanished, audit rows that fail, shutdown bounds,
//! the request-age rule and a database that answers but cannot write.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties,
    message::Delivery,
    options::{BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use prereg_sync::startup::Application;
use tokio_util::sync::CancellationToken;

use support::*;

/// A worker process that dies with the test, also when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `url` until it answers 2xx (a worker process started by the test).
async fn wait_until_ok(url: &str) {
    let failure = format!("{url} never answered 2xx");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        &failure,
        async || {
            reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
}

fn long(value: &str) -> AMQPValue {
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

fn error_code_header(delivery: &Delivery) -> String {
    header_str(delivery, "x-error-code").expect("x-error-code header")
}

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

/// A panic inside a database batch fails only that batch's attempt: the batcher goes on, the
/// worker stays healthy and ready and keeps storing; the panicking request ends in the
/// dead-letter queue through the retry tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_batch_never_wedges_the_worker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let env = TestEnv::with_vars(&[
        ("PREREG_SYNC__HTTP__LISTEN", &listen),
        ("PREREG_SYNC__RETRY__DELAYS", "500ms"),
    ]);
    let log = std::env::temp_dir().join(format!("prs-panic-{}.log", env.id));
    let mut worker =
        KillOnDrop(env.spawn_process(&[("PREREG_SYNC_FAULT_PANIC_ON", "tx-panic")], &log));
    wait_until_ok(&format!("http://{listen}/readyz")).await;
    let ids = prids(21);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    broker
        .publish(
            &request_body(&ids[..1]),
            properties("tx-panic", Some(&replies)),
        )
        .await;
    broker.publish_stream(&ids[1..], 1, &replies).await;
    let answers = broker
        .get_n(&replies, ids.len(), Duration::from_secs(60))
        .await;
    let errors: Vec<String> = answers
        .iter()
        .filter(|a| json(a)["errors"].is_array())
        .map(|a| header_str(a, "x-transaction-id").unwrap())
        .collect();
    assert_eq!(errors, ["tx-panic"]);
    assert_eq!(env.rows("processed_prereg_list").await, 20);
    let dead = broker
        .get(DLQ, Duration::from_secs(10))
        .await
        .expect("dead-lettered");
    assert_eq!(error_code_header(&dead), "PRG_DATA_SYNC_012");
    for path in ["healthz", "readyz"] {
        let status = reqwest::get(format!("http://{listen}/{path}"))
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "/{path} {status}");
    }
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "worker still running"
    );
    drop(worker);
    #[allow(
        clippy::let_underscore_must_use,
        reason = "a log left behind in the temporary directory does not matter"
    )]
    let _ = std::fs::remove_file(log);
}

/// A transaction record as the worker writes it, for `prid`'s request.
async fn insert_transaction(client: &tokio_postgres::Client, id: &str, prid: &str) {
    let body = request_body(&[prid.to_owned()]);
    let hash = prereg_sync::message::body_sha256_hex(&body);
    let reply =
        prereg_sync::message::Reply::success(id, &[prid.to_owned()], &[], chrono::Utc::now());
    client
        .execute(
            "INSERT INTO prereg.sync_transaction (transaction_id, app_id, body_sha256, received_at, \
             request_time, stored_count, reply_body) VALUES ($1, 'test', $2, now(), now(), 1, $3)",
            &[&id, &hash, &reply.body],
        )
        .await
        .unwrap();
}

/// A batch that committed keeps its answers when one duplicate in it cannot be read back (its
/// record purged in between): that one alone is retried; its neighbours are answered as stored,
/// once, not redone one by one as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_duplicate_does_not_fail_its_committed_batch() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(12);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let bodies: Vec<Vec<u8>> = ids
        .iter()
        .map(|p| request_body(std::slice::from_ref(p)))
        .collect();
    // Two sessions of the test hold uncommitted records of tx-block and tx-gone: the first
    // batch waits on tx-block while tx-gone and ten more queue up behind it.
    let holder_block = env.db().await;
    holder_block.batch_execute("BEGIN").await.unwrap();
    insert_transaction(&holder_block, "tx-block", &ids[0]).await;
    let holder_gone = env.db().await;
    holder_gone.batch_execute("BEGIN").await.unwrap();
    insert_transaction(&holder_gone, "tx-gone", &ids[1]).await;
    broker
        .publish(&bodies[0], properties("tx-block", Some(&replies)))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker
        .publish_pipelined(&bodies[1], properties("tx-gone", Some(&replies)))
        .await;
    for (i, body) in bodies[2..].iter().enumerate() {
        broker
            .publish_pipelined(body, properties(&format!("tx-{i}"), Some(&replies)))
            .await;
    }
    broker.confirm_all().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    holder_block.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The second batch now waits on tx-gone: commit it and purge it in one round trip.
    holder_gone
        .batch_execute(
            "COMMIT; DELETE FROM prereg.sync_transaction WHERE transaction_id = 'tx-gone'",
        )
        .await
        .unwrap();
    let answers = broker
        .get_n(&replies, ids.len(), Duration::from_secs(30))
        .await;
    assert!(
        answers
            .iter()
            .all(|a| a.properties.kind().as_ref().unwrap().as_str() == "ack")
    );
    let duplicates = env
        .count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'DUPLICATE' AND transaction_id LIKE 'tx-_%' AND transaction_id NOT IN ('tx-block', 'tx-gone')")
        .await;
    assert_eq!(
        duplicates, 0,
        "committed neighbours answered once, as stored"
    );
    let stored = env
        .count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'STORED'")
        .await;
    assert_eq!(
        stored, 11,
        "ten neighbours and tx-gone (stored again after the purge)"
    );
    assert_eq!(
        env.metric("prereg_sync_messages_total{outcome=\"stored\"}")
            .await,
        11.0
    );
    env.stop_app().await;
}

/// An audit row for an outcome already decided that fails transiently (a trigger raising a
/// serialization failure) never turns the answer into `PRG_DATA_SYNC_012`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_row_never_changes_the_answer() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let db = env.db().await;
    db.batch_execute(
        "CREATE FUNCTION prereg.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.event IN ('DUPLICATE', 'REJECTED') THEN \
         RAISE EXCEPTION 'refused' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_audit BEFORE INSERT ON prereg.sync_audit \
         FOR EACH ROW EXECUTE FUNCTION prereg.refuse_audit();",
    )
    .await
    .unwrap();
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let body = request_body(&ids);
    broker
        .publish(&body, properties("tx-1", Some(&replies)))
        .await;
    let first = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("first reply");
    broker
        .publish(&body, properties("tx-1", Some(&replies)))
        .await;
    let again = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("duplicate reply");
    assert_eq!(again.data, first.data, "the stored reply again");
    broker
        .publish(br#"{"id":"x"}"#, properties("tx-bad", Some(&replies)))
        .await;
    let rejected = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("error reply");
    assert_eq!(error_code(&rejected), "PRG_PAM_CORE_001");
    assert_eq!(
        env.metric("prereg_sync_audit_write_failures_total").await,
        2.0
    );
    assert_eq!(
        env.metric("prereg_sync_retries_total{kind=\"delayed\"}")
            .await,
        0.0
    );
    env.stop_app().await;
}

/// Deliveries whose tasks are aborted when the session is lost are no longer counted in
/// flight: the gauge is back at zero once everything is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_is_not_leaked_by_aborted_deliveries() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(5);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let lock = env.lock_processed_table().await;
    broker.publish_stream(&ids, 1, &replies).await;
    env.wait_for_metric(
        "prereg_sync_in_flight_messages",
        5.0,
        Duration::from_secs(10),
    )
    .await;
    rabbitmqctl(&["close_all_connections", "--vhost", &env.vhost, "test fault"]);
    env.wait_for_metric(
        "prereg_sync_broker_reconnects_total",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    lock.batch_execute("COMMIT").await.unwrap();
    let broker = env.broker().await; // the test's own connection was closed too
    broker
        .get_n(&replies, ids.len(), Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.metric("prereg_sync_in_flight_messages").await, 0.0);
    assert_eq!(env.rows("processed_prereg_list").await, 5);
    env.stop_app().await;
}

/// The whole stop, consumer drain and a running consumed-job chunk together, stays within
/// `worker.shutdown_grace` (it used to take the grace twice over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_takes_at_most_the_grace_period() {
    let env = TestEnv::with_vars(&[
        ("PREREG_SYNC__WORKER__SHUTDOWN_GRACE", "3s"),
        ("PREREG_SYNC__CONSUMED_JOB__ENABLED", "true"),
        ("PREREG_SYNC__CONSUMED_JOB__SCHEDULE", "* * * * * *"),
    ]);
    let app = Application::build(env.settings()).await.unwrap();
    let stop = CancellationToken::new();
    let http = app.http_addr();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_until_ok(&format!("http://{http}/readyz")).await;
    env.wait_for_count(
        "SELECT count(*) FROM prereg.consumed_job_run",
        1,
        Duration::from_secs(30),
    )
    .await;
    let ids = prids(3);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    // Stores and the job's next chunk both wait on this lock, far past the grace period.
    let lock = env.lock_processed_table().await;
    broker.publish_stream(&ids, 1, REPLY_QUEUE).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    stop.cancel();
    running.await.unwrap().unwrap();
    let took = started.elapsed();
    lock.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        took < Duration::from_millis(3800),
        "shutdown took {took:?} with a 3 s grace"
    );
}

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
    let lock = env.lock_processed_table().await;
    broker
        .publish(body.as_bytes(), properties("tx-aging", Some(&replies)))
        .await;
    env.wait_for_metric(
        "prereg_sync_retries_total{kind=\"delayed\"}",
        2.0,
        Duration::from_secs(20),
    )
    .await;
    lock.batch_execute("COMMIT").await.unwrap();
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

/// A database that answers but cannot write (every new session read-only, as on a standby)
/// is down for readiness: deliveries are held, never dead-lettered, and stored once it can
/// write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_an_outage_not_a_ready_worker() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let admin = env.connect("postgres").await;
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        env.database
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on; {terminate}",
            env.database
        ))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        "still ready on a read-only database",
        async || !env.ready().await,
    )
    .await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    broker
        .publish(&request_body(&ids), properties("tx-ro", Some(&replies)))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!env.ready().await);
    assert_eq!(broker.depth(DLQ).await, 0, "held, not dead-lettered");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} RESET default_transaction_read_only; {terminate}",
            env.database
        ))
        .await
        .unwrap();
    let reply = broker
        .get(&replies, Duration::from_secs(30))
        .await
        .expect("a reply");
    assert_eq!(reply.properties.kind().as_ref().unwrap().as_str(), "ack");
    env.wait_ready(Duration::from_secs(15)).await;
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
