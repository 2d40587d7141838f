//! Reading the dead-letter queue costs nothing: every read-only `dlq` command (and a dry run)
//! leaves every dead letter in place and in its order, whatever delivery limit the broker puts
//! on the queue (RabbitMQ 4 sets 20 by default; a policy can set less). And a replay keeps the
//! time the request first failed.

use std::time::Duration;

use support::*;

use crate::operations::{dead_letter_some, dead_letters_of_a_stopped_worker};

/// The transaction IDs of the dead-letter queue, in its order.
fn order(env: &TestEnv) -> Vec<String> {
    let listed = env.cli_ok(&["dlq", "list", "--json", "--limit", "1000"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    rows.iter()
        .map(|row| row["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}

/// 12 dead letters, then 25 mixed reads: all 12 still there, in the same order every time.
async fn twenty_five_reads_keep_twelve_dead_letters(limit_policy: bool) {
    let mut env = TestEnv::new();
    let (broker, _) = dead_letters_of_a_stopped_worker(&mut env, 8, 4).await;
    if limit_policy {
        rabbitmqctl(&[
            "set_policy",
            "-p",
            &env.vhost,
            "--apply-to",
            "queues",
            "dlq-delivery-limit",
            &format!("^{}$", DLQ.replace('.', "\\.")),
            r#"{"delivery-limit": 3}"#,
        ]);
    }
    let before = order(&env);
    assert_eq!(before.len(), 12);
    let archive = std::env::temp_dir().join(format!("{}.jsonl", env.id));
    for read in 0..25 {
        match read % 6 {
            0 => assert_eq!(order(&env), before, "read {read}: order kept"),
            1 => drop(env.cli_ok(&["dlq", "list"])),
            2 => drop(env.cli_ok(&["dlq", "show", &before[read % 12]])),
            3 => drop(env.cli_ok(&["dlq", "replay", "--all", "--dry-run"])),
            4 => drop(env.cli_ok(&[
                "dlq",
                "delete",
                "--error-code",
                "PRG_PAM_CORE_002",
                "--dry-run",
            ])),
            _ => {
                let file = archive.with_extension(format!("{read}.jsonl"));
                env.cli_ok(&["dlq", "export", "--file", file.to_str().unwrap()]);
                std::fs::remove_file(file).unwrap();
            }
        }
    }
    assert_eq!(
        broker.depth(DLQ).await,
        12,
        "every dead letter is still there"
    );
    assert_eq!(order(&env), before, "in the same order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_spend_a_delivery_under_a_delivery_limit_policy() {
    twenty_five_reads_keep_twelve_dead_letters(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_spend_a_delivery_under_the_broker_default() {
    twenty_five_reads_keep_twelve_dead_letters(false).await;
}

/// A replayed request that fails again keeps its first failure time; the replay's own time is
/// a header of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_keeps_the_first_failure_time() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let broker = env.broker().await;
    broker.reply_queue("rp.replies").await;
    dead_letter_some(&broker, 1, 0).await;
    let first: Vec<serde_json::Value> =
        serde_json::from_str(&env.cli_ok(&["dlq", "list", "--json"])).unwrap();
    let first_failure = first[0]["first_failure_time"].as_str().unwrap().to_owned();

    env.cli_ok(&["dlq", "replay", "--all"]);
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the replayed request was not dead-lettered again",
        async || {
            let rows = env.cli_ok(&["dlq", "list", "--json"]);
            serde_json::from_str::<Vec<serde_json::Value>>(&rows).unwrap()[0]["replay_count"] == 1
        },
    )
    .await;
    let again: Vec<serde_json::Value> =
        serde_json::from_str(&env.cli_ok(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["first_failure_time"], first_failure.as_str());
    let detail = env.cli_ok(&["dlq", "show", "tx-unknown-0"]);
    assert!(detail.contains("x-replay-time"), "{detail}");
    env.stop_app().await;
}
