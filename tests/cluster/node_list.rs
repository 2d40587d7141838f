//! A node list with a dead entry, on the machine's own broker: needs no cluster and stops
//! nothing, so it runs in the parallel part of `scripts/test`.

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_in_amqp_url_is_passed_over_by_the_worker_and_the_commands() {
    let mut env = TestEnv::new();
    let live = env.vars["AMQP_URL"].clone();
    // Port 1 on this machine: connection refused.
    let dead = format!("amqp://guest:s3cret-dead@127.0.0.1:1/{}", env.vhost);
    env.vars.insert("AMQP_URL".into(), format!("{dead},{live}"));
    env.spawn_app().await;
    assert_eq!(
        env.metric("prereg_sync_broker_node{index=\"2\"}").await,
        1.0,
        "consuming from the live node, the second of the list (numbered from 1, as in the logs)"
    );
    assert_eq!(
        env.metric("prereg_sync_broker_node{index=\"1\"}").await,
        0.0
    );

    let ids = prids(2);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    broker
        .publish(&request_body(&ids), properties("tx-list", Some(&replies)))
        .await;
    let reply = broker.get_n(&replies, 1, Duration::from_secs(30)).await;
    assert_eq!(error_code(&reply[0]), "");

    for _ in 0..4 {
        // Each run starts at a random node: four runs try the dead one first with
        // probability 15/16.
        let out = env.cli(&["dlq", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = [out.stdout, out.stderr].concat();
        assert!(!String::from_utf8_lossy(&printed).contains("s3cret-dead"));
    }
    env.stop_app().await;
}
