//! Stopping: deliveries aborted with their session are not left counted in flight, and the
//! whole stop stays within the grace period.

use std::time::{Duration, Instant};

use prereg_sync::startup::Application;
use tokio_util::sync::CancellationToken;

use support::*;

use crate::batch_faults::wait_until_ok;

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
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "prereg_sync_in_flight_messages never came back to 0",
        async || env.metric("prereg_sync_in_flight_messages").await == 0.0,
    )
    .await;
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
    env.wait_for_blocked_by(&lock, 2, Duration::from_secs(30))
        .await;
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
