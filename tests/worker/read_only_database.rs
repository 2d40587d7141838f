//! A database that answers but cannot write is an outage: deliveries held, not ready.

use std::time::Duration;

use support::*;

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
    // "Held" is no event: a dead-letter or a ready worker would show within this window.
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
