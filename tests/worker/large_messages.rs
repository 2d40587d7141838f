//! Large messages: the prefetch window bounds messages, not bytes, and the AMQP client holds
//! each delivery whole. The worker warns at start when the window of the largest messages the
//! broker accepts can exceed its memory budget, and an oversized request is answered and
//! dead-lettered once, with a clear code, while its neighbours are answered normally.

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_can_outgrow_the_memory_budget_is_warned_about() {
    let env = TestEnv::new();
    env.migrate().await;
    let log = std::env::temp_dir().join(format!("prs-{}-window.log", env.id));
    // RabbitMQ 4's default limit, 16 MiB, × 64 deliveries: 1 GiB against a 128 MiB budget.
    let mut worker = env.spawn_process(
        &[
            ("PREREG_SYNC__AMQP__MAX_MESSAGE_SIZE", "16777216"),
            ("PREREG_SYNC__WORKER__MEMORY_BUDGET", "134217728"),
        ],
        &log,
    );
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "the worker did not start",
        async || std::fs::read_to_string(&log).unwrap().contains("consuming"),
    )
    .await;
    terminate(&worker);
    assert!(worker.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    let warning = logs
        .lines()
        .find(|line| line.contains("can exceed the memory budget"))
        .expect("the window is warned about");
    assert!(warning.contains("WARN") && warning.contains("max_message_size=16777216"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_answered_once_and_its_neighbours_normally() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(6);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    // Over the 1 MiB body limit, under the broker's: valid JSON padded with spaces.
    let mut oversized = request_body(&ids[..1]);
    oversized.extend(std::iter::repeat_n(b' ', 3 * 512 * 1024));
    for (i, id) in ids.iter().enumerate() {
        let tx = format!("tx-n{i}");
        broker
            .publish(
                &request_body(std::slice::from_ref(id)),
                properties(&tx, Some(&replies)),
            )
            .await;
        if i == 2 {
            broker
                .publish(&oversized, properties("tx-big", Some(&replies)))
                .await;
        }
    }
    let answers = broker
        .get_n(&replies, ids.len() + 1, Duration::from_secs(30))
        .await;
    let big: Vec<_> = answers
        .iter()
        .filter(|reply| header_str(reply, "x-transaction-id").as_deref() == Some("tx-big"))
        .collect();
    assert_eq!(big.len(), 1, "answered once");
    assert_eq!(error_code(big[0]), "PRG_CORE_REQ_015");
    let stored = answers
        .iter()
        .filter(|reply| error_code(reply).is_empty())
        .count();
    assert_eq!(stored, ids.len(), "every neighbour stored");
    let dead = broker.get_n(DLQ, 1, Duration::from_secs(10)).await;
    assert_eq!(dead[0].data.len(), oversized.len(), "dead-lettered whole");
    assert_eq!(broker.depth(DLQ).await, 0, "once");
    env.stop_app().await;
}
