//! Faults inside a database batch: a panic, a duplicate whose record vanished after the
//! commit, an audit row that fails. None wedges the worker or changes a committed answer.

use std::time::Duration;

use support::*;

use crate::copies::error_code_header;

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
pub(crate) async fn wait_until_ok(url: &str) {
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
    env.wait_for_blocked_by(&holder_block, 1, Duration::from_secs(10))
        .await;
    broker
        .publish_pipelined(&bodies[1], properties("tx-gone", Some(&replies)))
        .await;
    for (i, body) in bodies[2..].iter().enumerate() {
        broker
            .publish_pipelined(body, properties(&format!("tx-{i}"), Some(&replies)))
            .await;
    }
    broker.confirm_all().await;
    // All queued up behind the first batch: in the worker's store batcher, in memory, where
    // no condition can be seen from outside (an emptied request queue only says they were
    // delivered). If they join later, tx-gone's batch is smaller and its retry can read the
    // record back between the test's COMMIT and DELETE.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    holder_block.batch_execute("COMMIT").await.unwrap();
    env.wait_for_blocked_by(&holder_gone, 1, Duration::from_secs(10))
        .await;
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
