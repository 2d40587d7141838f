//! Which failures split a batch: only those that may be one request's data. A statement
//! timeout fails the whole batch, which comes round again whole under back-off (redone one
//! request at a time, 64 requests would each wait out the timeout in turn); a row-level
//! security policy refusing one request's rows fails that request alone, dead-lettered at once
//! and counted, while its neighbours are stored.

use std::time::Duration;

use support::*;

use crate::least_privilege::restrict_to_least_privilege;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_never_splits_a_batch() {
    let env = TestEnv::with_vars(&[("PREREG_SYNC__DATABASE__STATEMENT_TIMEOUT", "1s")]);
    env.migrate().await;
    let ids = prids(8);
    env.seed_applications(&ids).await;
    let log = std::env::temp_dir().join(format!("prs-{}-split.log", env.id));
    env.declare_topology().await;
    let mut worker = env.spawn_process(&[("RUST_LOG", "debug")], &log);
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    // Every store waits on this lock past the statement timeout.
    let lock = env.lock_processed_table().await;
    for (i, id) in ids.iter().enumerate() {
        broker
            .publish_pipelined(
                &request_body(std::slice::from_ref(id)),
                properties(&format!("tx-t{i}"), Some(&replies)),
            )
            .await;
    }
    broker.confirm_all().await;
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "not every request met the timeout",
        async || {
            std::fs::read_to_string(&log)
                .unwrap()
                .matches("transient failure; retrying")
                .count()
                >= ids.len()
        },
    )
    .await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    let answers = broker
        .get_n(&replies, ids.len(), Duration::from_secs(60))
        .await;
    assert!(answers.iter().all(|reply| error_code(reply).is_empty()));
    terminate(&worker);
    assert!(worker.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logs.contains("one by one"),
        "a timed-out batch was split:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_level_security_refusal_fails_its_request_alone() {
    let mut env = TestEnv::new();
    env.migrate().await;
    let _roles = restrict_to_least_privilege(&mut env);
    let ids = prids(4);
    env.seed_applications(&ids).await;
    let refused = &ids[0];
    must(psql(&env.database).args([
        "-c",
        &format!(
            "ALTER TABLE prereg.processed_prereg_list ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY readable ON prereg.processed_prereg_list FOR SELECT USING (true); \
             CREATE POLICY updatable ON prereg.processed_prereg_list FOR UPDATE USING (true); \
             CREATE POLICY not_this_one ON prereg.processed_prereg_list FOR INSERT \
                 WITH CHECK (prereg_id <> '{refused}');"
        ),
    ]));
    env.spawn_app().await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    for (i, id) in ids.iter().enumerate() {
        broker
            .publish_pipelined(
                &request_body(std::slice::from_ref(id)),
                properties(&format!("tx-r{i}"), Some(&replies)),
            )
            .await;
    }
    broker.confirm_all().await;
    let answers = broker
        .get_n(&replies, ids.len(), Duration::from_secs(30))
        .await;
    let codes: Vec<String> = answers.iter().map(error_code).collect();
    assert_eq!(
        codes.iter().filter(|code| code.is_empty()).count(),
        3,
        "the neighbours are stored: {codes:?}"
    );
    assert!(codes.contains(&"PRG_DATA_SYNC_012".to_owned()), "{codes:?}");
    assert!(broker.get(DLQ, Duration::from_secs(10)).await.is_some());
    assert_eq!(env.metric("prereg_sync_database_refusals_total").await, 1.0);
    assert!(env.ready().await, "a refused row is no outage");
    env.stop_app().await;
}
