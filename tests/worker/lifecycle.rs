//! The real binary killed with SIGKILL, and stopped with SIGTERM, in the
//! middle of a 1,000-request stream. Afterwards nothing is lost, nothing stored twice, and
//! nothing left unacked.

use std::{
    process::Child,
    time::{Duration, Instant},
};

use support::*;

const REQUESTS: usize = 1000;
const PER_REQUEST: usize = 2;

/// Publishes the stream before the worker starts, so the kill lands mid-stream.
async fn publish_stream(env: &TestEnv, broker: &Broker) -> Vec<String> {
    env.migrate().await;
    let ids = prids(REQUESTS * PER_REQUEST);
    env.seed_applications(&ids).await;
    env.declare_topology().await;
    broker.publish_stream(&ids, PER_REQUEST, "rp.replies").await;
    ids
}

async fn wait_for_transactions(env: &TestEnv, at_least: i64, limit: Duration) -> i64 {
    let sql = "SELECT count(*) FROM prereg.sync_transaction";
    env.wait_for_count(sql, at_least, limit).await
}

/// Waits for the process to exit; panics after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not exit within {limit:?}"
        );
        // Pacing of the exit polls: a child's exit cannot be awaited with a deadline here.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything stored once and answered; returns the replies by transaction.
async fn assert_complete(env: &TestEnv, broker: &Broker, ids: &[String]) -> Answers {
    assert_eq!(env.rows("sync_transaction").await, REQUESTS as i64);
    assert_eq!(env.rows("processed_prereg_list").await, ids.len() as i64);
    assert_eq!(
        env.rows("intf_processed_prereg_list").await,
        ids.len() as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'STORED'")
            .await,
        REQUESTS as i64,
        "one STORED per transaction"
    );
    // The worker has exited: any unacked delivery would be back in the queue.
    assert_eq!(broker.depth(REQUEST_QUEUE).await, 0, "nothing left unacked");
    assert_eq!(broker.depth(DLQ).await, 0);
    let depth = broker.depth("rp.replies").await as usize;
    let replies = broker
        .get_n("rp.replies", depth, Duration::from_secs(30))
        .await;
    for reply in &replies {
        assert_eq!(error_code(reply), "", "success replies only");
    }
    let answered = by_transaction(&replies);
    assert_eq!(answered.len(), REQUESTS, "every request answered");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let env = TestEnv::new();
    let broker = env.broker().await;
    broker.reply_queue("rp.replies").await;
    let ids = publish_stream(&env, &broker).await;
    let log = std::env::temp_dir().join(format!("prs-{}-kill.log", env.id));

    let mut worker = env.spawn_process(&[], &log);
    let stored = wait_for_transactions(&env, 100, Duration::from_secs(60)).await;
    worker.kill().unwrap(); // SIGKILL
    worker.wait().unwrap();
    assert!(
        (100..REQUESTS as i64).contains(&stored),
        "killed mid-stream (at {stored})"
    );

    let mut worker = env.spawn_process(&[], &log);
    let n = wait_for_transactions(&env, REQUESTS as i64, Duration::from_secs(120)).await;
    assert_eq!(n, REQUESTS as i64, "all stored after restart");
    // The last replies and acks out before the stop.
    env.wait_for_all_acked(REQUEST_QUEUE, Duration::from_secs(30))
        .await;
    terminate(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
    assert_complete(&env, &broker, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_exits_zero_and_answers_everything_once() {
    let env = TestEnv::new();
    let broker = env.broker().await;
    broker.reply_queue("rp.replies").await;
    let ids = publish_stream(&env, &broker).await;
    let log = std::env::temp_dir().join(format!("prs-{}-term.log", env.id));

    let mut worker = env.spawn_process(&[], &log);
    let stored = wait_for_transactions(&env, 100, Duration::from_secs(60)).await;
    let signalled = Instant::now();
    terminate(&worker);
    let status = wait_exit(&mut worker, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "within the grace period"
    );
    assert!(
        (100..REQUESTS as i64).contains(&stored),
        "stopped mid-stream (at {stored})"
    );

    let mut worker = env.spawn_process(&[], &log);
    wait_for_transactions(&env, REQUESTS as i64, Duration::from_secs(120)).await;
    env.wait_for_all_acked(REQUEST_QUEUE, Duration::from_secs(30))
        .await;
    terminate(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
    let answered = assert_complete(&env, &broker, &ids).await;
    assert!(
        answered.values().all(|r| r.len() == 1),
        "a graceful stop answers each request exactly once"
    );
}
