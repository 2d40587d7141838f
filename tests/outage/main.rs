//! Faults that stop a shared service (the tests' PostgreSQL and RabbitMQ, see
//! `support::postgres_service`). `scripts/test` runs this binary alone, after every parallel
//! test, with one test thread: nothing else may be using PostgreSQL meanwhile.

use std::time::{Duration, Instant};

use support::*;

/// Makes sure the shared cluster is running again even if an assertion fails mid-test.
struct Restart;
impl Drop for Restart {
    fn drop(&mut self) {
        if !postgres_ready() {
            postgres_service("start");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_postgresql_restart_mid_stream_loses_and_duplicates_nothing() {
    let _restart = Restart;
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(400);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    broker.publish_stream(&ids, 2, &replies).await;
    // Stop PostgreSQL while the stream is being processed.
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(10),
        "stream never started",
        async || {
            env.count("SELECT count(*) FROM prereg.sync_transaction")
                .await
                >= 20
        },
    )
    .await;
    postgres_service("stop");
    let stopped = Instant::now();
    let mut saw_not_ready = false;
    while stopped.elapsed() < Duration::from_secs(15) {
        saw_not_ready |= !env.ready().await;
        // Pacing of the readiness samples: the outage lasts a fixed time, not until an event.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        saw_not_ready,
        "readiness went false while PostgreSQL was down"
    );
    assert_eq!(broker.depth(DLQ).await, 0, "an outage dead-letters nothing");
    postgres_service("start");

    let got = broker.get_n(&replies, 200, Duration::from_secs(120)).await;
    env.wait_ready(Duration::from_secs(30)).await;
    env.stop_app().await;
    let extra = broker.depth(&replies).await as usize;
    let repeated = broker.get_n(&replies, extra, Duration::from_secs(10)).await;
    for reply in got.iter().chain(&repeated) {
        assert_eq!(error_code(reply), "");
    }
    let answered = by_transaction(got.iter().chain(&repeated));
    assert_eq!(answered.len(), 200, "every request answered");
    assert!(
        all_identical(&answered),
        "a repeated reply is the same reply"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction")
            .await,
        200
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.processed_prereg_list")
            .await,
        400
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'STORED'")
            .await,
        200
    );
    assert_eq!(broker.depth(REQUEST_QUEUE).await, 0);
    assert_eq!(broker.depth(DLQ).await, 0);
}

/// Makes sure the shared broker runs again even if an assertion fails mid-test.
struct StartBroker;
impl Drop for StartBroker {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        let _ = rabbitmqctl_command().arg("start_app").status();
    }
}

/// Copies of a transient request that asked to expire (a dead-letter copy, a copy parked in a
/// retry tier) are persistent and carry no expiration: both are still there, unexpired, after
/// the broker restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_copies_survive_a_broker_restart() {
    let mut env = TestEnv::with_vars(&[
        ("PREREG_SYNC__DATABASE__STATEMENT_TIMEOUT", "1s"),
        ("PREREG_SYNC__RETRY__DELAYS", "10m"),
    ]);
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let transient = |id: &str| {
        properties(id, None)
            .with_delivery_mode(1)
            .with_expiration("5000".into())
    };
    broker
        .publish(br#"{"id":"x"}"#, transient("tx-invalid"))
        .await;
    let lock = env.lock_processed_table().await;
    broker
        .publish(&request_body(&ids), transient("tx-parked"))
        .await;
    let tier = "prereg.reverse-sync.retry.10m";
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "copies never published",
        async || broker.depth(DLQ).await >= 1 && broker.depth(tier).await >= 1,
    )
    .await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    env.stop_app().await;
    drop(broker);
    let _restart = StartBroker;
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    // Time itself is the test: longer than the 5 s expiration the publisher asked for.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let broker = env.broker().await;
    for queue in [DLQ, tier] {
        let copy = broker
            .get(queue, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("the copy in {queue} survived the restart"));
        assert_eq!(copy.properties.delivery_mode(), &Some(2));
        assert_eq!(copy.properties.expiration(), &None);
        assert_eq!(
            header_str(&copy, "x-original-expiration").as_deref(),
            Some("5000")
        );
    }
}
